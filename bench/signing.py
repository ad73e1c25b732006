"""Signing benchmark: CPU microseconds to sign one SQS request, by each available signer.

Prints, for a ReceiveMessage and a DeleteMessageBatch of 10 (real-sized receipt handles):
- hand-written: the pure-Python signer the wire client used before (kept here as baseline);
- botocore: ``SigV4Auth.add_auth`` called directly on an ``AWSRequest`` (the request built
  each time, as a client signing through botocore would);
- awscrt: ``sources/sigv4.py``'s ``sign_post``, what the wire client calls: the AWS Common
  Runtime's signer on an ``awscrt.http.HttpRequest``, headers read back;
and the cost per message at a given number of requests per message (0.2: one receive of 10
and one delete of 10), beside a worker's CPU per message if given.

Usage: python bench/signing.py [--rounds N] [--requests-per-message R] [--worker-us US]
CPU time (``time.process_time``), best of 5 rounds; one core, nothing else measured.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sluice.sources.sigv4 import Credentials, sign_post  # noqa: E402

HOST = "sqs.eu-west-1.amazonaws.com"
URL = f"https://{HOST}/"
REGION = "eu-west-1"
KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzE" * 20
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/appsflyer-events"
HANDLE = "AQEB" + "x9Yz" * 95  # real receipt handles are about 380-400 characters
BODIES = {
    "ReceiveMessage": (
        b'{"QueueUrl":"' + QUEUE.encode() + b'","MaxNumberOfMessages":10,"WaitTimeSeconds":20,'
        b'"VisibilityTimeout":120,"MessageSystemAttributeNames":["ApproximateReceiveCount",'
        b'"SentTimestamp"],"MessageAttributeNames":["All"]}'
    ),
    "DeleteMessageBatch": (
        b'{"QueueUrl":"'
        + QUEUE.encode()
        + b'","Entries":['
        + b",".join(b'{"Id":"%d","ReceiptHandle":"%s"}' % (i, HANDLE.encode()) for i in range(10))
        + b"]}"
    ),
}

Signer = Callable[[str, bytes], object]


def hand_signer() -> Signer:
    """The hand-written SigV4 signer the wire client used before awscrt, kept here only as the
    baseline of this measurement (the same code as sources/sigv4.py before the change)."""

    @lru_cache(maxsize=16)
    def signing_key(secret_key: str, day: str) -> bytes:
        key = hmac.new(f"AWS4{secret_key}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (REGION, "sqs", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return key

    def sign(action: str, body: bytes) -> object:
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": f"AmazonSQS.{action}",
            "host": HOST,
            "x-amz-date": amz_date,
            "x-amz-security-token": TOKEN,
        }
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{' '.join(signed[n].split())}\n" for n in names)
        signed_names = ";".join(names)
        canonical = "\n".join(
            ("POST", "/", "", canonical_headers, signed_names, hashlib.sha256(body).hexdigest())
        )
        scope = f"{day}/{REGION}/sqs/aws4_request"
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        signature = hmac.new(signing_key(SECRET, day), to_sign.encode(), hashlib.sha256)
        return {
            "X-Amz-Date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature.hexdigest()}",
            "X-Amz-Security-Token": TOKEN,
        }

    return sign


def sluice_signer() -> Signer:
    """What the wire client calls: ``sources/sigv4.py``'s ``sign_post`` (awscrt)."""
    credentials = Credentials(KEY, SECRET, TOKEN)

    def sign(action: str, body: bytes) -> object:
        headers = {
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": f"AmazonSQS.{action}",
        }
        return sign_post(
            host=HOST,
            path="/",
            headers=headers,
            body=body,
            credentials=credentials,
            region=REGION,
            service="sqs",
            now=datetime.now(UTC),
        )

    return sign


def botocore_signer() -> Signer:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    auth = SigV4Auth(BotoCredentials(KEY, SECRET, TOKEN), "sqs", REGION)

    def sign(action: str, body: bytes) -> object:
        request = AWSRequest(
            method="POST",
            url=URL,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"AmazonSQS.{action}",
            },
        )
        auth.add_auth(request)
        return request.headers

    return sign


def cpu_us_per_call(sign: Signer, action: str, rounds: int) -> float:
    body = BODIES[action]
    for _ in range(200):  # warm caches (the signing key, imports)
        sign(action, body)
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(rounds):
            sign(action, body)
        samples.append((time.process_time() - started) / rounds * 1e6)
    return min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--requests-per-message", type=float, default=0.2)
    parser.add_argument("--worker-us", type=float, default=None, help="worker CPU us/message")
    args = parser.parse_args()
    signers: dict[str, Signer] = {
        "hand-written (before)": hand_signer(),
        "botocore SigV4Auth": botocore_signer(),
        "awscrt (sign_post)": sluice_signer(),
    }
    print(f"{'signer':<22} {'Receive us':>11} {'Delete10 us':>12} {'us/message':>11}", end="")
    print(f" {'% of worker':>12}" if args.worker_us else "")
    for name, sign in signers.items():
        receive = cpu_us_per_call(sign, "ReceiveMessage", args.rounds)
        delete = cpu_us_per_call(sign, "DeleteMessageBatch", args.rounds)
        per_message = statistics.mean((receive, delete)) * args.requests_per_message
        line = f"{name:<22} {receive:>11.1f} {delete:>12.1f} {per_message:>11.2f}"
        if args.worker_us:
            line += f" {100 * per_message / args.worker_us:>11.1f}%"
        print(line)
    print(
        f"us/message = mean(receive, delete) x {args.requests_per_message:g} requests per "
        "message; CPU time, best of 5 rounds"
    )


if __name__ == "__main__":
    main()
