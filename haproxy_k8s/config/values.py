"""Value parsers: one raw TOML/JSON value -> one model value, or `_Invalid`.

Pure: no I/O, no knowledge of tables or files (schema.py adds the file and key to every
error). Every string that reaches haproxy.cfg (names, addresses, paths, the check path) is
matched against a whitelist here, so a drop-in cannot smuggle a directive into the rendered
config with a newline, a space, a quote or `#`.

The parsers keep their leading underscore: they are the schema's building blocks, not an API
for other packages; `parse_duration`, `is_valid_name` and `dotted_key` are.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .model import Bind


class _Invalid(ValueError):
    """A value is wrong; `_Section` (schema.py) knows the file and key and adds them."""


# --- showing keys and values ------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted_key(path: Iterable[str]) -> str:
    """`clusters.cluster-0.nodes.m4`, quoting odd parts TOML-style.

    A key may hold a newline or anything else; quoting keeps error messages on
    one line and lets the operator paste the key back into a drop-in.
    """
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in path)


def file_for(path: tuple[str, ...], prov: Mapping[tuple[str, ...], str]) -> str | None:
    """The file that set `path`, else the one that set its nearest enclosing table."""
    for end in range(len(path), 0, -1):
        file = prov.get(path[:end])
        if file is not None:
            return file
    return None


def _show(value: Any) -> str:
    """A value as the operator wrote it (JSON-ish, escaped), cut short for a log line."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- value parsers: raw value -> model value, or _Invalid ---------------------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_show(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _integer(lo: int, hi: int, noun: str = "") -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        # bool is an int subclass: `fall = true` must not quietly mean 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_show(value)}")
        if not lo <= value <= hi:
            what = f"is not a {noun}" if noun else "is out of range"
            raise _Invalid(f"{_show(value)} {what} (expected {lo}..{hi})")
        return value

    return parse


# HAProxy parses counts into a C int.
_MAX_INT = 2**31 - 1
_port = _integer(1, 65535, "port")


_DURATION = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# HAProxy keeps timeouts as a signed 32-bit count of milliseconds (~24.8 days).
_MAX_MS = 2**31 - 1


def _duration(allow_zero: bool = False) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            # A bare number is ambiguous (seconds? milliseconds?): make the unit explicit.
            raise _Invalid(f"a duration needs a unit: write '{value}s' or '{value}ms'")
        if not isinstance(value, str):
            raise _Invalid(f"expected a duration such as '2s' or '500ms', got {_show(value)}")
        match = _DURATION.fullmatch(value)
        if not match:
            raise _Invalid(f"{_show(value)} is not a duration (write '500ms', '2s', '1m', '1h')")
        ms = int(match[1]) * _UNIT_MS[match[2]]
        if ms == 0 and not allow_zero:
            raise _Invalid("must be longer than 0")
        if ms > _MAX_MS:
            raise _Invalid(f"{value} is longer than HAProxy's limit of 24d")
        return ms

    return parse


# Paths are written into haproxy.cfg: keep to characters that never need quoting.
_PATH = re.compile(r"[A-Za-z0-9._/@+,=:-]{1,4096}")
_PATH_RULE = "letters, digits and ._-/@+,=: only"


def _abs_path(value: Any) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise _Invalid(f"expected an absolute path, got {_show(text)}")
    if not _PATH.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a safe path ({_PATH_RULE})")
    return text


def _optional_abs_path(value: Any) -> str | None:
    # JSON can say null; TOML has no null, so "" means "not set" too.
    return None if value is None or value == "" else _abs_path(value)


# Sockets live under state_dir and unix socket paths are limited to 108 bytes.
_MAX_STATE_DIR = 80


def _state_dir(value: Any) -> str:
    path = _abs_path(value)
    if len(path) > _MAX_STATE_DIR:
        raise _Invalid(
            f"is longer than {_MAX_STATE_DIR} characters: the sockets under it "
            "would exceed the 108-byte limit of unix socket paths"
        )
    return path


def _binary(value: Any) -> str:
    text = _string(value)
    if not _PATH.fullmatch(text) or text.startswith("-"):
        raise _Invalid(f"{_show(text)} is not a safe program name or path ({_PATH_RULE})")
    if "/" in text and not text.startswith("/"):
        # A relative path would depend on the daemon's working directory.
        raise _Invalid(f"expected a name on PATH or an absolute path, got {_show(text)}")
    return text


_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _unix_name(value: Any) -> str:
    """A user or group name, or "" (do not drop privileges)."""
    text = _string(value)
    if text and not _UNIX_NAME.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a user or group name")
    return text


def _optional_name(value: Any) -> str | None:
    return _unix_name(value) or None


# RFC 3986 path/query characters without quotes and `$` (HAProxy quoting and
# environment expansion); `%` only as a %XX escape.
_CHECK_PATH = re.compile(r"/(?:[A-Za-z0-9\-._~!&()*+,;=:@/?]|%[0-9A-Fa-f]{2}){0,1023}")


