"""fileio: atomic writes, written whole or in pieces, and kept copies."""

from __future__ import annotations

from pathlib import Path

from haproxy_k8s.fileio import CHUNK, keep_copy, write_atomic


def test_pieces_are_written_as_one_text(tmp_path: Path) -> None:
    pieces = [f"line {i}\n" for i in range(CHUNK // 4)]  # more than one chunk
    write_atomic(tmp_path / "a.cfg", iter(pieces))
    assert (tmp_path / "a.cfg").read_text() == "".join(pieces)


def test_a_kept_copy_stays_when_the_file_is_replaced(tmp_path: Path) -> None:
    live, good = tmp_path / "haproxy.cfg", tmp_path / "haproxy.cfg.good"
    write_atomic(live, "first\n")
    keep_copy(live, good)
    write_atomic(live, "second\n")  # replaced by a rename, as every writer does
    assert good.read_text() == "first\n" and live.read_text() == "second\n"
    keep_copy(live, good)
    assert good.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
