"""The Prometheus side of the daemon's metrics: the collector over the latest
snapshot and the HTTP server. Imported when metrics are first served or
scraped (daemon/metrics.py), not at start: prometheus_client brings http.server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config.model import Bind
from .metrics import IDLE_TIMEOUT, MAX_CONNECTIONS, MetricsSnapshot, log


def registry(latest: Callable[[], MetricsSnapshot], more: list[Collector]) -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=False)
    made.register(SnapshotCollector(latest))
    for collector in more:
        made.register(collector)
    return made


def wsgi_app(of: CollectorRegistry) -> Callable[..., Any]:
    return make_wsgi_app(of)


def listen(bind: Bind, app: Callable[..., Any]) -> WSGIServer:
    server_class = _Server6 if bind.is_ipv6 else _Server
    return make_server(bind.host, bind.port, app, server_class, _QuietHandler)


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
