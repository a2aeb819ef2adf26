"""The status document: one type, built by one function, for every reader.

The daemon writes it as status.json, derives systemd's STATUS= line and its
metrics from it; `haproxy-k8s status` builds the same document from HAProxy's
sockets and the saved file, and prints it as a table or JSON. The JSON shape
is a contract (DESIGN.md §1): add fields, never rename.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import parse_utc as parse_utc
from ..clock import utc_now as utc_now
from ..config.names import backend_name
from .states import STATES, StatRow, StatRows, admin_state, check_text, node_state, row_int

if TYPE_CHECKING:
    from ..config.model import Cluster, Config, Node

EXIT_OK, EXIT_DEGRADED, EXIT_CLUSTER_DOWN, EXIT_UNREACHABLE = 0, 1, 2, 3
HISTORY = 20  # apply outcomes kept in `daemon.history`

__all__ = ["STATES", "StatRow", "StatRows"]


# -- the document ----------------------------------------------------------------------
@dataclass
class NodeStatus:
    name: str
    address: str
    port: int | None
    state: str = "UNKNOWN"
    check: str = ""
    last_change_s: int | None = None
    sessions: int | None = None
    admin: str = "ready"
    # HAProxy's words for the last check ("Connection refused", "Internal
    # Server Error"): what an operator needs to read next to a DOWN.
    check_detail: str = ""
    # Deleted from the config, still in HAProxy draining its sessions: shown
    # as `DRAIN (removing)` until it is gone; not counted in up/total.
    removing: bool = False
    weight: int | None = None  # HAProxy's effective weight
    rate: int | None = None  # sessions per second over the last second
    source: str = "static"  # static (a drop-in) | kubernetes (discovery)
    origin: str = ""  # which drop-in(s) set it ("conf.d/10-c.toml"), or "discovery"

    @classmethod
    def of(cls, name: str, address: str, port: int | None, row: StatRow | None,
           removing: bool = False, source: str = "static", origin: str = "") -> NodeStatus:
        """A node as its `show stat` row (None: unknown) shows it."""
        if row is None:
            return cls(name, address, port, removing=removing, source=source, origin=origin)
        return cls(name, address, port, state=node_state(row), check=check_text(row),
                   last_change_s=row_int(row.get("lastchg")),
                   sessions=row_int(row.get("scur")), admin=admin_state(row),
                   check_detail=row.get("last_chk", ""), removing=removing,
                   weight=row_int(row.get("weight")), rate=row_int(row.get("rate")),
                   source=source, origin=origin)


@dataclass
class ClusterStatus:
    name: str
    bind: list[str]
    nodes: list[NodeStatus]
    sni: list[str] = field(default_factory=list)  # hostnames routed to it on shared binds
    fail_open: bool = False  # configured: serve from every enabled node while none is UP
    # Kubernetes discovery of this cluster (state, last_sync, resource_version,
    # last_error, counters); None when the cluster has none.
    discovery: dict[str, Any] | None = None

    # Computed once: a status is built whole and not changed after (the
    # daemon asks these of thousands of nodes on every status write).
    @functools.cached_property
    def up(self) -> int:
        return sum(1 for n in self.nodes if n.state == "UP" and not n.removing)

    @functools.cached_property
    def fail_open_active(self) -> bool:
        """No node UP, and HAProxy serves from the enabled (not drained or maint) ones."""
        return self.fail_open and self.up == 0 and any(
            n.admin == "ready" and n.state != "UNKNOWN" for n in self.nodes)

    @functools.cached_property
    def total(self) -> int:
        return sum(1 for n in self.nodes if not n.removing)

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        """Nodes by state, with a zero for every state."""
        counts = dict.fromkeys(STATES, 0)
        for node in self.nodes:
            counts[node.state] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bind": self.bind, "up": self.up, "total": self.total,
                # The fields are flat: a copy of each node's dict is what
                # asdict() gives, at a tenth of the cost for thousands of nodes.
                "nodes": [dict(vars(n)) for n in self.nodes], "sni": list(self.sni),
                "fail_open": self.fail_open, "fail_open_active": self.fail_open_active,
                "discovery": self.discovery}


@dataclass
class ApplyRecord:
    """One apply: when, what triggered it, what it did and why."""

    at: str
    reason: str  # the trigger: "start", "files changed", "control: reload", …
    action: str  # noop | start | reload | runtime | rollback | error
    ok: bool
    seconds: float
    plan: str = ""  # why this action: "structural change: clusters.c0.balance", …
    error: str | None = None


@dataclass
class DaemonStatus:
    pid: int | None = None
    running: bool = False
    version: str | None = None  # haproxy-k8s's own version (changes on a re-exec upgrade)
    started_at: str | None = None  # when this daemon image started (a re-exec moves it)
    generation: int | None = None
    applied_at: str | None = None
    last_error: dict[str, Any] | None = None
    applies: int = 0
    last_apply: ApplyRecord | None = None
    config_dir: str | None = None
    haproxy_restarts: int = 0
    config_errors: int = 0
    runtime_changes: int = 0
    history: list[ApplyRecord] = field(default_factory=list)  # oldest first
    # A change waiting out watch.hold_down: {"since", "apply_at", "reasons"}; None if none.
    held: dict[str, Any] | None = None
    # Writing the state dir failed (read-only, full disk): why, and when the
    # daemon tries again. None while it writes fine.
    state_dir_error: str | None = None
    retry_at: str | None = None
    state_dir_errors: int = 0
    written_at: str | None = None  # when this status.json was written
    stale_s: float | None = None  # `status`: how old a status.json the daemon no longer updates


@dataclass
class HaproxyStatus:
    pid: int | None = None
    version: str | None = None
    reloads: int | None = None
    failed_reloads: int = 0
    workers: list[int] = field(default_factory=list)
    reachable: bool = False
    prometheus_exporter: bool | None = None


@dataclass
class StatusDocument:
    daemon: DaemonStatus
    haproxy: HaproxyStatus
    clusters: list[ClusterStatus]
    # Sources that could not be read, each "name: why" ("admin socket: …").
    unreachable: list[str] = field(default_factory=list)
    # [vip]: VRRP role, addresses, fitness (vip/manager.py); None without [vip].
    vip: dict[str, Any] | None = None
    # Hashes of the rendered configs, to compare two balancers of a pair.
    config: dict[str, Any] | None = None

    def to_json(self, cluster_json: Callable[[ClusterStatus], dict[str, Any]] | None = None
                ) -> dict[str, Any]:
        """The document as JSON data, each cluster's from `cluster_json` when given."""
        of = cluster_json or ClusterStatus.to_json
        doc = {"daemon": asdict(self.daemon), "haproxy": asdict(self.haproxy),
               "clusters": [of(c) for c in self.clusters],
               "unreachable": list(self.unreachable)}
        doc.update({k: v for k, v in (("vip", self.vip), ("config", self.config)) if v})
        return doc

    def compact(self, cluster_text: Callable[[ClusterStatus], str], end: str = "\n") -> str:
        """Compact JSON text and `end`, each cluster's part given by `cluster_text`
        (the daemon's kept texts: ClusterCache.text_of), the rest encoded now.

        Put together by one join of small pieces and the clusters' part: each `+`
        of a megabyte (3,000 nodes) was a copy, and a fresh mmap to fault in.
        """
        pieces: list[str] = []
        for key, value in self.to_json(cluster_json=lambda c: {}).items():
            pieces += (",", _compact(key), ":")
            if key == "clusters":
                pieces += ("[", ",".join([cluster_text(c) for c in self.clusters]), "]")
            else:
                pieces.append(_compact(value))
        pieces[0] = "{"  # the first key's comma
        pieces += ("}", end)
        return "".join(pieces)

    def dumps(self, indent: int | None = 2) -> str:
        """The JSON text; `indent=None` is compact, and several times faster to
        write (json's C encoder) for the daemon's status.json of thousands of nodes."""
        data = self.to_json()
        if indent is None:
            return json.dumps(data, separators=(",", ":")) + "\n"
        return json.dumps(data, indent=indent) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusDocument:
        """Read a document back (status.json); unknown fields are ignored."""
        return cls(_daemon_from(data.get("daemon") or {}),
                   _known(HaproxyStatus, data.get("haproxy") or {}),
                   [_cluster_from(c) for c in data.get("clusters") or []],
                   [str(u) for u in data.get("unreachable") or []],
                   _mapping(data.get("vip")), _mapping(data.get("config")))


