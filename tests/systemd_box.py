"""A real systemd (Debian 12's 252) in a container, to run units/haproxy-k8s.service under it.

PID 1 on CI machines is not systemd. A Debian root built with mmdebstrap and booted with
`systemd-nspawn --private-network` gives one, without touching the machine: the container
has its own /run, /tmp, journal and loopback. Never boot systemd over the machine's own
root: its boot-time `systemd-tmpfiles --remove` would empty the host's /tmp.

Cost: the root (~270 MB) is built once per set of Debian package versions and kept under
/var/tmp/haproxy-k8s-box/<key>/ (a scratch directory, not system state); each session
copies it (`cp -a`, ~1.5 s; an overlay mount would be ~0 s but leaves a host mount behind
when a session dies) and installs the project's wheel into a venv in the copy.

nspawn is started detached (`setsid -f`), so the container's processes are not children of
the test session (the leak check would count every process systemd starts in there); it is
tracked by its pid file and powered off by `Box.close()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from helpers import wait_until

import haproxy_k8s

REPO = Path(__file__).resolve().parent.parent
CACHE = Path("/var/tmp/haproxy-k8s-box")
SUITE = "bookworm"
# procps: /bin/kill and pgrep, as on every normal Debian (minbase lacks them).
# keepalived: the [vip] units (haproxy-k8s-keepalived.*) run it.
INCLUDE = ("systemd", "systemd-sysv", "dbus", "procps", "haproxy", "python3", "python3-venv",
           "iproute2", "ca-certificates", "keepalived")

# Inside the container (its own network namespace: these ports are free by construction).
BALANCER = "127.0.8.1"
NODES = ("127.0.8.10", "127.0.8.11", "127.0.8.12")
API_PORT, STATS_PORT, METRICS_PORT = 6443, 8404, 9404
UNIT = "haproxy-k8s.service"
KEEPALIVED_UNITS = ("haproxy-k8s-keepalived.service", "haproxy-k8s-keepalived.path",
                    "haproxy-k8s-keepalived-reload.service")
STATE_DIR = "/run/haproxy-k8s"
VENV = "/opt/haproxy-k8s"
# The unit's 30 s would make the wedge test wait 30 s; test_unit_file.py asserts the value.
WATCHDOG_SEC = 6
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "HOME": "/root"}


# -- the cached root ------------------------------------------------------------------------
def package_versions() -> list[str]:
    """`name=version` of each included package, as the machine's apt sources offer it now."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *INCLUDE],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    versions, name = [], ""
    for line in out.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: "):
            versions.append(f"{name}={line.split(': ', 1)[1]}")
    return sorted(versions)


def cache_key() -> str:
    text = "\n".join([SUITE, ",".join(INCLUDE), *package_versions()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_root() -> Path:
    """The built root for today's package versions; built (~25 s) when missing.

    A lock keeps two sessions from building the same key at once; a half-built root never
    becomes the cache (it is built under another name and renamed when complete).
    """
    directory = CACHE / cache_key()
    directory.mkdir(parents=True, exist_ok=True)
    root = directory / "root"
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.is_dir():
            partial = directory / "root.partial"
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase",
                            f"--include={','.join(INCLUDE)}", SUITE, str(partial)],
                           check=True, timeout=900, stdin=subprocess.DEVNULL)
            partial.rename(root)
    return root


def build_wheels(dest: Path, source: Path = REPO) -> None:
    """The project and its dependencies as wheels (the container's python is the same 3.11)."""
    # [demo]: the stand-in apiservers make certificates (cryptography, the demo extra).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest),
                    f"{source}[demo]"], check=True, timeout=600, capture_output=True)


def chroot(root: Path, *argv: str) -> None:
    subprocess.run(["chroot", str(root), *argv], check=True, timeout=300, env=ENV,
                   capture_output=True, stdin=subprocess.DEVNULL)


# -- what goes into the copy ----------------------------------------------------------------
MAIN_TOML = f"""\
[defaults]
check_interval = "500ms"
fall = 2
rise = 1
[stats]
bind = "{BALANCER}:{STATS_PORT}"
[metrics]
bind = "{BALANCER}:{METRICS_PORT}"
[watch]
debounce = "100ms"
"""

