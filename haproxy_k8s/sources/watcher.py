"""Watch the config dir and post "changed" events; the daemon debounces them."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from ..config.statedir import DROPIN_DIR, MAIN_FILE, is_ignored

log = logging.getLogger(__name__)


# Every event but opened and closed-without-writing: reads (our own too) change
# nothing, and the inotify mask then leaves them out in the kernel. A start
# reads 1,000 drop-ins (and each `status` looks into them for the state dir):
# 2,000 events, each made and dropped in Python on watchdog's threads, had
# tripled the time of the start's load.
WRITES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, DirModifiedEvent,
    FileMovedEvent, DirMovedEvent, FileDeletedEvent, DirDeletedEvent, FileClosedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, config_dir: Path, post: Callable[[str, bool], None],
                 lost: threading.Event) -> None:
        self._post = post
        self._root = os.fspath(config_dir)
        self._lost = lost
        self._main = os.path.join(config_dir, MAIN_FILE)
        self._dropins = os.path.join(config_dir, DROPIN_DIR)

    def _ours(self, path: str) -> bool:
        """The main file, conf.d itself, or anything below conf.d.

        Anything else in the config dir (a state dir placed there, logs) must
        not trigger applies: our own status writes would re-trigger forever.
        """
        return path in (self._main, self._dropins) or path.startswith(self._dropins + os.sep)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if os.fsdecode(event.src_path) == self._root and event.event_type in ("deleted",
                                                                               "moved"):
            self._lost.set()  # this watch is dead; a restored dir may reuse the inode
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


Identity = tuple[tuple[int, int] | None, ...]


def _identity(*paths: Path) -> Identity:
    """(st_dev, st_ino) of each path, None for a missing one."""
    ids: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            ids.append(None)
        else:
            ids.append((st.st_dev, st.st_ino))
    return tuple(ids)


class DirWatcher:
    """Owns a watchdog observer thread; only ever posts, never applies.

    inotify watches an inode, not a path: once the config dir is removed and
    restored, swapped for another by `mv`, or mounted over, the watch follows
    the old inode and later edits go unseen. `verify()` (called from the
    daemon's tick: two stat calls) notices the path naming another directory
    (or the watched one deleted: a new one may get the same inode number),
    watches the new one and posts a change so its contents apply.
    """

    def __init__(self, config_dir: Path, post: Callable[[str, bool], None]) -> None:
        """`post(path, complete)`: `complete` is False while a write may be in progress."""
        self._dir = config_dir
        self._post = post
        self._observer = Observer()
        self._watch: ObservedWatch | None = None
        self._lost = threading.Event()
        self._identity = self._arm()

    def _paths(self) -> tuple[Path, Path]:
        return self._dir, self._dir / DROPIN_DIR

    def _arm(self) -> Identity:
        if self._watch is not None:
            self._observer.unschedule(self._watch)
            self._watch = None
        identity = _identity(*self._paths())
        self._lost.clear()
        try:
            handler = _Handler(self._dir, self._post, self._lost)
            self._watch = self._observer.schedule(handler, str(self._dir), recursive=True,
                                                  event_filter=WRITES)
        except OSError as e:  # gone again already: the next verify() retries
            log.warning("cannot watch %s: %s", self._dir, e)
            return (None,)
        return identity

    def start(self) -> None:
        self._observer.start()

    def verify(self) -> None:
        """Watch the config dir again if its path now names another directory."""
        identity = _identity(*self._paths())
        if identity[0] is None:
            return  # removed: the delete events already said so; wait for it to return
        if identity == self._identity and not self._lost.is_set():
            return
        log.info("%s was replaced; watching the new directory", self._dir)
        self._identity = self._arm()
        # Its contents may differ in any way, and their events went to the old watch.
        self._post(str(self._dir / DROPIN_DIR), True)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
