"""Wait, bounded, until HAProxy serves what the applied config promises."""

from __future__ import annotations

import time

from ..config.model import Config
from ..haproxy.probe import http_answers, listening_sockets, not_listening

WAIT = 5.0  # HAProxy binds before its worker starts: this is a safety margin
POLL = 0.02


def wait_serving(config: Config | None, promex: bool, timeout: float = WAIT) -> list[str]:
    """[] once every frontend listens and the stats page answers; else what does not."""
    if config is None:
        return ["no config applied"]
    deadline = time.monotonic() + timeout
    while True:
        problems = _problems(config, promex)
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(POLL)


def _problems(config: Config, promex: bool) -> list[str]:
    binds = [b for c in config.clusters for b in c.binds]
    problems = [f"{b}: not listening" for b in not_listening(binds, listening_sockets())]
    stats = config.stats.bind
    if stats is not None:
        paths = ["/stats", "/metrics"] if promex else ["/stats"]
        problems += [p for p in (http_answers(stats, path) for path in paths) if p]
    return problems
