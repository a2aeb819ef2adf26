"""`haproxy-k8s status`: the daemon's document, or HAProxy itself with the daemon down.

A daemon that answers on its control socket gives the whole document in one
request (op `document`): it holds HAProxy's state, kept fresh by HAProxy's log
messages. Without one, three sources, each named in `unreachable` when it
cannot be read:
- the daemon: its pid file and status.json (generation, last error, and the
  clusters and nodes HAProxy was last given);
- the master CLI: `show proc` (HAProxy's pids, version, reloads);
- the admin socket: `show stat` (each node's state, last check, sessions).
Node states come from the admin socket only: when it cannot be read they are
UNKNOWN, never copied from an old status.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.names import backend_name, cluster_of_backend, is_node_server
from ..daemon import client
from ..daemon.states import StatRow, StatRows
from ..daemon.status import (
    ClusterShape,
    ClusterStatus,
    DaemonStatus,
    HaproxyStatus,
    NodeShape,
    NodeStatus,
    StatusDocument,
    build,
    exit_code,
    parse_utc,
    shape_of_config,
    shape_of_saved,
    verdict,
)
from ..errors import HaproxyK8sError, RuntimeApiError
from ..haproxy.paths import StatePaths, read_pid
from ..vip.view import vip_lines
from .common import error_line
from .live import ASK_TIMEOUT, ask

# The config loader and HAProxy's clients only read HAProxy without a daemon:
# imported there, the table of a daemon's document does without them.
if TYPE_CHECKING:
    from ..haproxy.replies import ServerKey

SOCKET_TIMEOUT = 2.0


def collect(paths: StatePaths, config_dir: Path, cluster: str | None = None,
            asked: bytes | RuntimeApiError | None = None) -> tuple[StatusDocument, int]:
    """The status document (DESIGN.md §1, plus `unreachable`) and its exit code.

    `cluster`: only that cluster; no cluster at all when there is none of that
    name. A daemon that answers gives the whole document in one request;
    without one it is pieced together from status.json and HAProxy's sockets.
    `asked`: the daemon's reply (live.ask), or why there is none, when the
    caller asked already.
    """
    try:
        doc = _live_document(ask(paths, cluster) if asked is None else asked)
    except RuntimeApiError as e:
        # No daemon, or a silent one: do not wait for it a second time.
        return _pieced(paths, config_dir, cluster, str(e))
    if doc is None:
        return _pieced(paths, config_dir, cluster)
    return doc, exit_code(doc)


def _live_document(asked: bytes | RuntimeApiError) -> StatusDocument | None:
    """The daemon's live document; None when its answer will not do.

    An older daemon has no `document` op. One that cannot read HAProxy would
    only say "unknown": reading HAProxy's sockets here says which is missing.
    """
    if isinstance(asked, RuntimeApiError):
        raise asked
    try:
        reply = json.loads(asked)
    except ValueError as e:  # cut short: the daemon ended while answering
        raise RuntimeApiError(f"the daemon's answer is not JSON: {e}") from e
    data = reply.get("document") if isinstance(reply, dict) else None
    if not isinstance(reply, dict) or not reply.get("ok") or not isinstance(data, dict):
        return None
    doc = StatusDocument.from_json(data)
    return doc if doc.haproxy.reachable and doc.daemon.running else None


def _pieced(paths: StatePaths, config_dir: Path, cluster: str | None,
            silent: str | None = None) -> tuple[StatusDocument, int]:
    """The document from status.json and HAProxy's own sockets (`silent`: why the
    daemon did not answer, when it was asked already).

    Only `cluster`'s backend is read from HAProxy when one is given.
    """
    saved = read_saved(paths)
    unreachable: list[str] = []
    daemon = _daemon(paths, saved, unreachable, silent)
    haproxy = _haproxy(paths, saved, unreachable)
    rows = _stats(paths, unreachable, None if cluster is None else backend_name(cluster))
    shape = _shape(saved, config_dir, rows)
    if cluster is not None:
        shape = [c for c in shape if c.name == cluster]
    # Discovery state is the daemon's to know: as it last saved it.
    discovery = {c.name: c.discovery for c in saved.clusters if c.discovery} if saved else {}
    doc = build(daemon, haproxy, shape, rows, unreachable, discovery=discovery)
    if saved is not None:
        # [vip] role and config hashes: as the daemon last wrote them (it rewrites
        # status.json on every VRRP transition).
        doc.vip, doc.config = saved.vip, saved.config
    return doc, exit_code(doc)


# -- sources ------------------------------------------------------------------------------
def read_saved(paths: StatePaths) -> StatusDocument | None:
    """The daemon's last status.json, or None when it is missing or unreadable."""
    try:
        data = json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return StatusDocument.from_json(data)
    except (TypeError, ValueError, AttributeError):
        return None


