"""The AWS region: AWS_REGION, then AWS_DEFAULT_REGION, then the queue URL's, then the
profile's; a setting that contradicts the queue URL is refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import load_settings
from sluice.config_region import FALLBACK_REGION, profile_region, region_of_queue_url
from sluice.errors import ConfigError

MUMBAI = "https://sqs.ap-south-1.amazonaws.com/123456789012/events"
EMULATOR = "http://127.0.0.1:9324/000000000000/events"


@pytest.fixture
def no_profile(tmp_path: Path) -> dict[str, str]:
    """An environment whose AWS config files do not exist (this host's ~/.aws stays out)."""
    return {
        "WORKER_ID": "w",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-credentials"),
    }


def region(env: dict[str, str], flags: dict[str, object] | None = None) -> str:
    return load_settings(env, flags).aws_region


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (MUMBAI, "ap-south-1"),
        ("https://ap-south-1.queue.amazonaws.com/123456789012/events", "ap-south-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/events", "cn-north-1"),
        ("https://cn-northwest-1.queue.amazonaws.com.cn/123456789012/e", "cn-northwest-1"),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/e", "us-gov-west-1"),
        ("https://vpce-0a1b-2c3d.sqs.eu-central-1.vpce.amazonaws.com/1/e", "eu-central-1"),
        ("https://SQS.EU-WEST-3.AMAZONAWS.COM/123456789012/events", "eu-west-3"),
        ("https://queue.amazonaws.com/123456789012/events", "us-east-1"),  # legacy us-east-1
        (EMULATOR, None),
        ("http://localhost:4566/000000000000/events", None),
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/0/events", None),
        ("https://sqs.ap-south-1.amazonaws.com.evil.example/1/e", None),
        ("https://example.com/sqs.ap-south-1.amazonaws.com/1/e", None),
        (None, None),
    ],
)
def test_the_region_a_queue_url_names(url: str | None, expected: str | None) -> None:
    assert region_of_queue_url(url) == expected


@given(
    st.from_regex(r"[a-z]{2}(-[a-z]{2,9}){1,2}-[1-9]", fullmatch=True),
    st.sampled_from(["https://sqs.{}.amazonaws.com", "https://{}.queue.amazonaws.com"]),
)
def test_any_region_round_trips_through_both_url_forms(name: str, form: str) -> None:
    assert region_of_queue_url(form.format(name) + "/123456789012/q") == name


@given(st.text(max_size=200))
def test_no_text_makes_the_url_parser_raise(text: str) -> None:
    found = region_of_queue_url(text)
    assert found is None or found in text.lower()


