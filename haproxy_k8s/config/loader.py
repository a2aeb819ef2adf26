"""Read and merge the config directory, remembering which file set each key.

`DIR/haproxy-k8s.toml` (optional), then `DIR/conf.d/*.toml|*.json` in lexical
order of file name; tables merge deeply, a later scalar or list wins. Every
failure is a `ConfigError` naming the file (relative to DIR) and, where there
is one, the key: the daemon shows it in `status` and keeps the last good config.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomli as toml  # compiled: a start parses every drop-in (see pyproject.toml)
except ImportError:  # a Python without it (a distribution's package) parses the same
    import tomllib as toml  # type: ignore[no-redef]

from ..errors import ConfigError
from .model import DEFAULT_STATE_DIR, Config
from .schema import KeyPath, build_config, dotted_key

# The file names, suffixes and leftovers read or skipped: one copy, in the
# module the CLI imports without the config model.
from .statedir import DROPIN_DIR, MAIN_FILE, dropins, quick_state_dir

# A drop-in is a few lines; anything this big is a mistake (a log, an image).
MAX_FILE_BYTES = 1 << 20
# Real configs nest 5 deep (clusters.NAME.nodes.NODE.key); the limit keeps the
# recursive merge and schema far from Python's recursion limit.
_MAX_DEPTH = 32

RawConfig = dict[str, Any]
ProvenanceMap = dict[KeyPath, str]
# A drop-in table's provenance entries, by (id of the table, where it merged, file),
# the table held beside them: see _Records.
RecordMemo = dict[tuple[int, KeyPath, str], tuple[RawConfig, ProvenanceMap]]


# Suffixes people try that we do not read: worth a warning, not silence.
UNREAD_SUFFIXES = (".yaml", ".yml")


def unread_dropins(config_dir: Path) -> list[str]:
    """Drop-ins that look meant to be read but are not (`conf.d/x.yaml`), for a warning."""
    try:
        names = sorted(e.name for e in os.scandir(Path(config_dir) / DROPIN_DIR)
                       if e.name.endswith(UNREAD_SUFFIXES) and not e.name.startswith("."))
    except OSError:
        return []
    return [f"{DROPIN_DIR}/{name}" for name in names]


def config_files(config_dir: Path) -> list[Path]:
    """The files `load_raw` reads, in the order it applies them."""
    return [path for path, _ in _sources(Path(config_dir))]


def _sources(config_dir: Path) -> list[tuple[Path, str]]:
    """Each file `load_raw` reads, with its name relative to the config dir."""
    if not config_dir.is_dir():
        what = "is not a directory" if config_dir.exists() else "does not exist"
        raise ConfigError(f"config directory {what}", file=str(config_dir))
    main = config_dir / MAIN_FILE
    # lexists: a broken symlink is reported when read, not silently skipped.
    files = [(main, MAIN_FILE)] if os.path.lexists(main) else []
    dropin_dir = config_dir / DROPIN_DIR
    return files + [(dropin_dir / name, f"{DROPIN_DIR}/{name}") for name in _dropins(dropin_dir)]


def _dropins(dropin_dir: Path) -> list[str]:
    try:
        return sorted(dropins(dropin_dir))
    except NotADirectoryError:
        raise ConfigError("is not a directory", file=DROPIN_DIR) from None
    except OSError as e:
        raise ConfigError(f"cannot list: {e.strerror}", file=DROPIN_DIR) from e


def load_raw(config_dir: Path, with_content: set[str] | None = None,
             cache: FileCache | None = None) -> tuple[RawConfig, ProvenanceMap]:
    """The merged raw config and, for each key path, the file that last set it.

    Tables get provenance too (the last file that set anything in them), so an
    error about a table, or a key missing from it, can still name a file.
    `with_content`, when given, receives the files that are not empty. With a
    `cache`, unchanged files are not read or parsed again. The result shares
    tables with the cache: treat it as read-only.
    """
    merged: RawConfig = {}
    provenance: ProvenanceMap = {}
    owned = {id(merged)}  # tables made by this merge: the only ones it may write into
    files = _sources(Path(config_dir))
    records = cache.records() if cache is not None else None
    for path, rel in files:
        text, data = cache.read(path, rel) if cache is not None else _read_parsed(path, rel)
        if with_content is not None and text:
            with_content.add(rel)
        _merge(merged, data, (), rel, provenance, owned, records)
    if cache is not None:
        cache.keep((rel for _, rel in files), records)
    return merged, provenance


@dataclass(frozen=True)
class _Parsed:
    signature: tuple[int, ...]
    text: str
    data: RawConfig  # shared with every load that used it: never written to


class FileCache:
    """Each file as last read and parsed, reused while its stat signature holds.

    With 1,000 drop-ins, reading and parsing every one on every apply was most
    of a node add; an edit usually touches one. Files are only ever replaced
    or rewritten, which changes inode, size, mtime or ctime. Only the files of
    the latest load are kept.
    """

    def __init__(self) -> None:
        self._files: dict[str, _Parsed] = {}
        self._records: RecordMemo = {}

    def read(self, path: Path, rel: str) -> tuple[str, RawConfig]:
        try:
            st = os.stat(path)
        except OSError:
            return _read_parsed(path, rel)  # _read says what is wrong with it
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self._files.get(rel)
        if known is not None and known.signature == signature:
            return known.text, known.data
        text, data = _read_parsed(path, rel)
        self._files[rel] = _Parsed(signature, text, data)
        return text, data

    def records(self) -> _Records:
        """A memo of provenance entries for one load, seeded with the last load's."""
        return _Records(self._records)

    def keep(self, rels: Iterable[str], records: _Records | None = None) -> None:
        wanted = set(rels)
        self._files = {rel: parsed for rel, parsed in self._files.items() if rel in wanted}
        if records is not None:
            self._records = records.now


