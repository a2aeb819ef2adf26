"""Wall-clock times as the status document and the events write them (UTC, ms)."""

from __future__ import annotations

import datetime as dt
import time


def utc_at(unix: float) -> str:
    """`2026-11-28T05:21:40.12Z` for a Unix time."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def utc_now() -> str:
    return utc_at(time.time())


def parse_utc(text: str | None) -> float | None:
    """Unix time of a `utc_now()` string (None when absent or unreadable)."""
    if not text:
        return None
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC).timestamp()