def test_aws_region_is_taken_first(no_profile: dict[str, str]) -> None:
    env = no_profile | {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-north-1"}
    assert region(env) == "eu-west-1"


def test_aws_default_region_when_aws_region_is_not_set(no_profile: dict[str, str]) -> None:
    assert region(no_profile | {"AWS_DEFAULT_REGION": "eu-north-1"}) == "eu-north-1"
    assert region(no_profile | {"AWS_DEFAULT_REGION": "  "}) == FALLBACK_REGION


def test_the_flag_beats_the_environment(no_profile: dict[str, str]) -> None:
    env = no_profile | {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-north-1"}
    assert region(env, {"aws_region": "sa-east-1"}) == "sa-east-1"


def test_the_queue_url_gives_the_region_when_no_setting_does(no_profile: dict[str, str]) -> None:
    assert region(no_profile | {"SQS_QUEUE_URL": MUMBAI}) == "ap-south-1"


def test_a_setting_that_agrees_with_the_queue_url_is_fine(no_profile: dict[str, str]) -> None:
    assert region(no_profile | {"SQS_QUEUE_URL": MUMBAI, "AWS_REGION": "ap-south-1"}) == (
        "ap-south-1"
    )


def test_a_setting_that_contradicts_the_queue_url_is_refused(no_profile: dict[str, str]) -> None:
    message = refused(no_profile | {"SQS_QUEUE_URL": MUMBAI, "AWS_REGION": "us-east-1"})
    assert message == (
        "AWS_REGION=us-east-1 contradicts SQS_QUEUE_URL, a queue in ap-south-1: set "
        "AWS_REGION=ap-south-1 or unset it (the queue URL gives the region)"
    )
    message = refused(no_profile | {"SQS_QUEUE_URL": MUMBAI, "AWS_DEFAULT_REGION": "us-east-1"})
    assert message.startswith("AWS_DEFAULT_REGION=us-east-1 contradicts SQS_QUEUE_URL")
    with pytest.raises(ConfigError, match=r"^--aws-region=eu-west-1 contradicts"):
        load_settings(no_profile | {"SQS_QUEUE_URL": MUMBAI}, {"aws_region": "eu-west-1"})


def test_a_dead_letter_queue_in_another_region_is_refused(no_profile: dict[str, str]) -> None:
    other = "https://sqs.eu-west-1.amazonaws.com/123456789012/events-dlq"
    message = refused(no_profile | {"SQS_QUEUE_URL": MUMBAI, "SLUICE_DLQ_URL": other})
    assert "SLUICE_DLQ_URL is a queue in eu-west-1 but the region is ap-south-1" in message
    same = "https://sqs.ap-south-1.amazonaws.com/123456789012/events-dlq"
    assert region(no_profile | {"SQS_QUEUE_URL": MUMBAI, "SLUICE_DLQ_URL": same}) == "ap-south-1"


def write_profiles(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config"
    config.write_text(
        "[default]\nregion = eu-south-1\n\n"
        "[profile analytics]\nregion = ap-southeast-2\n\n"
        "[profile keys-only]\noutput = json\n"
    )
    credentials = tmp_path / "credentials"
    credentials.write_text("[creds-region]\nregion = me-south-1\n")
    return {
        "WORKER_ID": "w",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
    }


def test_the_profile_gives_the_region_last(tmp_path: Path) -> None:
    env = write_profiles(tmp_path)
    assert region(env) == "eu-south-1"  # the default profile
    assert region(env | {"AWS_PROFILE": "analytics"}) == "ap-southeast-2"
    assert region(env | {"AWS_PROFILE": "creds-region"}) == "me-south-1"
    assert region(env | {"AWS_PROFILE": "keys-only"}) == FALLBACK_REGION
    assert region(env | {"AWS_PROFILE": "no-such-profile"}) == FALLBACK_REGION
    # An emulator's URL names no region: the profile still decides.
    assert region(env | {"AWS_PROFILE": "analytics", "SQS_QUEUE_URL": EMULATOR}) == (
        "ap-southeast-2"
    )
    # ...but an AWS queue URL comes before the profile, and is no contradiction of it.
    assert region(env | {"AWS_PROFILE": "analytics", "SQS_QUEUE_URL": MUMBAI}) == "ap-south-1"


def test_the_profile_is_read_as_botocores_session_reads_it(tmp_path: Path) -> None:
    import botocore.session

    env = write_profiles(tmp_path)
    for profile in ("default", "analytics", "creds-region", "keys-only"):
        session = botocore.session.Session()
        session.set_config_variable("config_file", env["AWS_CONFIG_FILE"])
        session.set_config_variable("credentials_file", env["AWS_SHARED_CREDENTIALS_FILE"])
        session.set_config_variable("profile", profile)
        expected = session.get_scoped_config().get("region")
        assert profile_region(env | {"AWS_PROFILE": profile}) == expected


def test_a_broken_config_file_names_no_region(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("region = nowhere\n[default\n")
    env = {"AWS_CONFIG_FILE": str(broken), "AWS_SHARED_CREDENTIALS_FILE": str(broken)}
    assert profile_region(env) is None


def test_nothing_anywhere_falls_back_for_an_emulator(no_profile: dict[str, str]) -> None:
    assert region(no_profile | {"SQS_QUEUE_URL": EMULATOR}) == FALLBACK_REGION