class _Records:
    """The provenance entries of each table a load took whole from a file.

    An unchanged drop-in hands out the same parsed table on every load, and
    merges at the same key path: its entries (one per key inside) are those
    of the last load. Recording 12,000 keys again was a third of loading
    1,000 drop-ins. Keyed by identity, with the table held, so an id is never
    mistaken for a later table's; only the latest load's entries are kept.
    """

    def __init__(self, previous: RecordMemo) -> None:
        self.previous = previous
        self.now: RecordMemo = {}

    def of(self, table: RawConfig, path: KeyPath, rel: str) -> ProvenanceMap:
        key = (id(table), path, rel)
        hit = self.previous.get(key)
        if hit is None or hit[0] is not table:
            entries: ProvenanceMap = {}
            _record(table, path, rel, entries)
            hit = (table, entries)
        self.now[key] = hit
        return hit[1]


def _read_parsed(path: Path, rel: str) -> tuple[str, RawConfig]:
    text = _read(path, rel)
    return text, _parse(text, path.suffix, rel)


def load_config(config_dir: Path) -> Config:
    """Load, merge and validate the config directory."""
    raw, provenance = load_raw(config_dir)
    return build_config(raw, provenance)


def _read(path: Path, rel: str) -> str:
    data = _read_bytes(path, rel)
    if b"\0" in data:
        raise ConfigError("binary file (contains NUL bytes), expected TOML or JSON text", file=rel)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (binary file?): {e.reason} at byte {e.start}",
                          file=rel) from e
    # Some editors write a byte-order mark; neither tomli nor json wants it.
    return text.removeprefix("\ufeff")


def _read_bytes(path: Path, rel: str) -> bytes:
    try:
        # O_NONBLOCK: a FIFO named x.toml must not hang the daemon in open();
        # fstat on the open descriptor then tells what it really is, race-free.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        what = "is a broken symbolic link" if os.path.lexists(path) else "vanished while being read"
        raise ConfigError(what, file=rel) from None
    except PermissionError as e:
        raise ConfigError("cannot read: permission denied", file=rel) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=rel) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("not a regular file", file=rel)
        data = _read_fd(fd, MAX_FILE_BYTES + 1, st.st_size)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=rel) from e
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES} bytes; not a drop-in?", file=rel)
    return data


def _read_fd(fd: int, limit: int, size: int) -> bytes:
    """Up to `limit` bytes of a regular file `size` bytes long (fstat): plain
    reads, no file object (1,000 of them at a start).

    The first read asks for size + 1: a buffer of `limit` (1 MiB) for each
    read was most of the time it took, and a read that returns all `size`
    bytes and no more has met the end (a file that grew since is read as it
    was). Anything shorter is read on until the end.
    """
    want = min(limit, size + 1)
    chunk = os.read(fd, want)
    if size <= len(chunk) < want:
        return chunk
    chunks = [chunk]
    limit -= len(chunk)
    while limit > 0 and chunk:
        chunk = os.read(fd, limit)
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _parse(text: str, suffix: str, rel: str) -> RawConfig:
    kind = "JSON" if suffix == ".json" else "TOML"
    try:
        data, depth = _decode(text, kind)
    # TOMLDecodeError and JSONDecodeError are ValueErrors; both parsers also let
    # a plain ValueError out (integers over 4300 digits, our duplicate-key hook).
    except ValueError as e:
        raise ConfigError(f"invalid {kind}: {e}", file=rel) from e
    except RecursionError as e:
        raise ConfigError(f"invalid {kind}: nested too deeply", file=rel) from e
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be an object, got {type(data).__name__}", file=rel)
    if depth > _MAX_DEPTH:
        raise ConfigError(f"invalid {kind}: nested more than {_MAX_DEPTH} levels", file=rel)
    return data


