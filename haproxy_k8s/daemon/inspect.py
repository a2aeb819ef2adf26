"""Read-only control ops (`describe`, `events`, `diff`) and the events the loop records.

The loop calls into here so that its own changes stay a few lines: every
function takes the Daemon and only reads its state (and HAProxy's published
config), except the `record_*` helpers, which add to its event log.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import TYPE_CHECKING, Any

from ..apply import operator as opstate
from ..apply.applier import ApplyOutcome
from ..apply.plan import PlanKind, make_plan
from ..config.model import Cluster, Config, backend_name
from ..config.names import is_node_server
from ..errors import HaproxyK8sError
from ..haproxy import render as render_mod
from ..haproxy.replies import ServerKey
from .events import RING, node_changes
from .health import describe as describe_transition
from .health import server_label
from .states import StatRow

if TYPE_CHECKING:
    from .loop import Daemon

READ_OPS = ("describe", "events", "diff")


def answer(daemon: Daemon, op: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        if op == "describe":
            return describe(daemon, str(args.get("target", "")))
        if op == "events":
            return events(daemon, int(args.get("since", 0) or 0),
                          int(args.get("limit", RING) or RING))
        return diff(daemon)
    except (HaproxyK8sError, ValueError) as e:
        return {"ok": False, "error": {"message": str(e), "file": getattr(e, "file", None)}}


# -- events ------------------------------------------------------------------------------
def events(daemon: Daemon, since: int, limit: int) -> dict[str, Any]:
    log = daemon.eventlog
    return {"ok": True, "seq": log.seq, "events": [e.to_json() for e in log.since(since, limit)]}


def record_transition(daemon: Daemon, key: ServerKey, before: str | None, row: StatRow) -> None:
    """A node's health changed (called on the health poller's thread)."""
    label = server_label(key)
    # describe() says "cluster-0/m1 UP → DOWN (…)": the object is its own column here.
    daemon.eventlog.record("health", label, describe_transition(key, before, row)
                           .removeprefix(label).strip())


def _cluster_rows(cluster: Cluster) -> list[tuple[str, str]]:
    return [(f"{cluster.name}/{n.name}", f"{n.haproxy_addr} weight {n.weight}")
            for n in cluster.nodes]


def changed_node_tables(before: Config | None, after: Config | None
                        ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Each side's (cluster/node, "address:port weight W") pairs, of the clusters
    whose nodes differ only: an edit to one of 1,000 clusters compares three
    nodes, not 3,000."""
    old = {c.name: c for c in before.clusters} if before is not None else {}
    new = {c.name: c for c in after.clusters} if after is not None else {}
    rows_before: list[tuple[str, str]] = []
    rows_after: list[tuple[str, str]] = []
    for name in old.keys() | new.keys():
        was, now = old.get(name), new.get(name)
        if was is now or (was is not None and now is not None and was.nodes == now.nodes):
            continue
        rows_before += _cluster_rows(was) if was is not None else []
        rows_after += _cluster_rows(now) if now is not None else []
    return rows_before, rows_after


FIRST_APPLY_NODES = 20  # more nodes than this at the first apply: one summary event


def record_apply(daemon: Daemon, outcome: ApplyOutcome, reason: str,
                 before: Config | None) -> None:
    """One event for the apply, and one per node it added, removed or changed."""
    if outcome.action == "noop":
        return
    why = f" ({outcome.reason})" if outcome.reason else ""
    if outcome.error is not None:
        what = "failed" if outcome.action == "error" else f"{outcome.action}: failed"
        # Error priority in the journal: a failed apply is what an operator must see.
        daemon.eventlog.record("apply", "config", f"{what} on {reason}: {outcome.error}",
                               level=logging.ERROR)
        return
    daemon.eventlog.record("apply", "config", f"{outcome.action}{why} on {reason}, generation "
                           f"{daemon.state.generation}, {outcome.seconds * 1000:.0f} ms")
    assert daemon.applier is not None
    applied = daemon.applier.applied
    nodes = sum(len(c.nodes) for c in applied.clusters) if applied is not None else 0
    if before is None and applied is not None and nodes > FIRST_APPLY_NODES:
        # The first apply of a big config: one line, not thousands that would
        # flood the journal and slow the start by a tenth of a second.
        clusters = len(applied.clusters)
        daemon.eventlog.record("config", "config", f"{nodes} nodes in {clusters} "
                               f"cluster{'' if clusters == 1 else 's'}")
        return
    changes = node_changes(*changed_node_tables(before, applied))
    for obj, message in changes:
        daemon.eventlog.record("config", obj, message)
    # A runtime change touched only these nodes; a reload replaced every server,
    # also those still draining out: any history may be of a node gone now.
    forget_gone(daemon, [obj for obj, _ in changes] if outcome.action == "runtime" else None)


def record_deleted(daemon: Daemon, before: set[str]) -> None:
    """Nodes whose deferred removal finished since `before` (backend/server ids)."""
    assert daemon.applier is not None
    deleted = []
    for server in sorted(before - set(daemon.applier.ops.pending)):
        backend, _, name = server.partition("/")
        if not is_node_server(backend, name):
            continue  # the node's fail-open twin: its own server's line says it
        deleted.append(server_label((backend, name)))
        daemon.eventlog.record("config", deleted[-1],
                               "deleted from HAProxy (no sessions left, or its grace ran out)")
    forget_gone(daemon, deleted)


