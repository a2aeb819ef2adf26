"""One supervision round of the main loop: HAProxy alive, its sockets there, files watched.

Called every tick (and at once on news) by the daemon's loop; everything here
runs on the loop's thread, like every other change to HAProxy.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..config.model import Config
from ..errors import HaproxyK8sError
from ..haproxy.orphan import find_orphan
from ..sources.secretfiles import secret_files
from . import inspect
from .lock import StateDirLock

if TYPE_CHECKING:
    from .loop import Daemon

log = logging.getLogger(__name__)


def tick(daemon: Daemon, force_status: bool = False) -> None:
    assert daemon.applier is not None and daemon.publisher is not None
    master = daemon.applier.master
    if daemon.vip is not None:  # before any restart: a dead HAProxy releases the VIP
        daemon.vip.tick(master.alive(), daemon.publisher.cluster_counts())
    now = time.monotonic()
    if master.pid is not None and not master.alive() and daemon._restarts.due(now):
        daemon.state.haproxy_restarts += 1
        delay = daemon._restarts.failed(now)
        daemon.eventlog.record("haproxy", "master", f"pid {master.pid} exited (code "
                               f"{master.exit_code()}); restarting (backoff {delay:.0f}s)")
        restart_master(daemon)
        force_status = True
    elif master.alive():
        daemon._restarts.reset_if_stable(now)
    if master.alive() and not daemon.applier.paths.master_socket.exists():
        force_status |= recover_state_dir(daemon)
    if master.alive():
        removing = set(daemon.applier.ops.pending)
        daemon.applier.ops.tick()
        if removing != set(daemon.applier.ops.pending):
            inspect.record_deleted(daemon, removing)
            force_status = True
    daemon.files.verify()  # a replaced config dir is watched again
    if daemon._secret_files.changed(secret_files(daemon.applier.applied,
                                                 daemon.applier.attempted)):
        daemon.post("apply", "password file changed")
    daemon.publisher.maybe_write(now, force=force_status)
    daemon._ping_watchdog(now)


def restart_master(daemon: Daemon) -> None:
    assert daemon.applier is not None
    daemon._finish_pending()  # the master reads the file: it must be the checked one
    try:
        daemon.applier.master.start()
        daemon.applier.reapply_admin_states()
    except HaproxyK8sError as e:
        daemon.state.record_error(e.record())
        log.error("restart failed: %s", e)


def recover_state_dir(daemon: Daemon) -> bool:
    """The state dir (or its sockets) vanished under a serving HAProxy: rebuild, take over.

    Without this, `status` said nothing runs while HAProxy served, and a restarted
    daemon started a second master beside the orphan.
    """
    assert daemon.applier is not None and daemon.publisher is not None
    applier, paths = daemon.applier, daemon.applier.paths
    if applier.applied is None or applier.master.pid is None:
        return False
    daemon.eventlog.record("haproxy", "state", f"{paths.root} or its sockets vanished while "
                           f"HAProxy {applier.master.pid} serves: recreating them")
    try:
        if daemon.lock is not None:  # the old lock file is gone with the directory
            daemon.lock.release()
        daemon.lock = StateDirLock(paths.root)
        daemon.lock.acquire()
        applier.recover(applier.applied, applier.master.pid)
        daemon.publisher.write_pid()
        if daemon.control is not None:
            daemon.control.stop()
            daemon.control.start()
    except (HaproxyK8sError, OSError) as e:
        daemon.state.record_error({"file": str(paths.root),
                                   "message": f"cannot recreate the state dir: {e}"})
        log.error("cannot recreate %s: %s", paths.root, e)
    return True


def take_over_orphan(daemon: Daemon, config: Config) -> bool:
    """At start: a master of our state dir runs, but its pid file or sockets are gone.

    Take it over instead of starting a second master beside it.
    """
    assert daemon.applier is not None
    pid = find_orphan(daemon.applier.paths)
    if pid is None:
        return False
    daemon.eventlog.record("haproxy", "master", f"found master {pid} of {daemon.applier.paths.root}"
                           " without its sockets or pid file: taking it over")
    daemon.applier.recover(config, pid)
    return True
