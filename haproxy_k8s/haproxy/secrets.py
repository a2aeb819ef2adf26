"""The stats password: read from `stats.password_file` on every apply, handed to
HAProxy in a second config file, never in haproxy.cfg.

HAProxy 2.6 has no include directive and its master keeps the environment it
was started with across reloads and adoption, so a password passed in the
environment could only change with a full restart. Instead the master runs
`-f haproxy.cfg -f stats-auth.cfg`: the second file (mode 0600) holds only a
`userlist`, the stats frontend asks for `http_auth` against it, and the master
re-reads both files on every reload. A new password is a plain seamless reload.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config.model import Config
from ..errors import ConfigError
from ..fileio import keep_copy, write_atomic
from .paths import StatePaths

USERLIST = "haproxy_k8s_stats"
# A password file is one line; anything this long is the wrong file.
_MAX_BYTES = 4096


def read_password(path: str, key: str) -> str:
    """The password in `path`, or a ConfigError naming the file and `key`."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the password file: {e.strerror}", file=path,
                          key=key) from e
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"the password file is larger than {_MAX_BYTES} bytes", file=path,
                          key=key)
    try:
        password = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise ConfigError("the password file is not UTF-8 text", file=path, key=key) from e
    if not password:
        # HAProxy would take an empty password as "no password needed".
        raise ConfigError("the password file is empty", file=path, key=key)
    if any(ord(c) < 0x20 or c == "\x7f" for c in password):
        raise ConfigError("the password must be one line without control characters",
                          file=path, key=key)
    return password


def _quote(text: str) -> str:
    """HAProxy strong quoting: nothing inside '…' is interpreted; a ' is closed, escaped
    and reopened (checked with 2.6.12: 'a b"c$d#e\\f'\\''g' is that literal password)."""
    return "'" + text.replace("'", "'\\''") + "'"


def render_auth(config: Config) -> str:
    """The text of stats-auth.cfg for `config`; reads (and so validates) the password."""
    stats = config.stats
    if not stats.user or not stats.password_file or stats.bind is None:
        return "# stats.user is not set: no stats userlist\n"
    password = read_password(stats.password_file, "stats.password_file")
    return (f"# Written by haproxy-k8s from {stats.password_file}. Do not edit.\n"
            f"userlist {USERLIST}\n"
            f"    user {stats.user} insecure-password {_quote(password)}\n")


def metrics_password(config: Config) -> str | None:
    """The daemon's own metrics password (read on every apply, like the stats one)."""
    m = config.metrics
    if not m.user or not m.password_file or m.bind is None:
        return None
    return read_password(m.password_file, "metrics.password_file")


class AuthFile:
    """stats-auth.cfg beside haproxy.cfg, with its own candidate and last-good copies,
    published, kept and restored together with haproxy.cfg."""

    def __init__(self, paths: StatePaths) -> None:
        self.live = paths.stats_auth
        self.candidate = paths.root / (paths.stats_auth.name + ".candidate")
        self.good = paths.root / (paths.stats_auth.name + ".good")

    def differs(self, text: str) -> bool:
        try:
            return self.live.read_text() != text
        except OSError:
            return True

    def write_candidate(self, text: str) -> None:
        write_atomic(self.candidate, text, mode=0o600)

    def publish(self) -> None:
        if self.candidate.exists():
            os.replace(self.candidate, self.live)

    def keep_good(self, *, durable: bool = True) -> None:
        # `live` is only ever replaced by a rename (publish, restore_good).
        keep_copy(self.live, self.good, mode=0o600, durable=durable)

    def restore_good(self) -> None:
        if self.good.exists():
            write_atomic(self.live, self.good.read_bytes(), mode=0o600)


def auth_candidate_for_check(config: Config, directory: Path) -> Path:
    """Write stats-auth.cfg for `config` into `directory` (for `haproxy-k8s check`)."""
    path = directory / StatePaths(directory).stats_auth.name
    write_atomic(path, render_auth(config), mode=0o600, durable=False)
    return path
