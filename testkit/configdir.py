"""A config directory for the daemon (or the baseline) under test, written like an operator.

The main file points stats and metrics at free loopback ports; drop-ins are written
atomically (temp file, then rename), as a careful operator or a config tool writes them.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .ports import BALANCER, free_port


def cluster_toml(name: str, bind: str, nodes: Mapping[str, tuple[str, int]]) -> str:
    """`[clusters.NAME]` bound to `bind`, with one table per node: name -> (address, port)."""
    lines = [f"[clusters.{name}]", f'bind = ["{bind}"]']
    for node, (address, port) in nodes.items():
        lines += [f"[clusters.{name}.nodes.{node}]", f'address = "{address}"', f"port = {port}"]
    return "\n".join(lines) + "\n"


class ConfigDir:
    """`root/haproxy-k8s.toml` and `root/conf.d/`; state in `state_dir` (default root/state).

    `defaults` is added to the [defaults] table after `check`; `extra_main` is appended to
    the main file. Both are dedented.
    """

    def __init__(self, root: Path, *, state_dir: Path | None = None, check: str = "tcp",
                 defaults: str = "", extra_main: str = "", host: str = BALANCER) -> None:
        self.root = root
        self.conf_d = root / "conf.d"
        self.conf_d.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir or root / "state"
        self.host = host
        self.stats_port = free_port(host)
        self.metrics_port = free_port(host)
        (root / "haproxy-k8s.toml").write_text(textwrap.dedent(f"""\
            [haproxy]
            state_dir = "{self.state_dir}"
            [defaults]
            check = "{check}"
            """) + textwrap.dedent(defaults) + textwrap.dedent(f"""\
            [stats]
            bind = "{host}:{self.stats_port}"
            [metrics]
            bind = "{host}:{self.metrics_port}"
            """) + textwrap.dedent(extra_main))

    def write(self, name: str, text: str) -> Path:
        """Write a drop-in atomically."""
        self.write_timed(name, text)
        return self.conf_d / name

    def write_timed(self, name: str, text: str) -> float:
        """Write a drop-in atomically; return the moment (monotonic) it appeared."""
        tmp = self.conf_d / f".{name}.tmp"
        tmp.write_text(textwrap.dedent(text))
        at = time.monotonic()
        os.replace(tmp, self.conf_d / name)
        return at

    def remove(self, name: str) -> float:
        """Delete a drop-in (if there); return the moment (monotonic) it went."""
        at = time.monotonic()
        (self.conf_d / name).unlink(missing_ok=True)
        return at

    def cluster(self, name: str, port: int, nodes: Mapping[str, tuple[str, int]],
                file: str | None = None) -> Path:
        """A drop-in with cluster `name` on the balancer's `port`."""
        text = cluster_toml(name, f"{self.host}:{port}", nodes)
        return self.write(file or f"10-{name}.toml", text)

    def status_file(self) -> dict[str, Any]:
        """The daemon's status.json, or {} while there is none (or it is half written)."""
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data
