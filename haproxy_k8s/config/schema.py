"""Turn the merged raw config into the model, naming file and key in every error.

Pure: no I/O. This module knows the tables and their keys; the value parsers behind each
key (and the whitelists that keep drop-ins from smuggling directives into haproxy.cfg) are
in values.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from ..errors import ConfigError
from ..vip.model import VipSettings
from . import sni
from .binds import check_bind_conflicts
from .memo import CLUSTERS
from .model import (
    Balance,
    CheckKind,
    Cluster,
    ClusterSettings,
    Config,
    HaproxySettings,
    MetricsSettings,
    Node,
    StatsSettings,
    WatchSettings,
)
from .schema_discovery import DISCOVERY_KEYS, discovery_fields
from .values import (
    _CLUSTER_NAME,
    _DOTTED_NAME,
    _MAX_INT,
    _NAME_RULE,
    _address,
    _binary,
    _binds,
    _boolean,
    _check_path,
    _cidrs,
    _did_you_mean,
    _duration,
    _hostnames,
    _integer,
    _Invalid,
    _optional_abs_path,
    _optional_bind,
    _optional_name,
    _port,
    _show,
    _state_dir,
    _string,
    _unix_name,
)

# Names other modules import from here since before values.py existed.
from .values import dotted_key as dotted_key
from .values import file_for as _file_for
from .values import is_valid_name as is_valid_name
from .values import parse_duration as parse_duration

KeyPath = tuple[str, ...]
Provenance = Mapping[KeyPath, str]
T = TypeVar("T")
_E = TypeVar("_E", bound=StrEnum)
Parser = Callable[[Any], Any]

# Where "no clusters configured" points when no file mentions `clusters` at all.
DROPIN_DIR_HINT = "conf.d/"


# Enumerated settings (balance, check): the options are the model's enums.
def _choice(kind: type[_E]) -> Callable[[Any], _E]:
    # Plain strings, so a message shows 'leastconn' and not the member's repr.
    options = [str(member) for member in kind]

    def parse(value: Any) -> _E:
        text = _string(value)
        if text not in options:
            raise _Invalid(
                f"expected one of {', '.join(options)}; got {_show(text)}"
                + _did_you_mean(text, options)
            )
        return kind(text)

    return parse


# --- the key sets: TOML key -> (model field, parser) -------------------------

_CLUSTER_SETTINGS: dict[str, tuple[str, Parser]] = {
    "balance": ("balance", _choice(Balance)),
    "check": ("check", _choice(CheckKind)),
    "check_path": ("check_path", _check_path),
    "check_interval": ("check_interval_ms", _duration()),
    "fast_interval": ("fast_interval_ms", _duration()),
    "down_interval": ("down_interval_ms", _duration()),
    "check_timeout": ("check_timeout_ms", _duration()),
    "connect_timeout": ("connect_timeout_ms", _duration()),
    "client_timeout": ("client_timeout_ms", _duration()),
    "server_timeout": ("server_timeout_ms", _duration()),
    "client_fin_timeout": ("client_fin_timeout_ms", _duration()),
    "server_fin_timeout": ("server_fin_timeout_ms", _duration()),
    # 0 is meaningful for these two: no slow start, cut drained sessions at once.
    "slowstart": ("slowstart_ms", _duration(allow_zero=True)),
    "error_limit": ("error_limit", _integer(0, 100)),
    "drain_grace": ("drain_grace_ms", _duration(allow_zero=True)),
    "fall": ("fall", _integer(1, 1000)),
    "rise": ("rise", _integer(1, 1000)),
    "retries": ("retries", _integer(0, 100)),
    "redispatch": ("redispatch", _boolean),
    "tcpka": ("tcpka", _boolean),
    "tcpka_idle": ("tcpka_idle_ms", _duration()),
    "tcpka_interval": ("tcpka_interval_ms", _duration()),
    "tcpka_count": ("tcpka_count", _integer(1, 100)),
    "shutdown_sessions_on_down": ("shutdown_sessions_on_down", _boolean),
    "ca_file": ("ca_file", _optional_abs_path),
    "client_cert": ("client_cert", _optional_abs_path),
    "fail_open": ("fail_open", _boolean),
    "sni_inspect_delay": ("sni_inspect_delay_ms", _duration()),
}

_HAPROXY: dict[str, tuple[str, Parser]] = {
    "binary": ("binary", _binary),
    "state_dir": ("state_dir", _state_dir),
    "user": ("user", _unix_name),
    "group": ("group", _unix_name),
    "hard_stop_after": ("hard_stop_after_ms", _duration()),
    "mworker_max_reloads": ("mworker_max_reloads", _integer(1, _MAX_INT)),
    "maxconn": ("maxconn", _integer(0, _MAX_INT)),
    "server_state": ("server_state", _boolean),
    "max_spread_checks": ("max_spread_checks_ms", _duration()),
}

_WATCH: dict[str, tuple[str, Parser]] = {
    "debounce": ("debounce_ms", _duration()),
    "max_wait": ("max_wait_ms", _duration()),
    "settle": ("settle_ms", _duration(allow_zero=True)),
    "hold_down": ("hold_down_ms", _duration(allow_zero=True)),
}

_STATS_KEYS = frozenset({"bind", "allow", "user", "password_file"})
_NODE_KEYS = frozenset({"address", "port", "weight", "backup", "enabled"})

#: Every key the schema knows, by table ("" is the top level, "cluster" a
#: `[clusters.NAME]` table, "node" a `[clusters.NAME.nodes.NODE]` table).
SECTION_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"haproxy", "defaults", "stats", "metrics", "watch", "clusters", "vip"}),
    "haproxy": frozenset(_HAPROXY),
    "defaults": frozenset(_CLUSTER_SETTINGS),
    "stats": _STATS_KEYS,
    "metrics": _STATS_KEYS,
    "watch": frozenset(_WATCH),
    "cluster": frozenset(_CLUSTER_SETTINGS) | {"bind", "nodes", "discovery", "sni",
                                              "sni_default"},
    "node": _NODE_KEYS,
    "discovery": DISCOVERY_KEYS,
}


# --- walking the raw tree ------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """One raw table and its key path: every check reports through it."""

    data: Mapping[str, Any]
    path: KeyPath
    prov: Provenance

    @property
    def file(self) -> str | None:
        return _file_for(self.path, self.prov)

    @property
    def name(self) -> str:
        return self.path[-1]

    def error(self, message: str, key: str | None = None) -> ConfigError:
        path = self.path if key is None else (*self.path, key)
        return ConfigError(message, file=_file_for(path, self.prov), key=dotted_key(path))

    def check_keys(self, section: str) -> None:
        known = SECTION_KEYS[section]
        for key in self.data:
            if key not in known:
                raise self.error(f"unknown key {key!r}" + _did_you_mean(key, known), key)

    def table(self, key: str) -> _Section:
        """The sub-table `key` (empty when absent)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"expected a table, got {_show(value)}", key)
        return _Section(value, (*self.path, key), self.prov)

    def tables(self) -> list[_Section]:
        """Every sub-table, sorted by name (clusters, nodes)."""
        return [self.table(key) for key in sorted(self.data)]

    def get(self, key: str, parser: Callable[[Any], T], default: T) -> T:
        return self.parse(key, parser) if key in self.data else default

    def require(self, key: str, parser: Callable[[Any], T]) -> T:
        if key not in self.data:
            raise self.error("missing (required)", key)
        return self.parse(key, parser)

    def parse(self, key: str, parser: Callable[[Any], T]) -> T:
        try:
            return parser(self.data[key])
        except _Invalid as e:
            raise self.error(str(e), key) from None

    def fields(self, spec: Mapping[str, tuple[str, Parser]]) -> dict[str, Any]:
        """Model field -> parsed value for every key of `spec` present here."""
        return {field: self.parse(key, parser)
                for key, (field, parser) in spec.items() if key in self.data}


