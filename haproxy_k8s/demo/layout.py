"""The demo's directory and the config it writes there (run.py starts and runs the demo).

Everything the demo writes lives in one directory (a fresh one under /tmp unless `--dir`):
config, certificates, HAProxy's state and the node control files. The config is the origin
router's cluster-0 moved to loopback, with checks quick enough to watch.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .standin import StandIn

BALANCER_HOST = "127.0.8.1"
CLUSTER = "cluster-0"
NODES = (("k8s-master-1", "127.0.8.10"), ("k8s-master-2", "127.0.8.11"),
         ("k8s-master-3", "127.0.8.12"))
SPARE = ("k8s-master-4", "127.0.8.13")  # running, but not in the config until the operator adds it

#: Ports as "balancer,stats,metrics[,node]" (node 0: kernel-chosen). For tests, which must
#: not collide with a demo someone is running on the default ports.
PORTS_ENV = "HAPROXY_K8S_DEMO_PORTS"
# The state dir holds unix sockets (108-byte path limit); the schema allows 80 characters.
MAX_STATE_DIR = 80
# Paths end up in haproxy.cfg, where the schema only accepts these characters.
SAFE_PATH = re.compile(r"[A-Za-z0-9._/@+,=:-]+")


class DemoError(Exception):
    """Something stops the demo from starting; the message says what to do."""


@dataclass(frozen=True)
class DemoPorts:
    balancer: int = 6443
    stats: int = 8404
    metrics: int = 9404
    node: int = 6443  # every stand-in listens on its own address; 0 = kernel-chosen

    @classmethod
    def parse(cls, text: str) -> DemoPorts:
        try:
            numbers = [int(part) for part in text.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) not in (3, 4) or not all(0 <= n <= 65535 for n in numbers):
            raise DemoError(f"{PORTS_ENV}={text!r}: expected balancer,stats,metrics[,node] ports")
        if 0 in numbers[:3]:
            raise DemoError(f"{PORTS_ENV}={text!r}: only the node port may be 0")
        return cls(*numbers)


@dataclass(frozen=True)
class Layout:
    """The demo directory: everything the demo writes is in here."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def conf_d(self) -> Path:
        return self.config_dir / "conf.d"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def cert_dir(self) -> Path:
        return self.root / "certs"

    @property
    def control_dir(self) -> Path:
        return self.root / "nodes"


@contextlib.contextmanager
def demo_dir(directory: Path | None) -> Iterator[Layout]:
    """The given directory (kept afterwards), else a fresh one under /tmp (removed)."""
    if directory is not None:
        root = directory.expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        _check_dir(root)
        yield Layout(root)
        return
    # /tmp rather than $TMPDIR: the sockets need a short path.
    root = Path(tempfile.mkdtemp(prefix="haproxy-k8s-demo-", dir="/tmp"))
    try:
        _check_dir(root)
        yield Layout(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_dir(root: Path) -> None:
    layout = Layout(root)
    if not SAFE_PATH.fullmatch(str(root)):
        raise DemoError(f"{root}: use a directory path of letters, digits and ._-/ only "
                        "(it is written into haproxy.cfg)")
    if len(str(layout.state_dir)) > MAX_STATE_DIR:
        raise DemoError(f"{root}: too long a path for HAProxy's unix sockets; "
                        f"use one under {MAX_STATE_DIR - len('/state')} characters")


def write_config(layout: Layout, ports: DemoPorts, binary: str,
                 standins: list[StandIn]) -> None:
    layout.conf_d.mkdir(parents=True, exist_ok=True)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    (layout.config_dir / "haproxy-k8s.toml").write_text(_main_file(layout, ports, binary))
    lines = [
        "# The demo's cluster: the origin router's cluster-0, moved to loopback.",
        f"[clusters.{CLUSTER}]",
        f'bind = ["{BALANCER_HOST}:{ports.balancer}"]',
    ]
    for standin in standins:
        lines += ["", f"[clusters.{CLUSTER}.nodes.{standin.name}]",
                  f'address = "{standin.host}"', f"port = {standin.port}"]
    (layout.conf_d / f"10-{CLUSTER}.toml").write_text("\n".join(lines) + "\n")


def _main_file(layout: Layout, ports: DemoPorts, binary: str) -> str:
    lines = [
        "# Written by `haproxy-k8s demo`. Every key is explained in docs/configuration.md.",
        "[haproxy]",
        f'binary = "{binary}"',
        f'state_dir = "{layout.state_dir}"',
        *_identity_lines(),
        "",
        "[defaults]",
        "# GET /readyz over TLS and expect 200, verifying the stand-ins' certificates.",
        'check = "https"',
        'check_path = "/readyz"',
        f'ca_file = "{layout.cert_dir / "ca.crt"}"',
        "# Quicker than the defaults (2s, fall 3, slowstart 30s, drain_grace 30s), so that",
        "# what you do shows within seconds.",
        'check_interval = "1s"',
        "fall = 2",
        "rise = 2",
        'slowstart = "5s"',
        'drain_grace = "10s"',
        "",
        "[stats]",
        f'bind = "{BALANCER_HOST}:{ports.stats}"',
        "",
        "[metrics]",
        f'bind = "{BALANCER_HOST}:{ports.metrics}"',
    ]
    return "\n".join(lines) + "\n"


def _identity_lines() -> list[str]:
    """As root HAProxy drops to `haproxy`; where that user does not exist, it stays root.

    Not root: HAProxy cannot switch users, and the renderer leaves the lines out anyway.
    """
    if os.geteuid() != 0 or _user_and_group_exist("haproxy"):
        return []
    return ['# No "haproxy" user here: HAProxy keeps running as root.', 'user = ""', 'group = ""']


def _user_and_group_exist(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def add_node_dropin(host: str, port: int) -> str:
    """The drop-in that adds the spare stand-in to the cluster (shown in the banner)."""
    name = SPARE[0]
    return f'[clusters.{CLUSTER}.nodes.{name}]\naddress = "{host}"\nport = {port}\n'
