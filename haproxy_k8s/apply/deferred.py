"""The file of a runtime change, published after the change is live.

A node added, removed, re-addressed or re-weighted through the runtime API
is checked by HAProxy itself (`add server` refuses a bad line), so the whole
file's `haproxy -c` (75 ms with 1,000 clusters) need not stand between the
edit and the change. The invariant stays: haproxy.cfg is only ever replaced
by a file that passed `haproxy -c`, before HAProxy can load it. The pending
config is validated and published when the daemon's loop is next free, and
before any reload, restart or stop — every moment HAProxy may read the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config.model import Config
from ..errors import HaproxyK8sError, StateDirError

log = logging.getLogger(__name__)


class PendingPublish:
    """At most one config whose file still has to be validated and published."""

    def __init__(self) -> None:
        self.config: Config | None = None

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

    def finish(self, publish: Callable[[Config], None]) -> HaproxyK8sError | None:
        """Run `publish` (render, `haproxy -c`, rename) on the pending config, once.

        A refusal is returned, not raised: the servers already run, and the
        published file stays the last one that passed, so a reload or a
        restart of HAProxy falls back to it rather than to an unchecked file.
        """
        config, self.config = self.config, None
        if config is None:
            return None
        try:
            publish(config)
        except StateDirError as e:
            # The disk, not the config: the daemon tries again (with backoff).
            self.config = config
            log.error("cannot publish the file of the last runtime change: %s", e)
            return e
        except HaproxyK8sError as e:
            log.error("the file of the last runtime change failed validation; "
                      "haproxy.cfg keeps the last good config: %s", e)
            return e
        except OSError as e:
            log.error("cannot publish the file of the last runtime change: %s", e)
            return HaproxyK8sError(f"cannot publish haproxy.cfg: {e}")
        return None
