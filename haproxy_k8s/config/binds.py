"""Which binds may coexist: no two listeners on one socket, unless clusters share it by SNI.

Pure; called by the schema once the whole config is built (moved out of schema.py when
SNI sharing made it longer).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from . import sni
from .model import Bind, Config
from .values import dotted_key
from .values import file_for as _file_for

KeyPath = tuple[str, ...]
Provenance = Mapping[KeyPath, str]


def check_bind_conflicts(config: Config, prov: Provenance) -> None:
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
            if bind.conflicts_with(other) and not sni.may_share(config, path, bind,
                                                                other_path, other):
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
        if bind == other and path[0] == other_path[0] == "clusters":
            where += sni.SHARE_HINT
    return ConfigError(
        f"{bind} conflicts with {other} {where}",
        file=_file_for(path, prov),
        key=dotted_key(path),
    )
