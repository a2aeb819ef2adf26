"""The desired state: immutable dataclasses, built and validated by `schema`.

Everything here is plain data with no side effects, so the renderer and the
planner can be tested on values alone. Durations are kept in milliseconds.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..vip.model import VipSettings

# Re-exported: they live in names.py, so `status` can use them without the model.
from .names import (
    BACKEND_PREFIX as BACKEND_PREFIX,
)
from .names import (
    DEFAULT_CONFIG_DIR as DEFAULT_CONFIG_DIR,
)
from .names import (
    DEFAULT_STATE_DIR as DEFAULT_STATE_DIR,
)
from .names import (
    FAILOPEN_PREFIX as FAILOPEN_PREFIX,
)
from .names import (
    backend_name as backend_name,
)
from .names import (
    cluster_of_backend as cluster_of_backend,
)
from .names import (
    cluster_of_failopen as cluster_of_failopen,
)
from .names import (
    failopen_backend_name as failopen_backend_name,
)
from .names import (
    failopen_server_name as failopen_server_name,
)
from .names import (
    is_failopen_server as is_failopen_server,
)
from .names import (
    is_node_server as is_node_server,
)


def cluster_backends(cluster: Cluster) -> tuple[str, ...]:
    """Every backend that holds `cluster`'s servers: its own, and its fail-open
    backend if it has one."""
    own = backend_name(cluster.name)
    return (own, cluster.failopen_backend) if cluster.failopen_twin_backend else (own,)


# StrEnum: members are their strings, so templates, JSON and comparisons with
# plain strings see exactly what they saw before the enums.


class CheckKind(StrEnum):
    """How a node is health-checked (the template spells out each kind)."""

    TCP = "tcp"
    TLS = "tls"
    HTTPS = "https"

    @property
    def uses_tls(self) -> bool:
        return self is not CheckKind.TCP


class Balance(StrEnum):
    ROUNDROBIN = "roundrobin"
    LEASTCONN = "leastconn"
    SOURCE = "source"

    @property
    def is_dynamic(self) -> bool:
        """Whether servers can be added at runtime (HAProxy refuses it for `source`)."""
        return self in (Balance.ROUNDROBIN, Balance.LEASTCONN)


class AdminState(StrEnum):
    """An operator's say over a node, as `set server … state` spells it."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


def server_id(cluster: str, node: str) -> str:
    """`be_<cluster>/<node>`: how the runtime API names a node's server."""
    return f"{backend_name(cluster)}/{node}"


@dataclass(frozen=True, order=True)
class Bind:
    """An `address:port` the balancer listens on (`[v6]:port` for IPv6)."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    @property
    def haproxy(self) -> str:
        """The form HAProxy's `bind` line takes (`ipv6@` keeps v6 unambiguous)."""
        return f"ipv6@{self.host}:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    def conflicts_with(self, other: Bind) -> bool:
        """Whether both would try to own the same socket (wildcards included)."""
        if self.port != other.port:
            return False
        if self.host == other.host:
            return True
        wildcards = {"0.0.0.0", "::"}
        return self.host in wildcards or other.host in wildcards


@dataclass(frozen=True)
class HaproxySettings:
    binary: str = "haproxy"
    state_dir: str = DEFAULT_STATE_DIR
    user: str = "haproxy"
    group: str = "haproxy"
    # Old workers holding long apiserver watches are stopped after this long.
    hard_stop_after_ms: int = 30 * 60_000
    # A worker that survived this many reloads is killed (bounds old workers).
    mworker_max_reloads: int = 50
    # 0: HAProxy derives it from the open-files limit (LimitNOFILE under systemd).
    maxconn: int = 0
    # Carry health and admin state over reloads with a server-state file.
    server_state: bool = True
    # `max-spread-checks`: bounds when a node added at runtime gets its first
    # check (and how long the first checks after a start are spread over).
    max_spread_checks_ms: int = 50


@dataclass(frozen=True)
class ClusterSettings:
    """Settings every cluster inherits from `[defaults]` and may override."""

    balance: Balance = Balance.LEASTCONN
    check: CheckKind = CheckKind.HTTPS
    check_path: str = "/readyz"
    check_interval_ms: int = 2_000
    fast_interval_ms: int = 500
    down_interval_ms: int = 5_000
    # How long one check may take once connected (TLS handshake and /readyz reply
    # included); connecting is bounded by min(connect_timeout, check_interval).
    check_timeout_ms: int = 5_000
    fall: int = 3
    rise: int = 2
    connect_timeout_ms: int = 10_000
    retries: int = 3
    redispatch: bool = True
    client_timeout_ms: int = 3_600_000
    server_timeout_ms: int = 3_600_000
    client_fin_timeout_ms: int = 30_000
    server_fin_timeout_ms: int = 30_000
    tcpka: bool = True
    # Keepalive probing on both sides: a peer that vanished (host down, cable
    # cut) is noticed after idle + interval * count instead of the kernel's 2 h.
    tcpka_idle_ms: int = 30_000
    tcpka_interval_ms: int = 10_000
    tcpka_count: int = 3
    slowstart_ms: int = 30_000
    # Off by default: HAProxy also kills sessions still connecting to the node
    # when it is marked DOWN, which costs new clients their connection (seen
    # on 2.6 under load), and a kube-apiserver shutting down gracefully closes
    # its own connections. Keepalive probing catches hosts that vanished.
    shutdown_sessions_on_down: bool = False
    # Consecutive failed connects by real clients that mark a node DOWN at once
    # (`observe layer4`), before its health checks notice; 0 turns this off.
    error_limit: int = 2
    ca_file: str | None = None  # verify the apiserver certificate; else `verify none`
    client_cert: str | None = None  # PEM with certificate and key, for --anonymous-auth=false
    # How long a removed or drained node keeps its sessions before they are cut.
    drain_grace_ms: int = 30_000
    # No node UP: spread new connections over the enabled nodes anyway (the
    # checks may be what is broken), as k3s and k0s do.
    fail_open: bool = True
    # On a bind shared by several clusters: how long to wait for a ClientHello.
    sni_inspect_delay_ms: int = 5_000


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    port: int = 6443
    weight: int = 100
    backup: bool = False
    enabled: bool = True
    # Where the node came from: "static" (a drop-in) or "kubernetes" (discovery).
    # Not compared: the same server found another way is no change to HAProxy.
    source: str = field(default="static", compare=False)

    @functools.cached_property
    def is_ip(self) -> bool:
        # Kept: each render asks twice per node, and parsing 6,000 addresses
        # was most of rendering 1,000 clusters.
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            return False
        return True

    @property
    def haproxy_addr(self) -> str:
        """`address:port` for a `server` line (IPv6 literals need no brackets there)."""
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Discovery:
    """`[clusters.NAME.discovery]`: find apiservers in the EndpointSlices of a Service."""

    kubeconfig: str
    namespace: str = "default"
    service: str = "kubernetes"
    port_name: str = "https"


