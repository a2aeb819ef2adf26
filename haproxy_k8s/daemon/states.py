"""What one `show stat` server row says: node state, last check, admin state.

Pure; shared by the status document, the health poller's transition log and
the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

STATES = ("UP", "DOWN", "NOLB", "MAINT", "DRAIN", "UNKNOWN")

StatRow = Mapping[str, str]
StatRows = Mapping[tuple[str, str], StatRow]  # (backend, server) -> `show stat` row


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
        # Weight 0 takes no new connections and keeps its sessions: drained
        # (how discovery drains a terminating apiserver).
        return "DRAIN" if row.get("weight") == "0" else "UP"
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


def admin_state(row: StatRow | None) -> str:
    status = (row or {}).get("status", "")
    if "MAINT" in status:
        return "maint"
    if status.startswith("DRAIN"):
        return "drain"
    return "ready"


def row_int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None