def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _known(kind: Any, data: Mapping[str, Any]) -> Any:
    names = _field_names(kind)
    return kind(**{k: v for k, v in data.items() if k in names})


@functools.cache
def _field_names(kind: Any) -> frozenset[str]:
    return frozenset(kind.__dataclass_fields__)


def _node_from(data: Mapping[str, Any]) -> NodeStatus:
    # Most nodes come from a daemon of this version, with every field and no other:
    # taken as they are, the table of 3,000 nodes reads its document a third faster.
    if "address" in data and "port" in data and _field_names(NodeStatus).issuperset(data):
        return NodeStatus(**data)
    node: NodeStatus = _known(NodeStatus, {"address": "", "port": None, **data})
    return node


def _daemon_from(data: Mapping[str, Any]) -> DaemonStatus:
    daemon: DaemonStatus = _known(DaemonStatus, data)
    last = data.get("last_apply")
    daemon.last_apply = _known(ApplyRecord, last) if isinstance(last, Mapping) and last else None
    daemon.history = [_known(ApplyRecord, r) for r in data.get("history") or []
                      if isinstance(r, Mapping)]
    return daemon


def _cluster_from(data: Mapping[str, Any]) -> ClusterStatus:
    discovery = data.get("discovery")
    return ClusterStatus(str(data.get("name", "")), [str(b) for b in data.get("bind") or []],
                         [_node_from(n) for n in data.get("nodes") or []],
                         [str(h) for h in data.get("sni") or []], bool(data.get("fail_open")),
                         dict(discovery) if isinstance(discovery, Mapping) else None)


