"""The health poller: reads `show stat` from HAProxy's admin socket on an interval.

It keeps the latest per-server rows behind a lock, for status.json and the
metrics, and logs each server's state transition once
(`cluster-0/m1 UP → DOWN (L4CON: Connection refused)`). It only reads: the
daemon's main loop stays the one place that changes HAProxy.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config.model import Config, backend_name, cluster_of_backend, is_node_server
from ..errors import RuntimeApiError
from ..haproxy.replies import ServerKey
from ..haproxy.runtime import SERVER_COLUMNS, RuntimeClient
from ..sources.base import UpNodes
from . import malloc
from .logsink import LogSink
from .states import StatRow, StatRows, check_reason, node_state

log = logging.getLogger(__name__)

# More servers than this first seen in one read are told as counts by state.
FIRST_SEEN_DETAIL = 20

# Poll at the fastest check interval, within these bounds: faster than HAProxy
# checks tells nothing new, slower than a second makes `status` lag.
MIN_INTERVAL, MAX_INTERVAL = 0.25, 1.0
# With HAProxy's log messages arriving (logsink.py), transitions come as they
# happen and a full poll only reconciles (sessions, check texts, a dropped
# message): reading every server every second cost 9 % of a core at 3,000.
RECONCILE_INTERVAL = 10.0
RECONCILE_PER_SERVER = 0.01  # seconds: 30 s between full reads at 3,000 servers
# News about more backends than this at once: one full poll is cheaper.
MAX_TARGETED = 32
GATHER = 0.1  # seconds to collect news before reading: at most 10 targeted reads a second
# A reload can make the admin socket refuse a connection for a moment; only
# this many failed polls in a row are worth a warning.
UNREACHABLE_AFTER = 3
THREAD_NAME = "haproxy-k8s-health"


@dataclass(frozen=True)
class HealthSnapshot:
    """One poll: `rows` is None when the admin socket could not be read."""

    rows: StatRows | None = None
    taken_at: float = 0.0  # time.monotonic(); 0 before the first poll
    error: str | None = "not polled yet"
    # When each backend's rows were read (time.monotonic()): a backend is read
    # again on news, the rest only by the slow full read, so their `lastchg`
    # ages are as of then (status_ages() brings them up to now).
    read_at: Mapping[str, float] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        return self.rows is not None


def poll_interval(config: Config | None) -> float:
    """Seconds between polls for `config`: its fastest check interval, bounded."""
    if config is None or not config.clusters:
        return MAX_INTERVAL
    fastest = min(c.settings.check_interval_ms for c in config.clusters) / 1000
    return min(MAX_INTERVAL, max(MIN_INTERVAL, fastest))


def read_stats(admin_socket: Path, timeout: float = 2.0, backend: str | None = None,
               columns: Collection[str] | None = None) -> dict[ServerKey, StatRow]:
    """`show stat` of servers (of one backend), keyed by (proxy, server), with
    only `columns` (None: all); raises RuntimeApiError."""
    return dict(RuntimeClient(admin_socket, timeout).show_server_stats(backend, columns))


def server_label(key: ServerKey) -> str:
    """`cluster-0/m1` for our backends; HAProxy's own names for anything else."""
    backend, server = key
    return f"{cluster_of_backend(backend) or backend}/{server}"


def is_managed_server(key: ServerKey) -> bool:
    return is_node_server(*key)


def describe(key: ServerKey, before: str | None, row: StatRow) -> str:
    """The log line for one server whose state is new or changed."""
    after = node_state(row)
    reason = _reason(after, row)
    head = f"{server_label(key)} is {after}" if before is None else \
        f"{server_label(key)} {before} → {after}"
    return f"{head} ({reason})" if reason else head


def _reason(state: str, row: StatRow) -> str:
    # MAINT and DRAIN are set by an operator (or a failed DNS lookup, which
    # the status text names); the last check does not explain them.
    if state in ("MAINT", "DRAIN"):
        status = row.get("status", "")
        return status if status not in ("MAINT", "DRAIN") else ""
    reason, detail = check_reason(row), row.get("last_chk", "")
    if reason == "INI":  # HAProxy's placeholder until the first check completes
        return "first check pending"
    return f"{reason}: {detail}" if reason and detail else reason


def transitions(states: Mapping[ServerKey, str],
                rows: StatRows) -> list[tuple[ServerKey, str | None, StatRow]]:
    """Managed servers whose state differs from `states` (None: first seen)."""
    changed = []
    for key, row in sorted(rows.items()):
        if is_managed_server(key) and states.get(key) != node_state(row):
            changed.append((key, states.get(key), row))
    return changed


