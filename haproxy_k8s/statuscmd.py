"""`haproxy-k8s status`: ask HAProxy itself, so it tells the truth with the daemon down.

Sources, each reported when unreachable: the daemon (pid file + status.json),
the master CLI (`show proc`) and the admin socket (`show stat`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from .errors import HaproxyK8sError, RuntimeApiError
from .loader import load_config
from .paths import StatePaths
from .process import read_pid
from .protocol import parse_show_proc, parse_show_stat
from .runtime import AdminSocket, MasterSocket
from .status import EXIT_UNREACHABLE, cluster_entry, cluster_view, exit_code, node_entry

BACKEND_PREFIX = "be_"


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


def _saved(paths: StatePaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _clusters_from_stats(rows: list[dict[str, str]], saved: list[dict[str, Any]],
                         config_dir: Path) -> list[dict[str, Any]]:
    """Node health straight from `show stat`, for the backends we manage."""
    stats = {(r["pxname"], r["svname"]): r for r in rows}
    try:
        return cluster_view(load_config(config_dir), stats)
    except HaproxyK8sError:
        pass  # a broken drop-in: describe what HAProxy runs instead
    binds = {c["name"]: c.get("bind", []) for c in saved}
    clusters: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        px, sv = row.get("pxname", ""), row.get("svname", "")
        if px.startswith(BACKEND_PREFIX) and sv not in ("FRONTEND", "BACKEND"):
            clusters.setdefault(px[len(BACKEND_PREFIX):], []).append(row)
    out = []
    for name, srows in sorted(clusters.items()):
        nodes = []
        for r in srows:
            addr, _, port = r.get("addr", "").rpartition(":")
            nodes.append(node_entry(r["svname"], addr, int(port) if port.isdigit() else None, r))
        out.append(cluster_entry(name, binds.get(name, []), nodes))
    return out


def collect(paths: StatePaths, config_dir: Path) -> tuple[dict[str, Any], int]:
    saved = _saved(paths)
    daemon = dict(saved.get("daemon") or {})
    pid = read_pid(paths.daemon_pid)
    daemon["running"] = _daemon_alive(pid)
    daemon.setdefault("pid", pid)
    haproxy = dict(saved.get("haproxy") or {})
    errors: list[str] = []
    try:
        table = parse_show_proc(MasterSocket(paths.master_socket, 2.0).command("show proc"))
        haproxy.update(pid=table.master.pid, reloads=table.master.reloads,
                       workers=sorted(table.worker_pids), version=table.master.version)
    except (RuntimeApiError, ValueError) as e:
        errors.append(f"master socket: {e}")
        haproxy["pid"] = None
    try:
        rows = parse_show_stat(AdminSocket(paths.admin_socket, 2.0).command("show stat"))
        haproxy["reachable"] = True
        clusters = _clusters_from_stats(rows, saved.get("clusters") or [], config_dir)
    except (RuntimeApiError, ValueError) as e:
        errors.append(f"admin socket: {e}")
        haproxy["reachable"] = False
        clusters = saved.get("clusters") or []
    if not daemon["running"]:
        errors.append(f"daemon: not running (pid file {paths.daemon_pid})")
    doc = {"daemon": daemon, "haproxy": haproxy, "clusters": clusters, "unreachable": errors}
    code = exit_code(doc)
    if not daemon["running"] and code != EXIT_UNREACHABLE and not haproxy.get("reachable"):
        code = EXIT_UNREACHABLE
    return doc, code


def format_table(doc: dict[str, Any]) -> str:
    daemon, haproxy = doc.get("daemon", {}), doc.get("haproxy", {})
    lines = [
        f"daemon:  {'running' if daemon.get('running') else 'NOT RUNNING'}"
        f" pid {daemon.get('pid')}  generation {daemon.get('generation')}"
        f"  applied {daemon.get('applied_at') or '-'}",
        f"haproxy: {'pid ' + str(haproxy.get('pid')) if haproxy.get('pid') else 'NOT RUNNING'}"
        f"  version {haproxy.get('version') or '?'}  reloads {haproxy.get('reloads')}"
        f"  failed {haproxy.get('failed_reloads', 0)}",
    ]
    error = daemon.get("last_error")
    if error:
        lines.append(f"last error: {error.get('file') or ''}: {error.get('message')}"
                     f" (at {error.get('at')})")
    for problem in doc.get("unreachable", []):
        lines.append(f"unreachable: {problem}")
    lines.append("")
    header = ("CLUSTER", "BIND", "NODE", "ADDRESS", "STATE", "CHECK", "SINCE", "SESS")
    rows = [header]
    for c in doc.get("clusters", []):
        bind = ",".join(c.get("bind", []))
        for n in c.get("nodes", []):
            rows.append((f"{c['name']} ({c['up']}/{c['total']} up)", bind, n["name"],
                         f"{n['address']}:{n['port']}", n["state"], n.get("check") or "-",
                         _since(n.get("last_change_s")), str(n.get("sessions") or 0)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines) + "\n"


def _since(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
