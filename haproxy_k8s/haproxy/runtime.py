"""One typed client for HAProxy's runtime API (admin socket) and master CLI.

Every command haproxy-k8s sends is one method here, and every reply is checked
in one place, `check_reply`, against the text HAProxy prints when the command
worked: anything else raises RuntimeReplyError with the command and HAProxy's
own words. Bytes on the wire are `sockets.send_command`'s job, parsing is
`replies`' (compare haproxytech client-native's runtime/servers.go).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from ..config.model import AdminState
from ..errors import RuntimeApiError
from .replies import (
    ProcTable,
    ServerKey,
    parse_servers_state,
    parse_show_proc,
    parse_show_stat,
    server_stats,
    servers_state_by_server,
    stats_by_server,
)
from .sockets import send_command

Rows = dict[ServerKey, dict[str, str]]

STAT_TYPE_SERVER = 4  # `show stat <proxy> <type> <sid>`: 1 frontends, 2 backends, 4 servers
# The `show stat` columns the status document, transition log and metrics read.
SERVER_COLUMNS = frozenset({"status", "check_status", "check_code", "check_duration",
                            "last_chk", "lastchg", "scur", "addr", "weight", "rate"})


class Command(StrEnum):
    """The admin-socket commands that change a server, by their fixed words."""

    ADD_SERVER = "add server"
    DEL_SERVER = "del server"
    SET_ADDR = "set server addr"
    SET_STATE = "set server state"
    SET_WEIGHT = "set server weight"
    SHUTDOWN_SESSIONS = "shutdown sessions server"
    ENABLE_HEALTH = "enable health"
    DISABLE_HEALTH = "disable health"
    SET_HEALTH = "set server health"
    ADD_MAP = "add map"
    SET_MAP = "set map"
    DEL_MAP = "del map"


_SILENT = re.compile("")  # commands that only act answer with an empty line
# The whole reply, stripped, when the command worked: captured from HAProxy
# 2.6.12 (tests/test_runtime_client.py runs each against the real binary),
# the same texts client-native and the OpenShift router accept.
SUCCESS_REPLIES: dict[Command, re.Pattern[str]] = {
    Command.ADD_SERVER: re.compile(r"New server registered\."),
    Command.DEL_SERVER: re.compile(r"Server deleted\."),
    # "IP changed from 'a' to 'b', port changed from '1' to '2' by 'stats socket command'",
    # "no need to change the addr, no need to change the port by 'stats socket command'"
    Command.SET_ADDR: re.compile(r"(IP changed from|no need to change the addr|"
                                 r"port changed from)\b.*"),
    Command.SET_STATE: _SILENT,
    Command.SET_WEIGHT: _SILENT,
    Command.SHUTDOWN_SESSIONS: _SILENT,
    Command.ENABLE_HEALTH: _SILENT,
    Command.DISABLE_HEALTH: _SILENT,
    Command.SET_HEALTH: _SILENT,
    # Map edits answer nothing; failures say "Unknown map identifier…",
    # "entry not found." or "Key not found.".
    Command.ADD_MAP: _SILENT,
    Command.SET_MAP: _SILENT,
    Command.DEL_MAP: _SILENT,
}


class RuntimeReplyError(RuntimeApiError):
    """HAProxy answered a command with something other than its success text."""

    def __init__(self, command: str, reply: str) -> None:
        self.command = command
        self.reply = reply  # HAProxy's words ("No such server.")
        super().__init__(f"{command!r}: {reply or 'no reply'}")


def check_reply(command: Command, line: str, reply: str) -> str:
    """Return the stripped reply when it is `command`'s success text; else raise."""
    text = reply.strip()
    if not SUCCESS_REPLIES[command].fullmatch(text):
        raise RuntimeReplyError(line, text)
    return text


class AdminApi(Protocol):
    """What the membership ops need from the admin socket (fakes implement it too)."""

    def show_server_stats(self, backend: str | None = None,
                          columns: Collection[str] | None = SERVER_COLUMNS) -> Rows: ...
    def show_servers_state(self, backend: str | None = None) -> Rows: ...
    def add_server(self, server: str, addr: str, params: str) -> None: ...
    def del_server(self, server: str) -> None: ...
    def set_state(self, server: str, state: AdminState) -> None: ...
    def set_weight(self, server: str, weight: int) -> None: ...
    def set_addr(self, server: str, address: str, port: int) -> None: ...
    def shutdown_sessions(self, server: str) -> None: ...
    def enable_health(self, server: str) -> None: ...
    def disable_health(self, server: str) -> None: ...
    def set_health(self, server: str, health: str) -> None: ...


