"""The status document (`status.json`, `status --json`) and its pieces.

The JSON shape is a contract (DESIGN.md §1): add fields, never rename. Pure:
everything here works on `show stat` rows and plain dicts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Config, backend_name

STATES = ("UP", "DOWN", "NOLB", "MAINT", "DRAIN", "UNKNOWN")

EXIT_OK, EXIT_DEGRADED, EXIT_CLUSTER_DOWN, EXIT_UNREACHABLE = 0, 1, 2, 3

StatRow = Mapping[str, str]
StatRows = Mapping[tuple[str, str], StatRow]  # (backend, server) -> `show stat` row


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def parse_utc(text: str | None) -> float | None:
    """Unix time of a `utc_now()` string (None when absent or unreadable)."""
    if not text:
        return None
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC).timestamp()


@dataclass
class DaemonState:
    """What the daemon knows about itself; owned by the main loop only."""

    pid: int
    generation: int = 0
    applies: int = 0
    applied_at: str | None = None
    last_error: dict[str, Any] | None = None
    reloads: int = 0  # reloads HAProxy accepted
    failed_reloads: int = 0  # reloads HAProxy refused (rolled back)
    haproxy_restarts: int = 0
    config_errors: int = 0
    # Servers changed through the runtime API without a reload (added,
    # removed, re-addressed, re-weighted, drained ...).
    runtime_changes: int = 0
    last_apply: dict[str, Any] = field(default_factory=dict)

    def record_error(self, error: dict[str, Any]) -> None:
        self.last_error = {"at": utc_now(), **error}


def node_state(row: StatRow | None) -> str:
    """Map a `show stat` server row to one of STATES."""
    if row is None:
        return "UNKNOWN"
    status = row.get("status", "")
    if "MAINT" in status:  # "MAINT", "MAINT (via …)", "MAINT (resolution)"
        return "MAINT"
    if status.startswith("DRAIN"):
        return "DRAIN"
    if status.startswith("UP"):  # "UP", "UP 1/2" (going down)
        return "UP"
    if status.startswith("DOWN"):  # "DOWN", "DOWN 1/3" (going up)
        return "DOWN"
    if status.startswith("NOLB"):
        return "NOLB"
    if status == "no check":
        return "UP"
    return "UNKNOWN"


def check_reason(row: StatRow) -> str:
    """`L7STS/500`, `L4CON`: the last check's status and code, if any."""
    status, code = row.get("check_status", ""), row.get("check_code", "")
    return f"{status}/{code}" if status and code else status


def check_text(row: StatRow) -> str:
    """`L7OK/200 in 3ms`: the last check as the status table shows it."""
    text, duration = check_reason(row), row.get("check_duration", "")
    return f"{text} in {duration}ms" if text and duration else text


def _admin(row: StatRow | None) -> str:
    status = (row or {}).get("status", "")
    if "MAINT" in status:
        return "maint"
    if status.startswith("DRAIN"):
        return "drain"
    return "ready"


def node_entry(name: str, address: str, port: int | None,
               row: StatRow | None) -> dict[str, Any]:
    """One node of `status --json`, from its `show stat` row (None: unknown)."""
    return {
        "name": name, "address": address, "port": port,
        "state": node_state(row),
        "check": check_text(row) if row else "",
        "last_change_s": _int(row.get("lastchg")) if row else None,
        "sessions": _int(row.get("scur")) if row else None,
        "admin": _admin(row),
        # HAProxy's words for the last check ("Connection refused", "Internal
        # Server Error"): what an operator needs to read next to a DOWN.
        "check_detail": row.get("last_chk", "") if row else "",
    }


def cluster_entry(name: str, bind: list[str], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "bind": bind, "up": sum(1 for n in nodes if n["state"] == "UP"),
            "total": len(nodes), "nodes": nodes}


def cluster_view(config: Config, stats: StatRows | None) -> list[dict[str, Any]]:
    """Per-cluster node health from the model and (when reachable) `show stat` rows."""
    return [
        cluster_entry(cluster.name, [str(b) for b in cluster.binds], [
            node_entry(node.name, node.address, node.port,
                       stats.get((cluster.backend, node.name)) if stats is not None else None)
            for node in cluster.nodes])
        for cluster in config.clusters
    ]


def overlay(clusters: list[dict[str, Any]], stats: StatRows | None) -> list[dict[str, Any]]:
    """Re-state a saved cluster list (status.json) from fresh `show stat` rows."""
    out = []
    for cluster in clusters:
        backend = backend_name(str(cluster.get("name", "")))
        nodes = [node_entry(str(n.get("name", "")), str(n.get("address", "")), n.get("port"),
                            stats.get((backend, str(n.get("name", ""))))
                            if stats is not None else None)
                 for n in cluster.get("nodes", [])]
        out.append(cluster_entry(str(cluster.get("name", "")), list(cluster.get("bind", [])),
                                 nodes))
    return out


def state_counts(clusters: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(cluster, state) -> number of nodes, with a zero for every state."""
    counts = {(c["name"], state): 0 for c in clusters for state in STATES}
    for cluster in clusters:
        for node in cluster["nodes"]:
            counts[(cluster["name"], node["state"])] += 1
    return counts


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


def exit_code(doc: Mapping[str, Any]) -> int:
    """0 all UP; 1 some node not UP; 2 some cluster has no UP node; 3 unreachable.

    3 wins: when the daemon or HAProxy's admin socket cannot be reached the
    health picture is incomplete, whatever the other numbers say.
    """
    daemon, haproxy = doc.get("daemon", {}), doc.get("haproxy", {})
    if not haproxy.get("reachable", False) or not daemon.get("running", False):
        return EXIT_UNREACHABLE
    clusters = doc.get("clusters", [])
    if any(c["up"] == 0 for c in clusters):
        return EXIT_CLUSTER_DOWN
    if any(c["up"] < c["total"] for c in clusters):
        return EXIT_DEGRADED
    return EXIT_OK


def verdict(doc: Mapping[str, Any]) -> str:
    """One line that says what the exit code means for this document."""
    code = exit_code(doc)
    clusters = doc.get("clusters", [])
    if code == EXIT_UNREACHABLE:
        # `unreachable` entries start with the source's name ("admin socket: …").
        sources = [str(p).split(":", 1)[0] for p in doc.get("unreachable") or []]
        return f"unknown: cannot reach {', '.join(sources) or 'HAProxy'}"
    if code == EXIT_CLUSTER_DOWN:
        down = [c["name"] for c in clusters if c["up"] == 0]
        return f"down: no UP node in {', '.join(down)}"
    if code == EXIT_DEGRADED:
        parts = [f"{c['name']} {c['up']}/{c['total']} up" for c in clusters
                 if c["up"] < c["total"]]
        return f"degraded: {', '.join(parts)}"
    return "healthy: every node is UP"


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
