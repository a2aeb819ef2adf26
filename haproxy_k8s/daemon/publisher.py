"""What the daemon tells the world: status.json, its pid file, metrics, STATUS=.

Owned by the main loop. The status document is built by the one function in
`status.build`, from the daemon's state, the applied config and the health
poller's latest sample; metrics and systemd's STATUS= line are derived from
that same document.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..clock import utc_at, utc_now
from ..config.model import Config
from ..fileio import write_atomic
from . import malloc
from .access import access_for
from .holddown import HoldDown
from .metrics import MetricsExporter, snapshot_of
from .status import DaemonStatus, HaproxyStatus, StatusDocument, build, shape_of_config, summary

if TYPE_CHECKING:
    from .loop import Daemon

log = logging.getLogger(__name__)

STATUS_REFRESH = 5.0  # seconds between status.json rewrites when nothing happens
# News (a health transition) rewrites it at once, but not more often than
# this: HAProxy's log messages can report thousands of servers going DOWN
# one after another (first checks at 1,000 clusters), and each rebuild of
# the whole document then cost more than the news was worth.
NEWS_SPACING = 1.0
REFRESH_PER_NODE = 0.01  # seconds


class StatusPublisher:
    def __init__(self, daemon: Daemon) -> None:
        assert daemon.applier is not None
        self.daemon = daemon
        self.paths = daemon.applier.paths
        self.metrics = MetricsExporter()
        self._doc: StatusDocument | None = None
        # As last written, with written_at null: the text, not the dicts it was
        # dumped from (3,000 node dicts were 2 MiB kept for one comparison).
        self._last_text: str | None = None
        self._written_at = 0.0
        self._news = False  # a forced write is due (at most every NEWS_SPACING)
        self._nodes = 0  # in the last document
        self._counts: list[dict[str, Any]] = []
        self._error: str | None = None
        self._failing_open: set[str] = set()

    def document(self, running: bool = True) -> StatusDocument:
        d = self.daemon
        assert d.applier is not None
        master = d.applier.master
        table = master.try_proc_table() if master.alive() else None
        health = d.health.latest() if d.health is not None else None
        haproxy = HaproxyStatus(
            pid=master.pid if master.alive() else None, version=d.version,
            reloads=table.master.reloads if table else None,
            failed_reloads=d.state.failed_reloads,
            workers=sorted(table.worker_pids) if table else [],
            prometheus_exporter=d.promex)
        config = d.applier.applied
        # Nodes deleted from the config but still draining show as removing.
        shape = shape_of_config(config, d.files.source, d.applier.ops.removals()) \
            if config is not None else []
        rows = health.rows if health is not None and table is not None else None
        discovery = {name: asdict(st) for name, st in d.discovery.statuses().items()}
        doc = build(self.daemon_status(running), haproxy, shape, rows, discovery=discovery)
        if d.vip is not None:
            fields = d.vip.status_fields(self.paths.config)
            doc.vip, doc.config = fields.get("vip"), fields.get("config")
        return doc

    def cluster_counts(self) -> list[dict[str, Any]]:
        """Each cluster's name and UP count in the last document (for the VIP's fitness)."""
        return self._counts  # computed once per document: the VIP asks every tick

    def daemon_status(self, running: bool = True) -> DaemonStatus:
        """The daemon's part of the document, as it is now (the control socket's `status`)."""
        d = self.daemon
        status = d.state.status(str(d.config_dir), running)
        status.held = held_view(d.hold)
        status.state_dir_error = self._error or (
            str(d.state.last_error.get("message")) if d.retry_at is not None and
            d.state.last_error else None)
        status.retry_at = utc_at(time.time() + d.retry_at - time.monotonic()) \
            if d.retry_at is not None else None
        return status

    def summary(self) -> str:
        """systemd's STATUS= line, from the document just written."""
        return summary(self._doc if self._doc is not None else self.document())

    def maybe_write(self, now: float, force: bool = False) -> None:
        """Rewrite status.json on news, else every STATUS_REFRESH.

        Ages (`last_change_s`) change every second, and rebuilding the
        document for thousands of nodes each tick cost a sixth of a core
        (bench, 1,000 clusters). `haproxy-k8s status` reads HAProxy live, so
        it never shows these ages stale.
        """
        if force:
            self._news = True
        # Ages alone are refreshed less often in a large document (30 s at 3,000 nodes).
        refresh = max(STATUS_REFRESH, self._nodes * REFRESH_PER_NODE)
        if (self._news and now >= self._written_at + NEWS_SPACING) \
                or now >= self._written_at + refresh:
            self.write()
            # After the document and its JSON, written or not: the biggest burst of a round.
            malloc.trim()

    def write(self) -> None:
        """Publish status.json and the metrics snapshot."""
        self._written_at, self._news = time.monotonic(), False
        doc = self._doc = self.document()
        self._log_fail_open(doc)
        self._nodes = sum(len(c.nodes) for c in doc.clusters)
        self._counts = [{"name": c.name, "up": c.up} for c in doc.clusters]
        self.metrics.publish(snapshot_of(self.daemon.state, doc))
        # Compact: one C-encoded pass (a tenth of an indented dump at 3,000 nodes).
        text = json.dumps(doc.to_json(), separators=(",", ":")) + "\n"
        if text == self._last_text and self._error is None:
            return  # an unchanged document (written_at aside) is not rewritten
        try:
            write_atomic(self.paths.status, stamped(text, utc_now()), mode=0o640,
                         durable=False)
        except OSError as e:
            # Keep balancing; say it once per different failure, not every tick. The
            # control socket's `status` tells the CLI the truth meanwhile.
            if self._error != f"cannot write {self.paths.status}: {e.strerror or e}":
                self._error = f"cannot write {self.paths.status}: {e.strerror or e}"
                self.daemon.state.state_dir_errors += 1
                log.error("%s", self._error)
            return
        self._last_text, self._error = text, None

    def _log_fail_open(self, doc: StatusDocument) -> None:
        """Say once when a cluster starts and stops failing open (not every rewrite)."""
        now = {c.name for c in doc.clusters if c.fail_open_active}
        for name in sorted(now - self._failing_open):
            log.warning("cluster %s: no node UP; FAIL-OPEN: new connections go to every "
                        "enabled node, checks ignored", name)
        for name in sorted(self._failing_open - now):
            log.warning("cluster %s: no longer failing open", name)
        self._failing_open = now

    def write_final(self) -> None:
        """After HAProxy stopped: say so, and remove the pid file."""
        doc = self.document(running=False)
        try:
            write_atomic(self.paths.status, doc.dumps(indent=None), mode=0o640)
        except OSError as e:
            log.error("cannot write %s: %s", self.paths.status, e)
        self.paths.daemon_pid.unlink(missing_ok=True)

    def write_pid(self) -> None:
        self.paths.ensure_root()
        write_atomic(self.paths.daemon_pid, f"{os.getpid()}\n", mode=0o640)

    def serve_metrics(self, config: Config) -> None:
        assert self.daemon.applier is not None
        access = access_for(config.metrics, self.daemon.applier.metrics_password)
        error = self.metrics.serve(config.metrics.bind, access)
        if error is not None:
            self.daemon.state.record_error({"file": None, "key": "metrics.bind",
                                            "message": f"metrics.bind: {error}"})

    def close(self) -> None:
        self.metrics.close()


def stamped(text: str, now: str) -> str:
    """The compact status.json `text` with daemon.written_at set to `now`.

    Its first `"written_at":null` is the daemon's: "daemon" is the document's
    first key, nothing in it before written_at has a key of that name, and a
    quote inside a string value is always escaped in JSON.
    """
    return text.replace('"written_at":null', f'"written_at":{json.dumps(now)}', 1)


def held_view(hold: HoldDown) -> dict[str, Any] | None:
    """The held change for the status document (wall-clock times, for an operator)."""
    left = hold.due_in(time.monotonic())
    if left is None:
        return None
    apply_at = time.time() + max(0.0, left)
    return {"since": utc_at(apply_at - hold.seconds), "apply_at": utc_at(apply_at),
            "reasons": list(hold.reasons)}
