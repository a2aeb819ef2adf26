"""haproxy_k8s.proc reads /proc as psutil does: the same names, command lines and parents."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from haproxy_k8s import proc


def test_processes_match_psutil_for_a_child_with_spaces_and_parens_in_its_name() -> None:
    # A name with ") " in it: the stat line's fields start after the last ")".
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "a b) x"],
                             stdin=subprocess.PIPE)
    try:
        table = {pid: (name, cmdline, ppid) for pid, name, cmdline, ppid in
                 proc.processes() or []}
        for pid in (os.getpid(), child.pid):
            expected = psutil.Process(pid)
            name, cmdline, ppid = table[pid]
            assert (name, cmdline, ppid) == (expected.name()[:15], expected.cmdline(),
                                             expected.ppid())
            assert proc.name(pid) == name
        assert table[child.pid][2] == os.getpid()
        assert proc.name(2 ** 22 + 1) is None  # above pid_max: no such process
    finally:
        child.communicate(b"")