CLUSTER_TOML = f'[clusters.cluster-0]\nbind = ["{BALANCER}:{API_PORT}"]\n' + "".join(
    f'[clusters.cluster-0.nodes.m{i + 1}]\naddress = "{host}"\nport = {API_PORT}\n'
    for i, host in enumerate(NODES))

STANDIN_UNIT = f"""\
[Unit]
Description=stand-in kube-apiserver on %i (tests only)
[Service]
ExecStart={VENV}/bin/python -m haproxy_k8s.demo.standin --name %i --host %i \
--port {API_PORT} --cert-dir /var/lib/standin/%i
"""

WATCHDOG_OVERRIDE = f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\n"


def install_project(root: Path) -> None:
    wheels = root / "wheels"
    build_wheels(wheels)
    chroot(root, "python3", "-m", "venv", VENV)
    chroot(root, f"{VENV}/bin/pip", "install", "-q", "--no-index", "--find-links", "/wheels",
           "haproxy-k8s[demo]")
    (root / "usr/local/bin/haproxy-k8s").symlink_to(f"{VENV}/bin/haproxy-k8s")


def install_units(root: Path) -> None:
    system = root / "etc/systemd/system"
    for unit in (UNIT, *KEEPALIVED_UNITS):  # keepalived's: installed, not enabled
        shutil.copy(REPO / "units" / unit, system / unit)
    write(root, f"/etc/systemd/system/{UNIT}.d/50-test-watchdog.conf", WATCHDOG_OVERRIDE)
    write(root, "/etc/systemd/system/standin@.service", STANDIN_UNIT)
    wants = system / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    for host in NODES:
        (wants / f"standin@{host}.service").symlink_to("../standin@.service")
    # haproxy-k8s runs HAProxy itself (and the unit conflicts with Debian's service).
    (system / "haproxy.service").symlink_to("/dev/null")
    write(root, "/etc/haproxy-k8s/haproxy-k8s.toml", MAIN_TOML)
    write(root, "/etc/haproxy-k8s/conf.d/10-cluster.toml", CLUSTER_TOML)
    shutil.copy(REPO / "tests" / "box_client.py", root / "usr/local/lib/box_client.py")


def write(root: Path, path: str, text: str) -> Path:
    """Write a file into the container's root from outside, atomically (seen at once inside,
    except under its tmpfs mounts, /tmp and /run)."""
    assert not path.startswith(("/tmp/", "/run/")), path
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, target)
    return target


