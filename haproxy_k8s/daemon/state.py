"""What the daemon knows about itself; owned and changed by the main loop only."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..apply.applier import ApplyAction, ApplyOutcome
from ..errors import ConfigError, ValidationError
from .status import HISTORY, ApplyRecord, DaemonStatus, utc_now


@dataclass
class DaemonState:
    pid: int
    generation: int = 0
    applies: int = 0
    applied_at: str | None = None
    last_error: dict[str, Any] | None = None
    reloads: int = 0  # reloads HAProxy accepted
    failed_reloads: int = 0  # reloads HAProxy refused (rolled back)
    haproxy_restarts: int = 0
    config_errors: int = 0
    # Servers changed through the runtime API without a reload (added,
    # removed, re-addressed, re-weighted, drained ...).
    runtime_changes: int = 0
    history: collections.deque[ApplyRecord] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY))
    started_at: str = field(default_factory=utc_now)

    def record_error(self, error: dict[str, Any]) -> None:
        self.last_error = {"at": utc_now(), **error}

    @property
    def last_apply(self) -> ApplyRecord | None:
        return self.history[-1] if self.history else None

    def status(self, config_dir: str, running: bool = True) -> DaemonStatus:
        return DaemonStatus(
            pid=self.pid, running=running, version=__version__, started_at=self.started_at,
            generation=self.generation,
            applied_at=self.applied_at, last_error=self.last_error, applies=self.applies,
            last_apply=self.last_apply, config_dir=config_dir,
            haproxy_restarts=self.haproxy_restarts, config_errors=self.config_errors,
            runtime_changes=self.runtime_changes, history=list(self.history))

    def record_apply(self, outcome: ApplyOutcome, reason: str) -> None:
        """Count an apply, keep it in the history, and remember or clear the last error."""
        self.history.append(ApplyRecord(
            at=utc_now(), reason=reason, action=outcome.action, ok=outcome.ok,
            seconds=round(outcome.seconds, 4), plan=outcome.reason,
            error=str(outcome.error) if outcome.error is not None else None))
        if outcome.error is not None:
            self.record_error(outcome.error.record())
            if isinstance(outcome.error, ConfigError | ValidationError):
                self.config_errors += 1
            if outcome.action is ApplyAction.ROLLBACK:
                self.failed_reloads += 1
            return  # the event log says it (inspect.record_apply), once
        self.last_error = None
        self.runtime_changes += outcome.runtime_changes
        if outcome.action is ApplyAction.RELOAD:
            self.reloads += 1
        if outcome.action is not ApplyAction.NOOP:
            self.generation += 1
            self.applied_at = utc_now()
