"""The apply pipeline: drop-ins → model → rendered candidate → `haproxy -c` →
published config → HAProxy (start or verified reload, with rollback).

Only the daemon's main loop calls into an Applier, one apply at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..config.model import AdminState, Config, cluster_backends
from ..errors import (
    ConfigError,
    HaproxyK8sError,
    ProcessError,
    RuntimeApiError,
    StateDirError,
)
from ..fileio import keep_copy, publish, write_atomic
from ..haproxy import render as render_mod
from ..haproxy.binds import check_new_binds, running_binds
from ..haproxy.check import check_config
from ..haproxy.master import HaproxyMaster
from ..haproxy.orphan import recovery_text, take_over
from ..haproxy.paths import StatePaths
from ..haproxy.replies import filter_servers_state
from ..haproxy.runtime import RuntimeClient
from ..haproxy.secrets import AuthFile, metrics_password, render_auth
from ..haproxy.sni import map_files, maps_current, write_maps
from . import operator as opstate
from .beside import Beside
from .candidate import validate_candidate
from .deferred import PendingPublish
from .hostnames import sync_maps
from .membership import RuntimeOps
from .plan import Plan, PlanKind, make_plan

log = logging.getLogger(__name__)


class ApplyAction(StrEnum):
    """What an apply did (status.json's `last_apply.action`)."""

    NOOP = "noop"
    START = "start"
    RELOAD = "reload"
    RUNTIME = "runtime"
    ROLLBACK = "rollback"
    ERROR = "error"


@dataclass
class ApplyOutcome:
    action: ApplyAction
    error: HaproxyK8sError | None = None
    runtime_changes: int = 0
    # Why this action: the plan's reason ("structural change: balance"), the
    # runtime changes made, or what failed. Shown in status and the history.
    reason: str = ""
    seconds: float = 0.0
    alerts: list[str] = field(default_factory=list)
    # The backends a runtime change touched: only these need reading back.
    backends: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return self.error is None


def _unneeded(state: Beside[None] | None) -> None:
    """Wait for a state dump made for a reload that will not come, whatever it did."""
    if state is not None:
        with contextlib.suppress(Exception):
            state.result()


class Applier:
    def __init__(self, config: Config, *, promex: bool = True) -> None:
        self.paths = StatePaths(Path(config.haproxy.state_dir))
        self.binary = config.haproxy.binary
        self.promex = promex
        self.applied: Config | None = None  # the desired state HAProxy runs now
        self.attempted: Config | None = None  # the last one loaded, applied or not
        self.metrics_password: str | None = None  # for the daemon's metrics endpoint
        self.auth = AuthFile(self.paths)
        self.master = HaproxyMaster(self.binary, self.paths)
        self.admin = RuntimeClient(self.paths.admin_socket)
        self.ops = RuntimeOps(self.admin)
        # The operator's drain/maint as last read: put back if the state dir is lost.
        self._operator_cache: dict[str, AdminState] = {}
        self.pending = PendingPublish()  # a runtime change's file, not yet validated
        # Called once, by the next apply that validates, just before it waits
        # for `haproxy -c`: the daemon's start hands Python work to a thread
        # there, which then runs while this one waits on HAProxy's processes.
        self.while_checking: Callable[[], None] | None = None

    # -- public ------------------------------------------------------------
    def apply(self, config: Config) -> ApplyOutcome:
        """Bring HAProxy to `config`, the merged desired state of every source."""
        started = time.monotonic()
        try:
            outcome = self._apply(config)
        except HaproxyK8sError as e:
            outcome = ApplyOutcome(ApplyAction.ERROR, e)
        except OSError as e:
            # A full or read-only state dir must not kill the daemon: HAProxy
            # keeps serving what it runs, and status says why nothing applies.
            error = StateDirError(f"cannot write in {self.paths.root}: {e}")
            error.file = e.filename if isinstance(e.filename, str) else None
            outcome = ApplyOutcome(ApplyAction.ERROR, error)
        outcome.seconds = time.monotonic() - started
        return outcome

    def start_from_published(self) -> None:
        """Serve the last published config (used when the drop-ins are broken at start)."""
        self.master.start()
        keep_copy(self.paths.config, self.paths.last_good)

    # -- pipeline ----------------------------------------------------------
    def _apply(self, config: Config) -> ApplyOutcome:
        self.attempted = config
        self._check_fixed_settings(config)
        # Reads stats.password_file every time: a bad one is refused, a new one reloads.
        auth = render_auth(config)
        self.metrics_password = metrics_password(config)
        auth_changed = self.auth.differs(auth)
        fast = self._runtime_first(config, auth_changed)
        if isinstance(fast, ApplyOutcome):
            return fast
        # Whatever this apply publishes says everything a pending runtime
        # change's file said: that one need not be validated on its own.
        superseded = self.pending.take()
        try:
            return self._apply_validated(config, auth, auth_changed, fast)
        except HaproxyK8sError:
            if superseded is not None:  # the last runtime change's file still counts
                self.pending.defer(superseded)
                self.finish_pending()
            raise

    def _apply_validated(self, config: Config, auth: str, auth_changed: bool,
                         fast: Plan | None) -> ApplyOutcome:
        text = render_mod.render(config, self.paths, promex=self.promex)
        maps = map_files(config, self.paths)
        if self.master.alive() and not auth_changed and self._published_text() == text \
                and maps_current(maps):
            self.applied = config
            return ApplyOutcome(ApplyAction.NOOP, reason="no change")
        plan = fast or make_plan(self.applied, config)
        state: Beside[None] | None = None

        def while_checking() -> None:
            nonlocal state
            self._while_checking()
            state = self._state_beside(config, plan, auth_changed)

        try:
            validate_candidate(text, auth, self.paths, self.binary, maps, started=while_checking)
            # Before HAProxy tries a new bind: its failure would pause every listener.
            check_new_binds(config, running_binds(self.paths))
        except HaproxyK8sError:
            self._restore_maps()  # written for the candidate; HAProxy runs the old ones
            _unneeded(state)
            raise
        if not self.master.alive():
            _unneeded(state)
            return self._start(config)
        if plan.kind is PlanKind.NOOP and not auth_changed:
            # HAProxy runs this already (a runtime change whose file was not
            # yet published): only the file catches up.
            self._publish()
            self._keep_good()
            self.applied = config
            return ApplyOutcome(ApplyAction.NOOP, reason="file published")
        if plan.kind is PlanKind.RUNTIME and not auth_changed:
            try:
                return self._apply_runtime(config, plan)
            except RuntimeApiError as e:
                log.warning("runtime change failed, reloading instead: %s", e)
                plan = dataclasses.replace(plan, reason=f"runtime change failed: {e}")
        outcome = self._reload(config, state)
        why = plan.reason if plan.kind is PlanKind.RELOAD else "stats password changed"
        outcome.reason = f"{why}; {outcome.reason}" if outcome.reason else why
        return outcome

    def _runtime_first(self, config: Config, auth_changed: bool) -> ApplyOutcome | Plan | None:
        """Node changes go to HAProxy before the file is rendered and validated.

        HAProxy checks an `add server` line itself, so `haproxy -c` of the
        whole file need not delay the change: the file becomes a pending
        publication (`deferred.py`), validated before it is published and
        before anything else happens. Returns the outcome, or the plan (a
        failed runtime change falls back to a reload), or None.
        """
        if auth_changed or self.applied is None or not self.master.alive():
            return None
        plan = make_plan(self.applied, config)
        if plan.kind is not PlanKind.RUNTIME or plan.hostnames:
            # Hostnames edit map files HAProxy reads: those go the validated way.
            return None
        try:
            return self._apply_runtime(config, plan, defer=True)
        except RuntimeApiError as e:
            log.warning("runtime change failed, reloading instead: %s", e)
            return dataclasses.replace(plan, kind=PlanKind.RELOAD,
                                       reason=f"runtime change failed: {e}")

    def _apply_runtime(self, config: Config, plan: Plan, *, defer: bool = False
                       ) -> ApplyOutcome:
        """Node and hostname changes through the admin socket, read back and compared.

        The file is still published, so the next reload agrees with what
        HAProxy runs now: at once when it was validated already, else as a
        pending publication (`defer`).
        """
        changes = plan.changes
        self.ops.apply(changes, self._operator_states())
        if plan.hostnames:
            sync_maps(self.admin, config, self.paths)
        problems = self.ops.mismatches(
            config, None if plan.hostnames else {c.cluster.backend for c in changes})
        if problems:
            raise RuntimeApiError("state read back differs: " + "; ".join(problems))
        if defer:
            self.pending.defer(config)
        else:
            self._publish()
            self._keep_good()
        self.applied = config
        what = [c.describe() for c in changes] + [f"sni {c}" for c in plan.hostnames]
        backends = frozenset(b for c in changes for b in cluster_backends(c.cluster))
        return ApplyOutcome(ApplyAction.RUNTIME, runtime_changes=len(what),
                            reason="runtime: " + ", ".join(what), backends=backends)

    def start_pending(self, done: Callable[[], None]) -> bool:
        """Validate a runtime change's file on a worker thread (apply/deferred.py);
        `done()` is called on that thread, and the loop then calls `collect_pending`."""
        return self.pending.start(self._validate_deferred, done)

    def collect_pending(self) -> HaproxyK8sError | None:
        """Publish the worker's validated file, unless a newer apply superseded it."""
        return self.pending.collect(self._publish_deferred)

    def finish_pending(self) -> HaproxyK8sError | None:
        """Validate and publish the file of runtime changes made before it was validated.

        Called before any restart or stop, and when the daemon re-executes:
        haproxy.cfg is only ever replaced by a file that passed `haproxy -c`.
        The error (the running servers stay as they are; the file keeps the
        last good text) is returned.
        """
        return self.pending.finish(self._validate_deferred, self._publish_deferred)

    def _validate_deferred(self, config: Config) -> None:
        """Render and `haproxy -c` into a file of its own (on the worker thread:
        the loop's candidate may be under validation at the same time). A
        runtime change leaves the stats userlist and the SNI maps as they are,
        so the live ones are read with it."""
        # Streamed to the file: this runs after every runtime change, and a
        # whole 2 MB text (and its bytes) was most of the daemon's RSS swings.
        write_atomic(self.paths.deferred,
                     render_mod.render_pieces(config, self.paths, promex=self.promex),
                     mode=0o640)
        try:
            check_config(self.binary, self.paths.deferred, also=[self.paths.stats_auth])
        except HaproxyK8sError:
            self.paths.deferred.unlink(missing_ok=True)
            raise

    def _publish_deferred(self, config: Config) -> None:
        publish(self.paths.deferred, self.paths.config)
        self._keep_good()

    def _check_fixed_settings(self, config: Config) -> None:
        # The state dir and binary belong to the running master: changing them
        # live would orphan it, so it takes a daemon restart.
        for key, old, new in (("haproxy.state_dir", str(self.paths.root),
                               config.haproxy.state_dir),
                              ("haproxy.binary", self.binary, config.haproxy.binary)):
            if old != new:
                raise ConfigError(f"changed from {old!r} to {new!r}; this takes effect "
                                  "only when haproxy-k8s restarts", key=key)

    def _published_text(self) -> str | None:
        try:
            return self.paths.config.read_text()
        except OSError:
            return None

    def _publish(self) -> None:
        publish(self.paths.candidate, self.paths.config)
        self.auth.publish()

    def _while_checking(self) -> None:
        hook, self.while_checking = self.while_checking, None
        if hook is not None:
            hook()

    def _keep_good(self) -> None:
        # Both in the state dir: one fsync of it, by the second, makes both last.
        self.auth.keep_good(durable=False)
        keep_copy(self.paths.config, self.paths.last_good)

    def _start(self, config: Config) -> ApplyOutcome:
        self._publish()
        self.master.start()
        self._keep_good()
        self.applied = config
        self.reapply_admin_states()
        return ApplyOutcome(ApplyAction.START, reason="HAProxy was not running")

    def _reload(self, config: Config, state: Beside[None] | None = None) -> ApplyOutcome:
        if state is not None:
            state.result()
        else:
            self._save_server_state(config)
        self._publish()
        self._stage_server_state()
        try:
            return self._reload_published(config)
        finally:
            self._clear_server_state()  # read by the reload (and by its rollback)

    def _reload_published(self, config: Config) -> ApplyOutcome:
        try:
            result = self.master.reload()
        except HaproxyK8sError:
            # The master could not be asked: keep the published file equal to
            # what runs, or the next apply would take the new file for applied.
            self._restore_last_good()
            raise
        self.ops.forget_pending()
        if result.ok:
            self._keep_good()
            self.applied = config
            self.reapply_admin_states()
            return ApplyOutcome(ApplyAction.RELOAD)
        return self._rollback(result.alerts)

    def _rollback(self, alerts: list[str]) -> ApplyOutcome:
        """Put the last good config back and reload onto it."""
        log.error("reload failed, rolling back: %s", "; ".join(alerts) or "no detail")
        self._restore_last_good()
        back = self.master.reload()  # with the same servers' state
        detail = "; ".join(alerts) or "HAProxy refused the new config"
        if not back.ok:
            detail += " (and the rollback reload failed too; the old worker keeps serving)"
        return ApplyOutcome(ApplyAction.ROLLBACK, ProcessError(f"reload failed: {detail}"),
                            alerts=alerts, reason="HAProxy refused the reload; rolled back")

    def _restore_last_good(self) -> None:
        write_atomic(self.paths.config, self.paths.last_good.read_bytes(), mode=0o640)
        self.auth.restore_good()
        self._restore_maps()

    def _restore_maps(self) -> None:
        """SNI maps back to what HAProxy runs (they were written for a refused candidate)."""
        if self.applied is not None:
            write_maps(map_files(self.applied, self.paths))

    def reapply_admin_states(self) -> None:
        """Put operator drain/maint back on servers (after a start, restart or reload)."""
        if self.applied is None:
            return
        states = self._operator_states()
        for cluster in self.applied.clusters:
            for node in cluster.nodes:
                state = states.get(f"{cluster.name}/{node.name}")
                if state is None:
                    continue
                try:
                    for server in cluster.server_ids(node.name):
                        self.admin.set_state(server, state)
                except RuntimeApiError as e:
                    log.warning("cannot restore %s on %s/%s: %s", state, cluster.name,
                                node.name, e)

    def set_admin_state(self, target: str, state: AdminState | str) -> None:
        """An operator's drain/ready/maint of `cluster/node`: live first, then recorded.

        Refused for a node the applied config does not have, so a typo is
        not remembered and re-applied forever.
        """
        cluster_name, _, node_name = target.partition("/")
        cluster = self.applied.cluster(cluster_name) if self.applied is not None else None
        if cluster is None or cluster.node(node_name) is None:
            raise RuntimeApiError(f"{target}: no such node in the running config")
        state = AdminState(state)
        for server in cluster.server_ids(node_name):  # the fail-open twin too
            self.admin.set_state(server, state)
        opstate.set_state(self.paths.operator_state, target, state)
        self._operator_cache = opstate.load(self.paths.operator_state)

    def _state_beside(self, config: Config, plan: Plan, auth_changed: bool
                      ) -> Beside[None] | None:
        """When a reload will follow a passing `haproxy -c`, dump the servers'
        state on a thread meanwhile (20 ms at 1,000 clusters, the check 130 ms).
        The new worker reads it at its start, so it is 130 ms older than when
        dumped after the check: the re-exec it waits for takes 250 ms anyway."""
        if not config.haproxy.server_state or not self.master.alive() \
                or (plan.kind is not PlanKind.RELOAD and not auth_changed):
            return None
        return Beside(lambda: self._save_server_state(config), "haproxy-k8s-state")

    def _save_server_state(self, config: Config) -> None:
        """Dump health/admin state for the reload, minus servers whose address moved."""
        if not config.haproxy.server_state:
            return
        try:
            dump = self.admin.dump_servers_state()
        except RuntimeApiError as e:
            log.warning("cannot save server state before reload: %s", e)
            return
        keep = {(c.backend, n.name, n.address, str(n.port))
                for c in config.clusters for n in c.nodes}
        # Read within the second by the reload it is for: not worth an fsync.
        write_atomic(self.paths.server_state_next, filter_servers_state(dump, keep),
                     mode=0o640, durable=False)

    # `haproxy -c` reads the state file too, and needs none of it (a state
    # changes no verdict): the file says "1" (no saved state) but while a
    # reload reads it. A dump there made every check at 1,000 clusters, all
    # nodes down, 12 ms slower and 3,000 warnings longer.
    def _stage_server_state(self) -> None:
        """The dump for this reload where HAProxy reads it (server-state-file)."""
        if self.paths.server_state_next.exists():
            os.replace(self.paths.server_state_next, self.paths.server_state)

    def _clear_server_state(self) -> None:
        """No saved state, once the reload has read it (the master parses it before
        it forks the worker the reload waits for)."""
        if self.paths.server_state.exists():
            write_atomic(self.paths.server_state, "1\n", mode=0o640, durable=False)

    def _operator_states(self) -> dict[str, AdminState]:
        states = opstate.load(self.paths.operator_state)
        if states or self.paths.operator_state.exists():
            self._operator_cache = states
        return dict(self._operator_cache)

    # -- a lost state dir ----------------------------------------------------
    def recover(self, config: Config, pid: int) -> None:
        """HAProxy master `pid` serves, but the state dir (or its sockets) is gone.

        Publish a validated config again (with the admin socket spelled to bind
        afresh, see haproxy/orphan.py), put the operator's states back, and
        take the master over: the same master keeps serving, no second one.
        """
        self.paths.ensure_root()
        if self._operator_cache and not self.paths.operator_state.exists():
            for target, state in self._operator_cache.items():
                opstate.set_state(self.paths.operator_state, target, state)
        text = recovery_text(render_mod.render(config, self.paths, promex=self.promex),
                             self.paths, self._operator_cache)
        validate_candidate(text, render_auth(config), self.paths, self.binary,
                           map_files(config, self.paths))
        self._publish()
        take_over(self.master, pid)
        self._keep_good()
        self.applied = config
        self.ops.forget_pending()
        self.reapply_admin_states()
