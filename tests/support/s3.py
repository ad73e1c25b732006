"""Synchronous helpers around the emulator's S3 (fauxqs serves S3 on the SQS port,
path-style) for tests: buckets, objects, and the Data Locker notifications naming them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from sluice.local.emulator import EMULATOR_CREDENTIALS

T = TypeVar("T")


def with_s3(endpoint: str, work: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        config = AioConfig(s3={"addressing_style": "path"})
        async with get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            config=config,
            **EMULATOR_CREDENTIALS,
        ) as client:
            return await work(client)

    return asyncio.run(go())


def make_bucket(endpoint: str) -> str:
    name = f"dl-{uuid.uuid4().hex[:10]}"

    async def work(client: Any) -> str:
        await client.create_bucket(Bucket=name)
        return name

    return with_s3(endpoint, work)


def put(endpoint: str, bucket: str, key: str, body: bytes) -> str:
    """Store ``body``; its ETag (without quotes)."""

    async def work(client: Any) -> str:
        answer = await client.put_object(Bucket=bucket, Key=key, Body=body)
        return str(answer["ETag"]).strip('"')

    return with_s3(endpoint, work)
