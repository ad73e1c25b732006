"""Per-message CPU of the pure path: decode, map and key one message, no I/O.

Prints CPU microseconds per message for the synthetic AppsFlyer events the throughput
benchmark sends (a quarter of them hold a float, so they pass the exact-number check), best of
``--repeat`` passes. Being pure and single-threaded, it varies far less with what else the
machine runs than an end-to-end figure does, so two commits can be compared in one run:

    PYTHONPATH=<other checkout>/src python bench/decode.py
    python bench/decode.py

Usage: python bench/decode.py [--messages N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time

from sluice.decode import decode_message
from sluice.mapping import load_mapping
from sluice.model import ReceivedMessage

try:
    from sluice.tools.synth import synthetic_stream
except ImportError:  # a checkout from before the tools moved under sluice.tools
    from sluice.synth import synthetic_stream  # type: ignore[no-redef]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stream = synthetic_stream(args.messages, malformed_ratio=0.0, duplicate_ratio=0.0, seed=3)
    messages = [
        ReceivedMessage(str(i), f"handle-{i}", m.body, 1, 1_700_000_000_000)
        for i, m in enumerate(stream)
    ]
    mapping = load_mapping(None, "events")
    passes = []
    for _ in range(args.repeat):
        started = time.process_time()
        for message in messages:
            decode_message(message, mapping)
        passes.append(time.process_time() - started)
    best = min(passes) / len(messages) * 1e6
    median = sorted(passes)[len(passes) // 2] / len(messages) * 1e6
    print(
        f"decode+map+key: {best:.2f} CPU us/msg (best of {args.repeat} passes over "
        f"{len(messages):,} messages; median {median:.2f})"
    )


if __name__ == "__main__":
    main()
