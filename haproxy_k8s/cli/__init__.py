"""Command-line front: run, check, render, status, reload (and later verbs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.model import DEFAULT_CONFIG_DIR
from ..errors import HaproxyK8sError
from ..haproxy.paths import StatePaths

EX_CONFIG = 78  # sysexits.h: a configuration error; the unit does not restart on it

# Each command imports what it needs inside it: the operator verbs (status,
# drain, ready) must not pay for Jinja2 and the whole apply pipeline at start.


def _config_dir(args: argparse.Namespace) -> Path:
    return Path(args.config_dir or os.environ.get("HAPROXY_K8S_CONFIG_DIR")
                or DEFAULT_CONFIG_DIR)


def _fail(message: str, code: int = 1) -> int:
    print(f"haproxy-k8s: {message}", file=sys.stderr)
    return code


# -- check / render ---------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    from ..config.loader import load_config
    from ..haproxy.render import render

    try:
        sys.stdout.write(render(load_config(_config_dir(args))))
    except HaproxyK8sError as e:
        return _fail(str(e))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the drop-ins and the rendered config; change nothing.

    The same steps as the daemon's apply (load, render, `haproxy -c`), as a
    dry run in a temporary state dir, then the binds the running balancer
    does not hold yet.
    """
    from ..apply.candidate import dry_run
    from ..config.loader import load_config
    from ..haproxy.binds import check_offline
    from ..haproxy.check import haproxy_version

    config_dir = _config_dir(args)
    try:
        config = load_config(config_dir)
        _, promex = haproxy_version(config.haproxy.binary)
        result = dry_run(config, promex=promex)
        # Binds last: a port another process holds fails only when HAProxy runs it.
        bind_warnings = ([] if args.no_bind_check
                         else check_offline(config, Path(config.haproxy.state_dir)))
    except HaproxyK8sError as e:
        return _fail(f"{config_dir}: invalid: {e}")
    nodes = sum(len(c.nodes) for c in config.clusters)
    for warning in [*result.warnings, *bind_warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{config_dir}: OK ({len(config.clusters)} clusters, {nodes} nodes)")
    return 0


def cmd_firewall(args: argparse.Namespace) -> int:
    """Print an nftables table opening the binds' ports and the stats port to stats.allow."""
    from ..config.loader import load_config
    from .firewall import render_firewall

    try:
        sys.stdout.write(render_firewall(load_config(_config_dir(args))))
    except HaproxyK8sError as e:
        return _fail(str(e))
    return 0


# -- run ----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from ..daemon.logsetup import setup_logging
    from ..daemon.loop import Daemon

    setup_logging(args.log_level)
    # watchdog logs every inotify event at debug level: far too much even for debugging us.
    logging.getLogger("watchdog").setLevel(logging.INFO)
    # Through logging, not _fail(): under systemd the line then carries error priority.
    log = logging.getLogger(__name__)
    try:
        Daemon(_config_dir(args)).run()
    except HaproxyK8sError as e:
        log.error("%s", e)
        return 1
    except OSError as e:  # e.g. a state dir that cannot be created
        # Retrying cannot fix this: the unit's RestartPreventExitStatus= stops on this code
        # instead of restarting into the same error until the start limit.
        log.error("cannot start: %s (check haproxy.state_dir: the unit may write only "
                  "/run/haproxy-k8s and /var/lib/haproxy-k8s)", e)
        return EX_CONFIG
    return 0


# -- status / reload ------------------------------------------------------------------
def _state_paths(args: argparse.Namespace) -> StatePaths:
    from ..config.loader import state_dir_hint

    return StatePaths(Path(args.state_dir or state_dir_hint(_config_dir(args))))


def cmd_status(args: argparse.Namespace) -> int:
    from ..errors import HaproxyK8sError
    from .status import collect, format_table

    try:
        doc, code = collect(_state_paths(args), _config_dir(args), args.cluster)
    except HaproxyK8sError as e:
        return _fail(str(e), 3)
    sys.stdout.write(doc.dumps() if args.json else format_table(doc))
    return code


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the running daemon to re-apply now, and report the outcome of that apply."""
    from ..daemon import control
    from ..errors import RuntimeApiError

    paths = _state_paths(args)
    try:
        reply = control.call(paths.control_socket, "reload", timeout=args.timeout)
    except RuntimeApiError as e:
        return _fail(str(e), 3)
    return _report_apply(reply)


def _report_apply(reply: dict[str, Any]) -> int:
    if reply.get("ok"):
        why = f" ({reply['reason']})" if reply.get("reason") else ""
        print(f"applied: {reply.get('action')}{why} in {reply.get('seconds', 0) * 1000:.0f} ms, "
              f"generation {reply.get('generation')}")
        return 0
    error = reply.get("error") or {}
    message, file = str(error.get("message", error)), error.get("file")
    # A config error's message already starts with its file.
    where = f"{file}: " if file and not message.startswith(str(file)) else ""
    return _fail(f"apply failed: {where}{message}")


def cmd_restart_daemon(args: argparse.Namespace) -> int:
    from .restart import restart_daemon

    return restart_daemon(_state_paths(args), args.timeout)


def cmd_admin_state(args: argparse.Namespace) -> int:
    """drain / ready / maint: ask the daemon to set a node's admin state."""
    from ..config.schema import parse_duration
    from .admin import RefusedError, parse_target, set_admin_state, wait_drained

    try:
        target = parse_target(args.target)
        timeout = parse_duration(args.timeout) / 1000
    except ValueError as e:
        return _fail(str(e), 2)
    paths = _state_paths(args)
    try:
        set_admin_state(paths, target, args.state)
        print(f"{target}: {args.state}")
        if args.state != "ready" and args.wait:
            left = wait_drained(paths, target, timeout)
            if left:
                return _fail(f"{target}: {left} sessions still open after {args.timeout}")
            print(f"{target}: no sessions left")
    except RefusedError as e:
        return _fail(str(e), 1)
    except HaproxyK8sError as e:
        return _fail(str(e), 3)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    return run_demo(duration=args.duration, directory=Path(args.dir) if args.dir else None)


# -- parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haproxy-k8s", description="HAProxy in front of kube-apiservers, declaratively.")
    parser.add_argument("--version", action="version", version=f"haproxy-k8s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-dir", help="config directory (env HAPROXY_K8S_CONFIG_DIR, "
                        f"default {DEFAULT_CONFIG_DIR})")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", parents=[common],
                           help="validate the config; change nothing")
    check.add_argument("--no-bind-check", action="store_true",
                       help="do not try the binds (checking a config for another host)")
    check.set_defaults(func=cmd_check)
    sub.add_parser("render", parents=[common], help="print the rendered haproxy.cfg"
                   ).set_defaults(func=cmd_render)
    sub.add_parser("firewall", parents=[common], help="print an nftables ruleset for the "
                   "configured ports").set_defaults(func=cmd_firewall)
    status = sub.add_parser("status", parents=[common], help="backend health")
    status.add_argument("cluster", nargs="?", help="only this cluster")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--state-dir", help="override haproxy.state_dir")
    status.set_defaults(func=cmd_status)
    reload = sub.add_parser("reload", parents=[common], help="re-apply the drop-ins now")
    reload.add_argument("--state-dir", help="override haproxy.state_dir")
    reload.add_argument("--timeout", type=float, default=60.0)
    reload.set_defaults(func=cmd_reload)
    restart = sub.add_parser("restart-daemon", parents=[common],
                             help="re-execute the daemon (after an upgrade); HAProxy keeps serving")
    restart.add_argument("--state-dir", help="override haproxy.state_dir")
    restart.add_argument("--timeout", type=float, default=60.0)
    restart.set_defaults(func=cmd_restart_daemon)
    for state, text in (("drain", "stop new connections to a node; existing ones finish"),
                        ("ready", "put a node back into service"),
                        ("maint", "take a node out of service at once")):
        verb = sub.add_parser(state, parents=[common], help=text)
        verb.add_argument("target", metavar="CLUSTER/NODE")
        verb.add_argument("--state-dir", help="override haproxy.state_dir")
        if state != "ready":
            verb.add_argument("--wait", action="store_true",
                              help="return once the node has no sessions left")
            verb.add_argument("--timeout", default="5m", help="with --wait (default 5m)")
        verb.set_defaults(func=cmd_admin_state, state=state, wait=False, timeout="5m")
    demo = sub.add_parser("demo", help="run a local demo: stand-in apiservers behind HAProxy")
    demo.add_argument("--duration", type=float, default=None,
                      help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--dir", help="use this directory instead of a temporary one")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code

