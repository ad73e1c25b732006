"""Clock skew, corrected as the SDKs correct it: a local HTTP server whose clock runs ten
minutes ahead refuses requests signed more than five minutes off its clock, answering as SQS
does (400, InvalidSignatureException, its own Date header); the wire client corrects its
offset from that Date, retries once, logs the offset once, and signs right from then on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from sluice.sources.sqs_wire import WireSqsClient, static_credentials

AHEAD = timedelta(minutes=10)
WINDOW = timedelta(minutes=5)  # SQS's: "Signature expired: ... (... - 5 min.)"
QUEUE = "http://127.0.0.1/000000000000/events"


@dataclass
class SkewedSqs:
    """What the server saw: the X-Amz-Date of every request, and how many it refused."""

    ahead: timedelta
    refuse_always: str | None = None  # a code to refuse every request with, whatever its date
    dates: list[datetime] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        signed = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        signed = signed.replace(tzinfo=UTC)
        now = datetime.now(UTC) + self.ahead
        self.dates.append(signed)
        headers = {"Date": format_datetime(now, usegmt=True)}
        if self.refuse_always or abs(now - signed) > WINDOW:
            self.refused += 1
            code = self.refuse_always or "InvalidSignatureException"
            message = (
                f"Signature expired: {signed:%Y%m%dT%H%M%SZ} is now earlier than "
                f"{now - WINDOW:%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 5 min.)"
            )
            body = {"__type": f"com.amazon.coral.service#{code}", "message": message}
            return web.json_response(body, status=400, headers=headers)
        return web.json_response({"Messages": []}, headers=headers)


@asynccontextmanager
async def served(sqs: SkewedSqs) -> AsyncIterator[WireSqsClient]:
    app = web.Application()
    app.router.add_post("/", sqs.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = WireSqsClient(
        f"http://127.0.0.1:{port}",
        "us-east-1",
        static_credentials("AKIDEXAMPLE", "secret"),
        pool=16,
    )
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


def corrections(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == "clock_skew_corrected"]


def test_a_skewed_clock_is_corrected_once_and_the_call_retried_once() -> None:
    sqs = SkewedSqs(AHEAD)

    async def run() -> None:
        async with served(sqs) as client:
            for _ in range(4):
                assert await client.receive_message(QueueUrl=QUEUE) == {"Messages": []}

    with capture_logs() as logs:
        asyncio.run(run())
    assert sqs.refused == 1  # the first call, once
    assert len(sqs.dates) == 5  # the first call twice, then one request per call
    logged = corrections(logs)
    assert len(logged) == 1
    offset = logged[0]["offset_seconds"]
    assert isinstance(offset, float)
    assert abs(offset - AHEAD.total_seconds()) < 5


def test_calls_refused_together_are_all_retried_and_the_offset_logged_once() -> None:
    sqs = SkewedSqs(AHEAD)

    async def run() -> None:
        async with served(sqs) as client:
            answers = await asyncio.gather(
                *(client.receive_message(QueueUrl=QUEUE) for _ in range(8))
            )
            assert answers == [{"Messages": []}] * 8

    with capture_logs() as logs:
        asyncio.run(run())
    assert sqs.refused == 8
    assert len(sqs.dates) == 16
    assert len(corrections(logs)) == 1


def test_a_refusal_with_the_clocks_agreeing_is_not_retried() -> None:
    # A wrong secret key: SignatureDoesNotMatch, but the clocks agree, so skew is not why.
    sqs = SkewedSqs(timedelta(0), refuse_always="SignatureDoesNotMatch")

    async def run() -> None:
        async with served(sqs) as client:
            with pytest.raises(ClientError) as info:
                await client.receive_message(QueueUrl=QUEUE)
            assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    with capture_logs() as logs:
        asyncio.run(run())
    assert len(sqs.dates) == 1
    assert corrections(logs) == []


def test_a_second_refusal_is_raised_not_retried_again() -> None:
    sqs = SkewedSqs(AHEAD, refuse_always="InvalidSignatureException")

    async def run() -> None:
        async with served(sqs) as client:
            with pytest.raises(ClientError) as info:
                await client.receive_message(QueueUrl=QUEUE)
            assert info.value.response["Error"]["Code"] == "InvalidSignatureException"

    asyncio.run(run())
    assert len(sqs.dates) == 2
