"""The drop-in directory as a source: `haproxy-k8s.toml` plus `conf.d/*.toml|json`."""

from __future__ import annotations

from pathlib import Path

from ..config.loader import load_config
from ..config.model import Config
from .base import Post
from .watcher import DirWatcher


class FileSource:
    """Loads the config directory; its watcher posts on every relevant change."""

    name = "files"

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._watcher: DirWatcher | None = None

    def load(self) -> Config:
        return load_config(self.config_dir)

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
