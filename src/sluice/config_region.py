"""The AWS region: from the settings, then the queue's URL, then the SDK's own chain.

An SQS queue URL names its region (``https://sqs.ap-south-1.amazonaws.com/...``), so a queue
in one region and a client signing for another is a contradiction, refused at start-up with
one line, rather than a run that fails on every call (or, worse, talks to the wrong region).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from sluice.errors import ConfigError

# Where nothing names a region (an emulator, no profile): any value signs for an emulator.
FALLBACK_REGION = "us-east-1"

_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_PARTITION_DOMAIN = r"(?:amazonaws\.com(?:\.cn)?|api\.aws)"
_QUEUE_HOSTS = (
    # sqs.<region>.amazonaws.com, sqs-fips.<region>..., vpce-<id>.sqs.<region>.vpce...
    re.compile(
        rf"(?:[a-z0-9-]+\.)?sqs(?:-fips)?\.(?P<region>{_REGION})\.(?:vpce\.)?"
        rf"{_PARTITION_DOMAIN}"
    ),
    # The legacy form: <region>.queue.amazonaws.com
    re.compile(rf"(?P<region>{_REGION})\.queue\.{_PARTITION_DOMAIN}"),
)
_LEGACY_US_EAST_1 = "queue.amazonaws.com"


def region_of_queue_url(url: str | None) -> str | None:
    """The region an AWS queue URL names; None for anything else (an emulator's URL)."""
    if not url:
        return None
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return None
    if host == _LEGACY_US_EAST_1:
        return "us-east-1"
    for pattern in _QUEUE_HOSTS:
        match = pattern.fullmatch(host)
        if match:
            return match["region"]
    return None


def profile_region(env: Mapping[str, str]) -> str | None:
    """The region of the AWS profile in use, read as botocore's session reads it.

    The profile (AWS_PROFILE, else ``default``) in AWS_CONFIG_FILE (else ~/.aws/config),
    overlaid by the same profile in the shared credentials file, parsed by botocore's own
    config loader: files only, no network, and ``env`` alone decides (the caller has already
    looked at AWS_REGION and AWS_DEFAULT_REGION). The loader, not a whole botocore session:
    importing ``botocore.session`` takes ~1-2 s and ~25 MB, for every command, to read one
    value from an INI file.
    """
    from botocore.configloader import load_config, raw_config_parse
    from botocore.exceptions import BotoCoreError

    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    values: dict[str, object] = {}
    try:
        profiles = load_config(env.get("AWS_CONFIG_FILE") or "~/.aws/config")["profiles"]
        values.update(profiles.get(profile, {}))
    except BotoCoreError:  # no file, or one that does not parse: it names no region
        pass
    try:
        shared = raw_config_parse(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")
        values.update(shared.get(profile, {}))
    except BotoCoreError:
        pass
    region = values.get("region")
    text = region.strip() if isinstance(region, str) else ""
    return text or None


def resolve_region(
    given: tuple[str, str] | None,
    queue_url: str | None,
    dlq_url: str | None,
    env: Mapping[str, str],
) -> str:
    """The region to use. ``given`` is (where it came from, value) when a setting named one.

    A setting wins over the queue URL, which wins over the profile; a setting that
    contradicts the queue URL, or a DLQ in another region than the one chosen (one client
    serves both queues), is refused naming both.
    """
    from_url = region_of_queue_url(queue_url)
    if given is not None:
        source, region = given
        if from_url is not None and from_url != region:
            raise ConfigError(
                f"{source}={region} contradicts SQS_QUEUE_URL, a queue in {from_url}: "
                f"set {source}={from_url} or unset it (the queue URL gives the region)"
            )
    else:
        region = from_url or profile_region(env) or FALLBACK_REGION
    dlq_region = region_of_queue_url(dlq_url)
    if dlq_region is not None and dlq_region != region:
        raise ConfigError(
            f"SLUICE_DLQ_URL is a queue in {dlq_region} but the region is {region}: "
            "the dead-letter queue must be in the source queue's region"
        )
    return region
