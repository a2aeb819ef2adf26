"""The seam between where desired state comes from and the daemon that applies it.

A source watches something (a directory, the Kubernetes API, …) on its own
thread and only *posts* that it changed; the daemon's main loop then asks it
what it wants now, merges every source's answer into one `Config` and hands
that to the applier. Sources never talk to HAProxy.

Two kinds:
- the one `ConfigSource` gives the whole desired state: settings, clusters
  and their static nodes (the drop-in directory; NixOS writes a JSON drop-in
  into the same directory);
- any number of `NodeSource`s add nodes to clusters the config already has
  (discovery). `merge_nodes` folds their answers in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config.model import Cluster, Config, Node

# post(path_or_detail, complete): complete=False while a change may still be
# in progress (a file being written), True once it is whole.
Post = Callable[[str, bool], None]

# The UP nodes of a cluster by name, as the health poller last saw them (None: unknown).
# Here, not in kubernetes.py: the health poller needs the type, and importing
# kubernetes.py loads the Kubernetes client (lightkube, httpx) for nothing.
UpNodes = Callable[[str], frozenset[str] | None]


class Source(Protocol):
    name: str

    def start(self, post: Post) -> None:
        """Begin watching; call `post` (from any thread) on every change."""

    def stop(self) -> None:
        """Stop watching and join any thread."""


class ConfigSource(Source, Protocol):
    def load(self) -> Config:
        """The desired state now; raises ConfigError naming the file and key."""


@dataclass(frozen=True)
class NodeSet:
    """Nodes one source wants in one cluster."""

    cluster: str
    nodes: tuple[Node, ...]
    # address:port the source wants drained (a terminating apiserver), static
    # seeds included: weight 0, so no new connections and none cut.
    draining: frozenset[tuple[str, int]] = frozenset()


class NodeSource(Source, Protocol):
    def node_sets(self, base: Config) -> Sequence[NodeSet]:
        """The nodes this source wants, for clusters of `base`. Never raises:
        a source that cannot answer keeps its last known answer."""


def merge_nodes(base: Config, sets: Sequence[NodeSet]) -> Config:
    """`base` with every set's nodes added to its cluster.

    A node with the address and port of one already present *is* that node
    (the earlier name wins: static drop-ins are the seeds); a node a drop-in
    disabled (`enabled = false`, by name or by address:port) stays out; sets
    for clusters `base` does not have are ignored.
    """
    if not sets:
        return base
    clusters = []
    for cluster in base.clusters:
        mine = [s for s in sets if s.cluster == cluster.name]
        clusters.append(_merge_cluster(cluster, mine) if mine else cluster)
    return dataclasses.replace(base, clusters=tuple(clusters))


def _merge_cluster(cluster: Cluster, sets: Sequence[NodeSet]) -> Cluster:
    nodes = {n.name: n for n in cluster.nodes}
    taken = {(n.address, n.port) for n in cluster.nodes}
    for node_set in sets:
        for node in node_set.nodes:
            key = (node.address, node.port)
            if key in taken or node.name in nodes or _disabled(cluster, node):
                continue
            nodes[node.name] = node
            taken.add(key)
    draining = frozenset().union(*(s.draining for s in sets))
    merged = (dataclasses.replace(n, weight=0) if (n.address, n.port) in draining else n
              for n in nodes.values())
    return dataclasses.replace(cluster, nodes=tuple(sorted(merged, key=lambda n: n.name)))


def _disabled(cluster: Cluster, node: Node) -> bool:
    return node.name in cluster.disabled_names \
        or (node.address, node.port) in cluster.disabled_addresses
