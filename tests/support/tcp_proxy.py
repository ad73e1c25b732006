"""A TCP fault proxy for the warehouse link (Toxiproxy is not installable here).

``TcpFaultProxy`` listens on 127.0.0.1 (a free port) and forwards every connection to an
upstream ``host:port``. It runs its own asyncio loop in a background thread; every public
method may be called from the test thread and takes effect before it returns:

- ``set_latency``: delay each forwarded chunk, both directions or server->client only;
- ``count_sqs`` (constructor): count the SQS JSON-protocol requests that pass, by action (the
  ``X-Amz-Target: AmazonSQS.<Action>`` header), in ``stats().sqs_requests``;
- ``set_bandwidth``: pace each direction of each connection to so many bytes a second;
- ``set_blackhole``: hold every byte (and new connections, before dialling upstream) until
  turned off, sockets left open: a network partition that heals, as TCP sees one;
- ``reset``: close every current connection with RST (SO_LINGER 0), optionally refusing
  new ones from then on (``set_refusing``: accepted, then reset at once);
- ``cut_after_commit``: for the next ``n`` COMMITs a PostgreSQL client sends (simple Query
  or Parse message), forward the COMMIT to the server, reset the client before any byte
  the server sends back reaches it, and keep the server's answer for the test to read.
  The PostgreSQL stream must be in clear: connect with ``sslmode=disable``.

``stats()`` returns counters (connections, bytes, resets, commits). ``stop()`` ends every
connection and task. Use it as a context manager.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

T = TypeVar("T")
CHUNK = 65536
# A Query or Parse message longer than this is not a COMMIT: it is skipped, not buffered and
# decoded (a benchmark's multi-row INSERT is tens of MB).
LONGEST_COMMIT = 4096
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_PROTOCOL_3 = 196608  # StartupMessage; SSLRequest, GSSENCRequest, CancelRequest differ
COMMIT_COMPLETE = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete for a COMMIT
_SQS_TARGET = re.compile(rb"AmazonSQS\.([A-Za-z]+)")


class CommitSniffer:
    """Follows the client->server PostgreSQL stream; reports messages that run COMMIT."""

    def __init__(self) -> None:
        self._typed = False  # after the StartupMessage every message has a type byte
        self._buf = bytearray()
        self._skip = 0  # bytes of a message not worth keeping (COPY data...)
        self.lost = False  # the stream is not one we understand (TLS, say): stop looking

    def feed(self, data: bytes) -> int:
        """How many COMMIT messages end within ``data``."""
        found, pos = 0, 0
        while pos < len(data) and not self.lost:
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip, pos = self._skip - step, pos + step
                continue
            head = 5 if self._typed else 4
            if len(self._buf) < head:
                take = head - len(self._buf)
                self._buf += data[pos : pos + take]
                pos += take
                continue
            size = int.from_bytes(self._buf[head - 4 : head], "big") + head - 4
            kind = bytes(self._buf[:1]) if self._typed else b""
            if size < head or size > (1 << 30 if self._typed else 10_000):
                self.lost = True
                break
            if self._typed and (kind not in (b"Q", b"P") or size > LONGEST_COMMIT):
                self._skip, self._buf = size - len(self._buf), bytearray()
                continue
            take = size - len(self._buf)
            self._buf += data[pos : pos + take]
            pos += min(take, len(data) - pos)
            if len(self._buf) == size:
                found += self._message(bytes(self._buf))
                self._buf = bytearray()
        return found

    def _message(self, message: bytes) -> int:
        if not self._typed:
            code = int.from_bytes(message[4:8], "big")
            self._typed = code == _PROTOCOL_3
            self.lost = code >> 16 != 3 and code not in (80877103, 80877104, 80877102)
            return 0
        body = message[5:]
        if message[:1] == b"P":  # Parse: statement name NUL, query text NUL, ...
            body = body.split(b"\x00", 1)[1] if b"\x00" in body else b""
        text = body.split(b"\x00", 1)[0].decode("utf-8", "replace").strip().rstrip(";").strip()
        return int(text.upper() in ("COMMIT", "COMMIT WORK", "COMMIT TRANSACTION", "END"))


@dataclass
class ProxyStats:
    """What the proxy has seen; ``stats()`` returns a snapshot."""

    accepted: int = 0
    refused: int = 0
    active: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    resets: int = 0
    commits_seen: int = 0
    commits_cut: int = 0
    cut_replies: list[bytes] = field(default_factory=list)  # the server's undelivered answers
    sqs_requests: Counter[str] = field(default_factory=Counter)  # by action, with count_sqs

    def cut_commits_confirmed(self) -> int:
        """Cut COMMITs the server answered with CommandComplete: they did commit."""
        return sum(COMMIT_COMPLETE in reply for reply in self.cut_replies)


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    cut: bool = False


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST: SO_LINGER 0, then close without flushing."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter | None) -> None:
    """Close with FIN once what is buffered is sent."""
    if writer is not None and not writer.transport.is_closing():
        writer.close()


class TcpFaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``, with faults."""

    def __init__(self, upstream_host: str, upstream_port: int, *, count_sqs: bool = False) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._count_sqs = count_sqs
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._latency = 0.0
        self._latency_up = True
        self._rate: float | None = None
        self._refusing = False
        self._cuts_left = 0
        self._counters = ProxyStats()
        self._links: dict[_Link, asyncio.Task[None]] = {}
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-fault-proxy", daemon=True)

    # -- controls (any thread) -------------------------------------------------------------

    def set_latency(self, seconds: float, *, downstream_only: bool = False) -> None:
        def apply() -> None:
            self._latency, self._latency_up = seconds, not downstream_only

        self._call(apply)

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        self._call(lambda: setattr(self, "_rate", bytes_per_second))

    def set_blackhole(self, on: bool) -> None:
        self._call(self._flowing.clear if on else self._flowing.set)

    def set_refusing(self, on: bool) -> None:
        self._call(lambda: setattr(self, "_refusing", on))

    def reset(self, *, refuse_new: bool = False) -> int:
        """RST every current connection; with ``refuse_new``, also every new one. How many."""

        def apply() -> int:
            self._refusing = self._refusing or refuse_new
            return self._reset_all()

        return self._call(apply)

    def cut_after_commit(self, count: int) -> None:
        self._call(lambda: setattr(self, "_cuts_left", count))

    def heal(self) -> None:
        """No latency, bandwidth limit, blackhole, refusal or armed cuts any more."""

        def apply() -> None:
            self._latency, self._rate, self._refusing, self._cuts_left = 0.0, None, False, 0
            self._flowing.set()

        self._call(apply)

    def stats(self) -> ProxyStats:
        counters = self._counters
        return self._call(
            lambda: replace(
                counters,
                active=len(self._links),
                cut_replies=list(counters.cut_replies),
                sqs_requests=Counter(counters.sqs_requests),
            )
        )

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> TcpFaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TCP fault proxy did not start")

    def stop(self) -> None:
        if not self._thread.is_alive():  # never started, or stopped already
            self._sock.close()
            if not self._loop.is_closed():
                self._loop.close()
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("TCP fault proxy did not stop")

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the proxy's loop and return its result."""
        if not self._thread.is_alive():
            raise RuntimeError("TCP fault proxy is not running")
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._flowing.set()
        server = await asyncio.start_server(self._accept, sock=self._sock)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            tasks = list(self._links.values())
            self._reset_all()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    def _reset_all(self) -> int:
        for link, task in list(self._links.items()):
            _reset(link.client)
            _reset(link.server)
            task.cancel()
        self._counters.resets += len(self._links)
        return len(self._links)

    # -- forwarding -------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing or self._stopping.is_set():
            self._counters.refused += 1
            _reset(writer)
            return
        self._counters.accepted += 1
        link = _Link(writer)
        self._links[link] = asyncio.create_task(self._run(link, reader), name="tcp-proxy-link")

    async def _run(self, link: _Link, client: asyncio.StreamReader) -> None:
        try:
            await self._flowing.wait()  # blackholed: hold the client, dial nobody
            server, link.server = await asyncio.open_connection(*self.upstream)
            up = asyncio.create_task(self._pipe(client, link.server, link, True))
            down = asyncio.create_task(self._pipe(server, link.client, link, False))
            try:
                _, pending = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
                if link.cut and down in pending:  # let it read the server's answer
                    _, pending = await asyncio.wait(pending, timeout=5)
            finally:
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            _close(link.client)
            _close(link.server)  # FIN, not RST: the server still runs what it was sent
            self._links.pop(link, None)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link, up: bool
    ) -> None:
        sniffer = CommitSniffer() if up else None
        while True:
            await self._flowing.wait()
            data = await src.read(CHUNK)
            if not data:
                return
            if self._latency and (self._latency_up or not up):
                await asyncio.sleep(self._latency)
            await self._flowing.wait()
            if link.cut and not up:  # the answer to a cut COMMIT: keep it, deliver nothing
                self._counters.cut_replies.append(data)
                return
            commits = sniffer.feed(data) if sniffer is not None else 0
            if up and self._count_sqs:  # aiohttp writes a request's headers in one chunk
                self._counters.sqs_requests.update(
                    m[1].decode() for m in _SQS_TARGET.finditer(data)
                )
            self._counters.commits_seen += commits
            cut = commits > 0 and self._cuts_left > 0
            if cut:
                self._cuts_left -= 1
                self._counters.commits_cut += 1
                link.cut = True  # before the write: no server byte may reach the client now
            dst.write(data)
            await dst.drain()
            if up:
                self._counters.bytes_up += len(data)
            else:
                self._counters.bytes_down += len(data)
            if cut:
                _reset(link.client)
                self._counters.resets += 1
            if self._rate:
                await asyncio.sleep(len(data) / self._rate)
