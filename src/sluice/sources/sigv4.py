"""AWS Signature Version 4 for SQS's JSON protocol (POST, no query string). Pure.

Only what a JSON-protocol POST needs. Tested against botocore's own signer for equal input
(tests/unit/test_sigv4.py); the derived signing key is cached per day and secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(access_key={self.access_key[:4]}..., secret_key=***)"


@lru_cache(maxsize=16)
def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret_key}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


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
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed = dict(headers)
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical_headers = "".join(f"{n}:{' '.join(signed[n].split())}\n" for n in names)
    signed_names = ";".join(names)
    canonical_request = "\n".join(
        (
            "POST",
            path or "/",
            "",
            canonical_headers,
            signed_names,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        )
    )
    key = signing_key(credentials.secret_key, day, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added = {
        "X-Amz-Date": amz_date,
        "Authorization": f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}",
    }
    if credentials.token:
        added["X-Amz-Security-Token"] = credentials.token
    return added