class HealthPoller:
    """Polls on its own thread; `latest()` is safe from any thread."""

    def __init__(self, admin_socket: Path, interval: float = MAX_INTERVAL, *,
                 timeout: float = 2.0, on_change: Callable[[], None] | None = None,
                 on_transition: Callable[[ServerKey, str | None, StatRow], None] | None = None,
                 on_first_seen: Callable[[str], object] | None = None) -> None:
        self.admin_socket = admin_socket
        self.interval = interval  # read every round: the daemon may change it after an apply
        self.timeout = timeout
        self.on_change = on_change  # called (on the poller thread) after a transition
        # Given each transition (on the poller thread) instead of logging it:
        # the daemon's event log records and logs it.
        self.on_transition = on_transition
        self.on_first_seen = on_first_seen  # given their counts, instead of each
        self._snapshot = HealthSnapshot()
        self._first = threading.Event()  # set by the first read's snapshot
        self._lock = threading.Lock()  # guards _snapshot
        self._poll_lock = threading.Lock()  # one poll at a time: _states is shared
        self._states: dict[ServerKey, str] = {}
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # News from HAProxy's log messages (logsink.py), or a request for a
        # full poll after an apply: wakes the thread before its interval ends.
        self.events_live = False  # set when the log socket is bound
        self._sink: LogSink | None = None
        self._wake = threading.Event()
        self._dirty: set[str] = set()  # backends to re-read; guarded by _lock
        self._full = False  # guarded by _lock

    # -- lifecycle ---------------------------------------------------------
    def listen(self, log_socket: str) -> None:
        """Take HAProxy's log messages at `log_socket` (an abstract socket name,
        StatePaths.log_socket) as news; before HAProxy starts."""
        self._sink = LogSink(log_socket, self.notify)
        self.events_live = self._sink.bind()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("health poller already started")
        if self._sink is not None:
            self._sink.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the thread; a poll in progress ends within `self.timeout`."""
        self._stop.set()
        self._wake.set()
        if self._sink is not None:
            self._sink.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("health poller did not stop within %.0fs", timeout)
            self._thread = None
        # Nobody watches any more: readers must not take the last rows for news.
        with self._lock:
            self._snapshot = HealthSnapshot(None, time.monotonic(), "health poller stopped")

    def _run(self) -> None:
        # The stop Event is set together with _wake, so stop() never waits a full interval.
        # A read made before the thread started counts: the next full read is
        # due an interval after it.
        latest = self.latest()
        next_full = 0.0 if latest.rows is None else latest.taken_at + self.full_interval()
        while not self._stop.is_set():
            if self._dirty and self._first.is_set():
                # Servers go DOWN one after another (checks are spread over
                # their interval): gather a moment, then read once. The first
                # read (the daemon's READY waits for it) does not wait.
                self._stop.wait(GATHER)
            now = time.monotonic()
            with self._lock:
                asked = self._full
                full, self._full = asked or now >= next_full, False
                dirty, self._dirty = self._dirty, set()
            try:
                if full or len(dirty) > MAX_TARGETED:
                    self.poll(announce=asked)
                    next_full = time.monotonic() + self.full_interval()
                elif dirty:
                    self.refresh(dirty)
            except Exception:  # a bug here must not end health reporting for good
                log.exception("health poll failed")
            self._wake.wait(max(0.0, next_full - time.monotonic()))
            self._wake.clear()

    def full_interval(self) -> float:
        if not self.events_live:
            return self.interval
        # A full read costs in proportion to the servers: so does its spacing.
        rows = self.latest().rows
        return max(self.interval, RECONCILE_INTERVAL, len(rows or ()) * RECONCILE_PER_SERVER)

    def notify(self, backends: set[str]) -> None:
        """These backends' servers changed (any thread): re-read them now."""
        with self._lock:
            self._dirty |= backends
        self._wake.set()

    def request_full(self) -> None:
        """Re-read every server now (after an apply: servers came and went)."""
        with self._lock:
            self._full = True
        self._wake.set()

    # -- polling -------------------------------------------------------------
    def latest(self) -> HealthSnapshot:
        with self._lock:
            return self._snapshot

    def poll(self, announce: bool = False) -> HealthSnapshot:
        """Read `show stat` once, publish the snapshot and log transitions.

        `announce`: call on_change even when no server changed state. A full
        read asked for after an apply renews every row, and the status built
        from them then is the one a next apply starts from: written now, the
        next reload's status write rebuilds only what changed since (1,000
        clusters' statuses were 60 ms of each structural reload)."""
        with self._poll_lock:
            return self.poll_locked(announce)

    def poll_locked(self, announce: bool = False) -> HealthSnapshot:
        with self._lock:
            self._full = False  # this read answers every full read asked for so far
        try:
            rows = read_stats(self.admin_socket, self.timeout, columns=SERVER_COLUMNS)
        except RuntimeApiError as e:
            return self._publish(HealthSnapshot(None, time.monotonic(), str(e)))
        changed = self._note(rows)
        now = time.monotonic()
        snapshot = self._publish(HealthSnapshot(rows, now, None,
                                                dict.fromkeys({b for b, _ in rows}, now)))
        malloc.trim()  # a full read parses every server's ~120 columns: a burst
        if (changed or announce) and self.on_change is not None:
            self.on_change()
        return snapshot

    def refresh(self, backends: set[str]) -> HealthSnapshot:
        """Re-read only `backends` and merge them into the last full poll's rows."""
        with self._poll_lock:
            base = self.latest().rows
            if base is None:
                return self.poll_locked()
            fresh: dict[ServerKey, StatRow] = {}
            try:
                for backend in sorted(backends):
                    fresh.update(read_stats(self.admin_socket, self.timeout, backend,
                                             SERVER_COLUMNS))
            except RuntimeApiError:
                return self.poll_locked()  # gone after a reload, or unreachable
            rows = {k: v for k, v in base.items() if k[0] not in backends}
            rows.update(fresh)
            changed = self._note(fresh, forget=False)
            now = time.monotonic()
            read_at = {**self.latest().read_at, **dict.fromkeys(backends, now)}
            snapshot = self._publish(HealthSnapshot(rows, now, None, read_at))
        if changed and self.on_change is not None:
            self.on_change()
        return snapshot

    def _publish(self, snapshot: HealthSnapshot) -> HealthSnapshot:
        if snapshot.reachable:
            if self._failures >= UNREACHABLE_AFTER:
                log.info("HAProxy's admin socket answers again")
            self._failures = 0
        else:
            self._failures += 1
            if self._failures == UNREACHABLE_AFTER:
                log.warning("cannot read HAProxy's stats: %s", snapshot.error)
        with self._lock:
            self._snapshot = snapshot
        self._first.set()
        return snapshot

    def wait_first(self, timeout: float) -> bool:
        """Wait, bounded, until some read (good or failed) has been published."""
        return self._first.wait(timeout)

    def _note(self, rows: StatRows, forget: bool = True) -> bool:
        """Log and remember every state change; forget servers that are gone.

        Servers keep their last state while HAProxy is unreachable, so a
        restart that changes nothing logs nothing.
        """
        changed = transitions(self._states, rows)
        # Thousands of servers first seen (the first read at 1,000 clusters)
        # are one line of counts, not a line each: `status` has each one.
        first = collections.Counter(node_state(row) for _, before, row in changed
                                    if before is None)
        quiet = first.total() > FIRST_SEEN_DETAIL
        for key, before, row in changed:
            after = node_state(row)
            if not (quiet and before is None):
                self._tell(key, before, row, after)
            self._states[key] = after
        if quiet:
            self._tell_first_seen(first)
        for key in [k for k in self._states if forget and k not in rows]:
            del self._states[key]
        return bool(changed)

    def _tell(self, key: ServerKey, before: str | None, row: StatRow, after: str) -> None:
        if self.on_transition is not None:
            self.on_transition(key, before, row)
        else:
            level = logging.WARNING if after in ("DOWN", "NOLB", "UNKNOWN") else logging.INFO
            log.log(level, "%s", describe(key, before, row))

    def _tell_first_seen(self, states: collections.Counter[str]) -> None:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        if self.on_first_seen is not None:
            self.on_first_seen(f"{states.total()} nodes first seen: {counts}")
        else:
            log.info("%d servers first seen: %s", states.total(), counts)


def up_nodes_of(poller: Callable[[], HealthPoller | None]) -> UpNodes:
    """A cluster's UP nodes by name from the health poller's latest rows (None: unknown)."""
    def up(cluster: str) -> frozenset[str] | None:
        health = poller()
        latest = health.latest().rows if health is not None else None
        if latest is None:
            return None
        backend = backend_name(cluster)
        return frozenset(name for (b, name), row in latest.items()
                         if b == backend and is_node_server(b, name)
                         and node_state(row) == "UP")
    return up
