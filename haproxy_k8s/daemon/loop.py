"""The daemon: one main loop that owns all mutable state.

Sources (the drop-in directory, later discovery), signal handlers, the control
socket and the health poller only *post* events to a SimpleQueue (safe to
call from a signal handler); the loop takes them one at a time, so exactly
one place merges desired state, applies it and talks to the HAProxy master.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..apply.applier import Applier, ApplyAction, ApplyOutcome
from ..apply.beside import Beside
from ..backoff import Backoff
from ..config.loader import config_files, state_dir_hint
from ..config.model import Config, HaproxySettings
from ..errors import ConfigError, HaproxyK8sError, StateDirError
from ..haproxy.check import haproxy_version
from ..sources.base import NodeSource, merge_nodes
from ..sources.discovery import DiscoverySources
from ..sources.files import FileSource, Loaded
from ..sources.secretfiles import SecretFiles, secret_files
from ..vip.manager import VipManager
from . import inspect, malloc, reexec, requests, supervise
from .ahead import Ahead
from .control import READ_ONLY_OPS, ControlServer, Request
from .debounce import Debouncer
from .events import EventLog
from .health import MAX_TARGETED, HealthPoller, poll_interval, up_nodes_of
from .holddown import HoldDown, destructive_changes
from .lock import StateDirLock
from .publisher import StatusPublisher
from .readiness import wait_serving
from .state import DaemonState
from .systemd import Notifier

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds between supervision rounds when nothing happens; half that while a
# [vip] is configured: the VIP's fitness follows HAProxy's death within it.
TICK = 1.0
VIP_TICK = 0.5
EARLY_READ_THREAD = "haproxy-k8s-early-read"
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Event:
    # changed (a write may be in progress) | written (a file is whole again) |
    # apply | stop | health (a node changed state) | control (a CLI request) |
    # publish (a runtime change's file was validated beside the loop) |
    # reexec (replace our code, keep HAProxy)
    kind: str
    detail: str = ""
    request: Request | None = None


class Daemon:
    def __init__(self, config_dir: Path, node_sources: list[NodeSource] | None = None) -> None:
        self.config_dir = config_dir
        self.files = FileSource(config_dir)
        self.node_sources = list(node_sources or [])
        # Kubernetes discovery, one source per cluster that asks for it (synced on each load).
        self.discovery = DiscoverySources(up_nodes_of(lambda: self.health))
        self.node_sources.append(self.discovery)
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.state = DaemonState(pid=os.getpid())
        self.eventlog = EventLog()  # for `events`, `describe` and the journal
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
        self.hold = HoldDown()
        # An apply that could not write the state dir is tried again, with backoff.
        self.retry_at: float | None = None
        self._write_retry = Backoff(1.0, MAX_BACKOFF)
        self._with_content: frozenset[str] = frozenset()  # files with content at the last apply
        self._file_events = 0  # file events handled: an early read is of the files after one
        # The drop-ins read during the settle time (_read_early), with the count
        # of file events handled when the read began.
        self._early: tuple[int, Beside[Loaded]] | None = None

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
    def desired(self, early: Beside[Loaded] | None = None) -> Config:
        """Every source's answer merged into one Config (raises ConfigError),
        from the files as `early` read them if given."""
        base = self.files.load() if early is None else self.files.commit(early.result())
        self.discovery.sync(base)
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
        self.health = HealthPoller(
            self.applier.paths.admin_socket, on_change=lambda: self.post("health"),
            on_transition=lambda *change: inspect.record_transition(self, *change),
            on_first_seen=lambda counts: self.eventlog.record("health", "health", counts))
        self.health.listen(self.applier.paths.log_socket)  # before HAProxy can log
        self.publisher = StatusPublisher(self)
        self.vip = VipManager(self.applier.paths.root, on_change=lambda: self.post("health"))
        self.publisher.metrics.add_collector(self._vip_collector)
        adopted = self.applier.master.adopt()
        if adopted is None and error is None and supervise.take_over_orphan(self, config):
            adopted = self.applier.master.try_proc_table()
        if adopted is not None:
            self.state.generation = 1
        if error is not None:
            self._serve_last_good(error, adopted is not None)
        # The config just loaded, not a second load: an edit made meanwhile was
        # seen by the watcher, which started first, and applies next.
        ahead = Ahead(lambda: self._prepare_status(config))
        self.applier.while_checking = ahead.start
        try:
            outcome = self.apply("start", config if error is None else None)
        finally:
            self.applier.while_checking = None
            ahead.join()
        if not self.applier.master.alive() and isinstance(outcome.error, ConfigError):
            # Not only broken drop-ins: an unreadable password file, a taken port.
            self._serve_last_good(outcome.error, adopted is not None)
        if not self.applier.master.alive():
            # The failed apply's event (logged just above) has the whole error.
            raise HaproxyK8sError("HAProxy could not be started; the error is logged above"
                                  if self._error_text() else "HAProxy could not be started")

    def _vip_collector(self) -> Collector:
        from ..vip.metrics import VipCollector  # prometheus_client: not on the way to READY

        assert self.vip is not None
        return VipCollector(self.vip)

    def _prepare_status(self, config: Config) -> None:
        assert self.publisher is not None
        importlib.import_module("http.client")  # the READY checks' (haproxy/probe.py)
        # Metrics are served before READY: their modules load here, meanwhile.
        importlib.import_module("haproxy_k8s.daemon.promserver")
        importlib.import_module("haproxy_k8s.vip.metrics")
        self.publisher.prepare(config)

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
        # The poller's first read waits on HAProxy (busy with its first checks)
        # while the checks below do too.
        self.health.start()
        # The password files as they are now: a change after READY is a change.
        self._secret_files.changed(secret_files(self.applier.applied, self.applier.attempted))
        problems = wait_serving(self.applier.applied, self.promex)
        for problem in problems:
            log.error("not serving after start: %s", problem)
        if not self.health.wait_first(self.health.timeout + 1.0):
            log.warning("no health read yet: status shows nodes as unknown until one comes")
        self.publisher.write_pid()
        self._ready = True
        self.publisher.write()
        self.notifier.ready(self.publisher.summary())
        quiet_collector()
        if self.on_ready is not None:
            self.on_ready()

    # -- apply ----------------------------------------------------------------
    def apply_files(self) -> None:
        """Files changed: apply now, unless the change takes capacity away (hold it)."""
        assert self.applier is not None and self.publisher is not None
        self.debounce.clear()
        try:
            desired = self.desired(self._take_early())
        except ConfigError:
            self.apply("files changed")  # refused and reported; nothing is taken away
            return
        emptied = self.files.emptied(self._with_content)
        reasons = destructive_changes(self.applier.applied, desired, emptied)
        if self.hold.ready(desired, reasons, time.monotonic()):
            self.apply("files changed", desired)
        else:
            self.publisher.write()  # status says what is held and why

    def apply(self, reason: str, desired: Config | None = None) -> ApplyOutcome:
        assert self.applier is not None and self.publisher is not None
        self.debounce.clear()
        self.hold.clear()
        self.state.applies += 1
        if self._ready:
            self.notifier.reloading()
        before = self.applier.applied
        try:
            outcome = self._apply_preparing(desired if desired is not None else self.desired())
        except ConfigError as e:
            outcome = ApplyOutcome(ApplyAction.ERROR, e, reason="the config is invalid")
        if outcome.ok:
            self._with_content = self.files.nonempty
        self._schedule_retry(outcome)
        if outcome.error is not None:  # name the drop-in where HAProxy names a server
            outcome.error = self.files.locate(outcome.error)
        self.state.record_apply(outcome, reason)
        inspect.record_apply(self, outcome, reason, before)
        full_read = False
        if self.health is not None and 0 < len(outcome.backends) <= MAX_TARGETED:
            # These servers came, went or moved: read them back now, so the
            # status written below shows them (a drained node as DRAIN).
            self.health.refresh(set(outcome.backends))
        elif self.health is not None and outcome.action is not ApplyAction.NOOP:
            full_read = True  # a new worker: every server is new
        self._refresh_config_settings()
        if self.vip is not None:
            self.vip.configure(self.applier.applied)
        if self._ready:
            self.publisher.write()
            if self.applier.master.alive():
                # systemd expects READY=1 after every RELOADING=1.
                self.notifier.ready(self.publisher.summary())
        if full_read and self.health is not None:
            # After the write: the poller's parse of 6,000 rows would share the
            # GIL with it; its news brings another write when it is done.
            self.health.request_full()
        # The change is live and status says so: now its file is validated, beside the loop.
        self.applier.start_pending(lambda: self.post("publish"))
        return outcome

    def _apply_preparing(self, config: Config) -> ApplyOutcome:
        """applier.apply(config), with the status shapes of `config` built on a
        thread while `haproxy -c` runs (the start sets its own, wider hook):
        the write after a reload at 1,000 clusters then only adds the header."""
        assert self.applier is not None and self.publisher is not None
        if self.applier.while_checking is not None:
            return self.applier.apply(config)
        publisher = self.publisher
        ahead = Ahead(lambda: publisher.prepare(config))
        self.applier.while_checking = ahead.start
        try:
            return self.applier.apply(config)
        finally:
            self.applier.while_checking = None
            ahead.join()

    def _schedule_retry(self, outcome: ApplyOutcome) -> None:
        """A read-only or full state dir heals by itself: try again, 1 s … 30 s apart."""
        now = time.monotonic()
        if isinstance(outcome.error, StateDirError):
            self.retry_at = now + self._write_retry.failed(now)
        elif self.retry_at is not None and outcome.ok:
            self.retry_at = None
            self._write_retry = Backoff(1.0, MAX_BACKOFF)

    def _refresh_config_settings(self) -> None:
        assert self.applier is not None and self.publisher is not None
        applied = self.applier.applied
        if applied is not None:
            self.debounce.configure(applied.watch)
            self.hold.seconds = applied.watch.hold_down_ms / 1000
        if self.health is not None:
            self.health.interval = poll_interval(applied)
        if self._ready and applied is not None:
            self.publisher.serve_metrics(applied)

    def _finish_pending(self) -> None:
        """Validate and publish a runtime change's file now (apply/deferred.py)."""
        assert self.applier is not None
        self._pending_error(self.applier.finish_pending())

    def _collect_pending(self) -> None:
        """The validation worker ended: publish its file, or start on a newer one."""
        assert self.applier is not None
        self._pending_error(self.applier.collect_pending())
        # A full disk is retried with backoff, not at once. When no newer file
        # waits, give back what the render and `haproxy -c` of 2 MB left free.
        if self.retry_at is None and not self.applier.start_pending(lambda: self.post("publish")):
            malloc.trim()

    def _pending_error(self, error: HaproxyK8sError | None) -> None:
        if error is not None:
            self.state.record_error(error.record())
            if isinstance(error, StateDirError):
                self.state.state_dir_errors += 1
                self._schedule_retry(ApplyOutcome(ApplyAction.ERROR, error))
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
                reexec.execute(self.vip.exec_env() if self.vip is not None else None)
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
            now = time.monotonic()
            retry = None if self.retry_at is None else self.retry_at - now
            dues = [d for d in (self.debounce.due_in(now), self.hold.due_in(now), retry)
                    if d is not None]
            due = min(dues) if dues else None
            try:
                tick = self._tick()
                event = self.events.get(timeout=tick if due is None else max(0.0, min(due, tick)))
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
            news = event is not None and (event.kind == "health" or (
                event.request is not None and event.request.op not in READ_ONLY_OPS))
            if now >= self._next_supervise or news:
                self._next_supervise = now + self._tick()
                self._supervise(force_status=news)

    def _tick(self) -> float:
        return VIP_TICK if self.vip is not None and self.vip.settings is not None else TICK

    def _handle(self, event: Event | None) -> None:
        now = time.monotonic()
        if event is not None and event.kind in ("changed", "written"):
            self.debounce.touch(now, event.detail, complete=event.kind == "written")
            self._file_events += 1
            self._read_early()
        elif event is not None and event.kind == "publish":
            self._collect_pending()
            return
        elif event is not None and event.kind == "apply":
            self.apply(event.detail or "request")
            return
        elif event is not None and event.request is not None:
            requests.answer(self, event.request)
            return
        due = self.debounce.due_in(now)
        held = self.hold.due_in(now)
        if (due is not None and due <= 0) or (held is not None and held <= 0):
            self.apply_files()
        elif self.retry_at is not None and now >= self.retry_at:
            self.apply("retry: the state dir could not be written")

    def _read_early(self) -> None:
        """Every write finished: read the files on a thread while the settle time runs.

        A finished write is applied `watch.settle` (20 ms) later, in case more
        files follow; reading 1,000 drop-ins takes ~30 ms, and this thread only
        waits meanwhile. The apply takes the read if no file event came after
        it began (_take_early), and reads again itself otherwise.
        """
        if self.debounce.in_progress or (self._early is not None and self._early[1].running()):
            return
        self._early = (self._file_events, Beside(self.files.read, EARLY_READ_THREAD))

    def _take_early(self) -> Beside[Loaded] | None:
        """The early read, if it began after the last file event."""
        early, self._early = self._early, None
        return early[1] if early is not None and early[0] == self._file_events else None

    # -- supervision ---------------------------------------------------------
    def _supervise(self, force_status: bool = False) -> None:
        supervise.tick(self, force_status)

    def _ping_watchdog(self, now: float) -> None:
        # Pinged from the main loop, so a wedged loop (not just a dead
        # process) makes systemd restart us.
        if self._watchdog_every is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + self._watchdog_every

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


# Python's cyclic collector by default runs every 700 net allocations, and a
# full pass over the heap whenever it grew by a quarter: at 1,000 clusters
# (a million objects, nearly none in cycles) full passes took 30-160 ms
# each, several per edit. Collecting young objects every 20,000 allocations
# instead keeps cyclic garbage short-lived and full passes rare.
GC_THRESHOLDS = (20_000, 20, 20)


def collect_seldom() -> None:
    """Collections less often, from the start: the first load and start build
    the whole model, and full passes over a growing heap made it slower."""
    gc.set_threshold(*GC_THRESHOLDS)


def quiet_collector() -> None:
    """Once the daemon is up: what start-up made (modules, templates) is kept
    out of every later collection, and collections come less often."""
    gc.collect()
    gc.freeze()
    collect_seldom()
