"""Frontends of binds shared by several clusters, and the SNI map each one routes by.

A shared bind becomes one frontend that waits (at most `sni_inspect_delay`) for the
TLS ClientHello and looks its server name up in a map file in the state dir:
`hostname backend` lines, the exact name first, then `*.` and the name without its
first label (so `*.example.com` matches `a.example.com`, not `a.b.example.com`).
TLS passes through untouched. The map is the only thing a hostname change alters,
so such a change goes to HAProxy through the runtime API (`add/set/del map`), and
the file is rewritten too so the next start or reload agrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Bind, Cluster, Config
from ..config.sni import shared_binds
from ..fileio import write_atomic
from .paths import StatePaths


def _slug(bind: Bind) -> str:
    """`127.0.8.1_6443`, `fd00--1_6443`: a bind as part of a proxy or file name."""
    return f"{bind.host.replace(':', '-')}_{bind.port}"


@dataclass(frozen=True)
class SharedFrontend:
    bind: Bind
    clusters: tuple[Cluster, ...]  # sorted by name
    map_path: Path

    @property
    def name(self) -> str:
        return f"fe_sni_{_slug(self.bind)}"

    @property
    def default(self) -> Cluster | None:
        return next((c for c in self.clusters if c.sni_default), None)

    @property
    def inspect_delay_ms(self) -> int:
        # One frontend serves them all: the most patient cluster's delay.
        return max(c.settings.sni_inspect_delay_ms for c in self.clusters)

    @property
    def failopen_clusters(self) -> tuple[Cluster, ...]:
        return tuple(c for c in self.clusters if c.failopen_twin_backend)

    def entries(self) -> dict[str, str]:
        """Hostname -> backend, as the map file says it."""
        return {name: c.backend for c in self.clusters for name in c.sni}


def shared_frontends(config: Config, paths: StatePaths) -> list[SharedFrontend]:
    return [SharedFrontend(bind, clusters, paths.root / f"sni-{_slug(bind)}.map")
            for bind, clusters in shared_binds(config).items()]


def map_text(entries: dict[str, str]) -> str:
    header = "# Rendered by haproxy-k8s: TLS server name -> backend. Do not edit.\n"
    return header + "".join(f"{name} {backend}\n" for name, backend in sorted(entries.items()))


def map_files(config: Config, paths: StatePaths) -> dict[Path, str]:
    """Every map file `config` needs, with its content."""
    return {fe.map_path: map_text(fe.entries()) for fe in shared_frontends(config, paths)}


def write_maps(files: Mapping[Path, str]) -> None:
    for path, text in files.items():
        write_atomic(path, text, mode=0o640)


def maps_current(files: Mapping[Path, str]) -> bool:
    """Whether every map file on disk already says what `files` says."""
    for path, text in files.items():
        try:
            if path.read_text() != text:
                return False
        except OSError:
            return False
    return True
