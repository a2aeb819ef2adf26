"""The status document (`status.json`, `status --json`) and its text form.

The JSON shape is a contract (DESIGN.md §1): add fields, never rename.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from .model import Config

STATES = ("UP", "DOWN", "NOLB", "MAINT", "DRAIN", "UNKNOWN")

EXIT_OK, EXIT_DEGRADED, EXIT_CLUSTER_DOWN, EXIT_UNREACHABLE = 0, 1, 2, 3


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@dataclass
class DaemonState:
    """What the daemon knows about itself; owned by the main loop only."""

    pid: int
    generation: int = 0
    applies: int = 0
    applied_at: str | None = None
    last_error: dict[str, Any] | None = None
    failed_reloads: int = 0
    haproxy_restarts: int = 0
    config_errors: int = 0
    runtime_changes: int = 0
    last_apply: dict[str, Any] = field(default_factory=dict)

    def record_error(self, error: dict[str, Any]) -> None:
        self.last_error = {"at": utc_now(), **error}


def node_state(row: dict[str, str] | None) -> str:
    """Map a `show stat` server row to one of STATES."""
    if row is None:
        return "UNKNOWN"
    status = row.get("status", "")
    if status.startswith("MAINT") or "MAINT" in status:
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


def check_text(row: dict[str, str]) -> str:
    status, code, dur = row.get("check_status", ""), row.get("check_code", ""), \
        row.get("check_duration", "")
    if not status:
        return ""
    text = f"{status}/{code}" if code else status
    return f"{text} in {dur}ms" if dur else text


def _admin(row: dict[str, str] | None) -> str:
    status = (row or {}).get("status", "")
    if "MAINT" in status:
        return "maint"
    if status.startswith("DRAIN"):
        return "drain"
    return "ready"


def node_entry(name: str, address: str, port: int | None,
               row: dict[str, str] | None) -> dict[str, Any]:
    """One node of `status --json`, from its `show stat` row (None: unknown)."""
    return {
        "name": name, "address": address, "port": port,
        "state": node_state(row),
        "check": check_text(row) if row else "",
        "last_change_s": _int(row.get("lastchg")) if row else None,
        "sessions": _int(row.get("scur")) if row else None,
        "admin": _admin(row),
    }


def cluster_entry(name: str, bind: list[str], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "bind": bind, "up": sum(1 for n in nodes if n["state"] == "UP"),
            "total": len(nodes), "nodes": nodes}


def cluster_view(config: Config, stats: dict[tuple[str, str], dict[str, str]] | None,
                 ) -> list[dict[str, Any]]:
    """Per-cluster node health from the model and (when reachable) `show stat` rows."""
    return [
        cluster_entry(cluster.name, [str(b) for b in cluster.binds], [
            node_entry(node.name, node.address, node.port,
                       stats.get((cluster.backend, node.name)) if stats is not None else None)
            for node in cluster.nodes])
        for cluster in config.clusters
    ]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


def exit_code(doc: dict[str, Any]) -> int:
    """0 all UP; 1 some node not UP; 2 some cluster has no UP node; 3 unreachable."""
    if not doc.get("haproxy", {}).get("reachable", False):
        return EXIT_UNREACHABLE
    clusters = doc.get("clusters", [])
    if any(c["up"] == 0 for c in clusters):
        return EXIT_CLUSTER_DOWN
    if any(c["up"] < c["total"] for c in clusters):
        return EXIT_DEGRADED
    return EXIT_OK


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
