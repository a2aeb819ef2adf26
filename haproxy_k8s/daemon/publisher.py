"""What the daemon tells the world: status.json, its pid file, metrics, STATUS=.

Owned by the main loop. The status document is built by the one function in
`status.build`, from the daemon's state, the applied config and the health
poller's latest sample; metrics and systemd's STATUS= line are derived from
that same document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..clock import utc_at, utc_now
from ..config.model import Config, Node
from ..fileio import write_atomic
from . import malloc
from .access import access_for
from .holddown import HoldDown
from .metrics import MetricsExporter, snapshot_of
from .status import (
    ClusterCache,
    ClusterShape,
    DaemonStatus,
    HaproxyStatus,
    StatusDocument,
    build,
    cluster_shape,
    removals_by_cluster,
    summary,
)

# A cluster's shape depends on its name, binds, nodes, hostnames and fail-open, its
# nodes' drop-ins and its nodes draining out.
ShapeKey = tuple[tuple[object, ...], tuple[str, ...], tuple[Node, ...]]

if TYPE_CHECKING:
    from .loop import Daemon

log = logging.getLogger(__name__)
# status.json's stamp before it is set (StatusPublisher.write).
_NO_STAMP = '"written_at":null'

STATUS_REFRESH = 10.0  # seconds between status.json rewrites when nothing happens
# News (a health transition) rewrites it at once, but not more often than
# this: HAProxy's log messages can report thousands of servers going DOWN
# one after another (first checks at 1,000 clusters), and each rebuild of
# the whole document then cost more than the news was worth.
NEWS_SPACING = 1.0
REFRESH_PER_NODE = 0.01  # seconds
FAIL_OPEN_DETAIL = 20  # more clusters than this starting or ending fail-open: one line


class StatusPublisher:
    def __init__(self, daemon: Daemon) -> None:
        assert daemon.applier is not None
        self.daemon = daemon
        self.paths = daemon.applier.paths
        self.metrics = MetricsExporter()
        self._doc: StatusDocument | None = None
        self._last_digest = b""  # of the text last written, without written_at
        self._written_at = 0.0
        self._news = False  # a forced write is due (at most every NEWS_SPACING)
        self._nodes = 0  # in the last document
        self._counts: list[dict[str, Any]] = []
        self._error: str | None = None
        self._failing_open: set[str] = set()
        self._clusters = ClusterCache()  # unchanged clusters are not rebuilt per write
        self._shape_of: tuple[Config, tuple[tuple[str, Node], ...], list[ClusterShape]] | None \
            = None
        self._cluster_shapes: dict[str, tuple[ShapeKey, ClusterShape]] = {}

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
        rows = health.rows if health is not None and table is not None else None
        discovery = {name: asdict(st) for name, st in d.discovery.statuses().items()}
        doc = build(self.daemon_status(running), haproxy, self._shape(), rows,
                    discovery=discovery, cache=self._clusters)
        if d.vip is not None:
            fields = d.vip.status_fields(self.paths.config)
            doc.vip, doc.config = fields.get("vip"), fields.get("config")
        return doc

    def text(self, doc: StatusDocument, added: Mapping[str, int]) -> str:
        """A document of document() as compact JSON (no newline), each cluster's
        node ages plus `added[cluster name]` seconds; kept cluster texts are reused."""
        return doc.compact(lambda c: self._clusters.aged_text(c, added.get(c.name, 0)), end="")

    def _shape(self) -> list[ClusterShape]:
        """The applied config's clusters and nodes. Built again only for a
        cluster that changed (the config memo keeps unchanged Cluster objects),
        or whose nodes still draining out or drop-ins changed."""
        d = self.daemon
        assert d.applier is not None
        config = d.applier.applied
        if config is None:
            return []
        # Nodes deleted from the config but still draining show as removing.
        return self._shapes_for(config, tuple(d.applier.ops.removals()))

    def prepare(self, config: Config) -> None:
        """Build `config`'s shapes ahead (at start, while HAProxy checks and starts
        in other processes): the first status.json then only adds health."""
        self._shapes_for(config, ())

    def _shapes_for(self, config: Config, removals: tuple[tuple[str, Node], ...]
                    ) -> list[ClusterShape]:
        if self._shape_of is not None and self._shape_of[0] is config \
                and self._shape_of[1] == removals:
            return self._shape_of[2]
        d = self.daemon
        gone = removals_by_cluster(removals)
        kept: dict[str, tuple[ShapeKey, ClusterShape]] = {}
        shapes = []
        for c in config.clusters:
            # By value, not by Cluster: a changed default (every cluster a new
            # object) leaves the shapes as they were.
            key: ShapeKey = ((c.name, c.binds, c.nodes, c.sni, c.settings.fail_open),
                   tuple(d.files.source(c.name, n.name) for n in c.nodes),
                   gone.get(c.name, ()))
            old = self._cluster_shapes.get(c.name)
            shape = old[1] if old is not None and old[0] == key \
                else cluster_shape(c, key[1], key[2])
            kept[c.name] = (key, shape)
            shapes.append(shape)
        self._cluster_shapes = kept
        self._shape_of = (config, removals, shapes)
        return shapes

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
        state = self.daemon.state
        self.metrics.publish(lambda: snapshot_of(state, doc))
        # Compact, each unchanged cluster's text kept: a write at 3,000 nodes
        # encodes what changed. Unchanged apart from written_at: not rewritten.
        doc.daemon.written_at = None
        text = doc.compact(self._clusters.text_of)
        digest = hashlib.blake2b(text.encode()).digest()
        if digest == self._last_digest and self._error is None:
            return
        self._last_digest = digest
        doc.daemon.written_at = utc_now()
        # The daemon's part comes first, and a JSON string cannot hold `"written_at":`
        # unescaped: the first one is its key (an encode of a megabyte spared).
        text = text.replace(_NO_STAMP, f'"written_at":{json.dumps(doc.daemon.written_at)}', 1)
        try:
            write_atomic(self.paths.status, text, mode=0o640, durable=False)
        except OSError as e:
            # Keep balancing; say it once per different failure, not every tick. The
            # control socket's `status` tells the CLI the truth meanwhile.
            if self._error != f"cannot write {self.paths.status}: {e.strerror or e}":
                self._error = f"cannot write {self.paths.status}: {e.strerror or e}"
                self.daemon.state.state_dir_errors += 1
                log.error("%s", self._error)
            return
        self._error = None

    def _log_fail_open(self, doc: StatusDocument) -> None:
        """Say once when a cluster starts and stops failing open (not every rewrite)."""
        now = {c.name for c in doc.clusters if c.fail_open_active}
        for line in fail_open_news(sorted(now - self._failing_open),
                                   sorted(self._failing_open - now)):
            log.warning("%s", line)
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


def fail_open_news(started: list[str], ended: list[str]) -> list[str]:
    """The log lines for clusters that started and stopped failing open."""
    if len(started) + len(ended) > FAIL_OPEN_DETAIL:
        # Hundreds at once (every apiserver unreachable from here): a line each way.
        return [f"{len(names)} cluster{'' if len(names) == 1 else 's'}: {what}: {_some(names)}"
                for names, what in ((started, "no node UP; FAIL-OPEN"),
                                    (ended, "no longer failing open")) if names]
    return [*(f"cluster {name}: no node UP; FAIL-OPEN: new connections go to every "
              "enabled node, checks ignored" for name in started),
            *(f"cluster {name}: no longer failing open" for name in ended)]


def _some(names: list[str], shown: int = 10) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def held_view(hold: HoldDown) -> dict[str, Any] | None:
    """The held change for the status document (wall-clock times, for an operator)."""
    left = hold.due_in(time.monotonic())
    if left is None:
        return None
    apply_at = time.time() + max(0.0, left)
    return {"since": utc_at(apply_at - hold.seconds), "apply_at": utc_at(apply_at),
            "reasons": list(hold.reasons)}
