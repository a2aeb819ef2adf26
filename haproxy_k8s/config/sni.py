"""Several clusters on one bind, told apart by the TLS SNI their clients send.

Pure. A bind listed by two or more clusters is *shared*: each of them must name its
hostnames (`sni`), no hostname may belong to two of them, and at most one may take
the clients that send no or an unknown SNI (`sni_default`). A bind of one cluster
stays a plain frontend (no inspection delay), whatever its `sni` says.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from .model import Bind, Cluster, Config
from .values import dotted_key
from .values import file_for as _file_for

KeyPath = tuple[str, ...]


def shared_binds(config: Config) -> dict[Bind, tuple[Cluster, ...]]:
    """Every bind that two or more clusters list, with those clusters (sorted by name)."""
    users: dict[Bind, list[Cluster]] = {}
    for cluster in config.clusters:
        for bind in dict.fromkeys(cluster.binds):  # a bind listed twice is still one user
            users.setdefault(bind, []).append(cluster)
    return {bind: tuple(clusters) for bind, clusters in sorted(users.items())
            if len(clusters) > 1}


def own_binds(cluster: Cluster, shared: Mapping[Bind, object]) -> tuple[Bind, ...]:
    """The binds `cluster` has to itself (its own frontend listens there)."""
    return tuple(b for b in cluster.binds if b not in shared)


def may_share(config: Config, path: KeyPath, bind: Bind, other_path: KeyPath,
              other: Bind) -> bool:
    """Whether two equal binds of two clusters may coexist: both clusters name `sni`."""
    if bind != other or path == other_path or "clusters" not in (path[0], other_path[0]):
        return False
    if path[0] != other_path[0]:
        return False
    a, b = config.cluster(path[1]), config.cluster(other_path[1])
    return a is not None and b is not None and bool(a.sni) and bool(b.sni)


SHARE_HINT = " (clusters may share a bind only when each of them names its `sni`)"


def check_shared_binds(config: Config, prov: Mapping[KeyPath, str]) -> None:
    """Refuse overlaps on a shared bind, naming both places: a hostname twice, two defaults."""
    for bind, clusters in shared_binds(config).items():
        owners: dict[str, Cluster] = {}
        default: Cluster | None = None
        for cluster in clusters:
            for name in cluster.sni:
                first = owners.setdefault(name, cluster)
                if first is not cluster:
                    raise _overlap(cluster, first, "sni", f"hostname {name!r} on {bind} "
                                   "is already routed to another cluster by {other}", prov)
            if cluster.sni_default:
                if default is not None:
                    raise _overlap(cluster, default, "sni_default", f"{bind} already has a "
                                   "default cluster, set by {other}; at most one per bind", prov)
                default = cluster


def _overlap(cluster: Cluster, first: Cluster, key: str, message: str,
             prov: Mapping[KeyPath, str]) -> ConfigError:
    """An error at `cluster`'s key whose message names `first`'s key and file."""
    path, other = ("clusters", cluster.name, key), ("clusters", first.name, key)
    where = f"{dotted_key(other)} ({_file_for(other, prov) or 'unknown file'})"
    return ConfigError(message.format(other=where), file=_file_for(path, prov),
                       key=dotted_key(path))

