"""The SQS wire client's credential source: fixed keys frozen once, refreshable ones asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials
from botocore.credentials import ReadOnlyCredentials

from sluice.sources import sqs_wire
from sluice.sources.sigv4 import Credentials


class _Session:
    def __init__(self, resolved: Any) -> None:
        self.resolved = resolved

    async def get_credentials(self) -> Any:
        return self.resolved


class _Refreshable:
    """Stands for aiobotocore's refreshable credentials: new keys on every freeze."""

    def __init__(self) -> None:
        self.frozen = 0

    def refresh_needed(self) -> bool:
        return True

    async def get_frozen_credentials(self) -> Any:
        self.frozen += 1
        return ReadOnlyCredentials(f"AK{self.frozen}", "secret", "token")


def _chain(monkeypatch: pytest.MonkeyPatch, resolved: Any) -> Any:
    import aiobotocore.session

    monkeypatch.setattr(aiobotocore.session, "get_session", lambda: _Session(resolved))
    return asyncio.run(sqs_wire.chain_credentials())


def test_fixed_keys_are_frozen_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    fixed = AioCredentials("AKFIXED", "secret")
    original = fixed.get_frozen_credentials

    async def counting() -> Any:
        nonlocal calls
        calls += 1
        return await original()

    monkeypatch.setattr(fixed, "get_frozen_credentials", counting)
    source = _chain(monkeypatch, fixed)

    async def twice() -> list[Credentials]:
        return [await source(), await source()]

    first, second = asyncio.run(twice())
    assert first == second == Credentials("AKFIXED", "secret", None)
    assert calls == 1


def test_refreshable_keys_are_asked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    refreshable = _Refreshable()
    source = _chain(monkeypatch, refreshable)

    async def twice() -> list[Credentials]:
        return [await source(), await source()]

    first, second = asyncio.run(twice())
    assert (first.access_key, second.access_key) == ("AK1", "AK2")
    assert first.token == "token"


def test_no_credentials_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="no AWS credentials"):
        _chain(monkeypatch, None)
