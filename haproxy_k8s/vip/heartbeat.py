"""The "fit to hold the VIP" signal: the carrier of a persistent tun link.

keepalived's `track_interface` puts the VRRP instance into FAULT (VIP
released, priority 0 sent, the peer takes over at once) when the link loses
its carrier. A tun link has carrier exactly while a process holds it open, so:

- the daemon attaches while it is fit (loop ticking, HAProxy up, a node UP)
  and detaches when it is not: one ioctl per transition, no process forked;
- the daemon dying in any way (SIGKILL, crash, OOM) closes the descriptor and
  the kernel drops the carrier at once: no timeout, nothing to poll;
- a wedged main loop stops calling `beat()`; the watchdog thread notices the
  stale heartbeat and detaches;
- a re-exec of the daemon (`restart-daemon`, an upgrade) is none of these: the
  descriptor is handed to the new image (`handover()`, `take_inherited()`), so
  the carrier, and the VIP, stay where they are.

Only the main loop and the watchdog thread call in; a lock orders them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

TUN = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
IFF_TUN, IFF_NO_PI, IFF_UP = 0x0001, 0x1000, 0x1
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
TUNGETIFF = 0x800454D2
THREAD_NAME = "haproxy-k8s-vip-watchdog"
# "<fd>:<link>": the attached descriptor a re-executed daemon inherits from its old image.
INHERIT_ENV = "HAPROXY_K8S_FIT_LINK_FD"


def _ifreq(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def create_link(name: str, owner: int | None = None) -> None:
    """Create the persistent tun link and set it up (needs CAP_NET_ADMIN).

    Child mode does this itself; under systemd the keepalived unit does it
    (`ip tuntap add … user haproxy`), so the unprivileged daemon only attaches.
    """
    fd = os.open(TUN, os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, IFF_TUN | IFF_NO_PI))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
    finally:
        os.close(fd)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name, 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, flags | IFF_UP))


def delete_link(name: str) -> None:
    """Remove the persistent link again (child mode, on stop)."""
    with contextlib.suppress(OSError):
        fd = os.open(TUN, os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, IFF_TUN | IFF_NO_PI))
            fcntl.ioctl(fd, TUNSETPERSIST, 0)
        finally:
            os.close(fd)


def take_inherited() -> tuple[int, str] | None:
    """The (fd, link) an old image handed over, if any; removed from the environment, so
    HAProxy and keepalived never see it (the descriptor itself is close-on-exec again)."""
    value = os.environ.pop(INHERIT_ENV, "")
    fd_text, _, name = value.partition(":")
    if not fd_text.isdigit() or not name:
        return None
    fd = int(fd_text)
    try:
        os.set_inheritable(fd, False)
        attached = struct.unpack("16sH22x", fcntl.ioctl(fd, TUNGETIFF, _ifreq("", 0)))[0]
    except OSError:
        log.warning("inherited fit link descriptor %d is gone: attaching anew", fd)
        return None
    if attached.rstrip(b"\0").decode(errors="replace") != name:
        os.close(fd)  # attached elsewhere: not the carrier we were asked to keep
        return None
    return fd, name


class FitLink:
    """Holds the link open while fit; a watchdog thread detaches when the loop stalls."""

    def __init__(self, name: str, stale_after: float = 2.0, inherited: int | None = None) -> None:
        self.name = name
        self.stale_after = stale_after
        # An inherited descriptor is attached: the carrier never dropped across the re-exec.
        self.fit = inherited is not None
        self.reason = "re-executed" if inherited is not None else "starting"
        self.error: str | None = None
        self._fd: int | None = inherited
        self._last_beat = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def attached(self) -> bool:
        return self._fd is not None

    def beat(self, fit: bool, reason: str) -> None:
        """From the main loop, every tick: the loop is alive; attach or detach."""
        with self._lock:
            self._last_beat = time.monotonic()
            self.reason = reason
            self._set(fit)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._set(False)

    def handover(self) -> dict[str, str]:
        """Before exec(): stop watching (a slow shutdown must not detach) and keep the
        descriptor open across exec. The environment the new image needs is returned."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._fd is None:
                return {}
            os.set_inheritable(self._fd, True)
            return {INHERIT_ENV: f"{self._fd}:{self.name}"}

    def _watch(self) -> None:
        period = self.stale_after / 4
        woke = time.monotonic()
        while not self._stop.wait(period):
            now, slept = time.monotonic(), time.monotonic() - woke
            woke = now
            with self._lock:
                if slept > self.stale_after:
                    # This thread was not scheduled either: the whole process was frozen
                    # (SIGSTOP, a suspended VM), not the loop wedged. HAProxy served all
                    # along; judge the loop from the thaw on, instead of racing it.
                    self._last_beat = now
                stale = now - self._last_beat > self.stale_after
                if stale and self.fit:
                    self.reason = "daemon main loop stalled"
                    # Logging takes locks of its own; a wedged loop may hold none of
                    # ours, so this is safe, and it is said once per stall.
                    log.error("main loop silent for %.1fs: releasing the VIP", self.stale_after)
                    self._set(False)

    def _set(self, fit: bool) -> None:
        if fit == self.fit and fit == self.attached:
            return
        if fit:
            self._attach()
        else:
            self._detach()
        self.fit = self.attached

    def _attach(self) -> None:
        try:
            fd = os.open(TUN, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            self._fail(f"cannot open {TUN}: {e.strerror}")
            return
        try:
            fcntl.ioctl(fd, TUNSETIFF, _ifreq(self.name, IFF_TUN | IFF_NO_PI))
        except OSError as e:
            os.close(fd)
            self._fail(f"cannot attach to link {self.name}: {e.strerror}")
            return
        self._fd, self.error = fd, None

    def _fail(self, message: str) -> None:
        if message != self.error:
            log.error("%s (the VIP cannot come here until this is fixed)", message)
        self.error = message

    def _detach(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
