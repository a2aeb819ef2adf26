"""Render haproxy.cfg from the model with Jinja2.

Output is deterministic (clusters and nodes sorted, no timestamps), so an
unchanged directory renders the same bytes and never causes a reload.
"""

from __future__ import annotations

import functools
import hashlib
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

import jinja2

from ..config.model import Bind, Cluster, ClusterSettings, Config, Node, failopen_server_name
from ..config.sni import own_binds
from ..errors import RenderError
from . import sni
from .paths import StatePaths
from .secrets import USERLIST

TEMPLATE = "haproxy.cfg.j2"
CLUSTER_TEMPLATE = "cluster.cfg.j2"
SETTINGS_TEMPLATE = "settings.cfg.j2"

T = TypeVar("T")


def per_settings(make: Callable[[ClusterSettings], T]) -> Callable[[ClusterSettings], T]:
    """`make(settings)`, kept while the settings object lives.

    Clusters that inherit the same [defaults] share one settings object
    (config/schema.py): 1,000 clusters ask with one or a few. By identity, as
    hashing 40 fields per node would cost what the cache saves. A weak
    reference ties the entry to its object: it goes when the object goes (no
    later object can have its id meanwhile), so a soak of edits leaves no
    texts of configs long gone behind.
    """
    kept: dict[int, tuple[weakref.ref[ClusterSettings], T]] = {}

    def cached(settings: ClusterSettings) -> T:
        hit = kept.get(id(settings))
        if hit is not None and hit[0]() is settings:
            return hit[1]
        value = make(settings)
        key = id(settings)
        kept[key] = (weakref.ref(settings, lambda _ref: kept.pop(key, None)), value)
        return value

    return cached


def _template_dir() -> Path:
    """The installed copy inside the package, else the repository's templates/."""
    packaged = Path(str(resources.files("haproxy_k8s"))) / "templates"
    if (packaged / TEMPLATE).is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def fmt_duration(ms: int) -> str:
    """Milliseconds as the shortest exact HAProxy time string (`2s`, `1h`, `250ms`)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def server_params(settings: ClusterSettings, node: Node) -> str:
    """Every parameter of a `server` line, spelled out, for `add server`.

    Dynamic servers do not inherit `default-server`, so this is the
    `default-server` of the node's backend (server_defaults) and its own line's
    parameters (node_params): the template writes the same two.
    """
    return f"{server_defaults(settings)} {node_params(node)}"


@per_settings
def server_defaults(settings: ClusterSettings) -> str:
    """A server's parameters that depend on the settings alone: the
    `default-server` line of its backend's defaults section."""
    params = [
        "check",
        f"inter {fmt_duration(settings.check_interval_ms)}",
        f"fastinter {fmt_duration(settings.fast_interval_ms)}",
        f"downinter {fmt_duration(settings.down_interval_ms)}",
        f"fall {settings.fall}",
        f"rise {settings.rise}",
    ]
    if settings.slowstart_ms:
        params.append(f"slowstart {fmt_duration(settings.slowstart_ms)}")
    if settings.shutdown_sessions_on_down:
        params.append("on-marked-down shutdown-sessions")
    if settings.error_limit:
        # leastconn sends every new client to a dead node that still counts
        # as UP (it has the fewest connections); retries could all land
        # there. Real connect failures take it out before the checks do.
        params.append(f"observe layer4 error-limit {settings.error_limit} on-error mark-down")
    if settings.check.uses_tls:
        params.extend(_tls_check_params(settings))
    return " ".join(params)


def node_params(node: Node, *, backup: bool = True) -> str:
    """The parameters of a node's own `server` line, past its backend's
    `default-server`: its weight, `backup`, and how to start with a name
    that does not resolve."""
    params = [f"weight {node.weight}"]
    if backup and node.backup:
        params.append("backup")
    if not node.is_ip:
        # An unresolvable name must not stop HAProxy from starting: the server
        # starts in maintenance until the name resolves on a later reload.
        params.append("init-addr last,libc,none")
    return " ".join(params)


def failopen_server_params(node: Node) -> str:
    """A node in its cluster's fail-open backend: no checks, not a backup (all serve)."""
    return node_params(node, backup=False)


# A fail-open twin's maxconn: never reached, and not 0. `be_conn_free` of a
# backend is -1 while a server without maxconn (a node) takes clients and the
# twins' free slots while only twins do: /healthz tells the two apart by it.
TWIN_MAXCONN = 1_000_000


def failopen_twin_params(node: Node) -> str:
    """A node's fail-open twin among its cluster's own servers (Cluster.failopen_backups):
    a backup that `add server` leaves unchecked; the file says `no-check` too,
    past the backend's `default-server`."""
    return f"{node_params(node, backup=False)} backup maxconn {TWIN_MAXCONN}"


def _tls_check_params(settings: ClusterSettings) -> list[str]:
    # These apply to the check connection only: the server has no `ssl`, so
    # client traffic stays end-to-end TLS between kubectl and the apiserver.
    params = ["check-ssl"]
    if settings.ca_file:
        params.append(f"ca-file {settings.ca_file} verify required")
    else:
        params.append("verify none")
    if settings.client_cert:
        params.append(f"crt {settings.client_cert}")
    return params


@functools.cache
def _environment() -> jinja2.Environment:
    # One environment per process: it keeps the compiled template (compiling it
    # took 17 ms, most of an apply), and recompiles only if the file changes.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = fmt_duration
    env.globals["server_defaults"] = server_defaults
    env.globals["node_params"] = node_params
    env.globals["failopen_server_params"] = failopen_server_params
    env.globals["failopen_twin_params"] = failopen_twin_params
    env.globals["failopen_server_name"] = failopen_server_name
    return env


