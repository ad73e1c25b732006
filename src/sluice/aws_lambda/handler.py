"""The Lambda entry point: ``sluice.aws_lambda.handler`` (SQS event source mapping).

Importing this module reads no variable and opens no connection: the container (settings,
mapping, sink, DLQ client, event loop) is built at the first invocation and kept for the
next ones. A bad setting fails that first invocation, and every one after it until fixed,
with the settings parser's one line (``ConfigError: SLUICE_BATCH_MAX_ROWS='x' is invalid:
...``); Lambda then returns the records to the queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sluice.aws_lambda.container import LambdaContainer, Response
from sluice.aws_lambda.events import LambdaContext
from sluice.errors import ConfigError


class LazyContainer:
    """Builds the container on the first call and keeps it; a failed build is retried."""

    def __init__(self, build: Callable[[], LambdaContainer]) -> None:
        self._build = build
        self._container: LambdaContainer | None = None

    @property
    def built(self) -> LambdaContainer | None:
        return self._container

    def __call__(self, event: object, context: LambdaContext) -> Response:
        if self._container is None:
            try:
                self._container = self._build()
            except ConfigError as exc:
                raise ConfigError(str(exc)) from None  # one line, not the parser's frames
        return self._container.handle(event, context)

    def reset(self) -> None:
        """Close and forget the container (tests; Lambda discards whole environments)."""
        if self._container is not None:
            self._container.close()
            self._container = None


def _from_environment() -> LambdaContainer:
    return LambdaContainer.from_environment(os.environ)


CONTAINER = LazyContainer(_from_environment)


def handler(event: object, context: LambdaContext) -> Response:
    """SQS event in, ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` out,
    naming only the records that failed for a reason that may pass."""
    return CONTAINER(event, context)