def _daemon(paths: StatePaths, saved: StatusDocument | None,
            unreachable: list[str], silent: str | None = None) -> DaemonStatus:
    daemon = saved.daemon if saved is not None else DaemonStatus()
    pid = read_pid(paths.daemon_pid)
    daemon.running = _daemon_alive(pid)
    if not daemon.running:
        unreachable.append(f"daemon: not running (no live haproxy-k8s pid in "
                           f"{paths.daemon_pid}); generation and errors are as it left them")
        return daemon
    daemon.pid = pid
    live = _ask_daemon(paths) if silent is None else silent
    if isinstance(live, DaemonStatus):
        return live  # its own word, even when it cannot write status.json
    # Alive but silent: stopped (SIGSTOP), wedged, or busy for longer than we wait.
    daemon.running = False
    daemon.stale_s = _age(daemon.written_at)
    age = f"{daemon.stale_s:.0f}s old" if daemon.stale_s is not None else "of unknown age"
    unreachable.append(f"daemon: pid {pid} does not answer on its control socket ({live}); "
                       f"its status.json is {age}")
    return daemon


def _ask_daemon(paths: StatePaths) -> DaemonStatus | str:
    """The daemon's live status over the control socket, or why it did not answer."""
    try:
        reply = client.call(paths.control_socket, "status", timeout=ASK_TIMEOUT)
    except RuntimeApiError as e:
        return str(e)
    data = reply.get("daemon")
    if not reply.get("ok") or not isinstance(data, dict):
        return f"unexpected answer: {str(reply)[:100]}"
    return StatusDocument.from_json({"daemon": data}).daemon


def _age(stamp: str | None) -> float | None:
    when = parse_utc(stamp)
    return None if when is None else max(0.0, round(time.time() - when, 1))


def _daemon_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    import psutil  # only without a daemon's answer: a tenth of `status` to import

    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        alive = proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    # A recycled pid must not pass for the daemon.
    return alive and ("haproxy-k8s" in cmdline or "haproxy_k8s" in cmdline)


def _haproxy(paths: StatePaths, saved: StatusDocument | None,
             unreachable: list[str]) -> HaproxyStatus:
    from ..haproxy.runtime import MasterClient

    haproxy = saved.haproxy if saved is not None else HaproxyStatus()
    try:
        table = MasterClient(paths.master_socket, SOCKET_TIMEOUT).show_proc()
    except RuntimeApiError as e:
        unreachable.append(f"master socket: {e}")
        haproxy.pid, haproxy.reloads, haproxy.workers = None, None, []
        return haproxy
    haproxy.pid, haproxy.reloads = table.master.pid, table.master.reloads
    haproxy.workers = sorted(table.worker_pids)
    haproxy.version = table.master.version or haproxy.version
    return haproxy


def _stats(paths: StatePaths, unreachable: list[str],
           backend: str | None = None) -> dict[ServerKey, StatRow] | None:
    from ..haproxy.runtime import SERVER_COLUMNS, RuntimeClient

    try:
        # RuntimeClient, not daemon.health.read_stats: that module imports the
        # Kubernetes client, a tenth of a second at start for every `status`.
        return dict(RuntimeClient(paths.admin_socket, SOCKET_TIMEOUT)
                    .show_server_stats(backend, SERVER_COLUMNS))
    except RuntimeApiError as e:
        unreachable.append(f"admin socket: {e}")
        return None


# -- which clusters and nodes -------------------------------------------------------------
def _shape(saved: StatusDocument | None, config_dir: Path,
           rows: StatRows | None) -> list[ClusterShape]:
    """Clusters and nodes to report, best source first.

    status.json lists what HAProxy was last given, which is what it runs even
    when the daemon is gone. Without it, the drop-ins; when those are broken
    too, the backends HAProxy itself reports.
    """
    if saved is not None and saved.clusters:
        return shape_of_saved(saved.clusters)
    from ..config.loader import load_config

    try:
        return shape_of_config(load_config(config_dir))
    except HaproxyK8sError:
        return _shape_of_rows(rows or {})


def _shape_of_rows(rows: StatRows) -> list[ClusterShape]:
    clusters: dict[str, list[NodeShape]] = {}
    for (backend, server), row in sorted(rows.items()):
        cluster = cluster_of_backend(backend)
        if cluster is None or not is_node_server(backend, server):
            continue
        address, _, port = row.get("addr", "").rpartition(":")
        clusters.setdefault(cluster, []).append(
            NodeShape(server, address, int(port) if port.isdigit() else None))
    return [ClusterShape(name, (), tuple(nodes)) for name, nodes in clusters.items()]


# -- the table ------------------------------------------------------------------------------
HEADER = ("CLUSTER", "BIND", "SNI", "NODE", "ADDRESS", "STATE", "LAST CHECK", "SINCE",
          "SESSIONS")
# `-o wide`: what an operator asks next (why that weight? who set maint? how busy?).
WIDE = ("WEIGHT", "ADMIN", "RATE", "CHECK DETAIL", "SOURCE", "ORIGIN")


