"""What the benchmarks share: the environment of a worker pointed at the local emulator."""

from __future__ import annotations

import os

from sluice.local.emulator import EMULATOR_CREDENTIALS


def emulator_worker_env(endpoint: str) -> dict[str, str]:
    """This process's environment without Sluice/SQS settings, aimed at ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "SQS_"))}
    return env | {
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "PORT": "0",  # no HTTP endpoints for benchmark workers
    }
