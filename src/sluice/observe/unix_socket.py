"""Where the supervisor's control socket may live, and what may be removed to make room.

SLUICE_CONTROL_SOCKET can name any path, shared directories included, and whoever reaches
the socket can change the worker count. So nothing about the path is trusted: the socket's
directory is one Sluice creates itself (0700), or an existing one that this user owns and
nobody else can write to; a directory Sluice did not just create is never chmod-ed; and the
only thing ever removed is a socket of this user's (a stale one, or its own at exit), never
a file, directory or symbolic link that happens to be at the path.

The directory holding the socket's directory may be shared (the default is the system's
temporary directory): others there can at most make start-up fail, because the socket's
directory is checked after it is created and again after the socket is bound, and clients
check it before they connect.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sluice.errors import ConfigError, TransientError

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class FileId:
    """Which file a path named when it was checked: a later swap shows as another id."""

    device: int
    inode: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileId:
        return cls(info.st_dev, info.st_ino)


def _refused(path: Path, why: str) -> ConfigError:
    return ConfigError(f"SLUICE_CONTROL_SOCKET={path}: {why}")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def _check_directory(path: Path, info: os.stat_result) -> None:
    directory = path.parent
    if not stat.S_ISDIR(info.st_mode):  # lstat: a symbolic link is refused, not followed
        raise _refused(path, f"{directory} is {_kind(info.st_mode)}, not a directory")
    if info.st_uid != os.getuid():
        raise _refused(
            path, f"its directory {directory} belongs to another user; choose one of your own"
        )
    if info.st_mode & _WRITABLE_BY_OTHERS:
        raise _refused(
            path,
            f"its directory {directory} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); choose a directory only you can write "
            "to, or a path in a new directory, which Sluice creates private",
        )


def prepare(path: Path) -> FileId:
    """Make the socket's directory (0700) or accept it if private; remove a stale socket.

    Returns the directory's id, for ``confirm`` to see it was not swapped meanwhile.
    """
    directory = path.parent
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refused(path, f"cannot create its directory {directory}: {exc.strerror}") from None
    info = os.lstat(directory)
    _check_directory(path, info)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return FileId.of(info)
    if not stat.S_ISSOCK(existing.st_mode):
        raise _refused(
            path,
            f"{_kind(existing.st_mode)} is in the way; Sluice replaces only a stale socket: "
            "remove it or choose another path",
        )
    if existing.st_uid != os.getuid():
        raise _refused(path, "a socket of another user is there; choose another path")
    os.unlink(path)  # a stale socket of a supervisor that died (a live one was asked first)
    return FileId.of(info)


def confirm(path: Path, directory: FileId) -> FileId:
    """After binding: the same private directory, and a socket of ours at the path."""
    info = os.lstat(path.parent)
    _check_directory(path, info)
    socket = os.lstat(path)
    if FileId.of(info) != directory or not stat.S_ISSOCK(socket.st_mode):
        raise _refused(path, "its directory was replaced while the socket was being created")
    return FileId.of(socket)


def remove(path: Path, socket: FileId) -> None:
    """Remove the socket this process bound, and nothing else that may be there now."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(info.st_mode) and FileId.of(info) == socket:
        path.unlink()


def check_before_connect(path: Path) -> None:
    """A client talks only to a socket of its own user in a private directory: another
    user's socket at the expected path could answer `sluice status` or `sluice scale`."""
    try:
        _check_directory(path, os.lstat(path.parent))
        info = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there: connecting says no supervisor answers
    if not stat.S_ISSOCK(info.st_mode):
        raise TransientError(f"no supervisor answers at {path}: {_kind(info.st_mode)} is there")
    if info.st_uid != os.getuid():
        raise _refused(path, "the socket there belongs to another user")
