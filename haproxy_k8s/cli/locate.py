"""Which state dir the CLI talks to: the one the running daemon holds.

The config names the state dir, but a drop-in that changes `haproxy.state_dir`
is refused by a running daemon (the dir belongs to its HAProxy), so the
config then names a dir where nothing runs. `status` used to follow the config
and say nothing runs while all served. When the configured dir has no live
daemon, the CLI looks for the daemon of this config dir and takes the state
dir whose lock (`daemon.lock`) it holds open.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..haproxy.paths import StatePaths, read_pid
from ..proc import alive

if TYPE_CHECKING:
    import psutil

LOCK_NAME = "daemon.lock"


def state_paths(configured: Path, config_dir: Path) -> StatePaths:
    """`configured`, unless its daemon is not running and another holds ours."""
    paths = StatePaths(configured)
    if alive(read_pid(paths.daemon_pid)):
        return paths
    held = running_state_dir(config_dir)
    return StatePaths(held) if held is not None else paths


def running_state_dir(config_dir: Path) -> Path | None:
    """The state dir a running `haproxy-k8s run` for `config_dir` holds locked."""
    import psutil  # only when the configured state dir has no daemon

    want = _resolved(config_dir, Path.cwd())
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error, OSError):
            cmdline = proc.info["cmdline"] or []
            if "run" not in cmdline or not any("haproxy" in part and "k8s" in part
                                               for part in cmdline[:3]):
                continue
            if _resolved(_config_dir_of(proc, cmdline), Path(proc.info["cwd"] or "/")) != want:
                continue
            for opened in proc.open_files():
                if os.path.basename(opened.path) == LOCK_NAME:
                    return Path(opened.path).parent
    return None


def _config_dir_of(proc: psutil.Process, cmdline: list[str]) -> Path:
    from ..config.model import DEFAULT_CONFIG_DIR

    if "--config-dir" in cmdline[:-1]:
        return Path(cmdline[cmdline.index("--config-dir") + 1])
    for part in cmdline:
        if part.startswith("--config-dir="):
            return Path(part.split("=", 1)[1])
    env = proc.environ().get("HAPROXY_K8S_CONFIG_DIR")
    return Path(env or DEFAULT_CONFIG_DIR)


def _resolved(path: Path, cwd: Path) -> Path:
    return (cwd / path).resolve() if not path.is_absolute() else path.resolve()
