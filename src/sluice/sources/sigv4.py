"""AWS Signature Version 4 for SQS's JSON protocol (POST, no query string), by awscrt.

The AWS Common Runtime's signer (``awscrt``, the one botocore uses when installed with
``botocore[crt]``) signs here rather than a hand-written one: a kept library, tested to give
botocore's own signature for equal input (tests/unit/test_sigv4.py). It costs about 20-35 CPU
us per request, about 5 us per message at 0.2 requests a message, under 10% of a worker's
CPU per message; botocore's pure-Python ``SigV4Auth`` costs about twice that (see
docs/performance.md, "Signing and endpoints", and ``bench/signing.py``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(access_key={self.access_key[:4]}..., secret_key=***)"


@lru_cache(maxsize=16)
def _signing_config(credentials: Credentials, region: str, service: str) -> Any:
    """One signing configuration per key and scope; each request only replaces the date."""
    from awscrt import auth

    return auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=auth.AwsCredentialsProvider.new_static(
            credentials.access_key, credentials.secret_key, credentials.token
        ),
        region=region,
        service=service,
    )


def sign_post(
    *,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """Headers to add to a POST of ``body`` with ``headers`` (lower-case names) to ``host``."""
    from awscrt import auth, http

    request = http.HttpRequest(
        "POST", path or "/", http.HttpHeaders([("host", host), *headers.items()]), io.BytesIO(body)
    )
    config = _signing_config(credentials, region, service).replace(date=now)
    # Static credentials: the CRT signs on this thread, and the future is already done.
    auth.aws_sign_request(request, config).result()
    signed = request.headers
    added = {
        "X-Amz-Date": str(signed.get("X-Amz-Date")),
        "Authorization": str(signed.get("Authorization")),
    }
    if credentials.token:
        added["X-Amz-Security-Token"] = str(signed.get("X-Amz-Security-Token"))
    return added
