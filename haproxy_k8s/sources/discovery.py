"""Every cluster's discovery, as one NodeSource the daemon holds.

The daemon calls `sync(config)` after each successful load of the drop-ins:
a cluster that gained a `[clusters.X.discovery]` table gets a
KubernetesSource, one whose table changed gets a new one, one that lost it
(or was removed) has its source stopped. Nothing here talks to HAProxy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config.model import Config, Discovery
from .base import NodeSet, Post, UpNodes

if TYPE_CHECKING:
    from .kubernetes import DiscoveryStatus, KubernetesSource

log = logging.getLogger(__name__)

SourceFactory = Callable[[str, Discovery, UpNodes], "KubernetesSource"]


def kubernetes_source(cluster: str, discovery: Discovery, up_nodes: UpNodes
                      ) -> KubernetesSource:
    # Imported on first use: the Kubernetes client (lightkube, httpx) costs
    # about 10 MiB of RSS, for nothing in a daemon that has no discovery.
    from .kubernetes import KubernetesSource

    return KubernetesSource(cluster, discovery, up_nodes)


class DiscoverySources:
    name = "discovery"

    def __init__(self, up_nodes: UpNodes, factory: SourceFactory = kubernetes_source) -> None:
        self.up_nodes = up_nodes
        self.factory = factory
        self._sources: dict[str, KubernetesSource] = {}
        self._post: Post | None = None

    def start(self, post: Post) -> None:
        self._post = post
        for source in self._sources.values():
            source.start(post)

    def stop(self) -> None:
        for source in self._sources.values():
            source.stop()
        self._sources.clear()
        self._post = None

    def sync(self, config: Config) -> None:
        """Run exactly one source per cluster with discovery, as `config` says."""
        wanted = {c.name: c.discovery for c in config.clusters if c.discovery is not None}
        for name, source in list(self._sources.items()):
            if wanted.get(name) != source.discovery:
                log.info("discovery %s: stopped", name)
                source.stop()
                del self._sources[name]
        for name, discovery in wanted.items():
            if name in self._sources:
                continue
            source = self.factory(name, discovery, self.up_nodes)
            self._sources[name] = source
            log.info("discovery %s: watching %s/%s via %s", name, discovery.namespace,
                     discovery.service, discovery.kubeconfig)
            if self._post is not None:
                source.start(self._post)

    def node_sets(self, base: Config) -> Sequence[NodeSet]:
        return [s for source in self._sources.values() for s in source.node_sets(base)]

    def statuses(self) -> dict[str, DiscoveryStatus]:
        return {name: source.status() for name, source in self._sources.items()}