def _decode(text: str, kind: str) -> tuple[Any, int]:
    """Parse TOML or JSON, and measure its nesting."""
    data = _load_json(text) if kind == "JSON" else toml.loads(text)
    return data, _depth(data)


def _load_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # TOML refuses a key defined twice; JSON would silently keep the last one.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {dotted_key([key])}")
        obj[key] = value
    return obj


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any) -> int:
    """Nesting depth of dicts and lists, a level at a time (the input may be
    hostile: it stops past _MAX_DEPTH). Only containers are queued; scalars,
    most of a drop-in, count for their level without being visited."""
    deepest, depth, level = 0, 0, [value]
    while level and depth <= _MAX_DEPTH:
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else \
                item if isinstance(item, list) else ()
            if children:
                deepest = depth + 1
                below.extend([c for c in children if isinstance(c, (dict, list))])
        level, depth = below, depth + 1
    return deepest


def _merge(into: RawConfig, new: Mapping[str, Any], path: KeyPath, rel: str,
           provenance: ProvenanceMap, owned: set[int], records: _Records | None = None
           ) -> None:
    """Merge `new` (parsed from `rel`) into `into`, recording provenance.

    Tables of `new` are taken as they are, not copied: a table is copied only
    when a later file merges into it (`owned` holds the ids of the copies), so
    no parsed file is ever changed and the cache can hand them out again.
    """
    for key, value in new.items():
        here = (*path, key)
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            provenance[here] = rel
            if id(old) not in owned:
                old = into[key] = dict(old)
                owned.add(id(old))
            _merge(old, value, here, rel, provenance, owned, records)
            continue
        if key in into and (isinstance(old, dict) or isinstance(value, dict)):
            raise _clash(here, old, value, rel, provenance.get(here))
        into[key] = value
        if records is not None and isinstance(value, dict):
            provenance.update(records.of(value, here, rel))
        else:
            _record(value, here, rel, provenance)


def _record(value: Any, path: KeyPath, rel: str, provenance: ProvenanceMap) -> None:
    provenance[path] = rel
    if isinstance(value, dict):
        for key, child in value.items():
            _record(child, (*path, key), rel, provenance)


def _clash(path: KeyPath, old: Any, new: Any, rel: str, old_file: str | None) -> ConfigError:
    def kind(value: Any) -> str:
        return "a table" if isinstance(value, dict) else "a value"

    return ConfigError(
        f"is {kind(new)} here but {kind(old)} in {old_file}; "
        "a later file cannot turn a table into a value or back",
        file=rel,
        key=dotted_key(path),
    )


def state_dir_hint(config_dir: Path) -> str:
    """The state dir, even while some drop-in is broken.

    `status` and the daemon's start must find the sockets of the HAProxy that
    runs the last good config exactly when the current config is invalid, so
    this reads what it can: the full config, else the merged files, else the
    main file alone, else the default.
    """
    quick = quick_state_dir(Path(config_dir))
    return quick if quick is not None else state_dir_from_loading(config_dir)


def state_dir_from_loading(config_dir: Path) -> str:
    """state_dir_hint() once its quick look said some drop-in may name the state dir."""
    try:
        return load_config(config_dir).haproxy.state_dir
    except ConfigError:
        pass
    for read in (_merged_raw, _main_raw):
        try:
            value = read(Path(config_dir)).get("haproxy", {}).get("state_dir")
        except (ConfigError, OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.startswith("/"):
            return value
    return DEFAULT_STATE_DIR


def _merged_raw(config_dir: Path) -> RawConfig:
    return load_raw(config_dir)[0]


def _main_raw(config_dir: Path) -> RawConfig:
    return toml.loads((config_dir / MAIN_FILE).read_text())
