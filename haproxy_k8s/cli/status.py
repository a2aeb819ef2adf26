"""`haproxy-k8s status`: ask HAProxy itself, so it tells the truth with the daemon down.

Three sources, each named in `unreachable` when it cannot be read:
- the daemon: its pid file and status.json (generation, last error, and the
  clusters and nodes HAProxy was last given);
- the master CLI: `show proc` (HAProxy's pids, version, reloads);
- the admin socket: `show stat` (each node's state, last check, sessions).
Node states come from the admin socket only: when it cannot be read they are
UNKNOWN, never copied from an old status.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from ..config.loader import load_config
from ..daemon.health import ServerKey, read_stats
from ..daemon.status import (
    BACKEND_PREFIX,
    StatRow,
    StatRows,
    cluster_view,
    exit_code,
    overlay,
    verdict,
)
from ..errors import HaproxyK8sError, RuntimeApiError
from ..haproxy.master import read_pid
from ..haproxy.paths import StatePaths
from ..haproxy.replies import parse_show_proc
from ..haproxy.sockets import MasterSocket
from ..vip.view import vip_lines

SOCKET_TIMEOUT = 2.0


def collect(paths: StatePaths, config_dir: Path) -> tuple[dict[str, Any], int]:
    """The status document (DESIGN.md §1, plus `unreachable`) and its exit code."""
    saved = read_saved(paths)
    unreachable: list[str] = []
    daemon = _daemon(paths, saved, unreachable)
    haproxy = _haproxy(paths, saved, unreachable)
    rows = _stats(paths, unreachable)
    haproxy["reachable"] = rows is not None
    doc = {"daemon": daemon, "haproxy": haproxy,
           "clusters": overlay(_structure(saved, config_dir, rows), rows),
           "unreachable": unreachable}
    # [vip] role and config hashes: as the daemon last wrote them (it rewrites
    # status.json on every VRRP transition).
    doc.update({key: saved[key] for key in ("vip", "config") if key in saved})
    return doc, exit_code(doc)


# -- sources ------------------------------------------------------------------------------
def read_saved(paths: StatePaths) -> dict[str, Any]:
    """The daemon's last status.json, or {} when it is missing or unreadable."""
    try:
        data = json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _daemon(paths: StatePaths, saved: dict[str, Any], unreachable: list[str]) -> dict[str, Any]:
    daemon: dict[str, Any] = {"pid": None, "generation": None, "applied_at": None,
                              "last_error": None}
    daemon.update(saved.get("daemon") or {})
    pid = read_pid(paths.daemon_pid)
    daemon["running"] = _daemon_alive(pid)
    if daemon["running"]:
        daemon["pid"] = pid
    else:
        unreachable.append(f"daemon: not running (no live haproxy-k8s pid in "
                           f"{paths.daemon_pid}); generation and errors are as it left them")
    return daemon


def _daemon_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        alive = proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    # A recycled pid must not pass for the daemon.
    return alive and ("haproxy-k8s" in cmdline or "haproxy_k8s" in cmdline)


def _haproxy(paths: StatePaths, saved: dict[str, Any],
             unreachable: list[str]) -> dict[str, Any]:
    haproxy: dict[str, Any] = {"version": None, "failed_reloads": 0}
    haproxy.update(saved.get("haproxy") or {})
    try:
        reply = MasterSocket(paths.master_socket, SOCKET_TIMEOUT).command("show proc")
        table = parse_show_proc(reply)
    except (RuntimeApiError, ValueError) as e:
        unreachable.append(f"master socket: {e}")
        haproxy.update(pid=None, reloads=None, workers=[])
        return haproxy
    haproxy.update(pid=table.master.pid, reloads=table.master.reloads,
                   workers=sorted(table.worker_pids),
                   version=table.master.version or haproxy["version"])
    return haproxy


def _stats(paths: StatePaths, unreachable: list[str]) -> dict[ServerKey, StatRow] | None:
    try:
        return read_stats(paths.admin_socket, SOCKET_TIMEOUT)
    except RuntimeApiError as e:
        unreachable.append(f"admin socket: {e}")
        return None


