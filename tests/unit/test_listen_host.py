"""SLUICE_HTTP_HOST is checked with the other settings: a value that cannot be listened on
stops start-up naming it, where it used to turn the HTTP endpoints off with a warning."""

from __future__ import annotations

import asyncio
import ipaddress
import re

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.config import load_settings
from sluice.config_parse import listen_host
from sluice.errors import ConfigError
from sluice.observe.http import HttpService

BASE = {"WORKER_ID": "w-test"}
NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0.0.0.0", "0.0.0.0"),
        ("::", "::"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
        (" ::1 ", "::1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("metrics.internal.example.com.", "metrics.internal.example.com."),
        ("sluice_metrics", "sluice_metrics"),  # a Docker service name
    ],
)
def test_addresses_and_host_names_are_accepted(raw: str, value: str) -> None:
    assert load_settings(BASE | {"SLUICE_HTTP_HOST": raw}).http_host == value


@pytest.mark.parametrize(
    "raw",
    [
        "not a host!",
        "999.1.1.1",
        "1.2.3",
        "256.0.0.1",
        "-lead.example",
        "trail-.example",
        "a..b",
        "http://host",
        "host:3000",
        "[host]",
        "x" * 64,
        ".".join(["a" * 60] * 5),  # 304 characters
        "héte.example",
    ],
)
def test_garbage_is_refused_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {"SLUICE_HTTP_HOST": raw})
    message = str(info.value)
    assert message.startswith(f"SLUICE_HTTP_HOST={raw!r} is invalid: must be an IP address")
    assert "\n" not in message


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_every_ip_address_is_accepted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert listen_host(str(address)) == str(address)
    if address.version == 6:
        assert listen_host(f"[{address}]") == str(address)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(NAME, fullmatch=True), min_size=1, max_size=4))
def test_every_well_formed_host_name_is_accepted(labels: list[str]) -> None:
    if labels[-1].isdigit():
        labels.append("example")
    name = ".".join(labels)
    assert listen_host(name) == name


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_anything_else_is_refused_with_value_error_only(raw: str) -> None:
    try:
        value = listen_host(raw)
    except ValueError:
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.removesuffix(".").split(".")
        assert all(NAME.fullmatch(label) for label in labels), value
        assert not labels[-1].isdigit()


def test_a_name_that_does_not_resolve_stops_start_up_instead_of_turning_http_off() -> None:
    service = HttpService(web.Application())
    with pytest.raises(
        ConfigError, match=re.escape("SLUICE_HTTP_HOST=no-such-host.invalid is invalid")
    ):
        asyncio.run(service.start_tcp("no-such-host.invalid", 0))


def test_an_address_of_another_host_stops_start_up() -> None:
    service = HttpService(web.Application())
    with pytest.raises(ConfigError, match=re.escape("SLUICE_HTTP_HOST=192.0.2.1 is invalid")):
        asyncio.run(service.start_tcp("192.0.2.1", 0))  # TEST-NET-1: never this host's
