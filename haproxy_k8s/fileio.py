"""Atomic file replacement: a reader sees the old file or the new one, never a mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o640,
                 *, durable: bool = True) -> None:
    """Write `data` to a temp file beside `path`, fsync it, and rename over `path`.

    Every caller writes into the state dir, whose files are the service's and its group's
    only (the unit's UMask=0027 says the same; an explicit chmod would otherwise override it).

    `durable=False` skips the fsyncs, for files that only need to be whole
    (status.json, rewritten often, is rebuilt after a crash anyway).
    """
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def publish(candidate: Path, path: Path) -> None:
    """Rename an already-written, fsynced candidate over `path`."""
    os.replace(candidate, path)
    _fsync_dir(path.parent)
