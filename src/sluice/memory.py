"""How much memory this process may use, for defaults that scale with it: the cgroup's limit
(a container's), else the machine's physical memory."""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1024 * 1024
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1024 * MIB  # unknown: assume a small container rather than a large host


def memory_limit(cgroup_files: tuple[Path, ...] = _CGROUP_LIMITS) -> int:
    """Bytes this process may use: the smaller of a cgroup limit (if any) and physical memory."""
    limit = physical_memory()
    for path in cgroup_files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means no limit; v1 writes a huge number instead
            limit = min(limit, int(text))
    return limit


def default_max_held_bytes(limit: int, processes: int) -> int:
    """A quarter of the memory each worker process may count on, from 32 MiB to 1 GiB: the
    rest is the interpreter, the batch being loaded and the drivers' buffers."""
    share = limit // 4 // max(1, processes)
    return max(32 * MIB, min(1024 * MIB, share))
