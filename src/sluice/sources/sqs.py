"""Amazon SQS as a Source: receive, delete and extend in batches of 10, over either client
(``sqs_wire``'s lean JSON-protocol client by default, or aiobotocore's).

Every failure of a call is translated here, in ``call``, by the one AWS classifier
(``aws_errors``): TransientError (throttling, 5xx, connection trouble: retried by the caller
with backoff) or PermanentError.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from sluice.aws_errors import AwsService, classify
from sluice.config import SqsClientKind
from sluice.errors import PermanentError, TransientError
from sluice.model import ReceivedMessage, SettleResult
from sluice.policies import ExponentialBackoff
from sluice.sources.base import QueueDepth
from sluice.sources.sdk_policies import RetryQuota
from sluice.sources.sqs_attributes import BATCH_LIMIT, from_raw
from sluice.sources.sqs_endpoint import resolve_sqs_endpoint, sdk_endpoint_variants
from sluice.sources.sqs_wire import (
    CredentialSource,
    WireSqsClient,
    chain_credentials,
    static_credentials,
)

ENTRY_RETRIES = 5  # retries of a failed delete / visibility entry before leaving it to SQS
# Batch entries that failed for these codes will not succeed on retry.
_FINAL_ENTRY_CODES = {
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "InvalidParameterValue",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
}


def client_config(pool: int) -> Any:
    from aiobotocore.config import AioConfig

    return AioConfig(
        max_pool_connections=pool,
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=40,  # above the longest long poll (20 s)
    )


@asynccontextmanager
async def sqs_client(
    region: str,
    endpoint_url: str | None,
    pool: int,
    credentials: dict[str, str] | None = None,
    kind: SqsClientKind = SqsClientKind.WIRE,
) -> AsyncIterator[Any]:
    """An SQS client: the lean wire client (default) or aiobotocore's, same call shapes."""
    if kind is SqsClientKind.BOTOCORE:
        from aiobotocore.session import get_session  # ~35 MB: only when asked for

        session = get_session()
        async with session.create_client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint_url,
            config=client_config(pool),
            **(credentials or {}),
        ) as client:
            yield client
        return
    source = (
        static_credentials(
            credentials["aws_access_key_id"],
            credentials["aws_secret_access_key"],
            credentials.get("aws_session_token"),
        )
        if credentials
        else await _chain_credentials()
    )
    # Resolved once, here, by the SDK's rules and variables: the botocore client above
    # resolves the same way inside create_client.
    endpoint = endpoint_url or resolve_sqs_endpoint(region, sdk_endpoint_variants())
    client = WireSqsClient(endpoint, region, source, pool=pool)
    try:
        yield client
    finally:
        await client.close()


async def _chain_credentials() -> CredentialSource:
    try:
        return await chain_credentials()
    except ClientError as exc:
        raise PermanentError(f"SQS credentials: {exc}") from exc