# --- sections --------------------------------------------------------------------


def build_config(raw: Mapping[str, Any], provenance: Provenance) -> Config:
    """Validate the merged raw config into a `Config`; raise `ConfigError` otherwise."""
    root = _Section(raw, (), provenance)
    root.check_keys("")
    defaults = CLUSTERS.same_defaults(_defaults(root.table("defaults")))
    config = Config(
        haproxy=_haproxy(root.table("haproxy")),
        defaults=defaults,
        stats=_stats(root.table("stats")),
        metrics=_metrics(root.table("metrics")),
        watch=_watch(root.table("watch")),
        clusters=_clusters(root.table("clusters"), defaults),
        vip=_vip(root.table("vip")),
    )
    check_bind_conflicts(config, provenance)
    sni.check_shared_binds(config, provenance)
    return dataclasses.replace(config, bind_files=_bind_files(config, provenance))


def _bind_files(config: Config, prov: Provenance) -> dict[str, str]:
    paths = [("stats", "bind"), *(("clusters", c.name, "bind") for c in config.clusters)]
    return {dotted_key(path): file for path in paths
            if (file := prov.get(path)) is not None}


def _vip(section: _Section) -> VipSettings | None:
    # Imported here: vip.schema builds on this module's parsers.
    from ..vip.schema import build_vip

    return build_vip(section)


def _haproxy(section: _Section) -> HaproxySettings:
    section.check_keys("haproxy")
    return dataclasses.replace(HaproxySettings(), **section.fields(_HAPROXY))


def _defaults(section: _Section) -> ClusterSettings:
    section.check_keys("defaults")
    return dataclasses.replace(ClusterSettings(), **section.fields(_CLUSTER_SETTINGS))


_Guarded = TypeVar("_Guarded", StatsSettings, MetricsSettings)


def _guarded(section: _Section, base: _Guarded) -> _Guarded:
    """[stats] and [metrics]: a bind, who may connect, and optional basic auth."""
    section.check_keys(section.name)
    guarded = dataclasses.replace(
        base,
        bind=section.get("bind", _optional_bind, base.bind),
        allow=section.get("allow", _cidrs, base.allow),
        user=section.get("user", _optional_name, base.user),
        password_file=section.get("password_file", _optional_abs_path, base.password_file),
    )
    # Half of basic auth is a mistake either way: an open page or a useless file.
    if guarded.user and not guarded.password_file:
        raise section.error("needs password_file as well", "user")
    if guarded.password_file and not guarded.user:
        raise section.error("needs user as well", "password_file")
    return guarded


