"""glibc malloc settings that keep the daemon's RSS flat.

Each apply builds and drops a few MB at once (the rendered haproxy.cfg, the
status.json text, `show stat` replies). glibc raises its mmap threshold to the
size of any mmap'd block it frees (up to 32 MiB), so the next such block lands
in the heap instead and stays there as free, resident memory; and each of the
daemon's ~8 threads gets an arena of its own that keeps its free memory too.
At 1,000 clusters that was 10-30 MiB of RSS after a few edits. A fixed
threshold returns those blocks to the kernel at free(); two arenas are plenty
for threads that mostly wait for the GIL. What the heap still keeps (free
chunks between live ones) `trim` gives back after each status round and
full health read.

An operator's own MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ (read by glibc at
start) win: a setting given in the environment is left alone.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

SETTINGS = (("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 128 * 1024),  # glibc's default
            ("MALLOC_ARENA_MAX", M_ARENA_MAX, 2))


@functools.cache
def _glibc(name: str) -> Any | None:
    """A function of the process's own C library, None where it has none (musl)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def tune() -> None:
    """Apply SETTINGS through mallopt(); call before any thread starts."""
    mallopt = _glibc("mallopt")
    if mallopt is None:  # not glibc: its malloc needs none of this
        return
    for env, param, value in SETTINGS:
        if env not in os.environ and mallopt(param, value) != 1:
            log.debug("mallopt(%d, %d) refused", param, value)


def trim() -> None:
    """Return the free pages inside malloc's heaps to the kernel (0.2 ms when
    there are none, a few ms after a burst)."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
