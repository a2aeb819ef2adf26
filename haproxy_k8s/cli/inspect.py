"""`describe`, `events` and `diff`: the CLI asks the daemon, which answers from its own state.

`diff` also works without a daemon: then it renders the files and compares
them with the haproxy.cfg HAProxy was last given, without a plan.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..daemon import client as control
from ..errors import HaproxyK8sError, RuntimeApiError
from .common import duration, error_line, to_yaml

# Every command line builds the parser, which takes these commands' arguments
# from here: what only running them needs is imported there.
if TYPE_CHECKING:
    from ..haproxy.paths import StatePaths

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNREACHABLE = 0, 1, 2, 3


def _fail(message: str, code: int) -> int:
    print(f"haproxy-k8s: {message}", file=sys.stderr)
    return code


# -- describe -------------------------------------------------------------------------------
def add_describe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="CLUSTER/NODE")
    parser.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")


def cmd_describe(args: argparse.Namespace, paths: StatePaths) -> int:
    from .admin import parse_target

    try:
        target = parse_target(args.target)
        reply = control.call(paths.control_socket, "describe", {"target": str(target)},
                             timeout=10.0)
    except ValueError as e:
        return _fail(str(e), EXIT_INVALID)
    except RuntimeApiError as e:
        return _fail(str(e), EXIT_UNREACHABLE)
    if not reply.get("ok"):
        return _fail(error_line(reply.get("error")), EXIT_FAILED)
    reply.pop("ok", None)
    if args.output == "json":
        import json

        sys.stdout.write(json.dumps(reply, indent=2) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(to_yaml(reply))
    else:
        sys.stdout.write(format_describe(reply))
    return EXIT_OK


def format_describe(d: dict[str, Any]) -> str:
    status, config, operator = d.get("status") or {}, d.get("config") or {}, d["operator"]
    state = status.get("state", "UNKNOWN") + (" (removing)" if status.get("removing") else "")
    check = status.get("check") or "-"
    if status.get("check_detail"):
        check += f" ({status['check_detail']})"
    who = f", {operator['set']} at {operator['at']}" if operator.get("set") else ""
    lines = [
        f"Name:         {d['target']}",
        f"Origin:       {d.get('origin') or '-'}",
        f"Address:      {status.get('address')}:{status.get('port')}",
        f"Weight:       {config.get('weight', '-')}  (HAProxy: {_dash(status.get('weight'))})",
        f"Backup:       {'yes' if config.get('backup') else 'no'}",
        f"State:        {state}",
        f"Last check:   {check}",
        f"Sessions:     {_dash(status.get('sessions'))} now, "
        f"{_dash(status.get('rate'))}/s",
        f"Operator:     {operator['state']}{who}",
        f"Server line:  {d.get('server_line') or '-'}",
        "",
        "Events:",
    ]
    history = d.get("history") or []
    lines += [f"  {e['at']}  {e['kind']:<8}  {e['message']}" for e in history] or \
        ["  (none since the daemon started)"]
    return "\n".join(lines) + "\n"


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


# -- events ---------------------------------------------------------------------------------
def add_events_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing new events until Ctrl-C")
    parser.add_argument("--limit", type=int, default=50, metavar="N",
                        help="how many of the latest events to print first (default 50)")
    parser.add_argument("--interval", type=duration, default=0.5, metavar="DURATION",
                        help="with --follow: how often to ask the daemon (default 500ms)")


HEADER = f"{'TIME':<24}  {'KIND':<8}  {'OBJECT':<16}  MESSAGE"


def cmd_events(args: argparse.Namespace, paths: StatePaths) -> int:
    try:
        seq = _print_events(paths, 0, args.limit, header=True)
        while args.follow:
            time.sleep(args.interval)
            seq = _print_events(paths, seq, 500, header=False)
    except RuntimeApiError as e:
        return _fail(str(e), EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _print_events(paths: StatePaths, since: int, limit: int, header: bool) -> int:
    reply = control.call(paths.control_socket, "events", {"since": since, "limit": limit},
                         timeout=10.0)
    if header:
        print(HEADER)
    for event in reply.get("events") or []:
        print(f"{event['at']:<24}  {event['kind']:<8}  {event['object']:<16}  "
              f"{event['message']}")
    sys.stdout.flush()
    return int(reply.get("seq", since))


# -- diff -----------------------------------------------------------------------------------
def cmd_diff(args: argparse.Namespace, paths: StatePaths, config_dir: Path) -> int:
    """0: nothing to apply; 1: an apply would change something; 2: invalid; 3: nothing runs."""
    try:
        reply = control.call(paths.control_socket, "diff", timeout=30.0)
    except RuntimeApiError as e:
        reply = _local_diff(paths, config_dir, str(e))
    if not reply.get("ok"):
        code = reply.get("code", EXIT_INVALID)
        return _fail(f"{error_line(reply.get('error'))}", code)
    print(f"plan: {reply['plan']} ({reply.get('reason') or '-'})")
    if reply.get("note"):
        print(f"note: {reply['note']}")
    sys.stdout.write(reply.get("diff", ""))
    return EXIT_OK if reply["plan"] == "noop" else EXIT_FAILED


def _local_diff(paths: StatePaths, config_dir: Path, why: str) -> dict[str, Any]:
    """Without a daemon: the rendered files against the last published haproxy.cfg."""
    from ..config.loader import load_config
    from ..daemon.inspect import unified
    from ..haproxy.check import haproxy_version
    from ..haproxy.render import render

    try:
        published = paths.config.read_text()
    except OSError:
        return {"ok": False, "code": EXIT_UNREACHABLE,
                "error": {"message": f"{why}; and no published {paths.config} to compare"}}
    try:
        config = load_config(config_dir)
        _, promex = haproxy_version(config.haproxy.binary)
        text = render(config, paths, promex=promex)
    except HaproxyK8sError as e:
        return {"ok": False, "error": e.record()}
    changed = text != published
    return {"ok": True, "plan": "reload" if changed else "noop",
            "reason": "the daemon is not running: compared with the published file"
            if changed else "the rendered config is what runs now",
            "note": f"{why}; without the daemon there is no plan (runtime change or reload)",
            "diff": unified(published, text, str(paths.config))}
