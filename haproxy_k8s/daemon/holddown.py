"""Hold-down for changes that take serving capacity away.

An editor that truncates a file and writes it after a pause, or a tool that
writes in two steps, briefly shows the daemon a drop-in that lost a cluster,
a bind, all of its nodes or all of its content. Applied at once, that drops every client of
the cluster for a moment. Such a change is applied only once it has held,
unchanged, for `watch.hold_down`; every other change stays as fast as before,
and an operator's explicit reload applies at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..config.model import Config

log = logging.getLogger(__name__)


def destructive_changes(old: Config | None, new: Config, emptied: set[str]) -> list[str]:
    """Why `new` takes capacity away from `old` (empty: it does not)."""
    if old is None:
        return []
    reasons = [f"{name} is now empty" for name in sorted(emptied)]
    for cluster in old.clusters:
        now = new.cluster(cluster.name)
        if now is None:
            reasons.append(f"cluster {cluster.name} removed")
            continue
        gone = sorted(set(cluster.binds) - set(now.binds))
        if gone:
            reasons.append(f"clusters.{cluster.name}.bind: {', '.join(map(str, gone))} removed")
        if cluster.nodes and not now.nodes:
            reasons.append(f"cluster {cluster.name} lost every node")
    return reasons


@dataclass
class HoldDown:
    seconds: float = 2.0
    held: Config | None = None  # the destructive desired state waiting
    since: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def ready(self, desired: Config, reasons: list[str], now: float) -> bool:
        """Whether `desired` may be applied now; starts or restarts the hold if not."""
        if not reasons or self.seconds <= 0:
            self.clear()
            return True
        if self.held == desired and now >= self.since + self.seconds:
            log.info("applying a change that held for %.1fs: %s", self.seconds,
                     "; ".join(reasons))
            self.clear()
            return True
        if self.held != desired:
            self.held, self.since, self.reasons = desired, now, reasons
            log.warning("holding a change for %.1fs (it may be a save in progress): %s",
                        self.seconds, "; ".join(reasons))
        return False

    def due_in(self, now: float) -> float | None:
        return None if self.held is None else self.since + self.seconds - now

    def clear(self) -> None:
        self.held, self.reasons = None, []
