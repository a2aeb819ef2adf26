"""Turn the merged raw config into the model, naming file and key in every error.

Pure: no I/O. Every string that reaches haproxy.cfg (names, addresses, paths,
the check path) is matched against a whitelist here, so a drop-in cannot smuggle
a directive into the rendered config with a newline, a space, a quote or `#`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError
from ..vip.model import VipSettings
from .model import (
    Bind,
    Cluster,
    ClusterSettings,
    Config,
    HaproxySettings,
    MetricsSettings,
    Node,
    StatsSettings,
    WatchSettings,
)

KeyPath = tuple[str, ...]
Provenance = Mapping[KeyPath, str]
T = TypeVar("T")
Parser = Callable[[Any], Any]

# Where "no clusters configured" points when no file mentions `clusters` at all.
DROPIN_DIR_HINT = "conf.d/"


class _Invalid(ValueError):
    """A value is wrong; `_Section` knows the file and key and adds them."""


# --- showing keys and values ------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted_key(path: Iterable[str]) -> str:
    """`clusters.cluster-0.nodes.m4`, quoting odd parts TOML-style.

    A key may hold a newline or anything else; quoting keeps error messages on
    one line and lets the operator paste the key back into a drop-in.
    """
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in path)


def _show(value: Any) -> str:
    """A value as the operator wrote it (JSON-ish, escaped), cut short for a log line."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- value parsers: raw value -> model value, or _Invalid ---------------------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_show(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _integer(lo: int, hi: int, noun: str = "") -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        # bool is an int subclass: `fall = true` must not quietly mean 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_show(value)}")
        if not lo <= value <= hi:
            what = f"is not a {noun}" if noun else "is out of range"
            raise _Invalid(f"{_show(value)} {what} (expected {lo}..{hi})")
        return value

    return parse


# HAProxy parses counts into a C int.
_MAX_INT = 2**31 - 1
_port = _integer(1, 65535, "port")


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _string(value)
        if text not in options:
            raise _Invalid(
                f"expected one of {', '.join(options)}; got {_show(text)}"
                + _did_you_mean(text, options)
            )
        return text

    return parse


_DURATION = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# HAProxy keeps timeouts as a signed 32-bit count of milliseconds (~24.8 days).
_MAX_MS = 2**31 - 1


def _duration(allow_zero: bool = False) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            # A bare number is ambiguous (seconds? milliseconds?): make the unit explicit.
            raise _Invalid(f"a duration needs a unit: write '{value}s' or '{value}ms'")
        if not isinstance(value, str):
            raise _Invalid(f"expected a duration such as '2s' or '500ms', got {_show(value)}")
        match = _DURATION.fullmatch(value)
        if not match:
            raise _Invalid(f"{_show(value)} is not a duration (write '500ms', '2s', '1m', '1h')")
        ms = int(match[1]) * _UNIT_MS[match[2]]
        if ms == 0 and not allow_zero:
            raise _Invalid("must be longer than 0")
        if ms > _MAX_MS:
            raise _Invalid(f"{value} is longer than HAProxy's limit of 24d")
        return ms

    return parse


# Paths are written into haproxy.cfg: keep to characters that never need quoting.
_PATH = re.compile(r"[A-Za-z0-9._/@+,=:-]{1,4096}")
_PATH_RULE = "letters, digits and ._-/@+,=: only"


def _abs_path(value: Any) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise _Invalid(f"expected an absolute path, got {_show(text)}")
    if not _PATH.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a safe path ({_PATH_RULE})")
    return text


def _optional_abs_path(value: Any) -> str | None:
    # JSON can say null; TOML has no null, so "" means "not set" too.
    return None if value is None or value == "" else _abs_path(value)


# Sockets live under state_dir and unix socket paths are limited to 108 bytes.
_MAX_STATE_DIR = 80


def _state_dir(value: Any) -> str:
    path = _abs_path(value)
    if len(path) > _MAX_STATE_DIR:
        raise _Invalid(
            f"is longer than {_MAX_STATE_DIR} characters: the sockets under it "
            "would exceed the 108-byte limit of unix socket paths"
        )
    return path


def _binary(value: Any) -> str:
    text = _string(value)
    if not _PATH.fullmatch(text) or text.startswith("-"):
        raise _Invalid(f"{_show(text)} is not a safe program name or path ({_PATH_RULE})")
    if "/" in text and not text.startswith("/"):
        # A relative path would depend on the daemon's working directory.
        raise _Invalid(f"expected a name on PATH or an absolute path, got {_show(text)}")
    return text


