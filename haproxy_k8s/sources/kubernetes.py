"""Discovery: one cluster's apiservers from the Kubernetes API, as a NodeSource.

Its watcher thread (slicewatch) hands every new answer to this object, which
decides whether to believe it and posts "apply" when the nodes it wants
changed; the daemon's loop then asks `node_sets` and applies. The API is
never allowed to empty the balancer:
- unreachable, refused (401/403) or malformed: the last known nodes stay,
  the error is reported;
- a list with no serving endpoint is suspect: the last known nodes stay;
- a discovered node is never removed while it is the cluster's last UP one.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..clock import utc_now
from ..config.model import Cluster, Config, Discovery, Node
from .base import NodeSet, Post, UpNodes
from .endpoints import Wanted, wanted
from .slicewatch import Slices, SliceWatch, Via

log = logging.getLogger(__name__)

__all__ = ["DiscoveryStatus", "KubernetesSource", "UpNodes"]


@dataclass(frozen=True)
class DiscoveryStatus:
    """One cluster's discovery, as status.json shows it (`clusters[].discovery`)."""

    state: str = "connecting"  # connecting | connected | error | suspect
    last_sync: str | None = None
    resource_version: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    endpoints: int = 0  # nodes the API lists now (the last accepted answer)
    via: str = "server"  # server | nodes (the balancer's own frontend had nothing UP)
    syncs: int = 0
    watch_restarts: int = 0
    errors: int = 0


class KubernetesSource:
    def __init__(self, cluster: str, discovery: Discovery, up_nodes: UpNodes,
                 watch_factory: Callable[..., SliceWatch] = SliceWatch) -> None:
        self.cluster = cluster
        self.discovery = discovery
        self.name = f"kubernetes:{cluster}"
        self.up_nodes = up_nodes
        self._lock = threading.Lock()
        self._status = DiscoveryStatus()
        self._wanted: Wanted | None = None  # the last answer believed
        self._published: tuple[Node, ...] = ()  # what node_sets last handed out
        self._base: Cluster | None = None
        self._post: Post | None = None
        self._watch = watch_factory(discovery, self, self.targets)
        self._thread: threading.Thread | None = None

    # -- Source -----------------------------------------------------------------
    def start(self, post: Post) -> None:
        self._post = post
        self._thread = threading.Thread(target=self._watch.run, daemon=True,
                                        name=f"haproxy-k8s-discovery-{self.cluster}")
        self._thread.start()

    def stop(self) -> None:
        self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def status(self) -> DiscoveryStatus:
        with self._lock:
            return self._status

    # -- NodeSource (the daemon's loop) -------------------------------------------
    def node_sets(self, base: Config) -> Sequence[NodeSet]:
        cluster = base.cluster(self.cluster)
        with self._lock:
            self._base = cluster
            want = self._wanted
        if cluster is None or want is None:
            return ()
        nodes = want.nodes + self._kept_up(cluster, want)
        with self._lock:
            self._published = nodes
        return (NodeSet(self.cluster, nodes, want.draining),)

    def _kept_up(self, cluster: Cluster, want: Wanted) -> tuple[Node, ...]:
        """Discovered nodes going away that must stay: the cluster's last UP ones."""
        names = {n.name for n in want.nodes}
        going = [n for n in self._published if n.name not in names]
        up = self.up_nodes(cluster.name) if going else None
        if not going or up is None:
            return ()
        staying = names | {n.name for n in cluster.nodes}
        if up & staying:
            return ()
        kept = tuple(n for n in going if n.name in up)
        if kept:
            log.warning("discovery %s: keeping %s: the last UP node(s) of the cluster",
                        self.cluster, ", ".join(n.name for n in kept))
        return kept

    # -- Sink (the watcher thread) ------------------------------------------------
    def synced(self, slices: Slices, version: str, how: str) -> None:
        want = wanted(e for endpoints in slices.values() for e in endpoints)
        with self._lock:
            status = replace(self._status, resource_version=version, syncs=self._status.syncs + 1)
            if not want.nodes:
                # An apiserver answering lists itself: an empty list means the
                # answer is wrong (or the Service is), not that no apiserver runs.
                self._status = self._error(status, "suspect", "the API lists no serving "
                                           "endpoint; keeping the last known nodes")
                return
            # A new answer, or news for status (connected again): the daemon re-applies
            # (a no-op when the nodes are the same) and rewrites status.json.
            changed = self._wanted != want or status.state != "connected"
            self._wanted = want
            self._status = replace(status, state="connected", last_sync=utc_now(),
                                   endpoints=len(want.nodes), last_error=None)
            if status.state != "connected":
                log.info("discovery %s: connected (%s, resourceVersion %s): %d endpoints",
                         self.cluster, how, version, len(want.nodes))
        if changed and self._post is not None:
            self._post(f"discovery: {self.cluster}", True)

    def bookmark(self, version: str) -> None:
        with self._lock:
            self._status = replace(self._status, resource_version=version)

    def failed(self, message: str) -> None:
        with self._lock:
            self._status = self._error(self._status, "error", message)

    def restarted(self, why: str) -> None:
        log.debug("discovery %s: %s", self.cluster, why)
        with self._lock:
            self._status = replace(self._status, watch_restarts=self._status.watch_restarts + 1)

    def _error(self, status: DiscoveryStatus, state: str, message: str) -> DiscoveryStatus:
        # Logged (and shown) once per change of state or message, not on every retry.
        if (status.state, status.last_error) != (state, message):
            log.error("discovery %s: %s (%d nodes kept)", self.cluster, message,
                      len(self._wanted.nodes) if self._wanted else 0)
            if self._post is not None:
                self._post(f"discovery: {self.cluster}: {state}", True)
        return replace(status, state=state, last_error=message, last_error_at=utc_now(),
                       errors=status.errors + 1)

    # -- where to reach the API ------------------------------------------------
    def targets(self) -> list[Via]:
        """The kubeconfig's server; or, when that is this balancer's own frontend
        and nothing behind it is UP, the known nodes' addresses directly."""
        with self._lock:
            cluster = self._base
            nodes = (*(cluster.nodes if cluster else ()), *self._published)
        known = list(dict.fromkeys((n.address, n.port) for n in nodes))
        up = self.up_nodes(self.cluster)
        server = self._watch_server()
        direct = bool(cluster and up is not None and not up and server
                      and _is_own_frontend(cluster, *server))
        with self._lock:
            self._status = replace(self._status, via="nodes" if direct else "server")
        return [*known, None] if direct else [None]

    def _watch_server(self) -> tuple[str, int] | None:
        server = self._watch.server()
        return (server.host, server.port) if server is not None else None


def _is_own_frontend(cluster: Cluster, host: str, port: int) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port,
                                                               proto=socket.IPPROTO_TCP)}
    except OSError:
        return False
    return any(bind.port == port and (bind.host in addresses or bind.host in ("0.0.0.0", "::"))
               for bind in cluster.binds)
