"""Hostile settings through the real command line: a malformed DSN, a DSN whose password is
written in every legal way, a bad SLUICE_HTTP_HOST, a control socket in a shared directory.
Each either works with the secret hidden or stops with one line naming the setting."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.local.emulator import Emulator
from tests.support import sqs
from tests.support.worker import worker_env

PLACEHOLDER_QUEUE = "http://127.0.0.1:1/000000000000/not-contacted"
PASSWORD = "S3cret PW"


def sluice(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        env=env | {"COLUMNS": "220", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def offline_env(database_url: str, **extra: str) -> dict[str, str]:
    return worker_env(
        endpoint="http://127.0.0.1:1",
        queue_url=PLACEHOLDER_QUEUE,
        dlq_url=None,
        table="t_hostile",
        database_url=database_url,
        extra=extra,
    )


def fragments(secret: str) -> list[str]:
    """The secret's words and every piece of three or more characters of it."""
    pieces = {secret[i:j] for i in range(len(secret)) for j in range(i + 3, len(secret) + 1)}
    return sorted(pieces | set(secret.split()))


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sluice: error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("command", [("run",), ("init-db",), ("run", "--processes", "2")])
def test_a_malformed_dsn_stops_start_up_in_one_line_without_any_of_the_secret(
    command: tuple[str, ...],
) -> None:
    # password=S3cret PW: libpq reads PW as a key without =, and its message quoted "PW".
    done = sluice(offline_env(f"host=127.0.0.1 dbname=test password={PASSWORD}"), *command)
    line = one_error_line(done)
    assert line.startswith("sluice: error: SLUICE_DATABASE_URL=*** is invalid: cannot be parsed")
    for piece in fragments(PASSWORD):
        assert piece not in done.stdout + done.stderr, piece


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://loader:Qz7%20Wv9@127.0.0.1:1/x",
        "postgresql://loader:Qz7?Wv9#@127.0.0.1:1/x",  # ? and # are the password's to libpq
        "postgresql://127.0.0.1:1/x?user=loader&password=Qz7%20Wv9",
        "postgresql://127.0.0.1:1/x?user=loader&pass%77ord=Qz7%26Wv9",
        "host=127.0.0.1 port=1 user=loader password='Qz7 Wv9' dbname=x",
        "host=127.0.0.1 port=1 user=loader password = 'Qz7\\' Wv9' dbname=x",
        "host=127.0.0.1 port=1 user=loader password=Qz7\\ Wv9 dbname=x",
        "password=Qz7\\ \\ Wv9 host=127.0.0.1",
    ],
)
def test_config_show_hides_the_whole_password_in_every_form(dsn: str) -> None:
    done = sluice(offline_env(dsn), "config", "show")
    assert done.returncode == 0, done.stderr
    assert "***" in done.stdout
    for piece in fragments("Qz7 Wv9"):
        assert piece not in done.stdout + done.stderr, (piece, done.stdout)


def test_a_bad_http_host_stops_start_up_instead_of_turning_http_off() -> None:
    # PORT is set so the old code reached the bind, failed it and ran on without HTTP.
    env = offline_env("postgresql://127.0.0.1:1/x", SLUICE_HTTP_HOST="not a host!", PORT="3999")
    line = one_error_line(sluice(env, "run", timeout=30))
    assert "SLUICE_HTTP_HOST='not a host!' is invalid: must be an IP address" in line


def test_a_supervisor_refuses_a_control_socket_in_a_world_writable_directory(
    emulator: Emulator, pg_dsn: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    queues = sqs.make_queues(emulator.endpoint)
    env = worker_env(
        endpoint=emulator.endpoint,
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        table="t_hostile",
        database_url=pg_dsn,
        extra={"PORT": "0", "SLUICE_CONTROL_SOCKET": str(shared / "supervisor.sock")},
    )
    done = sluice(env, "run", "--processes", "2", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sluice: error: SLUICE_CONTROL_SOCKET={shared / 'supervisor.sock'}: ")
    assert "writable by other users" in last
    assert stat.S_IMODE(os.lstat(shared).st_mode) == 0o777
    assert list(shared.iterdir()) == []