# -- building it --------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeShape:
    name: str
    address: str
    port: int | None
    removing: bool = False
    source: str = "static"
    origin: str = ""


@dataclass(frozen=True)
class ClusterShape:
    """Which clusters and nodes to report, before HAProxy says how they are."""

    name: str
    bind: tuple[str, ...]
    nodes: tuple[NodeShape, ...]
    sni: tuple[str, ...] = ()
    fail_open: bool = False


def shape_of_config(config: Config, origin: Callable[[str, str], str] | None = None,
                    removals: Iterable[tuple[str, Node]] = ()) -> list[ClusterShape]:
    """The clusters and nodes of `config`, plus `removals` still draining out."""
    gone = removals_by_cluster(removals)
    return [cluster_shape(c, tuple(origin(c.name, n.name) if origin else "" for n in c.nodes),
                          gone.get(c.name, ())) for c in config.clusters]


def removals_by_cluster(removals: Iterable[tuple[str, Node]]) -> dict[str, tuple[Node, ...]]:
    gone: dict[str, list[Node]] = {}
    for cluster, node in removals:
        gone.setdefault(cluster, []).append(node)
    return {name: tuple(nodes) for name, nodes in gone.items()}


def cluster_shape(c: Cluster, origins: Sequence[str], gone: Iterable[Node] = ()
                  ) -> ClusterShape:
    """One cluster's shape: its nodes (`origins` in the same order), plus the
    `gone` ones still draining out."""
    nodes = [NodeShape(n.name, n.address, n.port, source=n.source, origin=origin)
             for n, origin in zip(c.nodes, origins, strict=True)]
    nodes += [NodeShape(n.name, n.address, n.port, removing=True, source=n.source)
              for n in gone if c.node(n.name) is None]
    return ClusterShape(c.name, tuple(str(b) for b in c.binds),
                        tuple(sorted(nodes, key=lambda shape: shape.name)), c.sni,
                        c.settings.fail_open)


def shape_of_saved(clusters: Iterable[ClusterStatus]) -> list[ClusterShape]:
    return [ClusterShape(c.name, tuple(c.bind),
                         tuple(NodeShape(n.name, n.address, n.port, n.removing, n.source,
                                         n.origin) for n in c.nodes), tuple(c.sni), c.fail_open)
            for c in clusters]