_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _unix_name(value: Any) -> str:
    """A user or group name, or "" (do not drop privileges)."""
    text = _string(value)
    if text and not _UNIX_NAME.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a user or group name")
    return text


def _optional_name(value: Any) -> str | None:
    return _unix_name(value) or None


# RFC 3986 path/query characters without quotes and `$` (HAProxy quoting and
# environment expansion); `%` only as a %XX escape.
_CHECK_PATH = re.compile(r"/(?:[A-Za-z0-9\-._~!&()*+,;=:@/?]|%[0-9A-Fa-f]{2}){0,1023}")


def _check_path(value: Any) -> str:
    text = _string(value)
    if not _CHECK_PATH.fullmatch(text):
        raise _Invalid(
            f"{_show(text)} is not a safe URI path (it must start with '/' and hold no "
            "spaces, quotes, '#', '$', '\\' or control characters; escape others as %XX)"
        )
    return text


def _ip_literal(text: str) -> str | None:
    """The normalised IP address, or None. Zone ids (`fe80::1%eth0`) are refused:
    `ipaddress` accepts any text after `%`, and that text would reach haproxy.cfg."""
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_CLUSTER_NAME = re.compile(_LABEL)
_DOTTED_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAME_RULE = "lowercase letters, digits and '-', 1-63 characters, starting and ending alphanumeric"


def _dns_name(text: str) -> bool:
    # Length first: it bounds the regex's work on hostile input.
    return len(text) <= 253 and _DOTTED_NAME.fullmatch(text) is not None


def _address(value: Any) -> str:
    text = _string(value)
    ip = _ip_literal(text)
    if ip is not None:
        return ip
    host = text.lower()  # DNS is case-insensitive; one spelling keeps plans stable
    # An all-numeric last label would be a mistyped IPv4 address (`10.0.0.256`).
    if _dns_name(host) and not host.rsplit(".", 1)[-1].isdigit():
        return host
    raise _Invalid(f"{_show(text)} is not an IP address or a DNS name")


def _bind(value: Any) -> Bind:
    text = _string(value)
    host, sep, port_text = text.rpartition(":")
    example = "(e.g. '192.168.8.1:6443', '[::1]:6443' or '*:6443')"
    if not sep:
        raise _Invalid(f"{_show(text)} is not address:port {example}")
    if host in ("", "*"):
        address: str | None = "0.0.0.0"
    elif host.startswith("[") and host.endswith("]"):
        address = _ip_literal(host[1:-1])
        address = address if address and ":" in address else None
    elif ":" in host:
        raise _Invalid(f"{_show(text)}: an IPv6 address needs brackets, as in '[::1]:6443'")
    else:
        address = _ip_literal(host)
        address = address if address and ":" not in address else None
    if address is None:
        raise _Invalid(f"{_show(text)}: the address must be an IP literal {example}")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"{_show(text)}: {_show(port_text)} is not a port (expected 1..65535)")
    return Bind(address, int(port_text))


def _optional_bind(value: Any) -> Bind | None:
    return None if value == "" else _bind(value)


