"""The daemon's event log: what changed, one line each, for `events` and `describe`.

Every state change the daemon sees or makes (a node's health, an apply, an
operator's drain, a node added or deleted, HAProxy restarted) is one Event:
kept in a bounded ring for `haproxy-k8s events`, in a per-object history of
the last transitions for `haproxy-k8s describe`, and logged once, so the
journal reads the same lines. Recorded from the main loop and the health
poller's thread, so it takes a lock; it never talks to HAProxy.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .status import utc_now

log = logging.getLogger(__name__)

RING = 500  # events kept for `events`
PER_OBJECT = 20  # transitions kept per node for `describe`
# Kinds whose events are worth a warning in the journal.
_WARN_WORDS = ("→ DOWN", "→ NOLB", "→ UNKNOWN", "failed", "exited", "refused")


# slots: thousands are kept (a node's history), and an instance dict would double each.
@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at: str  # utc_now()
    kind: str  # health | apply | config | operator | haproxy
    object: str  # "cluster-0/m1", "config", "haproxy"
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EventLog:
    def __init__(self, ring: int = RING, per_object: int = PER_OBJECT) -> None:
        self._lock = threading.Lock()
        self._ring: collections.deque[Event] = collections.deque(maxlen=ring)
        self._per_object = per_object
        # A tuple per node, not a deque: a deque is 760 bytes even with one event, and at
        # 1,000 clusters there are 6,000 nodes, most with one or two events.
        self._by_object: dict[str, tuple[Event, ...]] = {}
        self._seq = 0
        self._at = ""  # the last timestamp: events of one burst share the string

    def record(self, kind: str, obj: str, message: str, level: int | None = None) -> Event:
        """Keep the event and log it once; `level` overrides the level read from the words."""
        with self._lock:
            self._seq += 1
            at = self._at = _same(utc_now(), self._at)
            event = Event(self._seq, at, kind, obj, message)
            self._ring.append(event)
            if "/" in obj:  # nodes only: the daemon-wide kinds live in the ring
                kept = (*self._by_object.get(obj, ()), event)
                self._by_object[obj] = kept[max(0, len(kept) - self._per_object):]
        warn = any(word in message for word in _WARN_WORDS)
        # The journal line: the same words `events` prints, minus the time
        # the journal stamps itself.
        if level is None:
            level = logging.WARNING if warn else logging.INFO
        log.log(level, "%s %s %s", kind, obj, message)
        return event

    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

    def since(self, seq: int, limit: int = RING) -> list[Event]:
        """Events after `seq`, oldest first, at most `limit` (the newest ones)."""
        with self._lock:
            events = [e for e in self._ring if e.seq > seq]
        return events[-limit:] if limit > 0 else []

    def history(self, obj: str) -> list[Event]:
        with self._lock:
            return list(self._by_object.get(obj, ()))

    def last(self, obj: str, kind: str) -> Event | None:
        return next((e for e in reversed(self.history(obj)) if e.kind == kind), None)

    def objects(self) -> list[str]:
        """The nodes that have a history."""
        with self._lock:
            return list(self._by_object)

    def forget(self, gone: Iterable[str]) -> None:
        """Drop the histories of nodes gone from the config and from HAProxy.

        `describe` cannot name them any more, and adds and removes of ever other
        nodes piled them up: a soak that added and removed a node in each of
        1,000 clusters left 2,000 histories (0.8 MiB) of nodes long gone. Their
        events stay in the ring for `events`. An operator's last drain or maint
        is kept: that state outlives the node (apply/operator.py), and
        `describe` of the node added again says who set it.
        """
        with self._lock:
            for obj in gone:
                events = self._by_object.pop(obj, ())
                last = next((e for e in reversed(events) if e.kind == "operator"), None)
                if last is not None:
                    self._by_object[obj] = (last,)


def _same(text: str, last: str) -> str:
    return last if text == last else text


def node_changes(old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]]
                 ) -> list[tuple[str, str]]:
    """(object, message) for nodes added, removed or changed between two applies.

    Each side is (cluster/node, "address:port weight W") pairs.
    """
    before, after = dict(old), dict(new)
    changes = [(name, f"added ({after[name]})") for name in sorted(after.keys() - before.keys())]
    changes += [(name, "removed from the config (draining until its sessions end)")
                for name in sorted(before.keys() - after.keys())]
    changes += [(name, f"changed: {before[name]} → {after[name]}")
                for name in sorted(before.keys() & after.keys()) if before[name] != after[name]]
    return changes
