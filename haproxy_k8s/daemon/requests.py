"""Control requests from the CLI, carried out by the main loop (the one writer)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from ..config.model import backend_name, cluster_backends
from ..errors import HaproxyK8sError
from . import inspect
from .client import document_line
from .control import Request
from .status import StatusDocument, exit_code

if TYPE_CHECKING:
    from .loop import Daemon


def answer(daemon: Daemon, request: Request) -> None:
    """Carry out a control request from the CLI and answer it."""
    assert daemon.applier is not None
    if request.op == "status":
        # The daemon's own view, live: what status.json says when it can be written.
        assert daemon.publisher is not None
        request.answer({"ok": True, "daemon": asdict(daemon.publisher.daemon_status())})
        return
    if request.op == "document":
        request.answer(document(daemon, request.args.get("cluster")))
        return
    if request.op in inspect.READ_OPS:
        request.answer(inspect.answer(daemon, request.op, request.args))
        return
    if request.op == "reload":
        outcome = daemon.apply("control: reload")
        request.answer({"ok": outcome.ok, "action": outcome.action,
                        "reason": outcome.reason, "generation": daemon.state.generation,
                        "seconds": round(outcome.seconds, 4),
                        "error": daemon.state.last_error if not outcome.ok else None})
        return
    target = str(request.args.get("target", ""))
    refused = "" if request.op != "maint" or request.args.get("force") else \
        inspect.refuse_last_serving(daemon, target)
    try:
        if refused:
            raise HaproxyK8sError(refused)
        daemon.applier.set_admin_state(target, request.op)
    except HaproxyK8sError as e:
        request.answer({"ok": False, "error": {"message": str(e)}})
        return
    daemon.eventlog.record("operator", target, f"{request.op} by {request.peer or 'unknown'}")
    daemon.state.runtime_changes += 1
    cluster = daemon.applier.applied.cluster(target.partition("/")[0]) \
        if daemon.applier.applied is not None else None
    if daemon.health is not None and cluster is not None:
        # Read HAProxy back now (that cluster's backends only: 1,000 clusters
        # are 6,000 servers): a `status` or `describe` right after the verb shows it.
        daemon.health.refresh(set(cluster_backends(cluster)))
    request.answer({"ok": True, "target": target, "state": request.op})


def document(daemon: Daemon, cluster: object = None) -> bytes:
    """The whole status document as the daemon holds it (`haproxy-k8s status`), or
    one cluster's: one request instead of reading status.json and HAProxy's sockets.

    Node states are as fresh as HAProxy's log messages make them; one cluster's
    rows are read again first, which costs one small `show stat`. The reply
    (client.document_line) puts the exit code and what decides whether the
    CLI may print the document as it is before the document itself.
    """
    assert daemon.publisher is not None and daemon.applier is not None
    applied = daemon.applier.applied
    # Only a configured name reaches HAProxy's CLI: the argument is the caller's text.
    known = applied.cluster(cluster) if isinstance(cluster, str) and applied else None
    if known is not None and daemon.health is not None and daemon.health.latest().reachable:
        daemon.health.refresh(set(cluster_backends(known)))
    doc = daemon.publisher.document()
    if cluster is not None:
        doc.clusters = [c for c in doc.clusters if c.name == cluster]
    added = {} if daemon.health is None else \
        ages_to_now(doc, daemon.health.latest().read_at, time.monotonic())
    head = {"ok": True, "exit_code": exit_code(doc), "running": doc.daemon.running,
            "reachable": doc.haproxy.reachable}
    return document_line(head, daemon.publisher.text(doc, added))


def ages_to_now(doc: StatusDocument, read_at: Mapping[str, float], now: float
                ) -> dict[str, int]:
    """Seconds to add to each cluster's node ages (`last_change_s`) to bring them to `now`.

    A backend whose servers sent no news was last read by the slow full read
    (up to a minute ago at 6,000 servers): the state is still right (a change
    would have been news), and its age is HAProxy's then plus the time since.
    """
    added = {}
    for cluster in doc.clusters:
        at = read_at.get(backend_name(cluster.name))
        if at is not None:
            added[cluster.name] = int(now - at)
    return added
