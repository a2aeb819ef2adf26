"""Watch the config dir and post "changed" events; the daemon debounces them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ..config.loader import DROPIN_DIR, MAIN_FILE, is_ignored


class _Handler(FileSystemEventHandler):
    def __init__(self, config_dir: Path, post: Callable[[str, bool], None]) -> None:
        self._post = post
        self._main = os.path.join(config_dir, MAIN_FILE)
        self._dropins = os.path.join(config_dir, DROPIN_DIR)

    def _ours(self, path: str) -> bool:
        """The main file, conf.d itself, or anything below conf.d.

        Anything else in the config dir (a state dir placed there, logs) must
        not trigger applies: our own status writes would re-trigger forever.
        """
        return path in (self._main, self._dropins) or path.startswith(self._dropins + os.sep)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (including our own) change nothing
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", ""))
                 if p]
        # Directory events count: `mv conf.d.new conf.d` changes every file at once.
        paths = [p for p in paths if self._ours(p)]
        moved_dir = event.is_directory and event.event_type != "modified"
        if paths and (moved_dir or any(_relevant(os.path.basename(p)) for p in paths)):
            # Closed after writing, renamed into place or deleted: the file is
            # whole. Created or modified: a write may still be in progress.
            complete = event.event_type in ("closed", "moved", "deleted")
            self._post(paths[-1], complete)


def _relevant(name: str) -> bool:
    """Drop-ins count, editor leftovers do not; a ConfigMap volume swaps `..data`."""
    return name == "..data" or not is_ignored(name)


class DirWatcher:
    """Owns a watchdog observer thread; only ever posts, never applies."""

    def __init__(self, config_dir: Path, post: Callable[[str, bool], None]) -> None:
        """`post(path, complete)`: `complete` is False while a write may be in progress."""
        self._observer = Observer()
        self._observer.schedule(_Handler(config_dir, post), str(config_dir), recursive=True)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
