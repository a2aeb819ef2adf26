"""The apply pipeline: drop-ins → model → rendered candidate → `haproxy -c` →
published config → HAProxy (start or verified reload, with rollback).

Only the daemon's main loop calls into an Applier, one apply at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config.loader import load_config
from ..config.model import Config
from ..errors import ConfigError, HaproxyK8sError, ProcessError, RuntimeApiError
from ..fileio import publish, write_atomic
from ..haproxy import render as render_mod
from ..haproxy.binds import check_new_binds, running_binds
from ..haproxy.check import check_config
from ..haproxy.master import HaproxyMaster
from ..haproxy.paths import StatePaths, make_state_dir
from ..haproxy.replies import filter_servers_state
from ..haproxy.secrets import AuthFile, metrics_password, render_auth
from ..haproxy.sockets import AdminSocket
from . import operator as opstate
from .membership import RuntimeOps
from .plan import RUNTIME, NodeChange, make_plan

log = logging.getLogger(__name__)


@dataclass
class ApplyOutcome:
    action: str  # noop | start | reload | runtime | rollback | error
    error: HaproxyK8sError | None = None
    runtime_changes: int = 0
    reload_reason: str = ""
    seconds: float = 0.0
    alerts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def ensure_server_state_file(paths: StatePaths) -> None:
    """Give HAProxy a state file to read even before the first reload dumps one.

    A missing or empty file makes every start and `haproxy -c` warn; a file
    holding only the format version ("1") means "no saved state".
    """
    if not paths.server_state.exists():
        write_atomic(paths.server_state, "1\n", mode=0o640)


class Applier:
    def __init__(self, config_dir: Path, config: Config, *, promex: bool = True) -> None:
        self.config_dir = config_dir
        self.paths = StatePaths(Path(config.haproxy.state_dir))
        self.binary = config.haproxy.binary
        self.promex = promex
        self.applied: Config | None = None  # the desired state HAProxy runs now
        self.attempted: Config | None = None  # the last one loaded, applied or not
        self.metrics_password: str | None = None  # for the daemon's metrics endpoint
        self.auth = AuthFile(self.paths)
        self.master = HaproxyMaster(self.binary, self.paths)
        self.admin = AdminSocket(self.paths.admin_socket)
        self.ops = RuntimeOps(self.admin)

    # -- public ------------------------------------------------------------
    def apply(self) -> ApplyOutcome:
        started = time.monotonic()
        try:
            outcome = self._apply(load_config(self.config_dir))
        except HaproxyK8sError as e:
            outcome = ApplyOutcome("error", e)
        except OSError as e:
            # A full or read-only state dir must not kill the daemon: HAProxy
            # keeps serving what it runs, and status says why nothing applies.
            error = HaproxyK8sError(f"cannot write in {self.paths.root}: {e}")
            error.file = e.filename if isinstance(e.filename, str) else None
            outcome = ApplyOutcome("error", error)
        outcome.seconds = time.monotonic() - started
        return outcome

    def start_from_published(self) -> None:
        """Serve the last published config (used when the drop-ins are broken at start)."""
        self.master.start()
        write_atomic(self.paths.last_good, self.paths.config.read_bytes())

    # -- pipeline ----------------------------------------------------------
    def _apply(self, config: Config) -> ApplyOutcome:
        self.attempted = config
        self._check_fixed_settings(config)
        text = render_mod.render(config, self.paths, promex=self.promex)
        # Reads stats.password_file every time: a bad one is refused, a new one reloads.
        auth = render_auth(config)
        self.metrics_password = metrics_password(config)
        auth_changed = self.auth.differs(auth)
        if self.master.alive() and not auth_changed and self._published_text() == text:
            self.applied = config
            return ApplyOutcome("noop")
        self._validate_candidate(text, auth)
        # Before HAProxy tries a new bind: its failure would pause every listener.
        check_new_binds(config, running_binds(self.paths))
        if not self.master.alive():
            return self._start(config)
        plan = make_plan(self.applied, config)
        if plan.kind == RUNTIME and not auth_changed:
            try:
                return self._apply_runtime(config, plan.changes)
            except RuntimeApiError as e:
                log.warning("runtime change failed, reloading instead: %s", e)
                plan = dataclasses.replace(plan, reason=f"runtime change failed: {e}")
        outcome = self._reload(config)
        outcome.reload_reason = plan.reason or ("stats password changed" if auth_changed else "")
        return outcome

    def _apply_runtime(self, config: Config, changes: tuple[NodeChange, ...]) -> ApplyOutcome:
        """Node changes through the admin socket, read back and compared.

        The validated file is still published, so the next reload agrees
        with what HAProxy runs now.
        """
        self.ops.apply(changes, opstate.load(self.paths.operator_state))
        problems = self.ops.mismatches(config)
        if problems:
            raise RuntimeApiError("state read back differs: " + "; ".join(problems))
        self._publish()
        self._keep_good()
        self.applied = config
        return ApplyOutcome("runtime", runtime_changes=len(changes))

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

    def _validate_candidate(self, text: str, auth: str) -> None:
        make_state_dir(self.paths.root)
        ensure_server_state_file(self.paths)
        write_atomic(self.paths.candidate, text, mode=0o640)
        self.auth.write_candidate(auth)
        try:
            check_config(self.binary, self.paths.candidate, also=[self.auth.candidate])
        except HaproxyK8sError:
            self.paths.candidate.unlink(missing_ok=True)
            raise

    def _publish(self) -> None:
        publish(self.paths.candidate, self.paths.config)
        self.auth.publish()

    def _keep_good(self) -> None:
        write_atomic(self.paths.last_good, self.paths.config.read_bytes(), mode=0o640)
        self.auth.keep_good()

    def _start(self, config: Config) -> ApplyOutcome:
        self._publish()
        self.master.start()
        self._keep_good()
        self.applied = config
        self.reapply_admin_states()
        return ApplyOutcome("start")

    def _reload(self, config: Config) -> ApplyOutcome:
        self._save_server_state(config)
        self._publish()
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
            return ApplyOutcome("reload")
        return self._rollback(result.alerts)

    def _rollback(self, alerts: list[str]) -> ApplyOutcome:
        """Put the last good config back and reload onto it."""
        log.error("reload failed, rolling back: %s", "; ".join(alerts) or "no detail")
        self._restore_last_good()
        back = self.master.reload()
        detail = "; ".join(alerts) or "HAProxy refused the new config"
        if not back.ok:
            detail += " (and the rollback reload failed too; the old worker keeps serving)"
        return ApplyOutcome("rollback", ProcessError(f"reload failed: {detail}"), alerts=alerts)

    def _restore_last_good(self) -> None:
        write_atomic(self.paths.config, self.paths.last_good.read_bytes(), mode=0o640)
        self.auth.restore_good()

    def reapply_admin_states(self) -> None:
        """Put operator drain/maint back on servers (after a start, restart or reload)."""
        if self.applied is None:
            return
        states = opstate.load(self.paths.operator_state)
        for cluster in self.applied.clusters:
            for node in cluster.nodes:
                state = states.get(f"{cluster.name}/{node.name}")
                if state is None:
                    continue
                try:
                    self.ops.run(f"set server {cluster.backend}/{node.name} state {state}")
                except RuntimeApiError as e:
                    log.warning("cannot restore %s on %s/%s: %s", state, cluster.name,
                                node.name, e)

    def _save_server_state(self, config: Config) -> None:
        """Dump health/admin state for the reload, minus servers whose address moved."""
        if not config.haproxy.server_state:
            return
        try:
            dump = self.admin.command("show servers state")
        except RuntimeApiError as e:
            log.warning("cannot save server state before reload: %s", e)
            return
        keep = {(c.backend, n.name, n.address, str(n.port))
                for c in config.clusters for n in c.nodes}
        write_atomic(self.paths.server_state, filter_servers_state(dump, keep), mode=0o640)