def cluster_statuses(shape: Sequence[ClusterShape], rows: StatRows | None,
                     discovery: Mapping[str, dict[str, Any]] | None = None
                     ) -> list[ClusterStatus]:
    """Each node's state from `show stat` rows; every node UNKNOWN without rows."""
    return [ClusterStatus(c.name, list(c.bind), [
        NodeStatus.of(n.name, n.address, n.port,
                      rows.get((backend_name(c.name), n.name)) if rows is not None else None,
                      n.removing, n.source, n.origin)
        for n in c.nodes], list(c.sni), c.fail_open, (discovery or {}).get(c.name))
        for c in shape]


def build(daemon: DaemonStatus, haproxy: HaproxyStatus, shape: Sequence[ClusterShape],
          rows: StatRows | None, unreachable: Sequence[str] = (),
          discovery: Mapping[str, dict[str, Any]] | None = None,
          cache: ClusterCache | None = None) -> StatusDocument:
    """The status document: the one function both the daemon and `status` call."""
    haproxy.reachable = rows is not None
    clusters = cache.statuses(shape, rows, discovery) if cache is not None \
        else cluster_statuses(shape, rows, discovery)
    return StatusDocument(daemon, haproxy, clusters, list(unreachable))


def _same_items(a: Sequence[ClusterShape], b: Sequence[ClusterShape]) -> bool:
    """The same objects in the same order (by identity: 1,000 shapes in 0.1 ms)."""
    return a is b or (len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True)))


@dataclass
class _Kept:
    shape: ClusterShape
    rows: tuple[StatRow | None, ...]
    discovery: dict[str, Any] | None
    status: ClusterStatus
    text: str | None = None  # its compact JSON, once asked for
    # That text as a %-template of its nodes' `last_change_s`, and those ages,
    # once asked for: `aged_text` then adds to the ages alone.
    template: tuple[str, tuple[int, ...]] | None = None


class ClusterCache:
    """Each cluster's status (and its JSON text) as last built, kept while its
    shape, its servers' `show stat` rows and its discovery state are the same.

    The daemon rewrites status.json after every apply and health change; at
    1,000 clusters a change touches one cluster, and the health poller keeps
    the row objects of backends it did not re-read. So a write rebuilds what
    changed, not 3,000 nodes. The daemon's loop alone uses it.
    """

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        # The last call's shape and rows (by identity), discovery and answer.
        self._last: tuple[Sequence[ClusterShape], StatRows | None,
                          Mapping[str, dict[str, Any]] | None, list[ClusterStatus]] | None = None

    def statuses(self, shape: Sequence[ClusterShape], rows: StatRows | None,
                 discovery: Mapping[str, dict[str, Any]] | None = None) -> list[ClusterStatus]:
        # The same shape and the same rows (a health snapshot's rows are never changed,
        # only replaced): the same statuses, without looking up 3,000 rows again, which
        # was a sixth of each `status` request at 1,000 clusters.
        last = self._last
        if last is not None and last[1] is rows and last[2] == discovery \
                and _same_items(last[0], shape):
            # A reload's new config brings a new list of the same shapes (the
            # publisher keeps a cluster's shape while it is equal).
            self._last = (shape, last[1], last[2], last[3])
            return list(last[3])
        kept: dict[str, _Kept] = {}
        for c in shape:
            backend = backend_name(c.name)
            node_rows = tuple(rows.get((backend, n.name)) if rows is not None else None
                              for n in c.nodes)
            found = (discovery or {}).get(c.name)
            old = self._kept.get(c.name)
            if old is None or not _same(old, c, node_rows, found):
                old = _Kept(c, node_rows, found, cluster_statuses([c], rows, discovery)[0])
            kept[c.name] = old
        self._kept = kept
        statuses = [kept[c.name].status for c in shape]
        self._last = (shape, rows, None if discovery is None else dict(discovery), statuses)
        return list(statuses)

    def text_of(self, status: ClusterStatus) -> str:
        """`status` as compact JSON text, encoded once for a kept status."""
        kept = self._kept.get(status.name)
        if kept is None or kept.status is not status:
            return _compact(status.to_json())
        if kept.text is None:
            kept.text = _compact(status.to_json())
        return kept.text

    def aged_text(self, status: ClusterStatus, seconds: int) -> str:
        """text_of(status) with `seconds` added to every node's `last_change_s`.

        The `document` request brings HAProxy's ages up to now: at 3,000 nodes
        re-encoding every cluster for that was most of the request, so a kept
        text is made a %-template of its ages once, and filled in per request.
        """
        kept = self._kept.get(status.name)
        if kept is None or kept.status is not status:
            text = _compact(status.to_json())
            return text if seconds == 0 else _fill(*_template(text), seconds)
        if seconds == 0:
            return self.text_of(status)
        if kept.template is None:
            kept.template = _template(self.text_of(status))
        return _fill(*kept.template, seconds)


