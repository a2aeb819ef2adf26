"""`haproxy -c` as the daemon runs it: the verdict, HAProxy's words, and its exit."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from helpers import wait_until

from haproxy_k8s.errors import ValidationError
from haproxy_k8s.haproxy.check import check_config

pytestmark = pytest.mark.usefixtures("haproxy_bin")

HEAD = "global\n    maxconn 100\n\n"
FRONTEND = "frontend fe\n    mode tcp\n    bind 127.0.8.1:6443\n    default_backend b0\n\n"


def backends(count: int, *, timeouts: bool) -> str:
    """`count` backends; without timeouts HAProxy warns about each of them."""
    lines = "    timeout connect 1s\n    timeout server 1s\n" if timeouts else ""
    return "".join(f"backend b{i}\n    mode tcp\n{lines}    server s 127.0.8.10:6443\n\n"
                   for i in range(count))


def haproxy_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.name() == "haproxy"]


def test_valid_returns_every_warning_and_leaves_no_process(haproxy_bin: str,
                                                           tmp_path: Path) -> None:
    # 2,000 warnings are ~300 KB on stderr, past a pipe's 64 KB: both pipes are
    # read while HAProxy writes, or it would block before its verdict.
    path = tmp_path / "haproxy.cfg"
    path.write_text(HEAD + "defaults\n    timeout client 1s\n\n" + FRONTEND
                    + backends(2000, timeouts=False))
    result = check_config(haproxy_bin, path)
    assert result.alerts == []
    missing = [w for w in result.warnings if "missing timeouts for backend" in w]
    assert len(missing) == 2000, result.warnings[:3]
    # The check returns at the verdict; HAProxy's exit after it is reaped aside.
    wait_until(lambda: not haproxy_children(), 10.0, message="the check's HAProxy exited")


def test_refused_names_the_line(haproxy_bin: str, tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(HEAD + FRONTEND + backends(3, timeouts=True).replace(
        "backend b2\n", "backend b2\n    bogus-keyword on\n"))
    with pytest.raises(ValidationError) as refused:
        check_config(haproxy_bin, path)
    assert "unknown keyword 'bogus-keyword'" in str(refused.value)
    assert "'bogus-keyword on'" in str(refused.value)  # the line, quoted
    assert not haproxy_children()


def test_missing_binary(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(HEAD)
    with pytest.raises(ValidationError, match="haproxy binary not found"):
        check_config(str(tmp_path / "no-haproxy"), path)
