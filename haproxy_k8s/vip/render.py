"""Render keepalived.conf from `[vip]` (Jinja2, deterministic like haproxy.cfg)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..errors import RenderError
from ..haproxy.render import _template_dir
from .model import VipSettings

TEMPLATE = "keepalived.conf.j2"


@dataclass(frozen=True)
class VipPaths:
    """keepalived's files inside the daemon's state dir."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "keepalived.conf"

    @property
    def candidate(self) -> Path:
        return self.root / "keepalived.conf.candidate"

    @property
    def auth(self) -> Path:
        return self.root / "keepalived-auth.conf"

    @property
    def pid(self) -> Path:
        return self.root / "keepalived.pid"

    @property
    def vrrp_pid(self) -> Path:
        return self.root / "keepalived-vrrp.pid"

    @property
    def log(self) -> Path:
        return self.root / "keepalived.log"

    @property
    def role(self) -> Path:
        return self.root / "vrrp-role"

    @property
    def fifo(self) -> Path:
        return self.root / "keepalived.fifo"

    # manage = "unit": the keepalived unit's own runtime dir (vip/unitside.py).
    @property
    def unit_dir(self) -> Path:
        return self.root.parent / f"{self.root.name}-keepalived"

    @property
    def unit_verdict(self) -> Path:
        return self.unit_dir / "config-test.json"

    @property
    def unit_pid(self) -> Path:
        return self.unit_dir / "keepalived.pid"


def advert_text(ms: int) -> str:
    """keepalived's advert_int: seconds, centisecond precision."""
    return f"{ms // 1000}" if ms % 1000 == 0 else f"{ms / 1000:.2f}".rstrip("0")


def split_families(addresses: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """VIPs of the first address's family are advertised; the other family rides
    along in virtual_ipaddress_excluded (one VRRP instance is one family)."""
    family = ipaddress.ip_interface(addresses[0]).version
    main = [a for a in addresses if ipaddress.ip_interface(a).version == family]
    other = [a for a in addresses if ipaddress.ip_interface(a).version != family]
    return main, other


def render(vip: VipSettings, paths: VipPaths) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_template_dir())),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    main, excluded = split_families(vip.addresses)
    try:
        return env.get_template(TEMPLATE).render(
            vip=vip, paths=paths, advert=advert_text(vip.advert_interval_ms),
            main=main, excluded=excluded)
    except jinja2.TemplateError as e:
        raise RenderError(f"cannot render {TEMPLATE}: {e}") from e


def auth_fragment(password: str) -> str:
    """The included authentication block; VRRPv2 PASS uses 8 characters at most."""
    return f"authentication {{\n    auth_type PASS\n    auth_pass {password}\n}}\n"
