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

from ..config.model import Config, Node

# post(path_or_detail, complete): complete=False while a change may still be
# in progress (a file being written), True once it is whole.
Post = Callable[[str, bool], None]


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


class NodeSource(Source, Protocol):
    def node_sets(self, base: Config) -> Sequence[NodeSet]:
        """The nodes this source wants, for clusters of `base`. Never raises:
        a source that cannot answer keeps its last known answer."""


def merge_nodes(base: Config, sets: Sequence[NodeSet]) -> Config:
    """`base` with every set's nodes added to its cluster.

    A node with the address and port of one already present *is* that node
    (the earlier name wins: static drop-ins are the seeds); sets for clusters
    `base` does not have are ignored.
    """
    if not sets:
        return base
    clusters = []
    for cluster in base.clusters:
        nodes = {n.name: n for n in cluster.nodes}
        taken = {(n.address, n.port) for n in cluster.nodes}
        for node_set in (s for s in sets if s.cluster == cluster.name):
            for node in node_set.nodes:
                if (node.address, node.port) in taken or node.name in nodes:
                    continue
                nodes[node.name] = node
                taken.add((node.address, node.port))
        merged = tuple(sorted(nodes.values(), key=lambda n: n.name))
        clusters.append(dataclasses.replace(cluster, nodes=merged))
    return dataclasses.replace(base, clusters=tuple(clusters))
