"""The AWS region (from the settings, then the queue's URL, then the SDK's own chain), and
the endpoint variants (FIPS, dual-stack) the SDK's own variables and profile ask for.

An SQS queue URL names its region (``https://sqs.ap-south-1.amazonaws.com/...``), so a queue
in one region and a client signing for another is a contradiction, refused at start-up with
one line, rather than a run that fails on every call (or, worse, talks to the wrong region).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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
# Any region name is one DNS label: it becomes part of the endpoint's host.
REGION_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


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


def profile_name(env: Mapping[str, str]) -> str:
    return env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"


def profile_values(env: Mapping[str, str]) -> dict[str, object]:
    """The settings of the AWS profile in use, read as botocore's session reads them.

    The profile (AWS_PROFILE, else ``default``) in AWS_CONFIG_FILE (else ~/.aws/config),
    overlaid by the same profile in the shared credentials file, parsed by botocore's own
    config loader: files only, no network, and ``env`` alone decides. The loader, not a whole
    botocore session: importing ``botocore.session`` takes ~1-2 s and ~25 MB, for every
    command, to read a few values from an INI file.
    """
    from botocore.configloader import load_config, raw_config_parse
    from botocore.exceptions import BotoCoreError

    profile = profile_name(env)
    values: dict[str, object] = {}
    try:
        profiles = load_config(env.get("AWS_CONFIG_FILE") or "~/.aws/config")["profiles"]
        values.update(profiles.get(profile, {}))
    except BotoCoreError:  # no file, or one that does not parse: it names nothing
        pass
    try:
        shared = raw_config_parse(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")
        values.update(shared.get(profile, {}))
    except BotoCoreError:
        pass
    return values


def profile_region(env: Mapping[str, str]) -> str | None:
    """The region of the AWS profile in use (the caller has already looked at AWS_REGION and
    AWS_DEFAULT_REGION)."""
    region = profile_values(env).get("region")
    text = region.strip() if isinstance(region, str) else ""
    return text or None


@dataclass(frozen=True)
class EndpointVariants:
    """Which variant of an AWS endpoint to use: FIPS 140 validated, dual-stack (IPv4 and
    IPv6), both or neither. The SDKs read these from AWS_USE_FIPS_ENDPOINT and
    AWS_USE_DUALSTACK_ENDPOINT, else the profile's ``use_fips_endpoint`` and
    ``use_dualstack_endpoint``; so does Sluice, for both SQS clients."""

    fips: bool = False
    dualstack: bool = False


# (environment variable, profile key) per variant, in the SDK's order of precedence.
_VARIANT_SOURCES = {
    "fips": ("AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint"),
    "dualstack": ("AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint"),
}


def _sdk_boolean(source: str, raw: str) -> bool:
    """botocore reads "true" (any case) as true and anything else, "1" and "yes" included,
    as false: refuse what it would silently misread, so both clients agree."""
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise ConfigError(
            f"{source}={raw!r} is invalid: must be true or false "
            "(the AWS SDKs read any other value as false)"
        )
    return lowered == "true"


def endpoint_variants(env: Mapping[str, str], endpoint_url: str | None) -> EndpointVariants:
    """The endpoint variants the SDK would use, refused at start-up where it would refuse them
    on every call: a FIPS or dual-stack endpoint asked for beside an explicit endpoint URL."""
    profile: dict[str, object] | None = None
    chosen: dict[str, bool] = {}
    for name, (variable, key) in _VARIANT_SOURCES.items():
        if env.get(variable, "").strip():
            chosen[name] = _sdk_boolean(variable, env[variable])
            continue
        if profile is None:
            profile = profile_values(env)
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            where = f"{key} in AWS profile {profile_name(env)}"
            chosen[name] = _sdk_boolean(where, value)
    variants = EndpointVariants(**chosen)
    if endpoint_url and (variants.fips or variants.dualstack):
        asked = "AWS_USE_FIPS_ENDPOINT" if variants.fips else "AWS_USE_DUALSTACK_ENDPOINT"
        raise ConfigError(
            f"{asked}=true conflicts with AWS_ENDPOINT_URL_SQS={endpoint_url}: an explicit "
            "endpoint is used as given (the SDK refuses the two together); unset one"
        )
    return variants


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
        source = "the region of the AWS profile"
    if not REGION_LABEL.fullmatch(region):
        # It becomes a host name (sqs.<region>.amazonaws.com) and the signing scope.
        raise ConfigError(f"{source}={region!r} is invalid: must be a region name like us-east-1")
    dlq_region = region_of_queue_url(dlq_url)
    if dlq_region is not None and dlq_region != region:
        raise ConfigError(
            f"SLUICE_DLQ_URL is a queue in {dlq_region} but the region is {region}: "
            "the dead-letter queue must be in the source queue's region"
        )
    return region