class RuntimeClient:
    """The worker's runtime API (`stats socket … level admin`).

    `server` arguments are `be_<cluster>/<node>`, as `model.server_id` makes them.
    """

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def _send(self, line: str) -> str:
        return send_command(self.path, line, timeout=self.timeout)

    def _run(self, command: Command, line: str) -> None:
        check_reply(command, line, self._send(line))

    # -- reads -------------------------------------------------------------
    def show_stat(self) -> Rows:
        """`show stat`, keyed by (backend, server)."""
        try:
            return stats_by_server(parse_show_stat(self._send("show stat")))
        except ValueError as e:
            raise RuntimeApiError(f"{self.path}: {e}") from e

    def show_server_stats(self, backend: str | None = None,
                          columns: Collection[str] | None = SERVER_COLUMNS) -> Rows:
        """`show stat` of servers only (no FRONTEND/BACKEND rows), of one
        backend or all, with only `columns`: what the health view reads."""
        line = f"show stat {backend or -1} {STAT_TYPE_SERVER} -1"
        try:
            if columns is not None:
                return server_stats(self._send(line), columns)
            return stats_by_server(parse_show_stat(self._send(line)))
        except ValueError as e:
            raise RuntimeApiError(f"{self.path}: {e}") from e

    def dump_servers_state(self, backend: str | None = None) -> str:
        """`show servers state [backend]` as HAProxy prints it: the server-state file format."""
        text = self._send(f"show servers state {backend}" if backend else "show servers state")
        # The dump opens with its format version ("1"); an error is one line of prose.
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        if not first.strip().isdigit():
            raise RuntimeReplyError("show servers state", text.strip())
        return text

    def show_servers_state(self, backend: str | None = None) -> Rows:
        """`show servers state [backend]`, keyed by (backend, server)."""
        return servers_state_by_server(parse_servers_state(self.dump_servers_state(backend)))

    # -- server changes ----------------------------------------------------
    def add_server(self, server: str, addr: str, params: str) -> None:
        """A dynamic server; it starts in maintenance with its checks off."""
        self._run(Command.ADD_SERVER, f"add server {server} {addr} {params}".rstrip())

    def del_server(self, server: str) -> None:
        """Only a server in maintenance without connections can be deleted."""
        self._run(Command.DEL_SERVER, f"del server {server}")

    def set_state(self, server: str, state: AdminState) -> None:
        self._run(Command.SET_STATE, f"set server {server} state {AdminState(state)}")

    def set_weight(self, server: str, weight: int) -> None:
        self._run(Command.SET_WEIGHT, f"set server {server} weight {weight}")

    def set_addr(self, server: str, address: str, port: int) -> None:
        self._run(Command.SET_ADDR, f"set server {server} addr {address} port {port}")

    def shutdown_sessions(self, server: str) -> None:
        self._run(Command.SHUTDOWN_SESSIONS, f"shutdown sessions server {server}")

    def enable_health(self, server: str) -> None:
        self._run(Command.ENABLE_HEALTH, f"enable health {server}")

    def disable_health(self, server: str) -> None:
        self._run(Command.DISABLE_HEALTH, f"disable health {server}")

    def set_health(self, server: str, health: str) -> None:
        """Force the check state: `up`, `stopping` (NOLB: no new clients) or `down`."""
        if health not in ("up", "stopping", "down"):
            raise ValueError(f"unknown health {health!r}")
        self._run(Command.SET_HEALTH, f"set server {server} health {health}")

    # -- maps (SNI routing) --------------------------------------------------
    # `map` is the file name the config loaded it from; keys and values are
    # hostnames and backend names (no spaces), as haproxy/sni.py writes them.
    def show_map(self, map_file: str) -> dict[str, str]:
        """The live entries of a map: key -> value."""
        reply = self._send(f"show map {map_file}")
        entries: dict[str, str] = {}
        for line in reply.splitlines():
            parts = line.split()
            if not parts:
                continue
            # Each entry is "<ref> <key> <value>"; anything else is an error message.
            if len(parts) != 3 or not parts[0].startswith("0x"):
                raise RuntimeReplyError(f"show map {map_file}", reply.strip())
            entries[parts[1]] = parts[2]
        return entries

    def add_map(self, map_file: str, key: str, value: str) -> None:
        self._run(Command.ADD_MAP, f"add map {map_file} {key} {value}")

    def set_map(self, map_file: str, key: str, value: str) -> None:
        self._run(Command.SET_MAP, f"set map {map_file} {key} {value}")

    def del_map(self, map_file: str, key: str) -> None:
        self._run(Command.DEL_MAP, f"del map {map_file} {key}")


class MasterClient:
    """The master CLI (`haproxy -W -S path`)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def show_proc(self, timeout: float | None = None) -> ProcTable:
        # The master keeps the connection open after a reply: read to its blank line.
        reply = send_command(self.path, "show proc", timeout=timeout or self.timeout,
                             until_blank_line=True)
        try:
            return parse_show_proc(reply)
        except ValueError as e:
            raise RuntimeApiError(str(e)) from e

    def reload(self) -> str:
        """Ask the master to reload; the raw reply, for `replies.reload_verdict`.

        2.6 closes the connection and prints nothing; 2.7+ prints `Success=1|0`
        and the startup logs, then closes. Either way we read to EOF.
        """
        return send_command(self.path, "reload", timeout=max(self.timeout, 30.0))
