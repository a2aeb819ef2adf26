"""glibc malloc settings that keep the daemon's RSS flat (set once, at `run`).

Each apply builds and drops a few MB at once (the rendered haproxy.cfg, the
status.json text, `show stat` replies). glibc raises its mmap threshold to the
size of any mmap'd block it frees (up to 32 MiB), so the next such block lands
in the heap instead and stays there as free, resident memory; and each of the
daemon's ~8 threads gets an arena of its own that keeps its free memory too.
At 1,000 clusters that was 10-30 MiB of RSS after a few edits. A fixed
threshold returns those blocks to the kernel at free(); two arenas are plenty
for threads that mostly wait for the GIL.

An operator's own MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ (read by glibc at
start) win: a setting given in the environment is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

SETTINGS = (("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 128 * 1024),  # glibc's default
            ("MALLOC_ARENA_MAX", M_ARENA_MAX, 2))


def tune() -> None:
    """Apply SETTINGS through mallopt(); nothing where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # musl has no mallopt: its malloc needs none of this
        return
    for env, param, value in SETTINGS:
        if env not in os.environ and mallopt(param, value) != 1:
            log.debug("mallopt(%d, %d) refused", param, value)
