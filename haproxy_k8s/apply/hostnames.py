"""SNI hostname changes through the runtime API: each shared bind's live map made equal
to what the config says, then read back.

The map files themselves are written before validation (apply/candidate.py), so a
later start or reload loads the same entries.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..config.model import Config
from ..errors import RuntimeApiError
from ..haproxy.paths import StatePaths
from ..haproxy.sni import shared_frontends

log = logging.getLogger(__name__)


class MapApi(Protocol):
    def show_map(self, map_file: str) -> dict[str, str]: ...
    def add_map(self, map_file: str, key: str, value: str) -> None: ...
    def set_map(self, map_file: str, key: str, value: str) -> None: ...
    def del_map(self, map_file: str, key: str) -> None: ...


def sync_maps(admin: MapApi, config: Config, paths: StatePaths) -> int:
    """Edit every shared bind's live map to `config`'s entries; the number of edits.

    A re-pointed hostname is one `set map` (atomic). `add map` would add a
    second entry for a key already there, so adds only go to absent keys.
    """
    edits = 0
    for frontend in shared_frontends(config, paths):
        map_file, want = str(frontend.map_path), frontend.entries()
        live = admin.show_map(map_file)
        for key in sorted(live.keys() - want.keys()):
            admin.del_map(map_file, key)
            edits += 1
        for key, value in sorted(want.items()):
            if key not in live:
                admin.add_map(map_file, key, value)
            elif live[key] != value:
                admin.set_map(map_file, key, value)
            else:
                continue
            edits += 1
        got = admin.show_map(map_file)
        if got != want:
            raise RuntimeApiError(f"{map_file}: live map reads back {got}, want {want}")
        log.debug("map %s: %d entries", map_file, len(want))
    return edits
