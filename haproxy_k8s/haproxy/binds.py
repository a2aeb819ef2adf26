"""Try every bind the running HAProxy does not hold yet, before HAProxy does.

`haproxy -c` never binds. A reload onto a config with a bind another process
holds (or on an address this host does not have) fails only in the new
process, and HAProxy 2.6 pauses the old worker's listeners while it retries
the bind: every cluster refuses connections for about 2 s before the reload
gives up. Binding the new addresses ourselves first turns that outage into a
refused change that names the drop-in, the key and the holder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import proc
from ..config.model import Bind, Config
from ..errors import ConfigError
from .master import is_haproxy
from .paths import StatePaths, read_pid

log = logging.getLogger(__name__)

_WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class BindProblem:
    key: str  # dotted key: clusters.NAME.bind or stats.bind
    file: str | None  # the drop-in that set it (None: a default)
    bind: Bind
    errno: int
    message: str

    def error(self) -> ConfigError:
        return ConfigError(self.message, file=self.file, key=self.key)


def config_binds(config: Config) -> Iterator[tuple[str, Bind]]:
    """Every (key, bind) HAProxy listens on for `config`."""
    if config.stats.bind is not None:
        yield "stats.bind", config.stats.bind
    for cluster in config.clusters:
        for bind in cluster.binds:
            yield f"clusters.{cluster.name}.bind", bind


def running_binds(paths: StatePaths) -> set[Bind]:
    """The binds of the HAProxy running on `paths` (none when it does not run).

    The published haproxy.cfg is what the master runs: it is replaced only by
    a reload that succeeded or by the rollback of one that failed.
    """
    pid = read_pid(paths.haproxy_pid)
    if pid is None or not is_haproxy(pid):
        return set()
    try:
        return parse_binds(paths.config.read_text())
    except OSError:
        return set()


# A `bind` line's address. Found by one scan of the text: a line-by-line split
# of a 2 MB file at 1,000 clusters took 16 ms of every structural apply.
_BIND_LINE = re.compile(r"\n[ \t]*bind[ \t]+(\S+)")


def parse_binds(text: str) -> set[Bind]:
    """The `bind` addresses of a rendered haproxy.cfg (as the template writes them)."""
    binds = set()
    for address in _BIND_LINE.findall("\n" + text):
        host, _, port = address.removeprefix("ipv6@").rpartition(":")
        if port.isdigit():
            binds.add(Bind(host, int(port)))
    return binds


def find_problems(config: Config, held: Collection[Bind]) -> list[BindProblem]:
    """Bind (and close at once) every bind of `config` not in `held`."""
    problems = []
    for key, bind in config_binds(config):
        if bind in held:
            # Never probe a bind HAProxy holds: with SO_REUSEPORT the probe
            # would join its listener group and could take a client's SYN.
            continue
        error = try_bind(bind)
        if error is not None:
            problems.append(BindProblem(key, config.bind_files.get(key), bind, error,
                                        describe(bind, error)))
    return problems


def check_new_binds(config: Config, held: Collection[Bind]) -> None:
    """Raise a ConfigError for the first bind of `config` that HAProxy could not bind."""
    problems = find_problems(config, held)
    if problems:
        for extra in problems[1:]:
            log.warning("also cannot bind: %s", extra.error())
        raise problems[0].error()


def check_offline(config: Config, state_dir: Path) -> list[str]:
    """For `haproxy-k8s check`: raise for a bind HAProxy could not take; return warnings.

    Binds the daemon's running HAProxy holds (read from its published
    haproxy.cfg) are not tried. A port below 1024 that only root may bind is a
    warning, not an error, when check runs unprivileged: the daemon may not.
    """
    warnings = []
    for problem in find_problems(config, running_binds(StatePaths(state_dir))):
        if problem.errno == errno.EACCES and os.geteuid() != 0:
            warnings.append(str(problem.error()))
            continue
        raise problem.error()
    return warnings


def try_bind(bind: Bind) -> int | None:
    """The errno binding `bind` fails with, the way HAProxy binds it; None if it works."""
    family = socket.AF_INET6 if bind.is_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # HAProxy sets both (SO_REUSEPORT unless `noreuseport`), so a port in
        # TIME_WAIT or shared on purpose binds for it, and must here too.
        # IPV6_V6ONLY is left at the system default, as HAProxy leaves it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            # No listen(): bind is where HAProxy fails, and a listening probe
            # could accept a connection meant for the real listener.
            sock.bind((bind.host, bind.port))
        except OSError as e:
            return e.errno or errno.EINVAL
    return None


def describe(bind: Bind, err: int) -> str:
    if err == errno.EADDRINUSE:
        return f"{bind} is already in use by {holder(bind)}"
    if err == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {bind}: {bind.host} is not an address of this host "
                "(`ip -br addr` lists them)")
    if err == errno.EACCES:
        return (f"cannot listen on {bind}: permission denied (ports below 1024 need root "
                "or CAP_NET_BIND_SERVICE)")
    return f"cannot listen on {bind}: {errno.errorcode.get(err, err)}"


def holder(bind: Bind) -> str:
    """Which process listens on `bind` (a wildcard on its port counts), as best we can tell."""
    import psutil  # only when a bind is taken

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return "another process"
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != bind.port:
            continue
        ip = conn.laddr.ip
        if ip == bind.host or ip in _WILDCARDS or bind.host in _WILDCARDS:
            return _process(conn.pid)
    return "another process"


def _process(pid: int | None) -> str:
    if pid is None:
        return "another process (run as root to see which)"
    name = proc.name(pid)
    return f"pid {pid} ({name})" if name is not None else f"pid {pid}"

