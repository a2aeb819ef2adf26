"""Log line format: plain with a UTC timestamp, or `<N>`-prefixed for the journal."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import pytest

from haproxy_k8s.daemon.logsetup import setup_logging, syslog_priority

log = logging.getLogger("haproxy_k8s.daemon")

PLAIN = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) INFO haproxy_k8s\.daemon: applied 7$")


@pytest.fixture(autouse=True)
def restore_root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """setup_logging() configures the root logger: give it back as it was."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextIO]:
    """A stream that JOURNAL_STREAM names, as systemd sets it for StandardError=journal."""
    with open(tmp_path / "journal", "w+", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        yield stream


def written(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_plain_format_has_utc_timestamp() -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    log.info("applied %d", 7)
    match = PLAIN.match(stream.getvalue().rstrip("\n"))
    assert match, stream.getvalue()
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)


def test_level_filters() -> None:
    stream = io.StringIO()
    setup_logging("warning", stream)
    log.info("hidden")
    log.warning("shown")
    assert [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "WARNING haproxy_k8s.daemon: shown"]


def test_journal_format_has_priority_and_no_timestamp(journal_file: TextIO) -> None:
    setup_logging("debug", journal_file)
    log.critical("c")
    log.error("e")
    log.warning("w")
    log.info("i")
    log.debug("d")
    assert written(journal_file) == [
        "<2>CRITICAL haproxy_k8s.daemon: c",
        "<3>ERROR haproxy_k8s.daemon: e",
        "<4>WARNING haproxy_k8s.daemon: w",
        "<6>INFO haproxy_k8s.daemon: i",
        "<7>DEBUG haproxy_k8s.daemon: d",
    ]


def test_journal_traceback_keeps_priority_on_every_line(journal_file: TextIO) -> None:
    setup_logging("info", journal_file)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("apply failed")
    lines = written(journal_file)
    assert lines[0] == "<3>ERROR haproxy_k8s.daemon: apply failed"
    assert lines[1] == "<3>  Traceback (most recent call last):"
    assert lines[-1] == "<3>  RuntimeError: boom"
    assert all(line.startswith("<3>  ") for line in lines[1:])


def test_plain_multiline_message_continues_indented() -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    log.error("haproxy -c failed:\n[ALERT] parsing [haproxy.cfg:12]")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" ERROR haproxy_k8s.daemon: haproxy -c failed:")
    assert second == "  [ALERT] parsing [haproxy.cfg:12]"


def test_journal_stream_of_another_file_means_plain(
    journal_file: TextIO, tmp_path: Path
) -> None:
    # stderr redirected away from the journal, or JOURNAL_STREAM merely inherited.
    with open(tmp_path / "elsewhere", "w+", encoding="utf-8") as other:
        setup_logging("info", other)
        log.info("applied %d", 7)
        assert PLAIN.match(written(other)[0])


def test_journal_stream_with_a_stream_without_fd_means_plain(journal_file: TextIO) -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    log.info("applied %d", 7)
    assert PLAIN.match(stream.getvalue().rstrip("\n"))


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "1:2:3"])
def test_malformed_journal_stream_means_plain(value: str, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", value)
    with open(tmp_path / "out", "w+", encoding="utf-8") as stream:
        setup_logging("info", stream)
        log.info("applied %d", 7)
        assert PLAIN.match(written(stream)[0])


def test_idempotent_and_replaces_the_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", first)
    setup_logging("info", first)
    log.info("once")
    setup_logging("info", second)
    log.info("moved")
    assert [line.split(" ", 1)[1] for line in first.getvalue().splitlines()] == [
        "INFO haproxy_k8s.daemon: once"]
    assert [line.split(" ", 1)[1] for line in second.getvalue().splitlines()] == [
        "INFO haproxy_k8s.daemon: moved"]


def test_leaves_other_handlers_alone() -> None:
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    setup_logging("info", io.StringIO())
    setup_logging("info", io.StringIO())
    assert other in logging.getLogger().handlers


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud", io.StringIO())


def test_level_names_are_case_insensitive() -> None:
    setup_logging("DEBUG", io.StringIO())
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (25, 6),
     (logging.INFO, 6), (logging.DEBUG, 7), (5, 7)],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority
