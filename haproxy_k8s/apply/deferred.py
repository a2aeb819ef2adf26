"""The file of a runtime change, validated beside the daemon's loop and published after.

A node added, removed, re-addressed or re-weighted through the runtime API
is checked by HAProxy itself (`add server` refuses a bad line), so the whole
file's render and `haproxy -c` (150 ms and more with 1,000 clusters) need not
stand between the edit and the change, nor hold up the next edit. The
invariant stays: haproxy.cfg is only ever replaced by a file that passed
`haproxy -c`, before HAProxy can load it. The pending config is validated on
a worker thread, into a file of its own; the loop publishes it (a rename)
when the verdict comes, unless a newer apply superseded it. Before any
reload, restart or stop — every moment HAProxy may read the file — the loop
waits for the verdict, or validates at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..config.model import Config
from ..errors import HaproxyK8sError, StateDirError

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-validate"
Verdict = tuple[Config, HaproxyK8sError | None]


class PendingPublish:
    """At most one config whose file still has to be validated and published."""

    def __init__(self) -> None:
        self.config: Config | None = None
        self._worker: threading.Thread | None = None
        self._verdict: Verdict | None = None  # the worker's; read once it has ended

    @property
    def waiting(self) -> bool:
        return self.config is not None

    def defer(self, config: Config) -> None:
        """A newer runtime change replaces an older pending one: its file says both."""
        self.config = config

    def take(self) -> Config | None:
        """The pending config, no longer pending (a newer file supersedes it)."""
        config, self.config = self.config, None
        return config

    def start(self, validate: Callable[[Config], None], done: Callable[[], None]) -> bool:
        """Validate the pending config on a worker; `done()` (on the worker) when it ends.

        False when there is nothing to do, or a worker still runs (its `done`
        brings the loop back, and the loop starts the next one).
        """
        config = self.config
        if config is None or self._worker is not None:
            return False

        def work() -> None:
            self._verdict = (config, _check(validate, config))
            done()

        self._worker = threading.Thread(target=work, name=THREAD_NAME, daemon=True)
        self._worker.start()
        return True

    def collect(self, publish: Callable[[Config], None]) -> HaproxyK8sError | None:
        """On the loop: take the worker's verdict; publish if it is for the config
        still pending. A refusal is returned, not raised (see `finish`)."""
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        verdict, self._verdict = self._verdict, None
        if verdict is None or verdict[0] is not self.config:
            return None  # superseded: a newer file was validated and published
        config, error = verdict
        return self._settle(config, error, publish)

    def finish(self, validate: Callable[[Config], None],
               publish: Callable[[Config], None]) -> HaproxyK8sError | None:
        """Validate (if no worker did) and publish the pending config, now.

        A refusal is returned, not raised: the servers already run, and the
        published file stays the last one that passed, so a reload or a
        restart of HAProxy falls back to it rather than to an unchecked file.
        """
        error = self.collect(publish)
        config = self.config
        if config is None:
            return error
        return self._settle(config, _check(validate, config), publish)

    def _settle(self, config: Config, error: HaproxyK8sError | None,
                publish: Callable[[Config], None]) -> HaproxyK8sError | None:
        if error is None:
            try:
                publish(config)
            except OSError as e:
                error = StateDirError(f"cannot publish haproxy.cfg: {e}")
        if isinstance(error, StateDirError):
            # The disk, not the config: the daemon tries again (with backoff).
            log.error("cannot publish the file of the last runtime change: %s", error)
            return error
        self.config = None
        if error is not None:
            log.error("the file of the last runtime change failed validation; "
                      "haproxy.cfg keeps the last good config: %s", error)
        return error


def _check(validate: Callable[[Config], None], config: Config) -> HaproxyK8sError | None:
    """`validate(config)`'s refusal, or None; a write that failed is a StateDirError."""
    try:
        validate(config)
    except HaproxyK8sError as e:
        return e
    except OSError as e:
        return StateDirError(f"cannot write the candidate config: {e}")
    return None
