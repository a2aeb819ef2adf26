"""The daemon's own Prometheus metrics, served with prometheus_client on `metrics.bind`.

The daemon's main loop publishes an immutable snapshot after every round; a
custom collector in a registry of our own renders whatever snapshot is the
latest when a scrape comes in. No global, mutable metric objects: the only
shared state is one lock-protected reference.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config.model import Bind
from .access import Access, guard
from .state import DaemonState
from .status import StatusDocument, parse_utc, state_counts

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


class SnapshotCollector(Collector):
    """Renders the snapshot `source()` returns at scrape time."""

    def __init__(self, source: Callable[[], MetricsSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        s = self._source()
        reloads = CounterMetricFamily(
            "haproxy_k8s_reloads", "HAProxy reloads; failure: HAProxy refused the new config "
            "and the last good one was restored", labels=["result"])
        reloads.add_metric(["success"], s.reloads)
        reloads.add_metric(["failure"], s.failed_reloads)
        yield reloads
        yield GaugeMetricFamily("haproxy_k8s_config_generation",
                                "Generation of the config HAProxy runs (+1 per applied change)",
                                value=s.generation)
        yield GaugeMetricFamily("haproxy_k8s_last_apply_timestamp_seconds",
                                "Unix time the running config was applied (0: never)",
                                value=s.last_apply_unix or 0)
        yield CounterMetricFamily("haproxy_k8s_config_errors",
                                  "Applies refused because a drop-in or the rendered config "
                                  "was invalid", value=s.config_errors)
        yield CounterMetricFamily("haproxy_k8s_state_dir_errors",
                                  "Applies and status writes that could not write the state "
                                  "dir (read-only, full disk); retried with backoff",
                                  value=s.state_dir_errors)
        yield CounterMetricFamily("haproxy_k8s_haproxy_restarts",
                                  "Times the HAProxy master exited and was started again",
                                  value=s.haproxy_restarts)
        yield CounterMetricFamily("haproxy_k8s_runtime_changes",
                                  "Server changes applied through the runtime API, "
                                  "without a reload", value=s.runtime_changes)
        yield GaugeMetricFamily("haproxy_k8s_haproxy_up",
                                "Whether HAProxy answers on its sockets (1) or not (0)",
                                value=1 if s.haproxy_up else 0)
        yield _backend_servers(s)
        yield from _discovery(s)
        fail_open = GaugeMetricFamily(
            "haproxy_k8s_cluster_fail_open", "1 while a cluster has no UP node and serves "
            "from its unchecked enabled nodes (fail_open)", labels=["cluster"])
        for cluster, active in s.fail_open:
            fail_open.add_metric([cluster], int(active))
        yield fail_open


def _backend_servers(s: MetricsSnapshot) -> GaugeMetricFamily:
    family = GaugeMetricFamily("haproxy_k8s_backend_servers",
                               "Nodes per cluster and state (UP, DOWN, NOLB, MAINT, DRAIN, "
                               "UNKNOWN)", labels=["cluster", "state"])
    for cluster, state, count in s.backend_servers:
        family.add_metric([cluster, state], count)
    return family


def _discovery(s: MetricsSnapshot) -> Iterator[Metric]:
    help_texts = (("syncs", "EndpointSlice answers taken from the Kubernetes API (lists and "
                   "watch events)"),
                  ("watch_restarts", "Watches of the Kubernetes API resumed or relisted"),
                  ("errors", "Failed or refused Kubernetes API answers (last nodes kept)"))
    for i, (name, text) in enumerate(help_texts, start=1):
        family = CounterMetricFamily(f"haproxy_k8s_discovery_{name}", text, labels=["cluster"])
        for row in s.discovery:
            family.add_metric([row[0]], int(row[i]))
        yield family
    connected = GaugeMetricFamily("haproxy_k8s_discovery_connected",
                                  "Whether discovery's last answer from the API was good (1)",
                                  labels=["cluster"])
    for row in s.discovery:
        connected.add_metric([row[0]], 1 if row[4] else 0)
    yield connected


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck scraper must not hold up the daemon's exit
    # socketserver's default backlog of 5 drops SYNs in a burst of connects
    # (each then waits a 1 s retransmit), even though each is handled at once.
    request_queue_size = 128

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("metrics: %d connections open, closing one from %s",
                      MAX_CONNECTIONS, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # An idle client timing out is routine, not a traceback on stderr.
        log.debug("metrics: connection from %s ended with an error", client_address,
                  exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT  # socket timeout for every read and write on the connection

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


class MetricsExporter:
    """The latest snapshot, the registry over it, and the HTTP server serving it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: MetricsSnapshot | Callable[[], MetricsSnapshot] = MetricsSnapshot()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self.latest))
        self.bind: Bind | None = None
        self._access = Access()
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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
        server_class = _Server6 if bind.is_ipv6 else _Server
        try:
            app = guard(make_wsgi_app(self.registry), self.access)
            httpd = make_server(bind.host, bind.port, app, server_class, _QuietHandler)
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
