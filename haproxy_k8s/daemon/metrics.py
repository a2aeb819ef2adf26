"""The daemon's own Prometheus metrics, served with prometheus_client on `metrics.bind`.

prometheus_client (with http.server, 25 ms of imports) is imported only when
the registry is first needed (haproxy_k8s.daemon.promserver), off the start's
path to READY. The daemon's main loop publishes an immutable snapshot after
every round; a custom collector in a registry of our own renders whatever
snapshot is the latest when a scrape comes in. No global, mutable metric
objects: the only shared state is one lock-protected reference.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.model import Bind
from .access import Access, guard
from .state import DaemonState
from .status import StatusDocument, parse_utc, state_counts

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-metrics"
# How often the serving thread looks for a shutdown request: bounds close().
SHUTDOWN_POLL = 0.5  # serve_forever wakes this often only to see a shutdown
# Connections served at once (a thread each); more are closed at once. A
# scraper needs one; 800 idle connections must not make 800 threads.
MAX_CONNECTIONS = 8
# A connection that sends no complete request within this long is closed.
IDLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class MetricsSnapshot:
    generation: int = 0
    reloads: int = 0
    failed_reloads: int = 0
    last_apply_unix: float | None = None
    config_errors: int = 0
    haproxy_restarts: int = 0
    state_dir_errors: int = 0
    runtime_changes: int = 0
    haproxy_up: bool = False
    backend_servers: tuple[tuple[str, str, int], ...] = ()  # (cluster, state, count)
    # (cluster, syncs, watch restarts, errors, connected) per cluster with discovery
    discovery: tuple[tuple[str, int, int, int, bool], ...] = ()
    fail_open: tuple[tuple[str, bool], ...] = ()  # (cluster, failing open now)


def snapshot_of(state: DaemonState, doc: StatusDocument) -> MetricsSnapshot:
    """The metrics for the daemon's state and its status document."""
    counts = state_counts(doc.clusters)
    return MetricsSnapshot(
        generation=state.generation,
        reloads=state.reloads,
        failed_reloads=state.failed_reloads,
        last_apply_unix=parse_utc(state.applied_at),
        config_errors=state.config_errors,
        haproxy_restarts=state.haproxy_restarts,
        state_dir_errors=state.state_dir_errors,
        runtime_changes=state.runtime_changes,
        haproxy_up=doc.haproxy.reachable,
        backend_servers=tuple((c, s, n) for (c, s), n in sorted(counts.items())),
        discovery=tuple((c.name, int(d.get("syncs", 0)), int(d.get("watch_restarts", 0)),
                         int(d.get("errors", 0)), d.get("state") == "connected")
                        for c in doc.clusters if (d := c.discovery)),
        fail_open=tuple((c.name, c.fail_open_active) for c in doc.clusters),
    )


class MetricsExporter:
    """The latest snapshot, the registry over it, and the HTTP server serving it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: MetricsSnapshot | Callable[[], MetricsSnapshot] = MetricsSnapshot()
        self._makers: list[Callable[[], Collector]] = []  # more collectors (the VIP's)
        self._registry: CollectorRegistry | None = None
        self.bind: Bind | None = None
        self._access = Access()
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from . import promserver
            self._registry = promserver.registry(self.latest, [make() for make in self._makers])
        return self._registry

    def add_collector(self, make: Callable[[], Collector]) -> None:
        """A collector, made by `make` with the registry (or now, if it exists)."""
        self._makers.append(make)
        if self._registry is not None:
            self._registry.register(make())

    def publish(self, snapshot: MetricsSnapshot | Callable[[], MetricsSnapshot]) -> None:
        """The snapshot, or how to make it: made on the first scrape that wants
        it (the daemon publishes on every status write, scrapes come seldom)."""
        with self._lock:
            self._snapshot = snapshot

    def latest(self) -> MetricsSnapshot:
        with self._lock:
            if not isinstance(self._snapshot, MetricsSnapshot):
                self._snapshot = self._snapshot()
            return self._snapshot

    def access(self) -> Access:
        with self._lock:
            return self._access

    def exposition(self) -> bytes:
        """The text format, as a scrape would get it."""
        from prometheus_client import generate_latest

        data: bytes = generate_latest(self.registry)
        return data

    @property
    def serving(self) -> bool:
        return self._httpd is not None

    def serve(self, bind: Bind | None, access: Access | None = None) -> str | None:
        """Serve on `bind` (None: stop) to whom `access` allows (default: loopback).

        A no-op, apart from taking the new `access`, when already serving there.

        Returns why the bind failed (None: serving, or nothing to serve). The
        caller records it as an error naming `metrics.bind`; metrics never
        stop the daemon from keeping HAProxy up, and the next call tries again.
        """
        with self._lock:
            self._access = access or Access()
        if self._httpd is not None and bind == self.bind:
            return None
        self.close()
        self.bind = bind
        if bind is None:
            return None
        from . import promserver

        try:
            httpd = promserver.listen(bind, guard(promserver.wsgi_app(self.registry), self.access))
        except OSError as e:
            log.error("cannot serve metrics on %s: %s", bind, e.strerror or e)
            return f"cannot listen on {bind}: {e.strerror or e}"
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(SHUTDOWN_POLL,),
                                        name=THREAD_NAME, daemon=True)
        self._thread.start()
        log.info("serving metrics on http://%s/metrics", bind)
        return None

    def close(self) -> None:
        """Stop serving and join the server thread. Idempotent."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join()
