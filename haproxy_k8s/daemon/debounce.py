"""When to apply after file events: quiet time while writes are in progress, less once whole."""

from __future__ import annotations

from ..config.model import WatchSettings


class Debouncer:
    """When to apply after file events.

    While a write may still be in progress (a file created or modified, not yet
    closed), wait until nothing changed for `quiet` (watch.debounce); once every
    write is complete, only `settle`. Never longer than `max_wait` after the
    first event, so a constant stream of edits still applies.
    """

    def __init__(self, quiet: float, max_wait: float, settle: float = 0.0) -> None:
        self.quiet, self.max_wait, self.settle = quiet, max_wait, settle
        self.first: float | None = None
        self.last = 0.0
        self.in_progress: set[str] = set()

    def configure(self, watch: WatchSettings) -> None:
        self.quiet = watch.debounce_ms / 1000
        self.max_wait = watch.max_wait_ms / 1000
        # A debounce shorter than the settle time wins: settle only ever shortens.
        self.settle = min(watch.settle_ms, watch.debounce_ms) / 1000

    def touch(self, now: float, path: str = "", complete: bool = False) -> None:
        if self.first is None:
            self.first = now
        self.last = now
        if complete:
            self.in_progress.discard(path)
        else:
            self.in_progress.add(path)

    def due_in(self, now: float) -> float | None:
        """Seconds until an apply is due (<= 0: now), or None when nothing is pending."""
        if self.first is None:
            return None
        wait = self.quiet if self.in_progress else self.settle
        return min(self.last + wait, self.first + self.max_wait) - now

    def clear(self) -> None:
        self.first = None
        self.in_progress.clear()
