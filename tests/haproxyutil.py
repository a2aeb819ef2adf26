"""Run the real HAProxy on a rendered config, without the daemon, for focused tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from helpers import free_port

from haproxy_k8s.config.model import (
    Bind,
    Cluster,
    ClusterSettings,
    Config,
    HaproxySettings,
    MetricsSettings,
    Node,
    StatsSettings,
)
from haproxy_k8s.config.names import is_failopen_server
from haproxy_k8s.daemon.health import read_stats
from haproxy_k8s.daemon.states import node_state
from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.haproxy.master import HaproxyMaster
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.haproxy.render import render

BALANCER = "127.0.8.1"

# Checks fast enough that every state change shows within a second.
FAST_CHECKS = ClusterSettings(check_interval_ms=300, fast_interval_ms=200,
                              down_interval_ms=300, fall=2, rise=1, slowstart_ms=0)


def settings(**changes: object) -> ClusterSettings:
    """FAST_CHECKS with `changes`."""
    return dataclasses.replace(FAST_CHECKS, **changes)  # type: ignore[arg-type]


def cluster(name: str, nodes: list[StandIn], settings: ClusterSettings = FAST_CHECKS,
            ) -> Cluster:
    """A cluster on a free balancer port in front of `nodes`."""
    return Cluster(name, (Bind(BALANCER, free_port(BALANCER)),),
                   tuple(Node(n.name, n.host, n.port) for n in nodes), settings)


def config(binary: str, state_dir: Path, clusters: list[Cluster], *,
           stats: StatsSettings | None = None) -> Config:
    return Config(
        haproxy=HaproxySettings(binary=binary, state_dir=str(state_dir), server_state=False),
        stats=stats or StatsSettings(bind=None),
        metrics=MetricsSettings(bind=None),
        clusters=tuple(sorted(clusters, key=lambda c: c.name)),
    )


@contextmanager
def running(cfg: Config, env: Mapping[str, str] | None = None) -> Iterator[StatePaths]:
    """HAProxy (master and worker) on `cfg` until the block ends."""
    paths = StatePaths(Path(cfg.haproxy.state_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(render(cfg, paths, drop_privileges=False))
    master = HaproxyMaster(cfg.haproxy.binary, paths, env)
    try:
        master.start()
        yield paths
    finally:
        master.stop(grace=2.0)


def states(paths: StatePaths) -> dict[tuple[str, str], str]:
    """(backend, server) -> UP/DOWN/…, straight from the admin socket (nodes,
    not their fail-open twins)."""
    return {key: node_state(row) for key, row in read_stats(paths.admin_socket).items()
            if key[1] not in ("FRONTEND", "BACKEND") and not is_failopen_server(key[1])}