def _binds(value: Any) -> tuple[Bind, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Invalid(f"expected an address:port string or a non-empty list, got {_show(value)}")
    return tuple(_bind(item) for item in items)


def _cidrs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of CIDRs, got {_show(value)}")
    if not value:
        raise _Invalid("an empty list locks everyone out; set stats.bind = \"\" to disable stats")
    return tuple(_cidr(item) for item in value)


def _cidr(value: Any) -> str:
    text = _string(value)
    try:
        if "%" in text:  # zone ids: see _ip_literal
            raise ValueError(text)
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise _Invalid(f"{_show(text)} is not a CIDR such as '127.0.0.0/8'") from None


# --- the key sets: TOML key -> (model field, parser) -------------------------

_CLUSTER_SETTINGS: dict[str, tuple[str, Parser]] = {
    "balance": ("balance", _choice("roundrobin", "leastconn", "source")),
    "check": ("check", _choice("tcp", "tls", "https")),
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
}

_WATCH: dict[str, tuple[str, Parser]] = {
    "debounce": ("debounce_ms", _duration()),
    "max_wait": ("max_wait_ms", _duration()),
    "settle": ("settle_ms", _duration(allow_zero=True)),
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
    "metrics": frozenset({"bind"}),
    "watch": frozenset(_WATCH),
    "cluster": frozenset(_CLUSTER_SETTINGS) | {"bind", "nodes"},
    "node": _NODE_KEYS,
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


def _file_for(path: KeyPath, prov: Provenance) -> str | None:
    """The file that set `path`, else the one that set its nearest enclosing table."""
    for end in range(len(path), 0, -1):
        file = prov.get(path[:end])
        if file is not None:
            return file
    return None


# --- sections --------------------------------------------------------------------


def build_config(raw: Mapping[str, Any], provenance: Provenance) -> Config:
    """Validate the merged raw config into a `Config`; raise `ConfigError` otherwise."""
    root = _Section(raw, (), provenance)
    root.check_keys("")
    defaults = _defaults(root.table("defaults"))
    config = Config(
        haproxy=_haproxy(root.table("haproxy")),
        defaults=defaults,
        stats=_stats(root.table("stats")),
        metrics=_metrics(root.table("metrics")),
        watch=_watch(root.table("watch")),
        clusters=_clusters(root.table("clusters"), defaults),
        vip=_vip(root.table("vip")),
    )
    _check_bind_conflicts(config, provenance)
    return config


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


def _stats(section: _Section) -> StatsSettings:
    section.check_keys("stats")
    base = StatsSettings()
    stats = StatsSettings(
        bind=section.get("bind", _optional_bind, base.bind),
        allow=section.get("allow", _cidrs, base.allow),
        user=section.get("user", _optional_name, base.user),
        password_file=section.get("password_file", _optional_abs_path, base.password_file),
    )
    # Half of basic auth is a mistake either way: an open page or a useless file.
    if stats.user and not stats.password_file:
        raise section.error("needs password_file as well", "user")
    if stats.password_file and not stats.user:
        raise section.error("needs user as well", "password_file")
    return stats


def _metrics(section: _Section) -> MetricsSettings:
    section.check_keys("metrics")
    return MetricsSettings(bind=section.get("bind", _optional_bind, MetricsSettings().bind))


def _watch(section: _Section) -> WatchSettings:
    section.check_keys("watch")
    watch = dataclasses.replace(WatchSettings(), **section.fields(_WATCH))
    if watch.max_wait_ms < watch.debounce_ms:
        key = "max_wait" if "max_wait" in section.data else "debounce"
        raise section.error("max_wait must not be shorter than debounce", key)

    return watch


def _clusters(section: _Section, defaults: ClusterSettings) -> tuple[Cluster, ...]:
    clusters = tuple(_cluster(table, defaults) for table in _named_tables(section, "cluster"))
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
    # Precedence: ClusterSettings defaults < [defaults] < the cluster's own keys.
    settings = dataclasses.replace(defaults, **section.fields(_CLUSTER_SETTINGS))
    _check_combination(section, settings)
    return Cluster(
        name=section.name,
        binds=section.require("bind", _binds),
        nodes=_nodes(section),
        settings=settings,
    )


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


def _check_bind_conflicts(config: Config, prov: Provenance) -> None:
    places: list[tuple[KeyPath, Bind]] = []
    if config.stats.bind:
        places.append((("stats", "bind"), config.stats.bind))
    if config.metrics.bind:
        places.append((("metrics", "bind"), config.metrics.bind))
    for cluster in config.clusters:
        places.extend((("clusters", cluster.name, "bind"), bind) for bind in cluster.binds)
    # Only binds on the same port can conflict: compare within a port, not all
    # pairs (1,000 clusters made the pairwise check the slowest part of the schema).
    by_port: dict[int, list[tuple[KeyPath, Bind]]] = {}
    for path, bind in places:
        earlier = by_port.setdefault(bind.port, [])
        for other_path, other in earlier:
            if bind.conflicts_with(other):
                raise _conflict(path, bind, other_path, other, prov)
        earlier.append((path, bind))


def _conflict(path: KeyPath, bind: Bind, other_path: KeyPath, other: Bind,
              prov: Provenance) -> ConfigError:
    # Report at a place the operator wrote. The exact path, not its table: a
    # default stats.bind is still a default when [stats] sets `allow`.
    if path not in prov:
        path, bind, other_path, other = other_path, other, path, bind
    if path == other_path:
        where = "in the same list"
    else:
        where = f"of {dotted_key(other_path)} ({prov.get(other_path, 'the default')})"
    return ConfigError(
        f"{bind} conflicts with {other} {where}",
        file=_file_for(path, prov),
        key=dotted_key(path),
    )


def parse_duration(text: str) -> int:
    """A duration string (`30s`, `2m`) in milliseconds; ValueError when invalid."""
    try:
        return _duration(allow_zero=True)(text)
    except _Invalid as e:
        raise ValueError(str(e)) from None


def is_valid_name(kind: str, name: str) -> bool:
    """Whether `name` is a valid cluster (kind "cluster") or node name."""
    pattern = _CLUSTER_NAME if kind == "cluster" else _DOTTED_NAME
    return bool(pattern.fullmatch(name)) and len(name) <= 253
