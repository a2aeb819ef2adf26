"""Render and validate a candidate config: the part of an apply that changes nothing live.

The daemon's applier and `haproxy-k8s check` run the same steps; check does
it in a temporary state dir, so it touches no file of a running balancer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config.model import Config
from ..errors import HaproxyK8sError
from ..fileio import write_atomic
from ..haproxy import render as render_mod
from ..haproxy import sni
from ..haproxy.check import CheckResult, check_config
from ..haproxy.paths import StatePaths
from ..haproxy.secrets import AuthFile, render_auth


def ensure_server_state_file(paths: StatePaths) -> None:
    """Give HAProxy a state file to read even before the first reload dumps one.

    A missing or empty file makes every start and `haproxy -c` warn; a file
    holding only the format version ("1") means "no saved state".
    """
    if not paths.server_state.exists():
        write_atomic(paths.server_state, "1\n", mode=0o640)


def validate_candidate(text: str, auth: str, paths: StatePaths, binary: str,
                       maps: Mapping[Path, str] | None = None,
                       started: Callable[[], None] | None = None) -> CheckResult:
    """Write `text` (and the stats userlist `auth`) as candidates beside the live
    files and run `haproxy -c` on them, as the master reads them.

    The candidate is removed when HAProxy refuses it, so only a validated
    file can ever be published (renamed over haproxy.cfg). The SNI `maps` it
    reads are written first: their content is part of what is validated.
    `started` runs while HAProxy checks (check_config).
    """
    paths.ensure_root()
    ensure_server_state_file(paths)
    sni.write_maps(maps or {})
    write_atomic(paths.candidate, text, mode=0o640)
    auth_file = AuthFile(paths)
    auth_file.write_candidate(auth)
    try:
        return check_config(binary, paths.candidate, also=[auth_file.candidate],
                            started=started)
    except HaproxyK8sError:
        paths.candidate.unlink(missing_ok=True)
        raise


def dry_run(config: Config, *, promex: bool) -> CheckResult:
    """Render and validate `config` in a throw-away state dir (for `check`)."""
    with tempfile.TemporaryDirectory(prefix="haproxy-k8s-check-") as tmp:
        # Sockets and the state file in the temp dir: nothing live is touched.
        paths = StatePaths(Path(tmp))
        text = render_mod.render(config, paths, promex=promex)
        return validate_candidate(text, render_auth(config), paths, config.haproxy.binary,
                                  sni.map_files(config, paths))
