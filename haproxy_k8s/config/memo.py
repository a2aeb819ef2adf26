"""Remember each cluster's model between loads, keyed by its raw table.

Every apply re-reads and re-validates the whole directory; with 1,000
clusters, validating every node address again was most of a node add. A
cluster whose raw table (and the [defaults] it inherits) is unchanged gets
its previous, identical `Cluster` back, which also makes comparing the old
and new config (apply/plan.py) an identity check per cluster.

Only successes are remembered, and only those of the latest load, so an
invalid table is always re-validated (its error names file and key) and the
memo never outgrows the config.

Settings equal to the last load's are that load's very object: [defaults]
is parsed anew on every load, and a cluster rebuilt for a node edit would
otherwise carry a copy of it. The renderer keeps option texts per settings
object (haproxy/render.py), so copies cost a render each and, soaked over
thousands of edits, memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .model import Cluster, ClusterSettings

MemoKey = tuple[str, str, ClusterSettings]
TableKey = tuple[str, str]


class ClusterMemo:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: dict[MemoKey, Cluster] = {}
        self._defaults: ClusterSettings | None = None

    def same_defaults(self, defaults: ClusterSettings) -> ClusterSettings:
        """The last load's [defaults] object when `defaults` equals it, else `defaults`."""
        with self._lock:
            last = self._defaults
            if last is not None and last == defaults:
                return last
            self._defaults = defaults
            return defaults

    def build_all(self, tables: list[tuple[str, Mapping[str, Any]]],
                  defaults: ClusterSettings,
                  build: Callable[[int], Cluster],
                  rebase: Callable[[int, Cluster], Cluster]) -> tuple[Cluster, ...]:
        """`build(i)` for each table not seen unchanged in the previous load;
        `rebase(i, previous)` for one whose own table is unchanged but whose
        [defaults] changed: its nodes and binds stand, only its settings move
        (a changed default touches every cluster; nodes were 60 % of the work)."""
        with self._lock:
            previous = self._previous
        by_table: dict[TableKey, Cluster] | None = None
        by_name: dict[str, Cluster] = {}
        fresh: dict[MemoKey, Cluster] = {}
        clusters = []
        for i, (name, data) in enumerate(tables):
            # repr: the tables hold only TOML/JSON values, whose repr is exact.
            key = (name, repr(data), defaults)
            cluster = previous.get(key)
            if cluster is None:
                if by_table is None:  # made once, on the first miss
                    by_table = {(n, r): c for (n, r, _), c in previous.items()}
                    by_name = {n: c for (n, _), c in by_table.items()}
                same_table = by_table.get(key[:2])
                cluster = build(i) if same_table is None else rebase(i, same_table)
                cluster = _settings_of(cluster, by_name.get(name), defaults)
            fresh[key] = cluster
            clusters.append(cluster)
        with self._lock:
            self._previous = fresh
        return tuple(clusters)


def _settings_of(cluster: Cluster, old: Cluster | None,
                 defaults: ClusterSettings) -> Cluster:
    """`cluster` (just built), with its previous version's settings object when
    they are equal. Only a cluster with keys of its own has a copy to replace:
    the others share `defaults`."""
    if old is None or cluster.settings is defaults or old.settings is cluster.settings \
            or old.settings != cluster.settings:
        return cluster
    return dataclasses.replace(cluster, settings=old.settings)


CLUSTERS = ClusterMemo()
