"""SLUICE_CONTROL_SOCKET: a private directory of Sluice's own, no chmod of a directory it
did not create, no shared or foreign directory, and nothing but a socket ever removed."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sluice.config import Settings
from sluice.errors import ConfigError, TransientError
from sluice.observe.http import HttpService
from sluice.runtime.control import request_control


def control_app() -> web.Application:
    async def status(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/status", status)
    return app


def serve_and_ask(path: Path) -> dict[str, Any]:
    """Start a control socket at ``path``, ask it for /status, stop it."""

    async def go() -> dict[str, Any]:
        service = HttpService(control_app())
        await service.start_unix(path)
        try:
            return await request_control(path, "GET", "/status")
        finally:
            await service.stop()

    return asyncio.run(go())


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        serve_and_ask(path)
    message = str(info.value)
    assert message.startswith(f"SLUICE_CONTROL_SOCKET={path}: ")
    assert "\n" not in message
    return message


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def shared_dir(tmp_path: Path, bits: int) -> Path:
    folder = tmp_path / f"shared-{bits:o}"
    folder.mkdir()
    folder.chmod(bits)
    return folder


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o1777, 0o757], ids=lambda b: f"{b:04o}")
def test_a_directory_others_can_write_is_refused_and_left_as_it_was(
    tmp_path: Path, bits: int
) -> None:
    folder = shared_dir(tmp_path, bits)
    assert "writable by other users" in refused(folder / "supervisor.sock")
    assert mode(folder) == bits  # never chmod-ed
    assert list(folder.iterdir()) == []


def test_a_private_directory_is_made_inside_a_shared_sticky_one(tmp_path: Path) -> None:
    # The default's pattern: the system temporary directory (1777) holds sluice-<uid> (0700).
    folder = shared_dir(tmp_path, 0o1777)
    path = folder / "mine" / "supervisor.sock"
    assert serve_and_ask(path) == {"ok": True}
    assert mode(folder / "mine") == 0o700
    assert os.lstat(folder / "mine").st_uid == os.getuid()
    assert mode(folder) == 0o1777
    assert not path.exists()  # removed at stop


def test_the_default_path_keeps_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temporary = shared_dir(tmp_path, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    path = Settings().control_socket_path
    assert path == temporary / f"sluice-{os.getuid()}" / "supervisor.sock"
    assert serve_and_ask(path) == {"ok": True}
    assert serve_and_ask(path) == {"ok": True}  # again, in the directory it made before
    assert mode(path.parent) == 0o700


def test_an_existing_directory_of_ours_that_others_cannot_write_is_used_as_it_is(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert serve_and_ask(folder / "supervisor.sock") == {"ok": True}
    assert mode(folder) == 0o755  # the socket itself is 0600


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_only_a_socket_is_ever_removed_from_the_path(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "supervisor.sock"
    target = tmp_path / "precious"
    target.write_text("keep me")
    if kind == "file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(target)
    message = refused(path)
    assert "is in the way; Sluice replaces only a stale socket" in message
    assert os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "keep me"
    assert target.read_text() == "keep me"


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "supervisor.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # a supervisor that died left this
        dead.bind(str(path))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert serve_and_ask(path) == {"ok": True}


def test_a_symbolic_link_as_the_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert "is a symbolic link, not a directory" in refused(link / "supervisor.sock")
    assert list(real.iterdir()) == []


def test_a_missing_parent_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "supervisor.sock"
    assert "cannot create its directory" in refused(path)
    assert not (tmp_path / "no").exists()


def test_stop_removes_its_own_socket_and_nothing_put_there_since(tmp_path: Path) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "supervisor.sock"

    async def go() -> None:
        service = HttpService(control_app())
        await service.start_unix(path)
        path.unlink()
        path.write_text("someone else's")
        await service.stop()

    asyncio.run(go())
    assert path.read_text() == "someone else's"


def test_a_client_does_not_talk_to_another_users_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "supervisor.sock"

    async def go() -> None:
        service = HttpService(control_app())
        await service.start_unix(path)
        try:
            monkeypatch.setattr("os.getuid", lambda: os.lstat(path).st_uid + 1)
            await request_control(path, "GET", "/status")
        finally:
            monkeypatch.undo()
            await service.stop()

    with pytest.raises(ConfigError, match="belongs to another user"):
        asyncio.run(go())


def test_a_client_finding_no_socket_says_no_supervisor_answers(tmp_path: Path) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    (folder / "supervisor.sock").write_text("not a socket")
    with pytest.raises(TransientError, match="no supervisor answers"):
        asyncio.run(request_control(folder / "supervisor.sock", "GET", "/status"))
    with pytest.raises(TransientError, match="no supervisor answers"):
        asyncio.run(request_control(folder / "absent.sock", "GET", "/status"))
