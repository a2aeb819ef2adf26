"""Pure parsers of HAProxy's runtime API replies, and the reload verdicts. No I/O here."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

_UPTIME = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MASTER_RELOADS = re.compile(r"^(\d+)(?:\s*\[failed:\s*(\d+)\])?")
_RELOAD_STATUS = re.compile(r"^Success=([01])\s*$", re.MULTILINE)

ServerKey = tuple[str, str]  # (backend, server): how every per-server reply is keyed


@dataclass(frozen=True)
class Process:
    pid: int
    kind: str  # master | worker
    reloads: int
    uptime_s: int
    version: str


@dataclass(frozen=True)
class ProcTable:
    """`show proc` on the master CLI."""

    master: Process
    failed_reloads: int
    workers: tuple[Process, ...]
    old_workers: tuple[Process, ...] = field(default=())

    @property
    def worker_pids(self) -> frozenset[int]:
        return frozenset(w.pid for w in self.workers)


def parse_uptime(text: str) -> int:
    match = _UPTIME.match(text.strip())
    if not match or not text.strip():
        return 0
    d, h, m, s = (int(g or 0) for g in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def _parse_proc_line(line: str) -> tuple[Process, int] | None:
    # columns: pid, type, reloads (master: "N [failed: F]"), uptime, version
    parts = line.split()
    if len(parts) < 4 or not parts[0].isdigit():
        return None
    pid, kind = int(parts[0]), parts[1]
    rest = " ".join(parts[2:])
    match = _MASTER_RELOADS.match(rest)
    if not match:
        return None
    reloads, failed = int(match.group(1)), int(match.group(2) or 0)
    tail = rest[match.end():].split()
    uptime = parse_uptime(tail[0]) if tail else 0
    version = tail[1] if len(tail) > 1 else ""
    return Process(pid, kind, reloads, uptime, version), failed


def parse_show_proc(text: str) -> ProcTable:
    """Parse `show proc`; raises ValueError when no master line is present."""
    master: Process | None = None
    failed = 0
    workers: list[Process] = []
    old: list[Process] = []
    section = "current"
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            lowered = line.lower()
            if "old workers" in lowered:
                section = "old"
            elif "programs" in lowered:
                section = "programs"
            elif "workers" in lowered:
                section = "current"
            continue
        parsed = _parse_proc_line(line)
        if parsed is None or section == "programs":
            continue
        proc, proc_failed = parsed
        if proc.kind == "master":
            master, failed = proc, proc_failed
        elif section == "old":
            old.append(proc)
        else:
            workers.append(proc)
    if master is None:
        raise ValueError(f"no master line in show proc output: {text[:200]!r}")
    return ProcTable(master, failed, tuple(workers), tuple(old))


def _stat_table(text: str) -> tuple[list[str], Iterator[list[str]]]:
    """`show stat` CSV: the header's column names, and the rows one at a time.

    One at a time, and no list of lines: a row is ~120 strings, and a burst
    of small objects leaves the allocator's arenas fragmented after it.
    """
    lines = io.StringIO(text.strip("\n"))
    first = lines.readline().rstrip("\r\n")
    if not first.startswith("# "):
        raise ValueError(f"not a show stat reply: {text[:120]!r}")
    header = first[2:].rstrip(",").split(",")
    return header, (row for row in csv.reader(lines) if row)


def parse_show_stat(text: str, columns: Collection[str] | None = None) -> list[dict[str, str]]:
    """Parse `show stat` CSV into dicts keyed by the header (`# pxname,svname,…`).

    `columns`: keep only these (and pxname, svname). A row has ~120 columns;
    thousands of full dicts were most of the daemon's memory and of the
    cost of each poll.
    """
    header, table = _stat_table(text)
    wanted = [(name, i) for i, name in enumerate(header)
              if columns is None or name in columns or name in ("pxname", "svname")]
    # Most values repeat ("UP", "L7OK", "0"): one string object per distinct value.
    same: dict[str, str] = {}
    return [{name: same.setdefault(row[i], row[i]) for name, i in wanted if i < len(row)}
            for row in table]


def server_stats(text: str, columns: Collection[str]) -> dict[ServerKey, dict[str, str]]:
    """`show stat` rows keyed by (pxname, svname), each with only `columns`.

    What the health poller keeps, one row per server (6,000 at 1,000
    clusters), so it is kept small: the key is not repeated in the row, and
    a value that repeats is one string object.
    """
    header, table = _stat_table(text)
    wanted = [(name, i) for i, name in enumerate(header) if name in columns]
    px, sv = (header.index(name) if name in header else len(header)
              for name in ("pxname", "svname"))
    same: dict[str, str] = {}

    def cell(row: list[str], i: int) -> str:
        return same.setdefault(row[i], row[i]) if i < len(row) else ""

    return {(cell(row, px), cell(row, sv)): {name: cell(row, i) for name, i in wanted
                                             if i < len(row)}
            for row in table}


def stats_by_server(rows: list[dict[str, str]]) -> dict[ServerKey, dict[str, str]]:
    """`show stat` rows keyed by (pxname, svname)."""
    return {(r.get("pxname", ""), r.get("svname", "")): r for r in rows}


def servers_state_by_server(rows: list[dict[str, str]]) -> dict[ServerKey, dict[str, str]]:
    """`show servers state` rows keyed by (be_name, srv_name)."""
    return {(r.get("be_name", ""), r.get("srv_name", "")): r for r in rows}


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Parse `show servers state`: a version line, a `# be_id …` header, rows."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header: list[str] = []
    rows = []
    for line in lines:
        if line.startswith("#"):
            header = line[1:].split()
            continue
        if not header:
            continue  # the leading format-version line ("1")
        rows.append(dict(zip(header, line.split(), strict=False)))
    return rows


def filter_servers_state(text: str, keep: set[tuple[str, str, str, str]]) -> str:
    """Keep only state-file rows whose (backend, server, addr, port) is in `keep`.

    HAProxy applies a state file's address and port over the configured ones
    (seen on 2.6.12, by design), so a row for a server whose address or port
    changed would silently undo the change: such rows are dropped, and the
    server starts from its configured state instead.
    """
    out: list[str] = []
    columns: list[int] | None = None  # where be_name, srv_name, srv_addr, srv_port are
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            columns = _ident_columns(line[1:].split())
            out.append(line)
            continue
        if columns is None:
            out.append(line)  # the format-version line
            continue
        words = line.split()
        # Indexed, not a dict per row: 6,000 rows are dumped before every reload.
        ident = tuple(words[i] if 0 <= i < len(words) else "" for i in columns)
        if ident in keep:
            out.append(line)
    return "\n".join(out) + "\n"


def _ident_columns(header: list[str]) -> list[int]:
    """The positions of a server's identity in a state-file header (-1: absent)."""
    names = ("be_name", "srv_name", "srv_addr", "srv_port")
    return [header.index(n) if n in header else -1 for n in names]


# -- reload verdicts: True worked, False failed, None not settled yet --------
def reload_verdict_27(reply: str) -> bool | None:
    """The `Success=1|0` line HAProxy 2.7+ answers `reload` with.

    None when the reply has none: 2.6 closes the connection without a word.
    """
    match = _RELOAD_STATUS.search(reply)
    return None if match is None else match.group(1) == "1"


def reload_verdict_26(before: ProcTable, after: ProcTable) -> bool | None:
    """Judge a reload from `show proc` before and after it (all 2.6 offers).

    The master counts the reload first. A failure then shows in `[failed: N]`
    with the old worker kept; a success lists a worker with a new pid.
    """
    if after.master.reloads <= before.master.reloads:
        return None
    if after.failed_reloads > 0:
        return False
    if after.worker_pids - before.worker_pids:
        return True
    return None


def reload_verdict(before: ProcTable, after: ProcTable, reply: str) -> bool | None:
    """Both combined: 2.7+'s `Success=0` settles a failure at once; success
    still needs the new worker listed, so both versions are judged alike."""
    if after.master.reloads <= before.master.reloads:
        return None
    if reload_verdict_27(reply) is False:
        return False
    return reload_verdict_26(before, after)