def _check_path(value: Any) -> str:
    text = _string(value)
    if not _CHECK_PATH.fullmatch(text):
        raise _Invalid(
            f"{_show(text)} is not a safe URI path (it must start with '/' and hold no "
            "spaces, quotes, '#', '$', '\\' or control characters; escape others as %XX)"
        )
    return text


def _ip_literal(text: str) -> str | None:
    """The normalised IP address, or None. Zone ids (`fe80::1%eth0`) are refused:
    `ipaddress` accepts any text after `%`, and that text would reach haproxy.cfg."""
    if "%" in text:
        return None
    try:
        # The common case in C: a dotted quad inet_pton takes (no leading
        # zeros, like ipaddress) is already normal. 4,000 of them were 15 ms
        # of loading 1,000 drop-ins.
        socket.inet_pton(socket.AF_INET, text)
        return text
    except (OSError, ValueError):  # ValueError: a NUL in the text
        pass
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_CLUSTER_NAME = re.compile(_LABEL)
_DOTTED_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAME_RULE = "lowercase letters, digits and '-', 1-63 characters, starting and ending alphanumeric"


def _dns_name(text: str) -> bool:
    # Length first: it bounds the regex's work on hostile input.
    return len(text) <= 253 and _DOTTED_NAME.fullmatch(text) is not None


def _address(value: Any) -> str:
    text = _string(value)
    ip = _ip_literal(text)
    if ip is not None:
        return ip
    host = text.lower()  # DNS is case-insensitive; one spelling keeps plans stable
    # An all-numeric last label would be a mistyped IPv4 address (`10.0.0.256`).
    if _dns_name(host) and not host.rsplit(".", 1)[-1].isdigit():
        return host
    raise _Invalid(f"{_show(text)} is not an IP address or a DNS name")


def _bind(value: Any) -> Bind:
    text = _string(value)
    host, sep, port_text = text.rpartition(":")
    example = "(e.g. '192.168.8.1:6443', '[::1]:6443' or '*:6443')"
    if not sep:
        raise _Invalid(f"{_show(text)} is not address:port {example}")
    if host in ("", "*"):
        address: str | None = "0.0.0.0"
    elif host.startswith("[") and host.endswith("]"):
        address = _ip_literal(host[1:-1])
        address = address if address and ":" in address else None
    elif ":" in host:
        raise _Invalid(f"{_show(text)}: an IPv6 address needs brackets, as in '[::1]:6443'")
    else:
        address = _ip_literal(host)
        address = address if address and ":" not in address else None
    if address is None:
        raise _Invalid(f"{_show(text)}: the address must be an IP literal {example}")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"{_show(text)}: {_show(port_text)} is not a port (expected 1..65535)")
    return Bind(address, int(port_text))


def _optional_bind(value: Any) -> Bind | None:
    return None if value == "" else _bind(value)


def _binds(value: Any) -> tuple[Bind, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Invalid(f"expected an address:port string or a non-empty list, got {_show(value)}")
    return tuple(_bind(item) for item in items)


def _cidrs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of CIDRs, got {_show(value)}")
    if not value:
        raise _Invalid("an empty list locks everyone out; set bind = \"\" to turn it off")
    return tuple(_cidr(item) for item in value)


def _cidr(value: Any) -> str:
    text = _string(value)
    try:
        if "%" in text:  # zone ids: see _ip_literal
            raise ValueError(text)
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise _Invalid(f"{_show(text)} is not a CIDR such as '127.0.0.0/8'") from None


def parse_duration(text: str) -> int:
    """A duration string (`30s`, `2m`) in milliseconds; ValueError when invalid."""
    try:
        return _duration(allow_zero=True)(text)
    except _Invalid as e:
        raise ValueError(str(e)) from None


def is_valid_name(kind: str, name: str) -> bool:
    """Whether `name` is a valid cluster (kind "cluster") or node name."""
    pattern = _CLUSTER_NAME if kind == "cluster" else _DOTTED_NAME
    return bool(pattern.fullmatch(name)) and len(name) <= 253


def _hostname(value: Any) -> str:
    """A TLS server name: a lowercase DNS name, or "*." and one (one label matches the *)."""
    text = _string(value)
    name = text.removeprefix("*.")
    # Strict: SNI is compared lowercased, so an uppercase name would never match.
    if not _dns_name(name) or name.rsplit(".", 1)[-1].isdigit():
        raise _Invalid(f"{_show(text)} is not a lowercase DNS name (or '*.' and one)")
    return text


def _hostnames(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid(f"expected a non-empty list of hostnames, got {_show(value)}")
    names = tuple(_hostname(item) for item in value)
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _Invalid(f"{_show(name)} is listed twice")
    return names