# The value of a node's age in compact JSON. A string cannot hold this text
# (its quotes are escaped there), so only the field itself matches.
_AGE = re.compile(r'(?<="last_change_s":)(-?\d+)')


def _template(text: str) -> tuple[str, tuple[int, ...]]:
    """`text` with each age a `%d`, and the ages."""
    parts = _AGE.split(text)
    return "%d".join(p.replace("%", "%%") for p in parts[::2]), \
        tuple(int(age) for age in parts[1::2])


def _fill(template: str, ages: tuple[int, ...], seconds: int) -> str:
    return template % tuple(age + seconds for age in ages)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _same(kept: _Kept, shape: ClusterShape, rows: tuple[StatRow | None, ...],
          discovery: dict[str, Any] | None) -> bool:
    # Rows by identity: a re-read row is a new object even when equal, and
    # comparing 6,000 dicts by value would cost what the cache saves.
    if len(kept.rows) != len(rows) or kept.discovery != discovery:
        return False
    return (kept.shape is shape or kept.shape == shape) \
        and all(a is b for a, b in zip(kept.rows, rows, strict=True))


# -- reading it -------------------------------------------------------------------------
def _document(doc: StatusDocument | Mapping[str, Any]) -> StatusDocument:
    return doc if isinstance(doc, StatusDocument) else StatusDocument.from_json(doc)


def exit_code(doc: StatusDocument | Mapping[str, Any]) -> int:
    """0 all UP; 1 some node not UP; 2 some cluster has no UP node; 3 unreachable.

    3 wins: when the daemon or HAProxy's admin socket cannot be reached the
    health picture is incomplete, whatever the other numbers say.
    """
    d = _document(doc)
    if not d.haproxy.reachable or not d.daemon.running:
        return EXIT_UNREACHABLE
    if any(c.up == 0 for c in d.clusters):
        return EXIT_CLUSTER_DOWN
    if any(c.up < c.total for c in d.clusters):
        return EXIT_DEGRADED
    return EXIT_OK


def verdict(doc: StatusDocument | Mapping[str, Any]) -> str:
    """One line that says what the exit code means for this document."""
    d = _document(doc)
    code = exit_code(d)
    if code == EXIT_UNREACHABLE:
        # `unreachable` entries start with the source's name ("admin socket: …").
        sources = [p.split(":", 1)[0] for p in d.unreachable]
        return f"unknown: cannot reach {', '.join(sources) or 'HAProxy'}"
    if code == EXIT_CLUSTER_DOWN:
        down = [c.name + (" (FAIL-OPEN: serving from unchecked nodes)"
                          if c.fail_open_active else "") for c in d.clusters if c.up == 0]
        return f"down: no UP node in {', '.join(down)}"
    if code == EXIT_DEGRADED:
        parts = [f"{c.name} {c.up}/{c.total} up" for c in d.clusters if c.up < c.total]
        return f"degraded: {', '.join(parts)}"
    return "healthy: every node is UP"


def summary(doc: StatusDocument) -> str:
    """One line for systemd's STATUS=: "cluster-0: 3/3 up, generation 7"."""
    parts = [f"{c.name}: {c.up}/{c.total} up" for c in doc.clusters]
    text = ", ".join(parts) or "no clusters"
    text += f", generation {doc.daemon.generation}"
    error = doc.daemon.last_error
    if error:
        text += f"; last error: {error.get('message', '')}"[:200]
    return text


def state_counts(clusters: Iterable[ClusterStatus]) -> dict[tuple[str, str], int]:
    """(cluster, state) -> number of nodes, with a zero for every state."""
    return {(c.name, state): n for c in clusters for state, n in c.counts.items()}
