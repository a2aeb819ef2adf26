"""The drop-in directory as a source: `haproxy-k8s.toml` plus `conf.d/*.toml|json`."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config.loader import ProvenanceMap, config_files, load_raw, unread_dropins
from ..config.model import Config
from ..config.references import check_referenced_files
from ..config.schema import build_config, dotted_key
from .base import Post
from .watcher import DirWatcher

log = logging.getLogger(__name__)


class FileSource:
    """Loads the config directory; its watcher posts on every relevant change."""

    name = "files"

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._watcher: DirWatcher | None = None
        # Which file set each key, as of the last load: `describe` names a
        # node's origin with it.
        self.provenance: ProvenanceMap = {}
        self._unread: list[str] = []
        # Files of the last load that had content: a save that truncates one
        # shows up as an emptied file (see daemon/holddown.py).
        self.nonempty: frozenset[str] = frozenset()

    def load(self) -> Config:
        raw, provenance = load_raw(self.config_dir)
        config = build_config(raw, provenance)
        check_referenced_files(config, provenance)
        self.provenance = provenance
        self._warn_unread()
        return config

    def files_with_content(self) -> frozenset[str]:
        """The config files (relative names) that are not empty right now."""
        found = set()
        for path in config_files(self.config_dir):
            try:
                if path.stat().st_size > 0:
                    found.add(path.relative_to(self.config_dir).as_posix())
            except OSError:
                continue
        return frozenset(found)

    def _warn_unread(self) -> None:
        # Once per different set: every apply reloads the directory.
        unread = unread_dropins(self.config_dir)
        if unread != self._unread:
            for name in sorted(set(unread) - set(self._unread)):
                log.warning("%s: ignored: only *.toml and *.json drop-ins are read", name)
            self._unread = unread

    def source(self, cluster: str, node: str) -> str:
        """The files that set the node (`conf.d/10-c.toml`), or `discovery` when none does."""
        prefix = ("clusters", cluster, "nodes", node)
        files = sorted({rel for key, rel in self.provenance.items() if key[:4] == prefix})
        return ", ".join(files) or "discovery"

    def origin(self, cluster: str, node: str) -> str:
        """`conf.d/10-c.toml (clusters.c.nodes.m1)`, or `discovery`."""
        files = self.source(cluster, node)
        key = dotted_key(("clusters", cluster, "nodes", node))
        return files if files == "discovery" else f"{files} ({key})"

    def start(self, post: Post) -> None:
        """Watch the directory; a missing one is reported by `load` instead."""
        if self._watcher is not None or not self.config_dir.is_dir():
            return
        self._watcher = DirWatcher(self.config_dir, post)
        self._watcher.start()

    def verify(self) -> None:
        """Watch again if the directory was replaced (called from the daemon's tick)."""
        if self._watcher is not None:
            self._watcher.verify()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