# -- the running container --------------------------------------------------------------------
class Box:
    """One booted container; commands run inside it through nsenter."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.root = run_dir / "root"
        self.nspawn_pid: int | None = None
        self.init_pid: int | None = None

    @classmethod
    def create(cls) -> Box:
        run_dir = Path(tempfile.mkdtemp(dir=CACHE, prefix="run-"))
        box = cls(run_dir)
        try:
            subprocess.run(["cp", "-a", "--reflink=auto", str(cached_root()), str(box.root)],
                           check=True, timeout=300)
            install_project(box.root)
            install_units(box.root)
            box.boot()
        except BaseException:
            box.close()
            raise
        return box

    def boot(self) -> None:
        pid_file, log = self.run_dir / "nspawn.pid", self.run_dir / "nspawn.log"
        # --register=no --keep-unit: no host D-Bus or machined needed (there is none here).
        nspawn = ["systemd-nspawn", "-q", "-D", str(self.root), "-b", "--private-network",
                  "--register=no", "--keep-unit", "--console=read-only"]
        script = f'echo $$ > {pid_file}; exec "$@" > {log} 2>&1 < /dev/null'
        subprocess.run(["setsid", "-f", "sh", "-c", script, "sh", *nspawn], check=True,
                       timeout=30)
        self.nspawn_pid = wait_until(lambda: int(pid_file.read_text()), 10.0,
                                     message="nspawn pid file")
        self.init_pid = wait_until(self._find_init, 30.0, message="the container's systemd")
        wait_until(self._booted, 120.0, interval=0.2, message="the container's boot")

    def _booted(self) -> bool:
        # "offline" until systemd's bus is up; then --wait blocks until boot has finished.
        state = self.run("systemctl", "is-system-running", "--wait", timeout=120).stdout.strip()
        assert state != "maintenance", self.run("systemctl", "--failed").stdout
        return state in ("running", "degraded")

    def _find_init(self) -> int | None:
        # nspawn's first child is an intermediate that sets up the namespaces and forks the
        # container's init: entering it would run commands outside the container (seen:
        # `systemctl` answered "offline"). Wait for the child that is systemd.
        assert self.nspawn_pid is not None
        for child in psutil.Process(self.nspawn_pid).children():
            if child.name() == "systemd":
                return child.pid
        return None

    # -- commands inside -------------------------------------------------------------------
    def command(self, *argv: str) -> list[str]:
        assert self.init_pid is not None
        return ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i",
                *(f"{k}={v}" for k, v in ENV.items()), *argv]

    def run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def check(self, *argv: str, timeout: float = 60.0) -> str:
        result = self.run(*argv, timeout=timeout)
        assert result.returncode == 0, (argv, result.returncode, result.stdout, result.stderr)
        return result.stdout

    def write(self, path: str, text: str) -> Path:
        return write(self.root, path, text)

    def show(self, prop: str, unit: str = UNIT) -> str:
        return self.check("systemctl", "show", "-p", prop, "--value", unit).strip()

    def status(self) -> dict[str, Any]:
        """`haproxy-k8s status --json` inside (any exit code: the document says why)."""
        doc: dict[str, Any] = json.loads(self.run("haproxy-k8s", "status", "--json").stdout)
        return doc

    def cursor(self) -> str:
        """The journal's current position, to read only what follows."""
        out = self.check("journalctl", "-n0", "--show-cursor", "-q")
        return out.strip().removeprefix("-- cursor: ")

    def journal(self, after: str, priority: int = 7) -> list[str]:
        """The unit's messages after `after` at `priority` or more urgent (3 err, 4 warning).

        Filtered here on each entry's PRIORITY field rather than with `journalctl -p`: seen
        on 252, `-p err --after-cursor` missed an entry whose PRIORITY=3 the JSON shows.
        """
        out = self.check("journalctl", "-u", UNIT, "-o", "json", f"--after-cursor={after}",
                         "-q", "--output-fields=PRIORITY,MESSAGE")
        entries = [json.loads(line) for line in out.splitlines()]
        return [str(e["MESSAGE"]) for e in entries if int(e.get("PRIORITY", 6)) <= priority]

    @contextlib.contextmanager
    def client_loop(self, seconds: float = 60.0) -> Iterator[dict[str, Any]]:
        """Requests through the balancer, inside the container, while the body runs.

        Yields a dict that is filled with the client's report when the block ends:
        `ok`, `failed`, `errors`. Bounded: it stops on its own after `seconds`.
        """
        name = f"client-{time.monotonic_ns()}"
        files = Path("/var/lib/box-client") / name
        started, stop = self.root / f"{files}.started".lstrip("/"), f"{files}.stop"
        started.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(self.command(
            "python3", "/usr/local/lib/box_client.py", BALANCER, str(API_PORT), str(seconds),
            f"{files}.started", stop), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        report: dict[str, Any] = {}
        try:
            wait_until(lambda: started.exists() or process.poll() is not None, 10.0)
            yield report
        finally:
            self.write(stop, "stop\n")
            out, err = process.communicate(timeout=seconds + 10)
            report.update(json.loads(out) if out.strip() else {"ok": 0, "failed": -1,
                                                               "errors": {err: 1}})

    # -- end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Power the container off (kill it if it will not go), then remove the copy."""
        if self.nspawn_pid is not None and _alive(self.nspawn_pid):
            if self.init_pid is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.run("systemctl", "poweroff", "--no-block", timeout=30)
            if not _wait_gone(self.nspawn_pid, 60.0):
                # nspawn answers SIGTERM by shutting the container down; SIGKILL is the end.
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.nspawn_pid, sig)
                    if _wait_gone(self.nspawn_pid, 15.0):
                        break
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    try:
        wait_until(lambda: not _alive(pid), timeout, interval=0.1)
        return True
    except AssertionError:
        return False


def bumped_wheel(dest: Path, version: str) -> Path:
    """A wheel of this project under another version: what an upgrade installs."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hk8s-wheel-") as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"))
        for name in ("pyproject.toml", "haproxy_k8s/__init__.py"):
            path = source / name
            old = f'"{haproxy_k8s.__version__}"'
            path.write_text(path.read_text().replace(old, f'"{version}"', 1))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(dest), str(source)], check=True, timeout=300, capture_output=True)
    [wheel] = dest.glob(f"haproxy_k8s-{version}-*.whl")
    return wheel

