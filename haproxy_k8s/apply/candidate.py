"""Render and validate a candidate config: the part of an apply that changes nothing live.

The daemon's applier and `haproxy-k8s check` run the same steps; check does
it in a temporary state dir, so it touches no file of a running balancer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..config.model import Config
from ..errors import ConfigError, HaproxyK8sError
from ..fileio import write_atomic
from ..haproxy import render as render_mod
from ..haproxy import sni
from ..haproxy.check import CheckResult, check_config
from ..haproxy.paths import StatePaths


def haproxy_env(config: Config) -> dict[str, str]:
    """HAProxy's environment: ours, plus the stats password read from its file."""
    env = dict(os.environ)
    pw_file = config.stats.password_file
    if pw_file:
        try:
            password = Path(pw_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the password file: {e.strerror}",
                              file=pw_file, key="stats.password_file") from e
        if not password:
            # HAProxy would take an empty password as "no password needed".
            raise ConfigError("the password file is empty", file=pw_file,
                              key="stats.password_file")
        env[render_mod.STATS_PASSWORD_ENV] = password
    return env


def ensure_server_state_file(paths: StatePaths) -> None:
    """Give HAProxy a state file to read even before the first reload dumps one.

    A missing or empty file makes every start and `haproxy -c` warn; a file
    holding only the format version ("1") means "no saved state".
    """
    if not paths.server_state.exists():
        write_atomic(paths.server_state, "1\n", mode=0o640)


def validate_candidate(text: str, paths: StatePaths, binary: str,
                       env: dict[str, str] | None,
                       maps: Mapping[Path, str] | None = None) -> CheckResult:
    """Write `text` as the candidate beside the live file and run `haproxy -c` on it.

    The candidate is removed when HAProxy refuses it, so only a validated
    file can ever be published (renamed over haproxy.cfg). The SNI `maps` it
    reads are written first: their content is part of what is validated.
    """
    paths.ensure_root()
    ensure_server_state_file(paths)
    sni.write_maps(maps or {})
    write_atomic(paths.candidate, text, mode=0o640)
    try:
        return check_config(binary, paths.candidate, env=env)
    except HaproxyK8sError:
        paths.candidate.unlink(missing_ok=True)
        raise


def dry_run(config: Config, *, promex: bool) -> CheckResult:
    """Render and validate `config` in a throw-away state dir (for `check`)."""
    with tempfile.TemporaryDirectory(prefix="haproxy-k8s-check-") as tmp:
        # Sockets and the state file in the temp dir: nothing live is touched.
        paths = StatePaths(Path(tmp))
        text = render_mod.render(config, paths, promex=promex)
        return validate_candidate(text, paths, config.haproxy.binary, haproxy_env(config),
                                  sni.map_files(config, paths))
