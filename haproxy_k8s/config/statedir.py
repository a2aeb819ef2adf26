"""The state dir a config dir names, found without importing the config model.

Every `haproxy-k8s status` (and every operator verb) starts here, and at
1,000 drop-ins importing config/loader.py (model, schema, TOML) was a sixth
of `status --json`. This is loader.state_dir_hint()'s quick path: when no
drop-in can name `haproxy.state_dir`, the answer is the main file's. None
otherwise, and the caller asks loader.state_dir_from_loading(), which parses
what it must. The file rules here (names, suffixes, leftovers) are the loader's.
"""

from __future__ import annotations

import os
import re
from fnmatch import translate
from pathlib import Path

from .names import DEFAULT_STATE_DIR

MAIN_FILE = "haproxy-k8s.toml"
DROPIN_DIR = "conf.d"
SUFFIXES = (".toml", ".json")
# Editor and package-manager leftovers (loader.is_ignored): never read.
LEFTOVERS = ("*~", ".#*", "*.swp", "*.tmp", "*.dpkg-*", "*.rpmnew", "*.rpmsave")
_LEFTOVER_NAME = re.compile("|".join(f"(?:{translate(p)})" for p in LEFTOVERS))
# Bytes without which a drop-in cannot set haproxy.state_dir: the key itself,
# or a \u escape in a quoted TOML or JSON key that could spell it.
_MAY_NAME_STATE_DIR = re.compile(rb"state_dir|\\[uU]")
QUICK_READ = 64 * 1024  # a drop-in is a few lines; a larger one takes the full path


def quick_state_dir(config_dir: Path) -> str | None:
    """The state dir, when no drop-in may name one (else None: ask the loader)."""
    config_dir = Path(config_dir)
    try:
        names = dropins(config_dir / DROPIN_DIR)
    except OSError:
        return None  # not listable: the loader says why
    if not config_dir.is_dir():
        return None
    prefix = os.path.join(config_dir, DROPIN_DIR, "")
    if any(_may_name_state_dir(prefix + name) for name in names):
        return None
    try:
        text = (config_dir / MAIN_FILE).read_text()
        if _MAY_NAME_STATE_DIR.search(text.encode()) is None:
            return DEFAULT_STATE_DIR  # whatever else it says: TOML is not parsed for it
        import tomllib

        value = tomllib.loads(text).get("haproxy", {}).get("state_dir")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_STATE_DIR
    return value if isinstance(value, str) and value.startswith("/") else DEFAULT_STATE_DIR


def is_ignored(name: str) -> bool:
    """Whether a file of this name in `conf.d/` is never read.

    True for hidden files, editor and package-manager leftovers and any suffix
    other than .toml/.json. The watcher uses it to skip events on such files.
    """
    if name.startswith(".") or not name.endswith(SUFFIXES):
        return True
    return _LEFTOVER_NAME.match(name) is not None


def dropins(dropin_dir: Path) -> list[str]:
    """The names of the drop-ins read in `dropin_dir`, unsorted; none when it does
    not exist (everything may be in the main file). Raises OSError when it
    cannot be listed."""
    try:
        entries = list(os.scandir(dropin_dir))
    except FileNotFoundError:
        return []
    return [e.name for e in entries if not is_ignored(e.name) and not _is_dir(e)]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a link to a directory is skipped too
    except OSError:
        return False  # let the read report it


def _may_name_state_dir(path: str) -> bool:
    # A bare read: a thousand of these must cost little. Anything odd
    # (unreadable, not a file, larger than a drop-in is): yes, let the loader say.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        data = os.read(fd, QUICK_READ)
    except OSError:
        return True
    finally:
        os.close(fd)
    return len(data) == QUICK_READ or _MAY_NAME_STATE_DIR.search(data) is not None
