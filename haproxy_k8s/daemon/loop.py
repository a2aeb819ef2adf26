"""The daemon: one main loop that owns all mutable state.

Sources (the drop-in directory, later discovery), signal handlers, the control
socket and the health poller only *post* events to a SimpleQueue (safe to
call from a signal handler); the loop takes them one at a time, so exactly
one place merges desired state, applies it and talks to the HAProxy master.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..apply.applier import Applier, ApplyAction, ApplyOutcome
from ..config.loader import config_files, state_dir_hint
from ..config.model import Config, HaproxySettings
from ..errors import ConfigError, HaproxyK8sError, ValidationError
from ..haproxy.check import haproxy_version
from ..sources.base import NodeSource, merge_nodes
from ..sources.files import FileSource
from ..sources.secretfiles import SecretFiles, secret_files
from ..vip.manager import VipManager
from ..vip.metrics import VipCollector
from . import reexec
from .backoff import Backoff
from .control import ControlServer, Request
from .debounce import Debouncer
from .health import HealthPoller, poll_interval
from .lock import StateDirLock
from .publisher import StatusPublisher
from .readiness import wait_serving
from .state import DaemonState
from .status import ApplyRecord, utc_now
from .systemd import Notifier

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between supervision rounds when nothing happens
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Event:
    # changed (a write may be in progress) | written (a file is whole again) |
    # apply | stop | health (a node changed state) | control (a CLI request) |
    # publish (validate and publish a runtime change's file) |
    # reexec (replace our code, keep HAProxy)
    kind: str
    detail: str = ""
    request: Request | None = None


class Daemon:
    def __init__(self, config_dir: Path, node_sources: list[NodeSource] | None = None) -> None:
        self.config_dir = config_dir
        self.files = FileSource(config_dir)
        self.node_sources = list(node_sources or [])
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.state = DaemonState(pid=os.getpid())
        self.applier: Applier | None = None
        self.version, self.promex = "unknown", True
        self._restarts = Backoff(1.0, MAX_BACKOFF)  # of the HAProxy master
        self.health: HealthPoller | None = None
        self.publisher: StatusPublisher | None = None
        self.control: ControlServer | None = None
        self.lock: StateDirLock | None = None
        self.debounce = Debouncer(0.2, 2.0, 0.02)
        self.notifier = Notifier()
        self._watchdog_every = self.notifier.watchdog_interval()
        self._watchdog_at = 0.0
        self._ready = False
        self._next_supervise = 0.0
        self.on_ready: Callable[[], None] | None = None  # called once, at READY
        self._secret_files = SecretFiles()
        self.vip: VipManager | None = None  # [vip]: keepalived, set up by start()
        self._reexec = False  # the loop ended on SIGUSR2: exec the new code, keep HAProxy

    # -- posting (any thread, or a signal handler) ---------------------------
    def post(self, kind: str, detail: str = "") -> None:
        self.events.put(Event(kind, detail))

    def _post_file(self, path: str, complete: bool) -> None:
        self.post("written" if complete else "changed", path)

    def _post_request(self, request: Request) -> None:
        self.events.put(Event("control", request.op, request))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.post("apply" if signum == signal.SIGHUP else "stop", signal.Signals(signum).name)

    # -- desired state -----------------------------------------------------------
    def desired(self) -> Config:
        """Every source's answer merged into one Config (raises ConfigError)."""
        base = self.files.load()
        sets = [s for source in self.node_sources for s in source.node_sets(base)]
        return merge_nodes(base, sets)

    # -- start ----------------------------------------------------------------
    def start(self) -> None:
        """Adopt or start HAProxy on the first valid config; raise if nothing can serve."""
        config, error = self._initial_config()
        self.lock = StateDirLock(Path(config.haproxy.state_dir))
        self.lock.acquire()
        self.applier = Applier(config, promex=self._detect(config))
        # Thousands of runtime changes in one apply must not starve the watchdog.
        self.applier.ops.heartbeat = lambda: self._ping_watchdog(time.monotonic())
        # A transition wakes the main loop, so status.json follows it at once.
        self.health = HealthPoller(self.applier.paths.admin_socket,
                                   on_change=lambda: self.post("health"))
        self.health.listen(self.applier.paths.log_socket)  # before HAProxy can log
        self.publisher = StatusPublisher(self)
        self.vip = VipManager(self.applier.paths.root, on_change=lambda: self.post("health"))
        self.publisher.metrics.registry.register(VipCollector(self.vip))
        adopted = self.applier.master.adopt()
        if adopted is not None:
            self.state.generation = 1
        if error is not None:
            self._serve_last_good(error, adopted is not None)
        outcome = self.apply("start")
        if not self.applier.master.alive() and isinstance(outcome.error, ConfigError):
            # Not only broken drop-ins: an unreadable password file, a taken port.
            self._serve_last_good(outcome.error, adopted is not None)
        if not self.applier.master.alive():
            raise HaproxyK8sError(self._error_text() or "HAProxy could not be started")

    def _initial_config(self) -> tuple[Config, HaproxyK8sError | None]:
        try:
            config = self.desired()
        except ConfigError as e:
            # No config files at all (a wrong --config-dir): nothing was ever
            # published for it, and a guessed state dir may be a live
            # service's. Touch nothing.
            if not config_files(self.config_dir):
                raise
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

    def _declare_ready(self) -> None:
        """One moment of readiness: everything we promise answers, then READY=1.

        HAProxy serves every bind (and the stats page), our metrics listen,
        the health poller has a first sample; only then the pid file, a
        status.json saying we run, and systemd's READY=1.
        """
        assert self.applier is not None and self.health is not None
        assert self.publisher is not None
        self.health.poll()
        problems = wait_serving(self.applier.applied, self.promex)
        for problem in problems:
            log.error("not serving after start: %s", problem)
        self.publisher.write_pid()
        self._ready = True
        self.publisher.write()
        self.notifier.ready(self.publisher.summary())
        if self.on_ready is not None:
            self.on_ready()

    # -- apply ----------------------------------------------------------------
    def apply(self, reason: str) -> ApplyOutcome:
        assert self.applier is not None and self.publisher is not None
        self.debounce.clear()
        self.state.applies += 1
        if self._ready:
            self.notifier.reloading()
        try:
            outcome = self.applier.apply(self.desired())
        except ConfigError as e:
            outcome = ApplyOutcome(ApplyAction.ERROR, e, reason="the config is invalid")
        self._record(outcome, reason)
        if outcome.action != "noop" and self.health is not None:
            self.health.request_full()  # servers came, went or moved
        if self.applier.pending.waiting:
            # The change is live; its file is validated once status says so.
            self.post("publish")
        self._refresh_config_settings()
        if self.vip is not None:
            self.vip.configure(self.applier.applied)
        if self._ready:
            self.publisher.write()
            if self.applier.master.alive():
                # systemd expects READY=1 after every RELOADING=1.
                self.notifier.ready(self.publisher.summary())
        return outcome

    def _record(self, outcome: ApplyOutcome, reason: str) -> None:
        self.state.history.append(ApplyRecord(
            at=utc_now(), reason=reason, action=outcome.action, ok=outcome.ok,
            seconds=round(outcome.seconds, 4), plan=outcome.reason,
            error=str(outcome.error) if outcome.error is not None else None))
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
            log.info("applied generation %d (%s: %s; on %s) in %.0f ms", self.state.generation,
                     outcome.action, outcome.reason, reason, outcome.seconds * 1000)

    def _refresh_config_settings(self) -> None:
        assert self.applier is not None and self.publisher is not None
        applied = self.applier.applied
        if applied is not None:
            self.debounce.configure(applied.watch)
        if self.health is not None:
            self.health.interval = poll_interval(applied)
        if self._ready and applied is not None:
            self.publisher.serve_metrics(applied)

    def _finish_pending(self) -> None:
        """Validate and publish a runtime change's file (apply/deferred.py)."""
        assert self.applier is not None
        error = self.applier.finish_pending()
        if error is not None:
            self.state.record_error(error.record())
            if self._ready and self.publisher is not None:
                self.publisher.write()  # status shows the error at once

    def _error_text(self) -> str:
        return str((self.state.last_error or {}).get("message", ""))

    # -- loop -------------------------------------------------------------------
    def run(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        reexec.install(self.post)
        # Watch before the first apply: an edit made while HAProxy starts
        # must not be missed (it only queues a second, possibly no-op, apply).
        self._start_sources()
        started = False
        try:
            self.start()
            started = True
            self._start_observers()
            self._declare_ready()
            self._loop()
        finally:
            self._stop_sources()
            self._stop_observers()
            if started:
                self._finish_pending()  # a re-exec or the next start reads the file
            if self._reexec and started:
                # The lock and sockets close on exec (CLOEXEC): the new code takes them.
                self.notifier.reloading()
                reexec.execute()
            if started:
                self.shutdown()
            if self.lock is not None:
                self.lock.release()

    def _start_sources(self) -> None:
        self.files.start(self._post_file)
        for source in self.node_sources:
            source.start(lambda detail, _complete: self.post("apply", detail))

    def _stop_sources(self) -> None:
        self.files.stop()
        for source in self.node_sources:
            source.stop()

    def _start_observers(self) -> None:
        assert self.applier is not None and self.health is not None
        assert self.publisher is not None
        if self.applier.applied is not None:
            self.publisher.serve_metrics(self.applier.applied)
        self.health.start()
        self.control = ControlServer(self.applier.paths.control_socket, self._post_request)
        self.control.start()

    def _stop_observers(self) -> None:
        if self.control is not None:
            self.control.stop()
        if self.health is not None:
            self.health.stop()
        if self.publisher is not None:
            self.publisher.close()

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
            news = event is not None and event.kind in ("health", "control")
            if now >= self._next_supervise or news:
                self._next_supervise = now + TICK
                self._supervise(force_status=news)

    def _handle(self, event: Event | None) -> None:
        now = time.monotonic()
        if event is not None and event.kind in ("changed", "written"):
            self.debounce.touch(now, event.detail, complete=event.kind == "written")
        elif event is not None and event.kind == "publish":
            self._finish_pending()
            return
        elif event is not None and event.kind == "apply":
            self.apply(event.detail or "request")
            return
        elif event is not None and event.request is not None:
            self._answer(event.request)
            return
        due = self.debounce.due_in(now)
        if due is not None and due <= 0:
            self.apply("files changed")

    def _answer(self, request: Request) -> None:
        """Carry out a control request from the CLI and answer it."""
        assert self.applier is not None
        if request.op == "reload":
            outcome = self.apply("control: reload")
            request.answer({"ok": outcome.ok, "action": outcome.action,
                            "reason": outcome.reason, "generation": self.state.generation,
                            "seconds": round(outcome.seconds, 4),
                            "error": self.state.last_error if not outcome.ok else None})
            return
        target = str(request.args.get("target", ""))
        try:
            self.applier.set_admin_state(target, request.op)
        except HaproxyK8sError as e:
            request.answer({"ok": False, "error": {"message": str(e)}})
            return
        log.info("operator: %s is now %s", target, request.op)
        if self.health is not None:
            self.health.request_full()
        self.state.runtime_changes += 1
        request.answer({"ok": True, "target": target, "state": request.op})

    # -- supervision ---------------------------------------------------------
    def _supervise(self, force_status: bool = False) -> None:
        assert self.applier is not None and self.publisher is not None
        master = self.applier.master
        if self.vip is not None:  # before any restart: a dead HAProxy releases the VIP
            self.vip.tick(master.alive(), self.publisher.cluster_counts())
        now = time.monotonic()
        if master.pid is not None and not master.alive() and self._restarts.due(now):
            self.state.haproxy_restarts += 1
            delay = self._restarts.failed(now)
            log.error("haproxy master %s exited (code %s); restarting (backoff %.0fs)",
                      master.pid, master.exit_code(), delay)
            self._restart_master()
            force_status = True
        elif master.alive():
            self._restarts.reset_if_stable(now)
        if master.alive():
            self.applier.ops.tick()
        self.files.verify()  # a replaced config dir is watched again
        if self._secret_files.changed(secret_files(self.applier.applied,
                                                   self.applier.attempted)):
            self.post("apply", "password file changed")
        self.publisher.maybe_write(now, force=force_status)
        self._ping_watchdog(now)

    def _ping_watchdog(self, now: float) -> None:
        # Pinged from the main loop, so a wedged loop (not just a dead
        # process) makes systemd restart us.
        if self._watchdog_every is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + self._watchdog_every

    def _restart_master(self) -> None:
        assert self.applier is not None
        self._finish_pending()  # the master reads the file: it must be the checked one
        try:
            self.applier.master.start()
            self.applier.reapply_admin_states()
        except HaproxyK8sError as e:
            self.state.record_error(e.record())
            log.error("restart failed: %s", e)

    def shutdown(self) -> None:
        """SIGTERM/SIGINT: stop HAProxy gracefully (this is what `systemctl stop` means)."""
        assert self.applier is not None
        self.notifier.stopping()
        if self.vip is not None:
            self.vip.stop()  # hand the VIP over before HAProxy stops serving
        self.applier.master.stop()
        if self.publisher is not None:
            self.publisher.write_final()
        log.info("stopped")
