"""SQS endpoints come from botocore's own rules: each case is compared with the endpoint a
botocore client resolves for the same region and variants, and both Sluice clients agree."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.session import Session
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import SqsClientKind, load_settings
from sluice.config_region import EndpointVariants, endpoint_variants
from sluice.errors import ConfigError
from sluice.sources.sqs import sqs_client
from sluice.sources.sqs_endpoint import resolve_sqs_endpoint, sdk_endpoint_variants

KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"}
PLAIN = EndpointVariants()
FIPS = EndpointVariants(fips=True)
DUALSTACK = EndpointVariants(dualstack=True)
CASES = [
    ("us-east-1", PLAIN, "https://sqs.us-east-1.amazonaws.com"),
    ("cn-north-1", PLAIN, "https://sqs.cn-north-1.amazonaws.com.cn"),
    ("us-east-1", FIPS, "https://sqs-fips.us-east-1.amazonaws.com"),
    ("us-gov-west-1", PLAIN, "https://sqs.us-gov-west-1.amazonaws.com"),
    ("us-gov-east-1", FIPS, "https://sqs.us-gov-east-1.amazonaws.com"),
    ("us-west-2", DUALSTACK, "https://sqs.us-west-2.api.aws"),
    ("cn-north-1", DUALSTACK, "https://sqs.cn-north-1.api.amazonwebservices.com.cn"),
    (
        "eu-west-1",
        EndpointVariants(fips=True, dualstack=True),
        "https://sqs-fips.eu-west-1.api.aws",
    ),
]


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No endpoint, variant or profile from this host reaches the SDK under test."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return monkeypatch


def botocore_endpoint(region: str, variants: EndpointVariants) -> str:
    config = Config(use_fips_endpoint=variants.fips, use_dualstack_endpoint=variants.dualstack)
    client = Session().create_client("sqs", region_name=region, config=config, **KEYS)
    return str(client.meta.endpoint_url)


@pytest.mark.parametrize(("region", "variants", "expected"), CASES)
def test_the_endpoint_is_the_one_botocore_resolves(
    sdk_env: pytest.MonkeyPatch, region: str, variants: EndpointVariants, expected: str
) -> None:
    assert resolve_sqs_endpoint(region, variants) == botocore_endpoint(region, variants)
    assert resolve_sqs_endpoint(region, variants) == expected


async def _both_clients(region: str) -> tuple[str, str]:
    async with sqs_client(region, None, 1, KEYS, SqsClientKind.WIRE) as wire:
        wire_url = str(wire.endpoint_url)
    async with sqs_client(region, None, 1, KEYS, SqsClientKind.BOTOCORE) as botocore:
        botocore_url = str(botocore.meta.endpoint_url)
    return wire_url.rstrip("/"), botocore_url.rstrip("/")


@pytest.mark.parametrize(("region", "variants", "expected"), CASES)
def test_both_clients_read_the_sdk_variables_alike(
    sdk_env: pytest.MonkeyPatch, region: str, variants: EndpointVariants, expected: str
) -> None:
    sdk_env.setenv("AWS_USE_FIPS_ENDPOINT", str(variants.fips).lower())
    sdk_env.setenv("AWS_USE_DUALSTACK_ENDPOINT", str(variants.dualstack).lower())
    assert asyncio.run(_both_clients(region)) == (expected, expected)


def test_the_profile_asks_for_a_variant_as_the_sdk_reads_it(
    sdk_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config").write_text("[default]\nuse_fips_endpoint = true\n")
    assert sdk_endpoint_variants() == FIPS
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config")}
    assert endpoint_variants(env, None) == FIPS
    assert endpoint_variants(env | {"AWS_USE_FIPS_ENDPOINT": "false"}, None) == PLAIN


def test_an_explicit_endpoint_is_used_as_given(sdk_env: pytest.MonkeyPatch) -> None:
    async def wire_url() -> str:
        async with sqs_client("cn-north-1", "http://127.0.0.1:9324", 1, KEYS) as client:
            return str(client.endpoint_url)

    assert asyncio.run(wire_url()) == "http://127.0.0.1:9324/"


@pytest.fixture
def no_profile(tmp_path: Path) -> dict[str, str]:
    return {
        "WORKER_ID": "w",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-credentials"),
    }


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("variable", ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"])
def test_a_value_the_sdk_would_misread_stops_start_up(
    no_profile: dict[str, str], variable: str
) -> None:
    # botocore reads "1" as false: a FIPS deployment would silently use the plain endpoint.
    message = refused(no_profile | {variable: "1"})
    assert message.startswith(f"{variable}='1' is invalid: must be true or false")


def test_a_variant_beside_an_explicit_endpoint_stops_start_up(no_profile: dict[str, str]) -> None:
    message = refused(
        no_profile
        | {"AWS_USE_FIPS_ENDPOINT": "true", "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9324"}
    )
    assert "AWS_USE_FIPS_ENDPOINT=true conflicts with AWS_ENDPOINT_URL_SQS" in message
    plain = load_settings(
        no_profile
        | {"AWS_USE_FIPS_ENDPOINT": "false", "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9324"}
    )
    assert plain.sqs_endpoint_url == "http://127.0.0.1:9324"


def test_a_bad_profile_value_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[profile ops]\nuse_dualstack_endpoint = yes\n")
    message = refused({"WORKER_ID": "w", "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "ops"})
    assert message.startswith("use_dualstack_endpoint in AWS profile ops='yes' is invalid")


def test_a_region_that_cannot_be_a_host_stops_start_up(no_profile: dict[str, str]) -> None:
    assert refused(no_profile | {"AWS_REGION": "us east 1"}).startswith(
        "AWS_REGION='us east 1' is invalid"
    )


@given(st.text(max_size=12))
def test_only_what_the_sdk_reads_as_a_boolean_is_accepted(text: str) -> None:
    env = {
        "AWS_USE_DUALSTACK_ENDPOINT": text,
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    }
    word = text.strip().lower()
    if not word:
        assert endpoint_variants(env, None) == PLAIN  # unset, as for the SDK
    elif word in ("true", "false"):
        assert endpoint_variants(env, None) == EndpointVariants(dualstack=word == "true")
    else:
        with pytest.raises(ConfigError):
            endpoint_variants(env, None)


class _Sent(Exception):
    """Stops a botocore call at the moment it would be sent."""


def test_botocore_sends_to_the_endpoint_not_to_the_queue_urls_host(
    sdk_env: pytest.MonkeyPatch,
) -> None:
    # The wire client does the same: it posts every call to its one endpoint.
    client = Session().create_client("sqs", region_name="cn-north-1", **KEYS)
    sent: list[str] = []

    def capture(request: object, **_: object) -> None:
        sent.append(str(getattr(request, "url", "")))
        raise _Sent

    client.meta.events.register("before-send.sqs", capture)
    with pytest.raises(_Sent):
        client.receive_message(QueueUrl="https://sqs.eu-west-1.amazonaws.com/1/events")
    assert sent == [resolve_sqs_endpoint("cn-north-1", PLAIN) + "/"]