def format_table(doc: StatusDocument | dict[str, Any], wide: bool = False) -> str:
    """What an operator reads at a glance: who serves, who does not, and why."""
    d = doc if isinstance(doc, StatusDocument) else StatusDocument.from_json(doc)
    lines = _header_lines(d) + _discovery_lines(d.clusters)
    lines.append("")
    rows = [HEADER + (WIDE if wide else ()), *_node_rows(d.clusters, wide)]
    if not any(c.sni for c in d.clusters):
        rows = [row[:2] + row[3:] for row in rows]  # no SNI anywhere: no empty column
    # A SOURCE column only where discovery adds nodes: static setups read as before
    # (`-o wide` always has it).
    if not wide and any(n.source != "static" for c in d.clusters for n in c.nodes):
        sources = [n.source for c in d.clusters for n in c.nodes]
        rows = [(*row, source) for row, source in zip(rows, ["SOURCE", *sources], strict=True)]
    lines += _align(rows)
    lines += ["", verdict(d)]
    return "\n".join(lines) + "\n"


def _header_lines(doc: StatusDocument) -> list[str]:
    daemon, haproxy = doc.daemon, doc.haproxy
    running = f"running, pid {daemon.pid}" if daemon.running else "NOT RUNNING"
    lines = [f"daemon:   {running}, generation {_dash(daemon.generation)}, "
             f"applied {_dash(daemon.applied_at)}"]
    if haproxy.pid:
        workers = ",".join(str(w) for w in haproxy.workers) or "-"
        lines.append(f"haproxy:  {_dash(haproxy.version)}, master pid {haproxy.pid}, "
                     f"workers {workers}, {_dash(haproxy.reloads)} reloads, "
                     f"{haproxy.failed_reloads or 0} failed")
    else:
        lines.append("haproxy:  NOT RUNNING (or its master socket cannot be read)")
    if haproxy.prometheus_exporter is False:
        lines.append("note:     this HAProxy has no Prometheus exporter: stats /metrics is off")
    error = daemon.last_error
    if error:
        lines.append(f"error:    {error_line(error)} (at {error.get('at')})")
    # The last apply that did something: why HAProxy runs what it runs.
    last = next((r for r in reversed(daemon.history) if r.action != "noop"), None)
    if last is not None:
        why = f" ({last.plan})" if last.plan else ""
        lines.append(f"last:     {last.action}{why} on {last.reason}, {last.at}")
    if daemon.state_dir_error:
        lines.append(f"state:    {daemon.state_dir_error} (next try {_dash(daemon.retry_at)})")
    if daemon.held:
        lines.append(f"held:     {'; '.join(daemon.held.get('reasons', []))} (applies at "
                     f"{daemon.held.get('apply_at')} unless the files change again)")
    lines += vip_lines({"vip": doc.vip})
    lines += [f"unreachable: {problem}" for problem in doc.unreachable]
    return lines


def _discovery_lines(clusters: list[ClusterStatus]) -> list[str]:
    lines = []
    for cluster in clusters:
        d = cluster.discovery
        if not d:
            continue
        text = (f"discovery: {cluster.name}: {d.get('state')}, {d.get('endpoints', 0)} endpoints, "
                f"last sync {_dash(d.get('last_sync'))}, resourceVersion "
                f"{_dash(d.get('resource_version'))}")
        if d.get("via") == "nodes":
            text += ", reaching the API at the nodes directly"
        if d.get("last_error"):
            text += f"; error: {d['last_error']} (at {d.get('last_error_at')})"
        lines.append(text)
    return lines


def _node_rows(clusters: list[ClusterStatus], wide: bool = False) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for cluster in clusters:
        # Name, bind and the up count once per cluster: the eye finds the groups.
        failing_open = ", FAIL-OPEN" if cluster.fail_open_active else ""
        first = (f"{cluster.name} ({cluster.up}/{cluster.total} up{failing_open})",
                 ",".join(cluster.bind) or "-", ",".join(cluster.sni) or "-")
        for i, node in enumerate(cluster.nodes):
            row: tuple[str, ...] = (*(first if i == 0 else ("", "", "")), node.name,
                   f"{node.address}:{node.port}", _state(node), _check(node),
                   _since(node.last_change_s), _dash(node.sessions))
            if wide:
                row += (_dash(node.weight), node.admin, _dash(node.rate),
                        _dash(node.check_detail), node.source, _dash(node.origin))
            rows.append(row)
    return rows


def _state(node: NodeStatus) -> str:
    # A node deleted from the config keeps its clients until they leave.
    return f"{node.state} (removing)" if node.removing else node.state


def _check(node: NodeStatus) -> str:
    text, detail = node.check, node.check_detail
    if detail and node.state != "UP":
        text = f"{text} ({detail})" if text else detail
    return text or "-"


def _align(rows: list[tuple[str, ...]]) -> list[str]:
    # One format string for all rows: a padded cell each by ljust was a third of
    # the table of 3,000 nodes.
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return [line.format(*row).rstrip() for row in rows]


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _since(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
