"""The drop-in directory as a source: `haproxy-k8s.toml` plus `conf.d/*.toml|json`."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import FileCache, ProvenanceMap, load_raw, unread_dropins
from ..config.model import Config
from ..config.references import check_referenced_files
from ..config.schema import build_config, dotted_key
from ..config.values import file_for
from ..errors import ConfigError, HaproxyK8sError
from .base import Post
from .watcher import DirWatcher

log = logging.getLogger(__name__)

# `be_cluster-0/m1`, `fe_cluster-0`, `fo_…` in HAProxy's words: our proxy and server names.
_SERVER_REF = re.compile(r"\b(?:be|fe|fo)_([a-z0-9][a-z0-9-]*)(?:/([a-z0-9][a-z0-9.-]*))?")


@dataclass(frozen=True)
class Loaded:
    """One read of the directory (FileSource.read)."""

    config: Config
    raw: Mapping[str, Any]
    provenance: ProvenanceMap
    nonempty: frozenset[str]  # the files that had content
    error: ConfigError | None = None  # a file the config names is missing or unreadable


class FileSource:
    """Loads the config directory; its watcher posts on every relevant change."""

    name = "files"

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._watcher: DirWatcher | None = None
        # Which file set each key, as of the last load: `describe` names a
        # node's origin with it.
        self.provenance: ProvenanceMap = {}
        # The files that set each node, indexed once per load: status asks
        # for every node on every write (3,000 at 1,000 clusters).
        self._node_files: dict[tuple[str, str], str] | None = None
        self._cache = FileCache()  # unchanged drop-ins are not read and parsed again
        self._reading = threading.Lock()
        self._raw: Mapping[str, Any] = {}  # the last load's merged files
        # A string value -> its key, of the last load: made when an error needs it.
        self._values: dict[str, tuple[str, ...]] | None = None
        self._unread: list[str] = []
        # Files of the last load that had content: a save that truncates one
        # shows up as an emptied file (see daemon/holddown.py).
        self.nonempty: frozenset[str] = frozenset()

    def load(self) -> Config:
        return self.commit(self.read())

    def read(self) -> Loaded:
        """The directory's config, not yet the one this source reports on (commit).

        Any thread may read, one at a time: the cache of unchanged drop-ins
        and the settings memo are shared. Raises ConfigError, keeping nothing."""
        with self._reading:
            with_content: set[str] = set()
            raw, provenance = load_raw(self.config_dir, with_content, self._cache)
            config = build_config(raw, provenance)
        try:
            check_referenced_files(config, provenance)
        except ConfigError as e:
            return Loaded(config, raw, provenance, frozenset(with_content), e)
        return Loaded(config, raw, provenance, frozenset(with_content))

    def commit(self, loaded: Loaded) -> Config:
        """Make `loaded` the last load: the one `locate`, `origin` and
        `emptied` answer from. On the loop's thread."""
        self._raw, self._values = loaded.raw, None
        if loaded.error is not None:  # a missing referenced file: located by key
            raise loaded.error
        self.provenance = loaded.provenance
        self._node_files = None
        self.nonempty = loaded.nonempty  # seen while loading: no second read
        self._warn_unread()
        return loaded.config

    def emptied(self, had_content: frozenset[str]) -> set[str]:
        """Of the files that had content, those still there but without any now (last load).

        A deleted drop-in is not one of them: deleting a file is a finished change.
        """
        return {name for name in had_content - self.nonempty
                if (self.config_dir / name).exists()}

    def _warn_unread(self) -> None:
        # Once per different set: every apply reloads the directory.
        unread = unread_dropins(self.config_dir)
        if unread != self._unread:
            for name in sorted(set(unread) - set(self._unread)):
                log.warning("%s: ignored: only *.toml and *.json drop-ins are read", name)
            self._unread = unread

    def locate(self, error: HaproxyK8sError) -> HaproxyK8sError:
        """`error` with the drop-in that caused it, where it names none.

        A changed fixed setting names its key; `haproxy -c` and a refused reload
        name a backend or server (`be_cluster-0/m1`): either leads to the file
        that set it, which is what an operator has to open.
        """
        if error.file:
            return error
        if isinstance(error, ConfigError) and error.key:
            file = file_for(tuple(error.key.split(".")), self.provenance)
            return ConfigError(error.message, file=file, key=error.key) if file else error
        text = str(error)
        # A value the operator wrote, quoted back by HAProxy (a file name, a path):
        # the key that set it is the one to fix.
        if self._values is None:
            self._values = dict(_string_values(self._raw))
        quoted = [value for value in self._values if len(value) >= 4 and value in text]
        if quoted:
            key = self._values[max(quoted, key=len)]
            error.file = file_for(key, self.provenance)
            return error
        found = _SERVER_REF.search(text)
        if found:
            cluster, node = found.groups()
            key = ("clusters", cluster, "nodes", node) if node else ("clusters", cluster)
            error.file = file_for(key, self.provenance)
        return error

    def source(self, cluster: str, node: str) -> str:
        """The files that set the node (`conf.d/10-c.toml`), or `discovery` when none does."""
        if self._node_files is None:
            index: dict[tuple[str, str], set[str]] = {}
            for key, rel in self.provenance.items():
                if len(key) >= 4 and key[0] == "clusters" and key[2] == "nodes":
                    index.setdefault((key[1], key[3]), set()).add(rel)
            # Kept as the answer, one string per set of files: a set per node was
            # 0.9 MiB at 3,000 nodes.
            texts: dict[str, str] = {}
            self._node_files = {node: texts.setdefault(text, text) for node, files
                                in index.items() if (text := ", ".join(sorted(files)))}
        return self._node_files.get((cluster, node)) or "discovery"

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


def _string_values(raw: Mapping[str, Any], path: tuple[str, ...] = ()
                   ) -> Iterator[tuple[str, tuple[str, ...]]]:
    for key, value in raw.items():
        if isinstance(value, Mapping):
            yield from _string_values(value, (*path, key))
        elif isinstance(value, str):
            yield value, (*path, key)