# -- which clusters and nodes -------------------------------------------------------------
def _structure(saved: dict[str, Any], config_dir: Path,
               rows: StatRows | None) -> list[dict[str, Any]]:
    """Clusters and nodes to report, best source first.

    status.json lists what HAProxy was last given, which is what it runs even
    when the daemon is gone. Without it, the drop-ins; when those are broken
    too, the backends HAProxy itself reports.
    """
    clusters = saved.get("clusters")
    if isinstance(clusters, list) and clusters:
        return clusters
    try:
        return cluster_view(load_config(config_dir), None)
    except HaproxyK8sError:
        return _from_rows(rows or {})


def _from_rows(rows: StatRows) -> list[dict[str, Any]]:
    clusters: dict[str, list[dict[str, Any]]] = {}
    for (backend, server), row in sorted(rows.items()):
        if not backend.startswith(BACKEND_PREFIX) or server in ("FRONTEND", "BACKEND"):
            continue
        address, _, port = row.get("addr", "").rpartition(":")
        clusters.setdefault(backend[len(BACKEND_PREFIX):], []).append(
            {"name": server, "address": address, "port": int(port) if port.isdigit() else None})
    return [{"name": name, "bind": [], "nodes": nodes} for name, nodes in clusters.items()]


# -- the table ------------------------------------------------------------------------------
HEADER = ("CLUSTER", "BIND", "NODE", "ADDRESS", "STATE", "LAST CHECK", "SINCE", "SESSIONS")


def format_table(doc: dict[str, Any]) -> str:
    """What an operator reads at a glance: who serves, who does not, and why."""
    lines = _header_lines(doc)
    lines.append("")
    lines += _align([HEADER, *_node_rows(doc.get("clusters", []))])
    lines += ["", verdict(doc)]
    return "\n".join(lines) + "\n"


def _header_lines(doc: dict[str, Any]) -> list[str]:
    daemon, haproxy = doc.get("daemon", {}), doc.get("haproxy", {})
    running = f"running, pid {daemon.get('pid')}" if daemon.get("running") else "NOT RUNNING"
    lines = [f"daemon:   {running}, generation {_dash(daemon.get('generation'))}, "
             f"applied {_dash(daemon.get('applied_at'))}"]
    if haproxy.get("pid"):
        workers = ",".join(str(w) for w in haproxy.get("workers") or []) or "-"
        lines.append(f"haproxy:  {_dash(haproxy.get('version'))}, master pid {haproxy['pid']}, "
                     f"workers {workers}, {_dash(haproxy.get('reloads'))} reloads, "
                     f"{haproxy.get('failed_reloads') or 0} failed")
    else:
        lines.append("haproxy:  NOT RUNNING (or its master socket cannot be read)")
    if haproxy.get("prometheus_exporter") is False:
        lines.append("note:     this HAProxy has no Prometheus exporter: stats /metrics is off")
    error = daemon.get("last_error")
    if error:
        where = f"{error.get('file')}: " if error.get("file") else ""
        lines.append(f"error:    {where}{error.get('message')} (at {error.get('at')})")
    lines += vip_lines(doc)
    lines += [f"unreachable: {problem}" for problem in doc.get("unreachable", [])]
    return lines


def _node_rows(clusters: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for cluster in clusters:
        # Name, bind and the up count once per cluster: the eye finds the groups.
        first = (f"{cluster['name']} ({cluster['up']}/{cluster['total']} up)",
                 ",".join(cluster.get("bind", [])) or "-")
        for i, node in enumerate(cluster.get("nodes", [])):
            rows.append((*(first if i == 0 else ("", "")), node["name"],
                         f"{node['address']}:{node['port']}", node["state"], _check(node),
                         _since(node.get("last_change_s")), _dash(node.get("sessions"))))
    return rows


def _check(node: dict[str, Any]) -> str:
    text, detail = node.get("check") or "", node.get("check_detail") or ""
    if detail and node.get("state") != "UP":
        text = f"{text} ({detail})" if text else detail
    return text or "-"


def _align(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _since(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
