"""Notice changes to files an apply reads from outside the config dir (password files).

They usually live elsewhere (/etc/haproxy-k8s/stats.pw may, a mounted secret
may not) and are not worth an inotify watch each: the daemon's tick compares a
stat signature, and a change (content, mode, owner, replaced, removed) posts
an apply, which reads and validates the file again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..config.model import Config

Signature = tuple[int, int, int, int, int] | None


def secret_files(*configs: Config | None) -> list[str]:
    """The files outside the config dir that applying these configs reads.

    The daemon passes the applied config and the last one it tried: after a
    refused apply, fixing the file the refused one named must apply it.
    """
    paths = {path for config in configs if config is not None
             for path in (config.stats.password_file, config.metrics.password_file) if path}
    return sorted(paths)


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # ctime moves on chmod/chown too: a file made unreadable is noticed.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class SecretFiles:
    def __init__(self) -> None:
        self._seen: dict[str, Signature] = {}

    def changed(self, paths: Iterable[str]) -> bool:
        """Whether any of `paths` changed since the last call (a new path is a baseline)."""
        now = {path: _signature(path) for path in paths}
        changed = any(path in self._seen and self._seen[path] != sig
                      for path, sig in now.items())
        self._seen = now
        return changed
