"""The daemon: one main loop that owns all mutable state.

Signal handlers and helper threads (watcher, health poller) only *post*
events to a SimpleQueue (safe to call from a signal handler); the loop takes
them one at a time, so exactly one place applies config and talks to the
HAProxy master.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .. import __version__
from ..apply.applier import Applier, ApplyOutcome
from ..config.loader import load_config, state_dir_hint
from ..config.model import Config, HaproxySettings, WatchSettings
from ..errors import ConfigError, HaproxyK8sError, ValidationError
from ..fileio import write_atomic
from ..haproxy.check import haproxy_version
from ..sources.watcher import DirWatcher
from . import reexec
from .health import HealthPoller, poll_interval
from .metrics import MetricsExporter, snapshot_of
from .status import DaemonState, cluster_view, dumps, utc_now
from .systemd import Notifier

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between supervision rounds when nothing happens
MAX_BACKOFF = 30.0
STATUS_REFRESH = 5.0  # seconds between status.json rewrites when nothing happens


@dataclass(frozen=True)
class Event:
    # changed (a write may be in progress) | written (a file is whole again) |
    # apply | stop | health (a node changed state) | reexec (replace our code, keep HAProxy)
    kind: str
    detail: str = ""


class Debouncer:
    """When to apply after file events.

    While a write may still be in progress (a file created or modified, not yet
    closed), wait until nothing changed for `quiet` (watch.debounce); once every
    write is complete, only `settle`. Never longer than `max_wait` after the
    first event, so a constant stream of edits still applies.
    """

    def __init__(self, quiet: float, max_wait: float, settle: float = 0.0) -> None:
        self.quiet, self.max_wait, self.settle = quiet, max_wait, settle
        self.first: float | None = None
        self.last = 0.0
        self.in_progress: set[str] = set()

    def configure(self, watch: WatchSettings) -> None:
        self.quiet = watch.debounce_ms / 1000
        self.max_wait = watch.max_wait_ms / 1000
        # A debounce shorter than the settle time wins: settle only ever shortens.
        self.settle = min(watch.settle_ms, watch.debounce_ms) / 1000

    def touch(self, now: float, path: str = "", complete: bool = False) -> None:
        if self.first is None:
            self.first = now
        self.last = now
        if complete:
            self.in_progress.discard(path)
        else:
            self.in_progress.add(path)

    def due_in(self, now: float) -> float | None:
        """Seconds until an apply is due (<= 0: now), or None when nothing is pending."""
        if self.first is None:
            return None
        wait = self.quiet if self.in_progress else self.settle
        return min(self.last + wait, self.first + self.max_wait) - now

    def clear(self) -> None:
        self.first = None
        self.in_progress.clear()


class Daemon:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.state = DaemonState(pid=os.getpid())
        self.applier: Applier | None = None
        self.version, self.promex = "unknown", True
        self._backoff = 1.0
        self._next_restart = 0.0
        # Observers: health polling and our own metrics, started by run().
        self.health: HealthPoller | None = None
        self.metrics = MetricsExporter()
        self._observing = False
        self.debounce = Debouncer(0.2, 2.0, 0.02)
        self.notifier = Notifier()
        self._watchdog_every = self.notifier.watchdog_interval()
        self._watchdog_at = 0.0
        self._ready = False
        self._last_status = ""
        self._clusters: list[dict[str, Any]] = []  # from the last status document
        self._next_supervise = 0.0
        self._status_written_at = 0.0
        self._status_error: str | None = None
        self._started_at = utc_now()
        self._reexec = False  # the loop ended on SIGUSR2: exec the new code, keep HAProxy

    # -- posting (any thread, or a signal handler) ---------------------------
    def post(self, kind: str, detail: str = "") -> None:
        self.events.put(Event(kind, detail))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.post("apply" if signum == signal.SIGHUP else "stop", signal.Signals(signum).name)

    # -- start ----------------------------------------------------------------
    def start(self) -> None:
        """Adopt or start HAProxy on the first valid config; raise if nothing can serve."""
        config, error = self._initial_config()
        self.applier = Applier(self.config_dir, config, promex=self._detect(config))
        # A transition wakes the main loop, so status.json follows it at once.
        self.health = HealthPoller(self.applier.paths.admin_socket,
                                   on_change=lambda: self.post("health"))
        self._write_pid()
        adopted = self.applier.master.adopt()
        if adopted is not None:
            self.state.generation = 1
        if error is not None:
            self._serve_last_good(error, adopted is not None)
        self.apply("start")
        if not self.applier.master.alive():
            raise HaproxyK8sError(self._error_text() or "HAProxy could not be started")

    def _initial_config(self) -> tuple[Config, HaproxyK8sError | None]:
        try:
            config = load_config(self.config_dir)
        except ConfigError as e:
            # Broken drop-ins: find the state dir anyway, to adopt or restart
            # HAProxy on the last published config.
            settings = HaproxySettings(state_dir=state_dir_hint(self.config_dir))
            return Config(haproxy=settings), e
        self.debounce.configure(config.watch)
        return config, None

    def _detect(self, config: Config) -> bool:
        try:
            self.version, promex = haproxy_version(config.haproxy.binary)
        except HaproxyK8sError as e:
            log.error("%s", e)
            return True
        if not promex:
            log.warning("this HAProxy has no Prometheus exporter: /metrics is disabled")
        return promex

    def _serve_last_good(self, error: HaproxyK8sError, adopted: bool) -> None:
        assert self.applier is not None
        log.error("config invalid at start: %s", error)
        if not adopted and self.applier.paths.config.exists():
            log.warning("starting HAProxy on the last published config %s",
                        self.applier.paths.config)
            self.applier.start_from_published()

    def _write_pid(self) -> None:
        assert self.applier is not None
        self.applier.paths.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.applier.paths.daemon_pid, f"{os.getpid()}\n")

    # -- apply ----------------------------------------------------------------
    def apply(self, reason: str) -> ApplyOutcome:
        assert self.applier is not None
        self.debounce.clear()
        self.state.applies += 1
        if self._ready:
            self.notifier.reloading()
        outcome = self.applier.apply()
        self._record(outcome, reason)
        self._refresh_config_settings()
        self.write_status()
        if self.applier.master.alive():
            # READY=1 after the first apply that left HAProxy serving, and
            # again after every apply (systemd expects it after RELOADING=1).
            self._ready = True
            self.notifier.ready(self.summary())
        return outcome

    def summary(self) -> str:
        """One line for systemd's STATUS=: "cluster-0: 3/3 up, generation 7"."""
        # write_status() just built the document: no second socket round trip.
        clusters = self._clusters
        parts = [f"{c['name']}: {c['up']}/{c['total']} up" for c in clusters]
        text = ", ".join(parts) or "no clusters"
        text += f", generation {self.state.generation}"
        if self.state.last_error:
            text += f"; last error: {self.state.last_error.get('message', '')}"[:200]
        return text

    def _record(self, outcome: ApplyOutcome, reason: str) -> None:
        self.state.last_apply = {"at": utc_now(), "reason": reason, "action": outcome.action,
                                 "ok": outcome.ok, "seconds": round(outcome.seconds, 4)}
        if outcome.error is not None:
            self.state.record_error(outcome.error.record())
            if isinstance(outcome.error, ConfigError | ValidationError):
                self.state.config_errors += 1
            if outcome.action == "rollback":
                self.state.failed_reloads += 1
            log.error("apply (%s) failed: %s", reason, outcome.error)
            return
        self.state.last_error = None
        self.state.runtime_changes += outcome.runtime_changes
        if outcome.action == "reload":
            self.state.reloads += 1
        if outcome.action != "noop":
            self.state.generation += 1
            self.state.applied_at = utc_now()
            log.info("applied generation %d (%s, %s) in %.0f ms", self.state.generation,
                     outcome.action, reason, outcome.seconds * 1000)

    def _refresh_config_settings(self) -> None:
        assert self.applier is not None
        applied = self.applier.applied
        if applied is not None:
            self.debounce.configure(applied.watch)
        self._sync_observers()

    def _error_text(self) -> str:
        return str((self.state.last_error or {}).get("message", ""))

    # -- loop -------------------------------------------------------------------
    def run(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        reexec.install(self.post)
        # Watch before the first apply: an edit made while HAProxy starts
        # must not be missed (it only queues a second, possibly no-op, apply).
        watcher = self._watch()
        try:
            self.start()
        except BaseException:
            if watcher is not None:
                watcher.stop()
            raise
        self._start_observers()
        try:
            self._loop()
        finally:
            if watcher is not None:
                watcher.stop()
            self._stop_observers()
            if self._reexec:
                self.notifier.reloading()
                reexec.execute()
            self.shutdown()

    def _watch(self) -> DirWatcher | None:
        """Start watching the config dir; None when it is missing (start() says so)."""
        if not self.config_dir.is_dir():
            return None
        watcher = DirWatcher(self.config_dir, lambda path, complete: self.post(
            "written" if complete else "changed", path))
        watcher.start()
        return watcher

    def _start_observers(self) -> None:
        assert self.health is not None
        self._observing = True
        self._sync_observers()
        self.health.start()

    def _sync_observers(self) -> None:
        """Follow the applied config: poll as fast as it checks, serve metrics on its bind."""
        applied = self.applier.applied if self.applier is not None else None
        if self.health is not None:
            self.health.interval = poll_interval(applied)
        if self._observing and applied is not None:
            self.metrics.serve(applied.metrics.bind)

    def _stop_observers(self) -> None:
        self._observing = False
        if self.health is not None:
            self.health.stop()
        self.metrics.close()

    def _loop(self) -> None:
        while True:
            due = self.debounce.due_in(time.monotonic())
            try:
                event = self.events.get(timeout=TICK if due is None else max(0.0, min(due, TICK)))
            except queue.Empty:
                event = None
            if event is not None and event.kind in ("stop", reexec.EVENT):
                log.info("stopping on %s", event.detail)
                self._reexec = event.kind == reexec.EVENT
                return
            self._handle(event)
            # A burst of file events must not turn into a burst of socket
            # round trips: supervise once a tick, or at once on news.
            now = time.monotonic()
            news = event is not None and event.kind == "health"
            if now >= self._next_supervise or news:
                self._next_supervise = now + TICK
                self._supervise(force_status=news)

    def _handle(self, event: Event | None) -> None:
        now = time.monotonic()
        if event is not None and event.kind in ("changed", "written"):
            self.debounce.touch(now, event.detail, complete=event.kind == "written")
        elif event is not None and event.kind == "apply":
            self.apply(event.detail or "request")
            return
        due = self.debounce.due_in(now)
        if due is not None and due <= 0:
            self.apply("files changed")

    # -- supervision ---------------------------------------------------------
    def _supervise(self, force_status: bool = False) -> None:
        assert self.applier is not None
        master = self.applier.master
        now = time.monotonic()
        if master.pid is not None and not master.alive() and now >= self._next_restart:
            self.state.haproxy_restarts += 1
            log.error("haproxy master %s exited (code %s); restarting (backoff %.0fs)",
                      master.pid, master.exit_code(), self._backoff)
            self._next_restart = now + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            self._restart_master()
            force_status = True
        elif master.alive() and now - self._next_restart > 60:
            self._backoff = 1.0
        if master.alive():
            self.applier.ops.tick()
        if force_status or now >= self._status_written_at + STATUS_REFRESH:
            self.write_status()
        self._ping_watchdog(now)

    def _ping_watchdog(self, now: float) -> None:
        # Pinged from the main loop, so a wedged loop (not just a dead
        # process) makes systemd restart us.
        if self._watchdog_every is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + self._watchdog_every

    def _restart_master(self) -> None:
        assert self.applier is not None
        try:
            self.applier.master.start()
            self.applier.reapply_admin_states()
        except HaproxyK8sError as e:
            self.state.record_error(e.record())
            log.error("restart failed: %s", e)

    # -- status ----------------------------------------------------------------
    def status_doc(self) -> dict[str, Any]:
        assert self.applier is not None
        master = self.applier.master
        table = master.try_proc_table() if master.alive() else None
        config = self.applier.applied
        health = self.health.latest() if self.health is not None else None
        rows = health.rows if health is not None else None
        return {
            "daemon": {"pid": self.state.pid, "running": True,
                       "version": __version__, "started_at": self._started_at,
                       "generation": self.state.generation,
                       "applied_at": self.state.applied_at,
                       "last_error": self.state.last_error,
                       "applies": self.state.applies,
                       "last_apply": self.state.last_apply,
                       "config_dir": str(self.config_dir),
                       "haproxy_restarts": self.state.haproxy_restarts,
                       "config_errors": self.state.config_errors,
                       "runtime_changes": self.state.runtime_changes},
            "haproxy": {"pid": master.pid if master.alive() else None,
                        "version": self.version,
                        "reloads": table.master.reloads if table else None,
                        "failed_reloads": self.state.failed_reloads,
                        "workers": sorted(table.worker_pids) if table else [],
                        "reachable": table is not None and rows is not None,
                        "prometheus_exporter": self.promex},
            "clusters": cluster_view(config, rows) if config else [],
        }

    def write_status(self) -> None:
        """Publish status.json and the metrics snapshot.

        Called at once after an apply or a health transition, else every
        STATUS_REFRESH: ages (`last_change_s`) change every second, and
        rebuilding the document for thousands of nodes each tick cost a sixth
        of a core (bench, 1,000 clusters). `haproxy-k8s status` reads HAProxy
        live, so it never shows these ages stale.
        """
        assert self.applier is not None
        self._status_written_at = time.monotonic()
        doc = self.status_doc()
        self._clusters = doc["clusters"]
        self.metrics.publish(snapshot_of(self.state, doc))
        text = dumps(doc)
        if text == self._last_status:
            return
        try:
            write_atomic(self.applier.paths.status, text, durable=False)
        except OSError as e:
            # Keep balancing; say it once per different failure, not every tick.
            if self._status_error != str(e):
                log.error("cannot write %s: %s", self.applier.paths.status, e)
                self._status_error = str(e)
            return
        self._last_status, self._status_error = text, None

    def shutdown(self) -> None:
        """SIGTERM/SIGINT: stop HAProxy gracefully (this is what `systemctl stop` means)."""
        assert self.applier is not None
        self.notifier.stopping()
        self.applier.master.stop()
        doc = self.status_doc()
        doc["daemon"]["running"] = False
        write_atomic(self.applier.paths.status, dumps(doc))
        self.applier.paths.daemon_pid.unlink(missing_ok=True)
        log.info("stopped")
