"""Where SQS answers for a region: botocore's own endpoint rules, not a host built by hand.

``sqs.{region}.amazonaws.com`` is wrong in China (``amazonaws.com.cn``), for FIPS
(``sqs-fips.``), dual-stack (``api.aws``) and the isolated partitions. botocore ships the
rules its clients resolve with (the service's ``endpoint-rule-set-1.json`` and the
partitions); this module runs the same rules through botocore's own rule engine, once, when
a client opens. An explicit endpoint URL (an emulator) is used as given and never resolved.

The queue URL names a host too, but like botocore the client sends every call to the
resolved endpoint; the queue URL is only a parameter of the call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sluice.config_region import REGION_LABEL, EndpointVariants
from sluice.errors import ConfigError


@lru_cache(maxsize=1)
def _provider() -> Any:
    """botocore's rule engine over SQS's rules and the partitions (read once: ~0.2 s)."""
    from botocore.endpoint_provider import EndpointProvider
    from botocore.loaders import Loader

    loader = Loader()
    return EndpointProvider(
        ruleset_data=loader.load_service_model("sqs", "endpoint-rule-set-1"),
        partition_data=loader.load_data("partitions"),
    )


def resolve_sqs_endpoint(region: str, variants: EndpointVariants) -> str:
    """The SQS endpoint URL the AWS SDK would use for ``region`` and ``variants``."""
    from botocore.exceptions import EndpointResolutionError

    if not REGION_LABEL.fullmatch(region):  # the rules do not check it: it becomes a host
        raise ConfigError(f"AWS_REGION={region!r} is invalid: must be a region name like us-east-1")
    try:
        endpoint = _provider().resolve_endpoint(
            Region=region, UseFIPS=variants.fips, UseDualStack=variants.dualstack
        )
    except EndpointResolutionError as exc:
        raise ConfigError(f"AWS_REGION={region}: no SQS endpoint ({exc})") from exc
    return str(endpoint.url)


def sdk_endpoint_variants() -> EndpointVariants:
    """The variants the SDK's configuration chain asks for (AWS_USE_FIPS_ENDPOINT and
    AWS_USE_DUALSTACK_ENDPOINT, else the profile), read exactly as the botocore client reads
    them, so both clients reach the same endpoint. ``load_settings`` has already refused
    values the SDK would misread."""
    from botocore.session import Session

    session = Session()
    return EndpointVariants(
        fips=bool(session.get_config_variable("use_fips_endpoint")),
        dualstack=bool(session.get_config_variable("use_dualstack_endpoint")),
    )