@dataclass(frozen=True)
class _Options:
    """The option lines of a cluster's frontend, backend and fail-open backend."""

    frontend: str
    backend: str
    failopen: str


@per_settings
def _options(settings: ClusterSettings) -> _Options:
    macros = _environment().get_template(SETTINGS_TEMPLATE).module
    return _Options(str(macros.frontend(settings)),  # type: ignore[attr-defined]
                    str(macros.backend(settings)),  # type: ignore[attr-defined]
                    str(macros.failopen(settings)))  # type: ignore[attr-defined]


# The defaults sections of the clusters whose option lines are [defaults]';
# others' are named after a hash of their lines (DefaultsSection.name).
SHARED_DEFAULTS = "k8s"


@dataclass(frozen=True)
class DefaultsSection:
    """Named `defaults` sections holding one set of option lines:
    `NAME_fe`, `NAME_be` and (for a fail-open backend) `NAME_fo`, which each
    cluster's frontend and backends name with `from`. Written once, not once
    per cluster: at 1,000 clusters the config has a quarter of the lines, and
    `haproxy -c` and a reload each parse it ~25 ms faster (HAProxy 2.6)."""

    name: str
    options: _Options
    fail_open: bool


@per_settings
def _own_defaults_name(settings: ClusterSettings) -> str:
    options = _options(settings)
    text = "\0".join((options.frontend, options.backend, options.failopen))
    # 64 bits: two sets of lines sharing a name (and so one set's lines) is
    # never to be met, with thousands of sets.
    return f"{SHARED_DEFAULTS}_{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"


def defaults_name(cluster: Cluster, config: Config) -> str:
    """The base name of the defaults sections `cluster` takes its options from:
    by its option lines, not its settings (a setting no option line shows, or
    `fail_open`, makes no section of its own)."""
    s = cluster.settings
    return SHARED_DEFAULTS if s is config.defaults or _options(s) == _options(config.defaults) \
        else _own_defaults_name(s)


def _defaults_sections(config: Config, names: Mapping[str, str]) -> list[DefaultsSection]:
    """One DefaultsSection per base name in `names` (by cluster name), in the
    clusters' order, with a fail-open section when any of its clusters has a
    fail-open backend."""
    sections: dict[str, DefaultsSection] = {}
    for cluster in config.clusters:
        name = names[cluster.name]
        kept = sections.get(name)
        if kept is None or (cluster.failopen_twin_backend and not kept.fail_open):
            sections[name] = DefaultsSection(name, _options(cluster.settings),
                                             cluster.failopen_twin_backend)
    return list(sections.values())


BlockKey = tuple[str, tuple[Bind, ...], tuple[Node, ...], bool, str]
# Each cluster's text as last rendered, by everything cluster.cfg.j2 reads:
# the cluster's name, own binds and nodes, of its settings `fail_open`, and its
# defaults sections' name. A [defaults] change (a timeout, a check interval)
# leaves every block as it was: it changes the defaults sections only.
# Replaced by every render with the clusters it rendered, so it never
# outgrows the config. The loop and the validation worker may render at
# once: a lost update only costs a render, never a wrong text.
_blocks: dict[BlockKey, str] = {}


class _ClusterBlocks:
    """The `cluster_block` of one render, reusing the last render's texts."""

    def __init__(self, template: jinja2.Template, shared: dict[Bind, sni.SharedFrontend],
                 names: Mapping[str, str]) -> None:
        self.template, self.shared, self.names = template, shared, names
        self.previous = _blocks
        self.now: dict[BlockKey, str] = {}

    def render(self, cluster: Cluster) -> str:
        binds = own_binds(cluster, self.shared)
        defaults = self.names[cluster.name]
        key = (cluster.name, binds, cluster.nodes, cluster.settings.fail_open, defaults)
        text = self.previous.get(key)
        if text is None:
            text = self.template.render(cluster=cluster, binds=binds, defaults=defaults)
        self.now[key] = text
        return text

    def done(self) -> None:
        global _blocks
        _blocks = self.now


def drops_privileges(config: Config) -> bool:
    """HAProxy can only switch user when started as root."""
    return os.geteuid() == 0 and bool(config.haproxy.user)


def render(config: Config, paths: StatePaths | None = None,
           *, drop_privileges: bool | None = None, promex: bool = True) -> str:
    """Render the full haproxy.cfg text for `config`.

    `promex` says whether this HAProxy has the Prometheus exporter (`haproxy -vv`).
    """
    return "".join(render_pieces(config, paths, drop_privileges=drop_privileges,
                                 promex=promex))


def render_pieces(config: Config, paths: StatePaths | None = None,
                  *, drop_privileges: bool | None = None, promex: bool = True
                  ) -> Iterator[str]:
    """render()'s text in pieces, as the template makes them: written to a file
    as they come, a 2 MB config (1,000 clusters) is never whole in memory."""
    paths = paths or StatePaths(Path(config.haproxy.state_dir))
    if drop_privileges is None:
        drop_privileges = drops_privileges(config)
    try:
        template = _environment().get_template(TEMPLATE)
        shared = sni.shared_frontends(config, paths)
        binds = {fe.bind: fe for fe in shared}
        names = {c.name: defaults_name(c, config) for c in config.clusters}
        blocks = _ClusterBlocks(_environment().get_template(CLUSTER_TEMPLATE), binds, names)
        yield from template.generate(
            shared=shared,
            named_defaults=_defaults_sections(config, names),
            cluster_block=blocks.render,
            config=config,
            paths=paths,
            drop_privileges=drop_privileges,
            promex=promex,
            stats_userlist=USERLIST,
        )
        blocks.done()
    except jinja2.TemplateError as e:
        raise RenderError(f"cannot render {TEMPLATE}: {e}") from e
