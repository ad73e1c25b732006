"""The command line: the only place that reads argv and the environment and wires objects.

``root`` holds the ``sluice`` group; each command group has its own module beside it, and
``common`` the context, exit codes and error translation they share.
"""

from __future__ import annotations


def main() -> None:
    """The console script (``sluice = "sluice.cli:main"``) and ``python -m sluice``.

    Imported on call, so importing one command module (``sluice.cli.status`` in a test) does
    not load every command and the tools behind them."""
    from sluice.cli.root import main as run

    run()
