"""A fault-injecting HTTP proxy in front of the SQS emulator, and checks shared by fault tests.

``FaultProxy`` forwards every SQS JSON-protocol request (POST with ``X-Amz-Target:
AmazonSQS.<Action>``) to the emulator, counts requests per action (and those in flight),
and on demand:

- answers some ``DeleteMessageBatch`` entries with ``Failed[]`` (``InternalError``) instead
  of forwarding them, the first time it sees their receipt handle;
- answers ``ReceiveMessage`` with throttling (HTTP 400, query-compatible error code) or
  HTTP 500 for a time window that starts at the first receive after it is armed;
- answers some ``ChangeMessageVisibilityBatch`` entries (the heartbeat) with ``Failed[]``
  (``InternalError``), each entry of each call independently (off by default);
- holds ``ReceiveMessage`` at a gate (``hold_receives``): a poll waits its
  ``WaitTimeSeconds`` for the gate to open and, if it does not, comes back empty, as a long
  poll of an empty queue would; once opened (``open_receives``) every waiting poll goes
  through at the same moment. Open by default.

It also logs, per receipt handle, every ``DeleteMessageBatch`` and
``ChangeMessageVisibilityBatch`` request that carried it, with its arrival time and what
the proxy answered, so a test can bound retries and see the backoff between them.

It runs aiohttp in a background thread with its own event loop, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
import psycopg
from aiohttp import web

from sluice.mapping import load_mapping
from sluice.tools.dlq import peek, release
from sluice.tools.synth import SyntheticMessage
from tests.support import sqs

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
_DROP_REQUEST_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_DROP_RESPONSE_HEADERS = {
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
}
ErrorKind = Literal["throttle", "500", "alternate"]


_LOGGED_BATCH_ACTIONS = ("DeleteMessageBatch", "ChangeMessageVisibilityBatch")


@dataclass(frozen=True)
class Attempt:
    """One batch request as one receipt handle saw it."""

    at: float  # time.monotonic() when the request arrived
    outcome: str  # "forwarded", "failed_entry" (Failed[] made up) or "<kind>" of an error


@dataclass
class _ErrorWindow:
    action: str
    seconds: float
    kind: ErrorKind
    started_at: float | None = None


class FaultProxy:
    """Reverse proxy to ``upstream``; ``url`` is what a worker's AWS_ENDPOINT_URL_SQS gets."""

    _session: aiohttp.ClientSession

    def __init__(
        self,
        upstream: str,
        *,
        fail_new_delete_entries: float = 0.0,
        fail_visibility_entries: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        # Fraction of receipt handles whose first DeleteMessageBatch entry is answered Failed.
        self.fail_new_delete_entries = fail_new_delete_entries
        # Fraction of ChangeMessageVisibilityBatch entries answered Failed, on every call.
        self.fail_visibility_entries = fail_visibility_entries
        self._visibility_rng = random.Random(seed)
        self._attempts: dict[str, dict[str, list[Attempt]]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._delete_handles: Counter[str] = Counter()
        self._received_ids: Counter[str] = Counter()
        self._window: _ErrorWindow | None = None
        self._receives_open = threading.Event()
        self._receives_open.set()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    # -- what tests read ------------------------------------------------------------------

    def calls(self, action: str) -> int:
        with self._lock:
            return self._calls[action]

    def in_flight(self, action: str) -> int:
        with self._lock:
            return self._in_flight[action]

    def injected(self, what: str) -> int:
        """``entry_failures`` (Failed[] entries made up) or ``<Action>:<kind>`` errors."""
        with self._lock:
            return self._injected[what]

    def delete_handle_counts(self) -> Counter[str]:
        """How many DeleteMessageBatch entries each receipt handle appeared in."""
        with self._lock:
            return Counter(self._delete_handles)

    def received_message_ids(self) -> Counter[str]:
        """How many times each MessageId was handed out by ReceiveMessage."""
        with self._lock:
            return Counter(self._received_ids)

    def entry_attempts(self, action: str) -> dict[str, list[Attempt]]:
        """Receipt handle -> each ``action`` request that carried it, in arrival order.

        Kept for DeleteMessageBatch and ChangeMessageVisibilityBatch, injected errors and
        Failed[] entries included.
        """
        with self._lock:
            return {h: list(a) for h, a in self._attempts.get(action, {}).items()}

    def fail_action_for(
        self, seconds: float, *, action: str = "ReceiveMessage", kind: ErrorKind = "throttle"
    ) -> None:
        """Answer ``action`` with errors for ``seconds`` from the next such request on."""
        with self._lock:
            self._window = _ErrorWindow(action, seconds, kind)

    def hold_receives(self) -> None:
        """Close the receive gate: polls wait at it (and come back empty after their wait)."""
        self._receives_open.clear()

    def open_receives(self) -> None:
        """Open the receive gate: every poll waiting at it is forwarded now."""
        self._receives_open.set()

    def heal(self) -> None:
        """Stop injecting errors (Failed[] delete entries are left as configured)."""
        with self._lock:
            self._window = None

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        if self._failure is not None:
            raise RuntimeError("fault proxy failed to start") from self._failure

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(15)
            if self._thread.is_alive():
                raise RuntimeError("fault proxy did not stop")
        if self._failure is not None:
            raise RuntimeError("fault proxy failed") from self._failure

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the test thread by start()/stop()
            self._failure = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:
            self._session = session
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(
                app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
            )
            await runner.setup()
            site = web.SockSite(runner, self._sock)
            await site.start()
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    # -- the proxy ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.monotonic()
        action = request.headers.get("X-Amz-Target", "").rpartition(".")[2] or "unknown"
        with self._lock:
            self._calls[action] += 1
            self._in_flight[action] += 1
        try:
            error = self._injected_error(action)
            if error is not None:
                self._log_attempts(action, body, arrived, error=error)
                return error
            if action == "DeleteMessageBatch" and self.fail_new_delete_entries > 0:
                return await self._delete_batch(request, body, arrived)
            if action == "ChangeMessageVisibilityBatch" and self.fail_visibility_entries > 0:
                return await self._visibility_batch(request, body, arrived)
            self._log_attempts(action, body, arrived)
            if action == "ReceiveMessage" and not await self._through_gate(body):
                return web.json_response(
                    {},
                    content_type=JSON_CONTENT_TYPE,
                    headers={"x-amzn-RequestId": str(uuid.uuid4())},
                )
            status, headers, payload = await self._forward(request, body)
            if action == "DeleteMessageBatch" and status == 200:
                self._record_deletes(orjson.loads(body).get("Entries", []))
            elif action == "ReceiveMessage" and status == 200:
                self._record_receives(orjson.loads(payload).get("Messages", []))
            return web.Response(status=status, headers=headers, body=payload)
        finally:
            with self._lock:
                self._in_flight[action] -= 1

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST_HEADERS
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as response:
            payload = await response.read()
            out = {
                k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS
            }
            return response.status, out, payload

    async def _through_gate(self, body: bytes) -> bool:
        """Wait up to the poll's WaitTimeSeconds for the receive gate; True once open."""
        if self._receives_open.is_set():
            return True
        wait = float(orjson.loads(body).get("WaitTimeSeconds", 0) or 0)
        deadline = time.monotonic() + wait
        while not self._receives_open.is_set():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _log_attempts(
        self,
        action: str,
        body: bytes,
        arrived: float,
        *,
        error: web.Response | None = None,
        failed_ids: frozenset[str] = frozenset(),
    ) -> None:
        if action not in _LOGGED_BATCH_ACTIONS:
            return
        entries: list[dict[str, str]] = orjson.loads(body).get("Entries", [])
        kind = None
        if error is not None:
            kind = "500" if error.status >= 500 else "throttle"
        with self._lock:
            log = self._attempts.setdefault(action, {})
            for entry in entries:
                outcome = kind or ("failed_entry" if entry["Id"] in failed_ids else "forwarded")
                log.setdefault(entry["ReceiptHandle"], []).append(Attempt(arrived, outcome))

    async def _visibility_batch(
        self, request: web.Request, body: bytes, arrived: float
    ) -> web.Response:
        """Forward some entries; answer the others Failed[] (InternalError, retryable)."""
        parsed: dict[str, Any] = orjson.loads(body)
        entries: list[dict[str, Any]] = parsed.get("Entries", [])
        with self._lock:
            failed = [
                e for e in entries if self._visibility_rng.random() < self.fail_visibility_entries
            ]
            self._injected["visibility_entry_failures"] += len(failed)
        failed_ids = frozenset(e["Id"] for e in failed)
        self._log_attempts("ChangeMessageVisibilityBatch", body, arrived, failed_ids=failed_ids)
        forward = [e for e in entries if e["Id"] not in failed_ids]
        return await self._forward_with_failures(request, parsed, forward, failed)

    async def _forward_with_failures(
        self,
        request: web.Request,
        parsed: dict[str, Any],
        forward: Sequence[dict[str, Any]],
        failed: Sequence[dict[str, Any]],
    ) -> web.Response:
        """Forward the ``forward`` entries of a batch call; answer ``failed`` as Failed[]."""
        result: dict[str, Any] = {"Successful": [], "Failed": []}
        if forward:
            status, headers, payload = await self._forward(
                request, orjson.dumps(parsed | {"Entries": forward})
            )
            if status != 200:
                return web.Response(status=status, headers=headers, body=payload)
            result = orjson.loads(payload)
            result.setdefault("Successful", [])
            result.setdefault("Failed", [])
        result["Failed"] = list(result["Failed"]) + [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in failed
        ]
        return web.Response(
            status=200,
            body=orjson.dumps(result),
            content_type=JSON_CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _injected_error(self, action: str) -> web.Response | None:
        with self._lock:
            window = self._window
            if window is None or window.action != action:
                return None
            now = time.monotonic()
            if window.started_at is None:
                window.started_at = now
            if now - window.started_at > window.seconds:
                self._window = None
                return None
            kind = window.kind
            if kind == "alternate":
                kind = "throttle" if self._calls[action] % 2 else "500"
            self._injected[f"{action}:{kind}"] += 1
        request_id = str(uuid.uuid4())
        if kind == "throttle":
            # What botocore's JSON parser reads for an awsQueryCompatible service: the
            # __type (after '#') and the query error code from x-amzn-query-error.
            return web.json_response(
                {"__type": "com.amazonaws.sqs#ThrottlingException", "message": "injected"},
                status=400,
                content_type=JSON_CONTENT_TYPE,
                headers={"x-amzn-query-error": "Throttling;Sender", "x-amzn-RequestId": request_id},
            )
        return web.json_response(
            {"__type": "com.amazonaws.sqs#InternalFailure", "message": "injected"},
            status=500,
            content_type=JSON_CONTENT_TYPE,
            headers={"x-amzn-RequestId": request_id},
        )

    async def _delete_batch(
        self, request: web.Request, body: bytes, arrived: float | None = None
    ) -> web.Response:
        parsed: dict[str, Any] = orjson.loads(body)
        entries: list[dict[str, str]] = parsed.get("Entries", [])
        failed: list[dict[str, str]] = []
        forward: list[dict[str, str]] = []
        with self._lock:
            for entry in entries:
                fresh = entry["ReceiptHandle"] not in self._delete_handles
                self._delete_handles[entry["ReceiptHandle"]] += 1
                if fresh and self._rng.random() < self.fail_new_delete_entries:
                    failed.append(entry)
                else:
                    forward.append(entry)
            self._injected["entry_failures"] += len(failed)
        self._log_attempts(
            "DeleteMessageBatch",
            body,
            time.monotonic() if arrived is None else arrived,
            failed_ids=frozenset(e["Id"] for e in failed),
        )
        return await self._forward_with_failures(request, parsed, forward, failed)

    def _record_receives(self, messages: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            for message in messages:
                self._received_ids[message["MessageId"]] += 1

    def _record_deletes(self, entries: Sequence[dict[str, str]]) -> None:
        with self._lock:
            for entry in entries:
                self._delete_handles[entry["ReceiptHandle"]] += 1


# -- checks shared by the fault and shutdown suites ---------------------------------------


def expected_keys(plan: Sequence[SyntheticMessage], table: str) -> set[str]:
    mapping = load_mapping(None, table)
    return {mapping.dedupe_key(orjson.loads(m.body), m.body) for m in plan if m.valid}


@dataclass(frozen=True)
class TableCounts:
    per_key: Counter[str]
    rows: int
    message_ids: int


def table_counts(dsn: str, table: str) -> TableCounts:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT dedupe_key, count(*) FROM "{table}" GROUP BY 1').fetchall()
        total, ids = conn.execute(
            f'SELECT count(*), count(DISTINCT message_id) FROM "{table}"'
        ).fetchone() or (0, 0)
    return TableCounts(Counter({str(k): int(n) for k, n in rows}), int(total), int(ids))


def dlq_entries(endpoint: str, dlq_url: str) -> list[tuple[str, str]]:
    """(body, reason) of every dead letter, read in one pass and released again."""

    async def work(client: Any) -> list[tuple[str, str]]:
        views, _ = await peek(client, dlq_url, 100_000)
        await release(client, dlq_url, views)
        return [(v.message.body, v.reason) for v in views]

    return sqs.with_client(endpoint, work)


def assert_exactly_once(
    *,
    dsn: str,
    table: str,
    plan: Sequence[SyntheticMessage],
    queues: sqs.Queues,
    dlq_may_repeat: bool = True,
) -> TableCounts:
    """Every valid event is one row, every malformed one is in the DLQ with its reason,
    and the queue is empty.

    A worker killed after sending dead letters but before deleting them leaves them to be
    dead-lettered again on redelivery (at-least-once into the DLQ), so unless
    ``dlq_may_repeat`` is False, the DLQ is compared by distinct body.
    """
    counts = table_counts(dsn, table)
    keys = expected_keys(plan, table)
    missing = keys - set(counts.per_key)
    extra = set(counts.per_key) - keys
    assert not missing, f"{len(missing)} valid event(s) lost"
    assert not extra, f"{len(extra)} unexpected row(s)"
    doubled = {k: n for k, n in counts.per_key.items() if n != 1}
    assert not doubled, f"{len(doubled)} key(s) loaded more than once"
    assert counts.rows == len(keys)
    assert counts.message_ids == counts.rows  # every row comes from its own message

    wanted = {m.body: m.expected_reason.value for m in plan if m.expected_reason}
    found = dlq_entries(queues.endpoint, queues.dlq_url)
    if dlq_may_repeat:
        assert dict(found) == wanted
    else:
        assert sorted(found) == sorted(wanted.items())
    depth = sqs.depth(queues.endpoint, queues.url)
    assert depth.total == 0, f"queue not empty: {depth}"
    return counts


def log_events(text: str) -> Iterator[dict[str, Any]]:
    """The JSON log lines of a worker's output, parsed; other lines skipped."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                continue


def has_event(text: str, name: str) -> bool:
    return any(e.get("event") == name for e in log_events(text))


def final_stats(text: str) -> dict[str, Any]:
    stats = [e for e in log_events(text) if e.get("event") == "stats"]
    assert stats, f"no stats line in the log:\n{text[-3000:]}"
    return stats[-1]
