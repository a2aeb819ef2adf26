"""Small pieces every command shares: durations, plurals, error lines, output formats."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

OUTPUTS = ("table", "wide", "json", "yaml")


def duration(text: str) -> float:
    """Seconds from `5s`, `500ms`, `2m` or a bare number of seconds (`5`, `0.5`).

    One syntax for every `--timeout` and `--interval`: the config's duration
    strings, plus plain seconds for people who type `--timeout 5`.
    """
    try:
        seconds = float(text)
    except ValueError:
        try:
            from ..config.values import parse_duration  # the model: not for every verb

            return parse_duration(text) / 1000
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a duration like 5s, 500ms, 2m or a number of "
                "seconds") from e
    if seconds < 0 or seconds != seconds:  # negative or NaN
        raise argparse.ArgumentTypeError(f"{text!r}: a duration cannot be negative")
    return seconds


def show_duration(seconds: float) -> str:
    """`30s`, `5m`, `1.5s`: how a duration given on the command line reads back."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 cluster`, `2 clusters`, `0 sessions`."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def error_line(error: Mapping[str, Any] | None) -> str:
    """An error record (`last_error`, a refused apply) as one line, its file named once.

    A ConfigError's message already starts with its file
    (`conf.d/30-bad.toml: clusters.c0.nodes.m9.port: …`): only other errors
    get the file put in front.
    """
    if not error:
        return ""
    message = str(error.get("message", error))
    file = error.get("file")
    if file and not message.startswith(f"{file}:") and not message.startswith(f"{file} "):
        return f"{file}: {message}"
    return message


# -- YAML ---------------------------------------------------------------------------------
def to_yaml(data: Any) -> str:
    """YAML for JSON-shaped data (dicts, lists, strings, numbers, bools, None).

    The status document and the describe record are that simple, so a small
    emitter does it; every string is quoted the JSON way (valid YAML), so no
    value can be read back as another type ("yes", "1.0", "null").
    """
    return "\n".join(_yaml_lines(data, 0)) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _yaml_lines(data: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(data, dict):
        if not data:
            return [pad + "{}"]
        lines: list[str] = []
        for key, value in data.items():
            head = f"{pad}{_scalar(str(key)) if not _plain_key(str(key)) else key}:"
            if isinstance(value, dict | list) and value:
                lines.append(head)
                lines += _yaml_lines(value, indent + 2)
            else:
                lines.append(f"{head} {_empty_or_scalar(value)}")
        return lines
    if isinstance(data, list):
        if not data:
            return [pad + "[]"]
        lines = []
        for item in data:
            inner = _yaml_lines(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
        return lines
    return [pad + _scalar(data)]


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


# YAML 1.1 readers take these for booleans or null even as keys.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _plain_key(key: str) -> bool:
    return (key.replace("_", "").replace("-", "").isalnum() and key[0].isalpha()
            and key.lower() not in _RESERVED)