@dataclass(frozen=True)
class Cluster:
    name: str
    binds: tuple[Bind, ...]
    nodes: tuple[Node, ...]  # sorted by name; disabled nodes are dropped by `schema`
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    # Discovery changes what the discovery source watches, never haproxy.cfg by
    # itself: kept out of the comparison, so the planner sees no reload for it.
    discovery: Discovery | None = field(default=None, compare=False)
    # Nodes a drop-in disabled (`enabled = false`): their names, and the
    # address:port of those that name one. Discovery keeps them out.
    disabled_names: frozenset[str] = field(default=frozenset(), compare=False)
    disabled_addresses: frozenset[tuple[str, int]] = field(default=frozenset(), compare=False)
    # TLS server names routed to this cluster on a bind it shares with others:
    # lowercase, exact or "*.parent" (one label); see haproxy/sni.py.
    sni: tuple[str, ...] = ()
    sni_default: bool = False  # takes clients with no or an unknown SNI on shared binds

    @property
    def backend(self) -> str:
        return backend_name(self.name)

    @property
    def failopen_backend(self) -> str:
        return failopen_backend_name(self.name)

    @property
    def frontend(self) -> str:
        return f"fe_{self.name}"

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def failopen_backups(self) -> bool:
        """Fail open through backup twins in the cluster's own backend.

        HAProxy serves from backup servers only while no other server is UP, and
        from all of them with `option allbackups`: that is fail-open, with no
        backend of its own and no routing rule (at 1,000 clusters, 1,000
        proxies fewer for every `haproxy -c` and reload to build). A cluster
        with backup nodes of its own cannot: their twins and theirs would serve
        together. It keeps a twin backend (`failopen_twin_backend`)."""
        return self.settings.fail_open and not any(n.backup for n in self.nodes)

    @property
    def failopen_twin_backend(self) -> bool:
        """Fail open through the `fo_NAME` backend: `fail_open` with backup nodes."""
        return self.settings.fail_open and not self.failopen_backups

    def server_ids(self, node: str) -> tuple[str, ...]:
        """Every server that stands for `node`: its own, and its fail-open twin if any."""
        own = server_id(self.name, node)
        if self.failopen_backups:
            return own, f"{self.backend}/{failopen_server_name(node)}"
        if self.settings.fail_open:
            return own, f"{self.failopen_backend}/{node}"
        return (own,)


@dataclass(frozen=True)
class StatsSettings:
    bind: Bind | None = Bind("127.0.0.1", 8404)
    allow: tuple[str, ...] = ("127.0.0.0/8",)  # CIDRs, normalised
    user: str | None = None  # basic auth, with the password from `password_file`
    password_file: str | None = None


@dataclass(frozen=True)
class MetricsSettings:
    """The daemon's own metrics endpoint: the same allowlist/auth model as stats."""

    bind: Bind | None = Bind("127.0.0.1", 9404)
    allow: tuple[str, ...] = ("127.0.0.0/8",)  # CIDRs, normalised
    user: str | None = None  # basic auth, with the password from `password_file`
    password_file: str | None = None


@dataclass(frozen=True)
class WatchSettings:
    debounce_ms: int = 200
    # Quiet time once every write is complete (files closed or renamed into
    # place): batches `cp a b c` without making a finished save wait `debounce`.
    settle_ms: int = 20
    # A constant stream of edits still applies after at most this long.
    max_wait_ms: int = 2_000
    # A change that removes a cluster or a bind, or empties a file, waits until
    # it held this long unchanged: a save in progress must not drop clients.
    hold_down_ms: int = 2_000


@dataclass(frozen=True)
class Config:
    haproxy: HaproxySettings = field(default_factory=HaproxySettings)
    defaults: ClusterSettings = field(default_factory=ClusterSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    clusters: tuple[Cluster, ...] = ()  # sorted by name
    # Which drop-in set each bind key (`clusters.NAME.bind`, `stats.bind`), for
    # errors found after the schema (a port another process holds). Not part
    # of the desired state: moving a bind to another file changes nothing.
    bind_files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    vip: VipSettings | None = None  # keepalived-driven virtual IP (vip/)

    def cluster(self, name: str) -> Cluster | None:
        return self._clusters_by_name.get(name)

    @functools.cached_property
    def _clusters_by_name(self) -> dict[str, Cluster]:
        # Made once per config: the planner and the hold-down ask for each of
        # 1,000 clusters, and a scan each time made an apply quadratic.
        return {c.name: c for c in self.clusters}