async def call(client_call: Callable[..., Awaitable[Any]], action: str, **kwargs: Any) -> Any:
    try:
        return await client_call(**kwargs)
    except (TimeoutError, ClientError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise classify(AwsService.SQS, action, exc) from exc


def _timed_out(exc: BaseException) -> bool:
    """A call that got no answer in time: botocore's quota charges its retry double."""
    return isinstance(exc.__cause__, TimeoutError)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class SqsQueue:
    """One SQS queue as a Source. ``client`` is an open aiobotocore SQS client."""

    def __init__(
        self,
        client: Any,
        url: str,
        *,
        entry_retries: int = ENTRY_RETRIES,
        backoff: ExponentialBackoff | None = None,
        quota: RetryQuota | None = None,
    ) -> None:
        self._client = client
        self.url = url
        self._entry_retries = entry_retries
        # About 3 s of retries at most: long enough to ride out a short SQS brown-out
        # without leaving committed messages to reappear, short enough to free the slot.
        self._backoff = backoff or ExponentialBackoff(base=0.1, cap=2.0)
        # botocore's standard-mode quota over the calls this queue retries itself (deletes and
        # visibility changes): when SQS throttles or fails everything, the bucket empties
        # and failures are left to SQS (redelivery, absorbed by the merge) rather than every
        # group retrying five times into the same throttle.
        self._quota = quota or RetryQuota()

    @property
    def retry_quota(self) -> RetryQuota:
        return self._quota

    async def _call(self, method: Callable[..., Awaitable[Any]], action: str, **kwargs: Any) -> Any:
        response = await call(method, action, **kwargs)
        self._quota.succeeded()
        return response

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        response = await self._call(
            self._client.receive_message,
            "ReceiveMessage",
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return [to_message(m) for m in response.get("Messages", ())]

    async def delete(self, messages: Sequence[ReceivedMessage]) -> SettleResult:
        return await self._settle(
            messages, "DeleteMessageBatch", self._client.delete_message_batch, {}
        )

    async def change_visibility(
        self, messages: Sequence[ReceivedMessage], seconds: int
    ) -> SettleResult:
        return await self._settle(
            messages,
            "ChangeMessageVisibilityBatch",
            self._client.change_message_visibility_batch,
            {"VisibilityTimeout": seconds},
        )

    async def _settle(
        self,
        messages: Sequence[ReceivedMessage],
        action: str,
        method: Callable[..., Awaitable[Any]],
        extra: dict[str, Any],
    ) -> SettleResult:
        groups = _chunks(messages, BATCH_LIMIT)
        if len(groups) == 1:  # the pipeline's deletes come a group at a time: no task for it
            results = [await self._settle_group(groups[0], action, method, extra)]
        else:
            results = await asyncio.gather(
                *(self._settle_group(group, action, method, extra) for group in groups)
            )
        succeeded: list[ReceivedMessage] = []
        failed: list[tuple[ReceivedMessage, str]] = []
        for ok, bad in results:
            succeeded.extend(ok)
            failed.extend(bad)
        return SettleResult(tuple(succeeded), tuple(failed))

    async def _settle_group(
        self,
        group: Sequence[ReceivedMessage],
        action: str,
        method: Callable[..., Awaitable[Any]],
        extra: dict[str, Any],
    ) -> tuple[list[ReceivedMessage], list[tuple[ReceivedMessage, str]]]:
        pending = {str(i): m for i, m in enumerate(group)}
        succeeded: list[ReceivedMessage] = []
        final: list[tuple[ReceivedMessage, str]] = []
        spent: int | None = None  # what the quota gave for the latest retry of the call
        for attempt in range(self._entry_retries + 1):
            entries = [
                {"Id": i, "ReceiptHandle": m.receipt_handle} | extra for i, m in pending.items()
            ]
            try:
                response = await call(method, action, QueueUrl=self.url, Entries=entries)
            except TransientError as exc:
                last = attempt == self._entry_retries
                spent = None if last else self._quota.acquire(timeout=_timed_out(exc))
                if spent is None:
                    why = str(exc) if last else f"{exc} (retry quota empty: not retried)"
                    final.extend((m, why) for m in pending.values())
                    return succeeded, final
                await asyncio.sleep(self._backoff.delay(attempt))
                continue
            self._quota.succeeded(spent)
            spent = None
            for ok in response.get("Successful", ()):
                succeeded.append(pending.pop(ok["Id"]))
            retry: dict[str, ReceivedMessage] = {}
            for bad in response.get("Failed", ()):
                message = pending.pop(bad["Id"])
                code = str(bad.get("Code", ""))
                if code in _FINAL_ENTRY_CODES or attempt == self._entry_retries:
                    final.append((message, f"{code}: {bad.get('Message', '')}"))
                else:
                    retry[bad["Id"]] = message
            if not retry:
                break
            pending = retry
            await asyncio.sleep(self._backoff.delay(attempt))
        return succeeded, final

    async def attributes(self, names: Sequence[str]) -> dict[str, str]:
        """Queue attributes by name (GetQueueAttributes); absent ones are left out."""
        response = await self._call(
            self._client.get_queue_attributes,
            "GetQueueAttributes",
            QueueUrl=self.url,
            AttributeNames=list(names),
        )
        return {str(k): str(v) for k, v in response.get("Attributes", {}).items()}

    async def depth(self) -> QueueDepth:
        response = await self._call(
            self._client.get_queue_attributes,
            "GetQueueAttributes",
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        attrs = response.get("Attributes", {})
        try:
            return QueueDepth(
                visible=int(attrs["ApproximateNumberOfMessages"]),
                in_flight=int(attrs["ApproximateNumberOfMessagesNotVisible"]),
                delayed=int(attrs["ApproximateNumberOfMessagesDelayed"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            # Never read a malformed answer as "empty": drain mode would stop early.
            raise TransientError(
                f"SQS GetQueueAttributes answered without counts: {attrs}"
            ) from exc


def to_message(raw: dict[str, Any]) -> ReceivedMessage:
    attrs = raw.get("Attributes", {})
    return ReceivedMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(attrs.get("ApproximateReceiveCount", 1)),
        sent_timestamp_ms=int(attrs.get("SentTimestamp", 0)),
        attributes=from_raw(raw.get("MessageAttributes")),
    )
