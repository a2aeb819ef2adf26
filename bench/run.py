"""`python -m bench`: run the scenarios, print the table, write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from . import baseline as baseline_mod
from .common import REGISTRY, REPO
from .report import load_results, markdown, results_json, text_table, write
from .scenarios import SCENARIOS, Context, Result
from .systems import PREVIOUS

DOC = REPO / "docs" / "benchmarks.md"
ANALYSIS = REPO / "bench" / "analysis.md"
RESULTS = REPO / "bench" / "results"


def _say(text: str) -> None:
    print(text, flush=True)


def _environment(quick: bool) -> dict[str, Any]:
    def first_line(args: list[str]) -> str:
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=10,
                                 check=False, cwd=str(REPO))
        except OSError:
            return "?"
        return (out.stdout or out.stderr).strip().splitlines()[0] if (
            out.stdout or out.stderr).strip() else "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = first_line(["git", "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "haproxy": first_line(["haproxy", "-v"]),
        "python": platform.python_version(),
        "commit": commit + (" (with uncommitted changes)" if dirty not in ("", "?") else ""),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "mode": "quick" if quick else "full",
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    parser.add_argument("--only", default="", help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--doc", type=Path, help="write the markdown report here "
                        "(default: docs/benchmarks.md after a full run of every scenario)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--soak-seconds", type=int, default=600, metavar="S",
                        help="how long the soak edits (default 600; longer shows whether "
                        "the daemon's RSS levels off)")
    parser.add_argument("--previous", metavar="REF", help="also run the daemon of git REF "
                        "(e.g. main) in the scale and idle scenarios, from a temporary "
                        "git worktree, with this interpreter and its libraries")
    parser.add_argument("--redoc", type=Path, metavar="RESULTS_JSON",
                        help="run nothing: rewrite the report (--doc, default "
                        "docs/benchmarks.md) from a saved bench/results file, e.g. after "
                        "editing bench/analysis.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SCENARIOS)}")
    args.names = names
    return args


def _checkout(ref: str, where: Path) -> Path:
    """A detached git worktree of `ref`: the previous code, run side by side with ours."""
    subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=str(REPO),
                   check=True, capture_output=True)
    return where


def _short(ref: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", ref], cwd=str(REPO),
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _write_doc(path: Path, results: list[Result], env: dict[str, Any]) -> None:
    analysis = ANALYSIS.read_text() if ANALYSIS.exists() else ""
    write(path, markdown(results, env, analysis, env.get("command", "python -m bench"),
                         baseline_mod.__doc__ or ""))
    _say(f"report: {path}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.redoc is not None:
        results, env = load_results(args.redoc)
        _say(text_table(results))
        _write_doc(args.doc or DOC, results, env)
        return 0
    if shutil.which("haproxy") is None:
        print("bench: haproxy is not on PATH", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    env = _environment(args.quick)
    ctx = Context(args.quick, _say, keep=args.keep, soak_seconds=args.soak_seconds)
    if args.previous:
        PREVIOUS.path = _checkout(args.previous, ctx.tmp / "previous")
        env["previous"] = f"{args.previous} ({_short(args.previous)})"
    _say(f"bench: {env['haproxy']}; Python {env['python']}; scratch dir {ctx.tmp}")
    results: list[Result] = []
    failed: list[str] = []
    started = time.monotonic()
    try:
        for name in args.names:
            _say(f"== {name}")
            t0 = time.monotonic()
            try:
                results.append(SCENARIOS[name](ctx))
            except Exception:
                failed.append(name)
                traceback.print_exc()
            finally:
                REGISTRY.cleanup()
            _say(f"   ({time.monotonic() - t0:.0f} s)")
    except KeyboardInterrupt:
        _say("bench: interrupted; stopping everything it started")
        return 130
    finally:
        REGISTRY.cleanup()
        if PREVIOUS.path is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(PREVIOUS.path)],
                           cwd=str(REPO), capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    env["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    env["duration_s"] = round(time.monotonic() - started)
    env["command"] = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {','.join(args.names)}" if args.names != list(SCENARIOS) else "") + (
        f" --previous {args.previous}" if args.previous else "")
    _say("")
    _say(text_table(results))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = RESULTS / f"run-{stamp}{'-quick' if args.quick else ''}.json"
    write(json_path, results_json(results, env))
    _say(f"\nraw figures: {json_path}")
    doc = args.doc
    if doc is None and not args.quick and args.names == list(SCENARIOS) and not failed:
        doc = DOC
    if doc is not None:
        _write_doc(doc, results, env)
    if failed:
        _say(f"bench: scenario(s) failed: {', '.join(failed)}")
        return 1
    return 0
