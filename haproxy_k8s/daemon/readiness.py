"""Wait, bounded, until HAProxy serves what the applied config promises."""

from __future__ import annotations

import time

from ..config.model import Bind, Config
from ..haproxy.probe import http_answers, listening_sockets, not_listening

WAIT = 5.0  # HAProxy binds before its worker starts: this is a safety margin
POLL = 0.02


def wait_serving(config: Config | None, promex: bool, timeout: float = WAIT) -> list[str]:
    """[] once every frontend listens and the stats page answers; else what does not.

    What answered once is not asked again: each stats probe is a request HAProxy
    serves, and the socket table has a line per bind.
    """
    if config is None:
        return ["no config applied"]
    deadline = time.monotonic() + timeout
    binds = [b for c in config.clusters for b in c.binds]
    pages = _stats_pages(config, promex)
    while True:
        binds = not_listening(binds, listening_sockets())
        problems = [f"{b}: not listening" for b in binds]
        for page in list(pages):
            why = http_answers(*page)
            if why is None:
                pages.remove(page)
            else:
                problems.append(why)
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(POLL)


def _stats_pages(config: Config, promex: bool) -> list[tuple[Bind, str]]:
    stats = config.stats.bind
    if stats is None:
        return []
    return [(stats, path) for path in (["/stats", "/metrics"] if promex else ["/stats"])]
