"""Classify a change of desired state: nothing, runtime-only, or a reload.

Pure: compares two Config values. Runtime-only means every difference is a
node of an existing cluster being added, removed, re-addressed or re-weighted,
or a cluster's SNI hostnames (map entries), which the runtime API can do
without restarting any worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from ..config.model import Cluster, Config, Node, server_id


class PlanKind(StrEnum):
    NOOP = "noop"
    RUNTIME = "runtime"
    RELOAD = "reload"


class ChangeKind(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"


@dataclass(frozen=True)
class NodeChange:
    kind: ChangeKind
    cluster: Cluster  # the cluster as in the new config (old config for removals)
    node: Node  # the new node (the old one for removals)
    old: Node | None = None

    @property
    def server(self) -> str:
        return server_id(self.cluster.name, self.node.name)

    @property
    def mirror(self) -> str | None:
        """The node's server in the cluster's fail-open backend, if it has one."""
        ids = self.cluster.server_ids(self.node.name)
        return ids[1] if len(ids) > 1 else None

    def describe(self) -> str:
        return f"{self.kind} {self.cluster.name}/{self.node.name}"


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    changes: tuple[NodeChange, ...] = ()
    reason: str = ""
    hostnames: tuple[str, ...] = ()  # clusters whose `sni` changed (map edits)


def make_plan(old: Config | None, new: Config) -> Plan:
    """How to get HAProxy from `old` (what it runs now) to `new`."""
    if old is None:
        return Plan(PlanKind.RELOAD, reason="no applied config yet")
    if not _same_structure(old, new):
        return Plan(PlanKind.RELOAD,
                    reason="structural change: " + structural_difference(old, new))
    changes: list[NodeChange] = []
    # Same structure: the same clusters in the same (sorted) order. An
    # unchanged cluster is usually the very same object (config/memo.py).
    for old_cluster, new_cluster in zip(old.clusters, new.clusters, strict=True):
        if old_cluster is new_cluster or old_cluster.nodes == new_cluster.nodes:
            continue
        cluster_changes = _node_changes(old_cluster, new_cluster)
        reason = _needs_reload(new_cluster, cluster_changes)
        if old_cluster.failopen_backups != new_cluster.failopen_backups:
            # Its fail-open twins move between its backend and a backend of their own.
            reason = f"{new_cluster.name}: a backup node changes how it fails open"
        if reason:
            return Plan(PlanKind.RELOAD, reason=reason)
        changes.extend(cluster_changes)
    hostnames = tuple(c.name for c in new.clusters if c.sni != _sni(old, c.name))
    if changes or hostnames:
        return Plan(PlanKind.RUNTIME, tuple(changes), hostnames=hostnames)
    return Plan(PlanKind.NOOP)


def _sni(config: Config, cluster: str) -> tuple[str, ...]:
    found = config.cluster(cluster)
    return found.sni if found is not None else ()


def _same_structure(old: Config, new: Config) -> bool:
    """Equal but for the nodes and hostnames, without copying thousands of clusters.

    Hostnames only fill a map HAProxy can edit live; `sni_default` stays:
    the default backend is a line of the shared frontend.
    """
    if dataclasses.replace(old, clusters=()) != dataclasses.replace(new, clusters=()):
        return False
    return len(old.clusters) == len(new.clusters) and all(
        o is n or (o.name, o.binds, o.settings, o.sni_default)
        == (n.name, n.binds, n.settings, n.sni_default)
        for o, n in zip(old.clusters, new.clusters, strict=True))


def structural_difference(old: Config, new: Config) -> str:
    """What differs besides nodes, in the words of the config keys.

    "cluster added: cluster-1", "clusters.cluster-0.balance", "stats.bind":
    enough for an operator to see why a reload happened.
    """
    old_names = {c.name for c in old.clusters}
    new_names = {c.name for c in new.clusters}
    if new_names - old_names:
        return "cluster added: " + ", ".join(sorted(new_names - old_names))
    if old_names - new_names:
        return "cluster removed: " + ", ".join(sorted(old_names - new_names))
    olds = {c.name: c for c in old.clusters}
    for new_cluster in new.clusters:
        old_cluster = olds[new_cluster.name]
        if old_cluster.binds != new_cluster.binds:
            return f"clusters.{new_cluster.name}.bind"
        fields = _changed_fields(old_cluster.settings, new_cluster.settings)
        if fields:
            return ", ".join(f"clusters.{new_cluster.name}.{f}" for f in fields)
    for section in ("haproxy", "stats", "metrics", "watch"):
        fields = _changed_fields(getattr(old, section), getattr(new, section))
        if fields:
            return ", ".join(f"{section}.{f}" for f in fields)
    return "settings"


def _changed_fields(old: object, new: object) -> list[str]:
    """Names of the dataclass fields whose values differ (suffixes like _ms dropped)."""
    names = [f.name for f in dataclasses.fields(old)  # type: ignore[arg-type]
             if getattr(old, f.name) != getattr(new, f.name)]
    return [n.removesuffix("_ms") for n in names]


def _node_changes(old: Cluster, new: Cluster) -> list[NodeChange]:
    old_nodes = {n.name: n for n in old.nodes}
    new_nodes = {n.name: n for n in new.nodes}
    changes = [NodeChange(ChangeKind.REMOVE, old, node) for name, node in old_nodes.items()
               if name not in new_nodes]
    for name, node in new_nodes.items():
        before = old_nodes.get(name)
        if before is None:
            changes.append(NodeChange(ChangeKind.ADD, new, node))
        elif before != node:
            changes.append(NodeChange(ChangeKind.UPDATE, new, node, before))
    return changes


def _needs_reload(cluster: Cluster, changes: list[NodeChange]) -> str:
    """Why these node changes cannot go through the runtime API ("" if they can)."""
    for change in changes:
        node, old = change.node, change.old
        # Dynamic servers need a dynamic load-balancing algorithm (HAPROXY-NOTES.md).
        if change.kind is ChangeKind.ADD and not cluster.settings.balance.is_dynamic:
            return f"{change.describe()}: balance {cluster.settings.balance} is not dynamic"
        if not node.is_ip or (old is not None and not old.is_ip):
            return f"{change.describe()}: DNS names need a reload to resolve"
        if old is not None and old.backup != node.backup:
            return f"{change.describe()}: backup flag changed"
    return ""
