"""sd_notify(3) without libsystemd: one datagram per state change to $NOTIFY_SOCKET.

systemd passes the socket address in NOTIFY_SOCKET (a path, or `@name` for the abstract
namespace) and, when WatchdogSec= is set, the watchdog period in WATCHDOG_USEC. Outside
systemd (a shell, the tests, a container) NOTIFY_SOCKET is unset and every call is a no-op.

Notifications are best effort: a daemon must keep balancing traffic even when PID 1 cannot
be told about it, so a failed send is logged (once per streak of failures) and swallowed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# A notification goes to PID 1's socket; if its queue is full we wait this long at most,
# so a stuck service manager cannot stall the event loop.
SEND_TIMEOUT = 1.0


class Notifier:
    """Reports readiness, reloads, status and watchdog pings to systemd.

    The environment is read once, at construction: systemd sets it before exec and it does
    not change afterwards.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._failing = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self._address is not None

    def ready(self, status: str) -> None:
        """Startup (or an apply) finished: systemd marks the unit active."""
        self._send("READY=1", _status_line(status))

    def reloading(self) -> None:
        """An apply starts. systemd >= 253 requires MONOTONIC_USEC next to RELOADING=1."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> None:
        """Free-form one-line summary shown by `systemctl status`."""
        self._send(_status_line(text))

    def watchdog(self) -> None:
        """Keep-alive ping: must arrive at least every WatchdogSec."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun (systemd shows the unit as deactivating)."""
        self._send("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half the watchdog timeout, as systemd advises), or None."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def _send(self, *assignments: str) -> None:
        if self._address is None:
            return
        data = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(data, self._address)
        except OSError as e:
            if not self._failing:
                log.debug("sd_notify to %r failed: %s", self._address, e)
            self._failing = True
        else:
            self._failing = False


def _socket_address(value: str) -> bytes | None:
    """NOTIFY_SOCKET as a sendto() address: `@name` is abstract (a leading NUL byte)."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    if value:
        # e.g. vsock:CID:PORT (systemd >= 254, for VMs): not something this daemon runs in.
        log.debug("unsupported NOTIFY_SOCKET %r: notifications disabled", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for us: WATCHDOG_PID, if set, must be our pid.

    A child that inherited the environment (a shell started from the service, say) sees the
    parent's WATCHDOG_PID and must not think the watchdog is its job.
    """
    try:
        if "WATCHDOG_PID" in env and int(env["WATCHDOG_PID"]) != os.getpid():
            return None
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _status_line(text: str) -> str:
    # A line break would start a new assignment (a config error message could then send
    # READY=1 or MAINPID=): keep STATUS= on one line.
    return "STATUS=" + text.replace("\r", " ").replace("\n", " ")
