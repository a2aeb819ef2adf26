"""The VIP side of the daemon: keepalived's config, process, fit signal and role.

The daemon's loop calls four things, each a line or two there:
`configure()` after every apply, `tick()` every supervision round,
`status_fields()` into the status document, `stop()` on shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config.model import Config
from ..errors import ConfigError, HaproxyK8sError
from ..fileio import publish, write_atomic
from ..haproxy.paths import StatePaths
from . import heartbeat, unitside, wedge
from .check import check_keepalived
from .model import Manage, VipSettings
from .notify import RoleWatcher
from .process import KeepalivedProcess
from .render import VipPaths, auth_fragment, render

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
_PASSWORD = re.compile(r"[!-~]{1,8}")  # printable, no spaces: keepalived takes 8 at most
_BRACES_OR_QUOTES = set('{}"\'#!')


def read_password(path: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the password file: {e.strerror}", file=path,
                          key="vip.auth_password_file") from e
    if not _PASSWORD.fullmatch(text) or _BRACES_OR_QUOTES & set(text):
        raise ConfigError("the VRRP password must be 1-8 printable characters without "
                          "spaces, quotes, braces, '#' or '!' (VRRPv2 uses 8 at most)",
                          file=path, key="vip.auth_password_file")
    return text


def config_digest(text: str, state_dir: str) -> str:
    """sha256 of a rendered config, with this host's state dir taken out (and the
    log socket named after it): two balancers with the same drop-ins hash the
    same even if their paths differ."""
    log_socket = StatePaths(Path(state_dir)).log_socket
    text = text.replace(state_dir, "@STATE_DIR@").replace(log_socket, "@LOG_SOCKET@")
    return hashlib.sha256(text.encode()).hexdigest()


def fit_reason(master_alive: bool, clusters: Sequence[Mapping[str, Any]]) -> str:
    """Why this balancer may not hold the VIP ("" when it may)."""
    if not master_alive:
        return "HAProxy is not running"
    if not clusters:
        return "no cluster status yet"
    down = [str(c.get("name")) for c in clusters if not c.get("up")]
    return f"no UP node in {', '.join(down)}" if down else ""


class VipManager:
    def __init__(self, state_dir: Path, on_change: Callable[[], None] = lambda: None) -> None:
        self.state_dir = state_dir
        self._on_change = on_change
        self.paths = VipPaths(state_dir)
        self.settings: VipSettings | None = None
        self.process: KeepalivedProcess | None = None
        self.link: heartbeat.FitLink | None = None
        self.roles = RoleWatcher(self.paths.fifo, self.paths.role, lambda _role: on_change())
        self.roles_started = False
        self.error: str | None = None
        self.restarts = 0
        self._backoff, self._next_restart = 1.0, 0.0
        self._text = ""
        self._hashed: tuple[tuple[int, int, int, str], dict[str, str | None]] | None = None
        # A re-executed daemon's fit link, still attached (see heartbeat.take_inherited).
        self._inherited = heartbeat.take_inherited()
        self.verdict: unitside.Verdict | None = None  # manage = "unit": the unit's answer
        wedge.install()

    # -- after every apply ----------------------------------------------------
    def configure(self, config: Config | None) -> None:
        """Follow the applied config's `[vip]`. Errors are kept for status, not raised:
        the balancer keeps serving and keepalived keeps its last good config."""
        vip = config.vip if config is not None else None
        try:
            if vip is None:
                self._disable()
            else:
                self._enable(vip)
            self.error = None
        except (HaproxyK8sError, OSError) as e:
            self.error = str(e)
            log.error("vip: %s", e)
        if self._inherited is not None:  # no [vip], or another fit_link, after the upgrade
            os.close(self._inherited[0])
            self._inherited = None

    def _enable(self, vip: VipSettings) -> None:
        if self.settings is None or self.settings.fit_link != vip.fit_link:
            self._open_link(vip)
        text = render(vip, self.paths)
        self._write_auth(vip)
        if text != self._text or not self.paths.config.exists():
            write_atomic(self.paths.candidate, text, mode=0o640)
            try:
                check_keepalived(vip.keepalived, self.paths.candidate)
            except HaproxyK8sError:
                self.paths.candidate.unlink(missing_ok=True)
                raise
            publish(self.paths.candidate, self.paths.config)
            changed = bool(self._text)
            self._text = text
        else:
            changed = False
        self.settings = vip
        if vip.manage == "child":
            self._run_child(vip, changed)

    def _open_link(self, vip: VipSettings) -> None:
        if self.link is not None:
            self.link.close()
        inherited = None
        if self._inherited is not None and self._inherited[1] == vip.fit_link:
            inherited, self._inherited = self._inherited[0], None
            log.info("kept the fit link %s attached across the re-exec", vip.fit_link)
        elif vip.manage == "child":
            # Under systemd the keepalived unit creates it (we have no CAP_NET_ADMIN).
            # An inherited descriptor proves it exists (and setting it up again while it
            # is attached would fail: EBUSY).
            heartbeat.create_link(vip.fit_link)
        if not self.roles_started:
            self.roles.start()
            self.roles_started = True
        self.link = heartbeat.FitLink(vip.fit_link, inherited=inherited)
        self.link.start()

    def _write_auth(self, vip: VipSettings) -> None:
        if vip.auth_password_file:
            fragment = auth_fragment(read_password(vip.auth_password_file))
            # The keepalived unit reads it as group haproxy (it has no CAP_DAC_OVERRIDE).
            mode = 0o640 if vip.manage == Manage.UNIT else 0o600
            write_atomic(self.paths.auth, fragment, mode=mode)
        else:
            self.paths.auth.unlink(missing_ok=True)

    def _run_child(self, vip: VipSettings, changed: bool) -> None:
        if self.process is None:
            self.process = KeepalivedProcess(vip.keepalived, self.paths)
            if self.process.adopt():
                self.process.reload()  # it may run an older config than ours
                return
        if not self.process.alive():
            self.process.start()
        elif changed:
            log.info("keepalived.conf changed: reloading keepalived")
            self.process.reload()

    def _disable(self) -> None:
        if self.settings is None:
            return
        self.stop()
        self.paths.config.unlink(missing_ok=True)
        self._text = ""
        self.settings = None

    # -- every supervision round --------------------------------------------
    def tick(self, master_alive: bool, clusters: Sequence[Mapping[str, Any]]) -> None:
        if self.settings is None or self.link is None:
            return
        reason = fit_reason(master_alive, clusters)
        self.link.beat(not reason, reason or "healthy")
        if self.settings.manage == "child" and self.process is not None:
            self._supervise_child()
        elif self.settings.manage == Manage.UNIT:
            self._read_verdict()

    def _read_verdict(self) -> None:
        """Follow the keepalived unit's verdict on what we published (a file read a tick)."""
        verdict = unitside.read_verdict(self.paths.unit_verdict)
        if verdict == self.verdict:
            return
        self.verdict = verdict
        self._on_change()  # status.json follows at once
        if verdict is not None and not verdict.ok and verdict.sha256 == self._sha256():
            log.error("vip: the keepalived unit refused keepalived.conf and keeps running "
                      "its previous config: %s", verdict.message)

    def _sha256(self) -> str:
        return unitside.digest(self._text.encode()) if self._text else ""

    def keepalived_config(self) -> str:
        """Whether keepalived runs what we published: applied | refused | pending | child."""
        if self.settings is None or self.settings.manage == Manage.CHILD:
            return "child"
        if self.verdict is None or self.verdict.sha256 != self._sha256():
            return "pending"
        return "applied" if self.verdict.ok else "refused"

    def _unit_error(self) -> str | None:
        if self.keepalived_config() != "refused" or self.verdict is None:
            return None
        return f"keepalived unit refused keepalived.conf (previous one kept): " \
               f"{self.verdict.message}"

    def _supervise_child(self) -> None:
        assert self.process is not None
        now = time.monotonic()
        if self.process.alive():
            if now - self._next_restart > 60:
                self._backoff = 1.0
            return
        if now < self._next_restart:
            return
        self.restarts += 1
        log.error("keepalived exited; restarting (backoff %.0fs)", self._backoff)
        self._next_restart = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        try:
            self.process.start()
        except HaproxyK8sError as e:
            self.error = str(e)
            log.error("vip: %s", e)

    # -- status, metrics -------------------------------------------------------
    def status_fields(self, haproxy_cfg: Path) -> dict[str, Any]:
        """`vip` and `config` for the status document (both added fields)."""
        fields: dict[str, Any] = {"config": self._hashes(haproxy_cfg)}
        vip = self.settings
        if vip is None:
            return fields
        fields["vip"] = {
            "role": self.roles.role,
            "addresses": list(vip.addresses),
            "interface": vip.interface,
            "router_id": vip.router_id,
            "priority": vip.priority,
            "preempt": vip.preempt,
            "advert_interval_ms": vip.advert_interval_ms,
            "vrrp_version": vip.version,
            "manage": vip.manage,
            "fit": bool(self.link and self.link.fit),
            "fit_reason": self.link.reason if self.link else "",
            "transitions": self.roles.transitions,
            "keepalived_pid": self._keepalived_pid(),
            "keepalived_restarts": self.restarts,
            "error": (self.error or self._unit_error()
                      or (self.link.error if self.link else None)),
            "keepalived_config": self.keepalived_config(),
        }
        return fields

    def _hashes(self, haproxy_cfg: Path) -> dict[str, str | None]:
        try:
            stat = haproxy_cfg.stat()
        except OSError:
            return {"haproxy_sha256": None, "keepalived_sha256": None}
        # Every status write asks; haproxy.cfg is ~2 MB at 1,000 clusters and
        # only replaced (renamed over), never edited in place: hash it once.
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size, self._text)
        if self._hashed is None or self._hashed[0] != key:
            try:
                text = haproxy_cfg.read_text()
            except OSError:
                return {"haproxy_sha256": None, "keepalived_sha256": None}
            state = str(self.state_dir)
            self._hashed = (key, {
                "haproxy_sha256": config_digest(text, state),
                "keepalived_sha256": config_digest(self._text, state) if self._text else None})
        return dict(self._hashed[1])

    def _keepalived_pid(self) -> int | None:
        if self.process is not None and self.process.alive():
            return self.process.pid
        if self.settings is not None and self.settings.manage == Manage.UNIT:
            return unitside.read_unit_pid(self.paths.unit_pid)
        return None

    # -- re-exec -------------------------------------------------------------------
    def exec_env(self) -> dict[str, str]:
        """Just before the daemon re-executes: keep the fit link attached across exec(),
        so an upgrade does not move the VIP. The environment the new image reads."""
        return self.link.handover() if self.link is not None else {}

    # -- shutdown ----------------------------------------------------------------
    def stop(self) -> None:
        """Hand the VIP over before HAProxy stops: FAULT at once (link down), then
        keepalived's SIGTERM sends priority 0 and removes the addresses."""
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.settings is not None and self.settings.manage == "child":
            heartbeat.delete_link(self.settings.fit_link)
        if self.roles_started:
            self.roles.stop()
            self.roles_started = False
