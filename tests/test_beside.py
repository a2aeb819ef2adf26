"""apply/beside.py: work on a thread of its own, its result or error taken later."""

from __future__ import annotations

import threading

import pytest

from haproxy_k8s.apply.beside import Beside


def test_result_is_what_the_work_returned_on_its_own_thread() -> None:
    caller = threading.get_ident()
    work = Beside(lambda: threading.get_ident(), "test-beside")
    assert work.result() != caller


def test_result_raises_what_the_work_raised() -> None:
    def fail() -> None:
        raise OSError("disk full")

    work = Beside(fail, "test-beside")
    with pytest.raises(OSError, match="disk full"):
        work.result()