def _stats(section: _Section) -> StatsSettings:
    return _guarded(section, StatsSettings())


def _metrics(section: _Section) -> MetricsSettings:
    return _guarded(section, MetricsSettings())


def _watch(section: _Section) -> WatchSettings:
    section.check_keys("watch")
    watch = dataclasses.replace(WatchSettings(), **section.fields(_WATCH))
    if watch.max_wait_ms < watch.debounce_ms:
        key = "max_wait" if "max_wait" in section.data else "debounce"
        raise section.error("max_wait must not be shorter than debounce", key)

    return watch


def _clusters(section: _Section, defaults: ClusterSettings) -> tuple[Cluster, ...]:
    tables = _named_tables(section, "cluster")
    clusters = CLUSTERS.build_all([(t.name, t.data) for t in tables], defaults,
                                  lambda i: _cluster(tables[i], defaults),
                                  lambda i, old: _rebased(tables[i], defaults, old))
    if not clusters:
        raise ConfigError(
            "no clusters configured (add a [clusters.NAME] table with nodes in a drop-in)",
            file=section.file or DROPIN_DIR_HINT,
            key="clusters",
        )
    return clusters


def _named_tables(section: _Section, kind: str) -> list[_Section]:
    """The sub-tables of `section`, sorted, each name checked before its contents."""
    pattern = _CLUSTER_NAME if kind == "cluster" else _DOTTED_NAME
    rule = _NAME_RULE if kind == "cluster" else _NAME_RULE + ", dots between labels"
    for name in sorted(section.data):
        if len(name) > 253 or not pattern.fullmatch(name):
            raise section.error(f"{kind} name {name!r} is invalid ({rule})", name)
    return section.tables()


def _cluster(section: _Section, defaults: ClusterSettings) -> Cluster:
    section.check_keys("cluster")
    settings = _settings(section, defaults)
    return Cluster(
        name=section.name,
        binds=section.require("bind", _binds),
        nodes=_nodes(section),
        settings=settings,
        **discovery_fields(section),  # after _nodes: every node is valid by then
        sni=section.get("sni", _hostnames, ()),
        sni_default=section.get("sni_default", _boolean, False),
    )


def _settings(cluster: _Section, defaults: ClusterSettings) -> ClusterSettings:
    # Precedence: ClusterSettings defaults < [defaults] < the cluster's own keys.
    own = cluster.fields(_CLUSTER_SETTINGS)
    settings = dataclasses.replace(defaults, **own) if own else defaults
    _check_combination(cluster, settings)
    return settings


def _rebased(section: _Section, defaults: ClusterSettings, previous: Cluster) -> Cluster:
    """`previous` (built from this same table) under changed [defaults]."""
    return dataclasses.replace(previous, settings=_settings(section, defaults))


def _check_combination(section: _Section, settings: ClusterSettings) -> None:
    # A connect failure would mark the node DOWN while that very client's
    # session is still attached to it, and shutdown-sessions would kill it.
    if settings.shutdown_sessions_on_down and settings.error_limit:
        key = "shutdown_sessions_on_down" if "shutdown_sessions_on_down" in section.data \
            else "error_limit" if "error_limit" in section.data else None
        raise section.error("shutdown_sessions_on_down = true needs error_limit = 0: a node "
                            "marked DOWN by a failed connect would cut that client too", key)


def _nodes(cluster: _Section) -> tuple[Node, ...]:
    if "nodes" not in cluster.data:
        raise cluster.error("cluster has no nodes (add [clusters.NAME.nodes.NODE] tables)")
    section = cluster.table("nodes")
    tables = _named_tables(section, "node")
    nodes = tuple(node for node in map(_node, tables) if node is not None)
    if not nodes:
        what = "has every node disabled" if tables else "has no nodes"
        raise section.error(f"cluster {cluster.name!r} {what}; it needs at least one")
    return nodes


_NODE_DEFAULTS = Node(name="", address="")


def _node(section: _Section) -> Node | None:
    """The node, or None when `enabled = false`."""
    section.check_keys("node")
    # Every key is checked even on a disabled node: a typo should surface now,
    # not when the node is enabled again.
    address = section.get("address", _address, None)
    port = section.get("port", _port, _NODE_DEFAULTS.port)
    weight = section.get("weight", _integer(0, 256), _NODE_DEFAULTS.weight)
    backup = section.get("backup", _boolean, _NODE_DEFAULTS.backup)
    if not section.get("enabled", _boolean, _NODE_DEFAULTS.enabled):
        # A drop-in that only says `enabled = false` must keep working after the
        # node's own file is deleted, so a disabled node needs no address.
        return None
    if address is None:
        raise section.error("missing (required)", "address")
    return Node(section.name, address, port=port, weight=weight, backup=backup)