def forget_gone(daemon: Daemon, candidates: list[str] | None = None) -> None:
    """Drop the histories of nodes neither in the applied config nor draining
    out of HAProxy (`candidates`: look at these only; None: at every history)."""
    assert daemon.applier is not None
    applied = daemon.applier.applied
    draining = {server_label((backend, name)) for backend, _, name
                in (server.partition("/") for server in daemon.applier.ops.pending)}

    def gone(obj: str) -> bool:
        cluster_name, _, node = obj.partition("/")
        cluster = applied.cluster(cluster_name) if applied is not None else None
        return obj not in draining and (cluster is None or cluster.node(node) is None)

    names = daemon.eventlog.objects() if candidates is None else candidates
    daemon.eventlog.forget([name for name in names if gone(name)])


# -- maint guard -----------------------------------------------------------------------------
def refuse_last_serving(daemon: Daemon, target: str) -> str:
    """Why `maint` of `target` needs --force ("" when it does not)."""
    assert daemon.applier is not None and daemon.health is not None
    cluster_name, _, node = target.partition("/")
    cluster = daemon.applier.applied.cluster(cluster_name) if daemon.applier.applied else None
    if cluster is None:
        return ""  # unknown nodes are refused by the applier
    rows = daemon.health.refresh({cluster.backend}).rows
    if rows is None:
        return ""  # unknown nodes are refused by the applier; unknown health: do not guess
    serving = [n.name for n in cluster.nodes
               if rows.get((backend_name(cluster.name), n.name), {}).get("status", "")
               .startswith("UP")]
    if serving == [node]:
        return (f"{target} is the last serving node of {cluster.name}: maint would stop all "
                f"traffic to it; add --force to do it anyway")
    return ""


# -- describe --------------------------------------------------------------------------------
def describe(daemon: Daemon, target: str) -> dict[str, Any]:
    assert daemon.applier is not None and daemon.publisher is not None
    cluster_name, _, node_name = target.partition("/")
    doc = daemon.publisher.document()
    cluster = next((c for c in doc.clusters if c.name == cluster_name), None)
    status = next((n for n in cluster.nodes if n.name == node_name), None) if cluster else None
    if status is None:
        raise ValueError(f"{target}: no such node in the running config")
    applied = daemon.applier.applied
    node = None
    if applied is not None and applied.cluster(cluster_name) is not None:
        node = applied.cluster(cluster_name).node(node_name)  # type: ignore[union-attr]
    operator = opstate.load(daemon.applier.paths.operator_state).get(target)
    set_by = daemon.eventlog.last(target, "operator")
    return {
        "ok": True, "target": target,
        "origin": daemon.files.origin(cluster_name, node_name) if node else "removed",
        "config": dataclasses.asdict(node) if node is not None else None,
        "server_line": server_line(daemon.applier.paths.config.read_text(errors="replace"),
                                   backend_name(cluster_name), node_name),
        "status": dataclasses.asdict(status),
        "operator": {"state": str(operator or "ready"),
                     "set": set_by.message if set_by else None,
                     "at": set_by.at if set_by else None},
        "history": [e.to_json() for e in daemon.eventlog.history(target)],
    }


def server_line(config_text: str, backend: str, server: str) -> str | None:
    """The `server` line of `backend/server` in a haproxy.cfg text, with the
    `default-server` line of the defaults section it inherits (which holds the
    checks): together, what HAProxy runs."""
    section: list[str] = []
    last_defaults = ""  # a proxy without `from` takes the last defaults section
    default_server: dict[str, str] = {}  # defaults section -> its default-server's words
    for line in config_text.splitlines():
        stripped = line.strip()
        if not line.startswith((" ", "\t")) and stripped:
            section = stripped.split()  # `backend NAME` or `backend NAME from DEFAULTS`
            if section[0] == "defaults":
                last_defaults = section[1] if len(section) > 1 else ""
                default_server.pop(last_defaults, None)
        elif section[:1] == ["defaults"] and stripped.startswith("default-server "):
            default_server[last_defaults] = stripped.split(None, 1)[1]
        elif section[:2] == ["backend", backend] and stripped.startswith(f"server {server} "):
            named = section[3] if section[2:3] == ["from"] and len(section) > 3 else last_defaults
            inherited = default_server.get(named)
            return f"{stripped} + default-server {inherited}" if inherited else stripped
    return None


# -- diff -----------------------------------------------------------------------------------
def diff(daemon: Daemon) -> dict[str, Any]:
    """What an apply of the files now would do, without doing it."""
    assert daemon.applier is not None
    paths = daemon.applier.paths
    config = daemon.desired()
    text = render_mod.render(config, paths, promex=daemon.applier.promex)
    try:
        published = paths.config.read_text()
    except OSError:
        published = ""
    plan = make_plan(daemon.applier.applied, config)
    # The applier's order: an unchanged text is a no-op whatever the plan
    # says; a changed text the plan calls a no-op still needs a reload.
    if text == published:
        kind, reason = "noop", "the rendered config is what runs now"
    elif plan.kind is PlanKind.RUNTIME:
        kind, reason = "runtime", "runtime: " + ", ".join(c.describe() for c in plan.changes)
    else:
        kind, reason = "reload", plan.reason or "the rendered config differs"
    return {"ok": True, "plan": kind, "reason": reason,
            "diff": unified(published, text, str(paths.config))}


def unified(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        fromfile=f"{name} (running)",
                                        tofile=f"{name} (candidate)"))
