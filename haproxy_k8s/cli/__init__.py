"""Command-line front: run, check, render, status, reload (and later verbs)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.names import DEFAULT_CONFIG_DIR
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
    from ..config.loader import unread_dropins
    from ..haproxy.binds import check_offline
    from ..haproxy.check import haproxy_version
    from ..sources.files import FileSource
    from .common import plural

    config_dir = _config_dir(args)
    for name in unread_dropins(config_dir):
        print(f"warning: {name}: ignored: only *.toml and *.json drop-ins are read",
              file=sys.stderr)
    try:
        config = FileSource(config_dir).load()  # what the daemon loads, file checks included
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
    print(f"{config_dir}: OK ({plural(len(config.clusters), 'cluster')}, "
          f"{plural(nodes, 'node')})")
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
    import logging  # the daemon's alone: a tenth of the verbs' imports

    from ..daemon import malloc
    from ..daemon.logsetup import setup_logging
    from ..daemon.loop import Daemon, collect_seldom

    malloc.tune()  # before any thread starts: see daemon/malloc.py
    collect_seldom()  # before the first load: it makes a million objects at 1,000 clusters
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
    from ..config.statedir import quick_state_dir
    from .locate import state_paths

    if args.state_dir:
        return StatePaths(Path(args.state_dir))
    config_dir = _config_dir(args)
    # The config model only when some drop-in may move the state dir.
    state_dir = quick_state_dir(config_dir)
    if state_dir is None:
        from ..config.loader import state_dir_from_loading

        state_dir = state_dir_from_loading(config_dir)
    return state_paths(Path(state_dir), config_dir)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    from .views import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from .views import cmd_status as status

    return status(args, _state_paths(args), _config_dir(args))


# -- describe / events / diff (cli/inspect.py) -------------------------------------------
def _inspect_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    from . import inspect

    describe = sub.add_parser("describe", parents=[common], help="everything about one node")
    inspect.add_describe_arguments(describe)
    describe.set_defaults(func=lambda a: inspect.cmd_describe(a, _state_paths(a)))
    events = sub.add_parser("events", parents=[common],
                            help="the daemon's state changes and applies, one line each")
    inspect.add_events_arguments(events)
    events.set_defaults(func=lambda a: inspect.cmd_events(a, _state_paths(a)))
    sub.add_parser("diff", parents=[common], help="what an apply would change, without "
                   "applying").set_defaults(
        func=lambda a: inspect.cmd_diff(a, _state_paths(a), _config_dir(a)))


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
    from .common import error_line

    if reply.get("ok"):
        why = f" ({reply['reason']})" if reply.get("reason") else ""
        print(f"applied: {reply.get('action')}{why} in {reply.get('seconds', 0) * 1000:.0f} ms, "
              f"generation {reply.get('generation')}")
        return 0
    return _fail(f"apply failed: {error_line(reply.get('error'))}")


def cmd_restart_daemon(args: argparse.Namespace) -> int:
    from .restart import restart_daemon

    return restart_daemon(_state_paths(args), args.timeout)


def cmd_keepalived_install(args: argparse.Namespace) -> int:
    from ..vip.unitside import main as install

    return install(_state_paths(args).root, args.keepalived, args.hup)


def cmd_admin_state(args: argparse.Namespace) -> int:
    """drain / ready / maint (and cordon / uncordon): ask the daemon to set a node's admin state."""
    from .admin import RefusedError, parse_target, set_admin_state, wait_drained
    from .common import plural, show_duration

    try:
        target = parse_target(args.target)
    except ValueError as e:
        return _fail(str(e), 2)
    paths = _state_paths(args)
    try:
        set_admin_state(paths, target, args.state, force=args.force)
        print(f"{target}: {args.state}")
        if args.state != "ready" and args.wait:
            left = wait_drained(paths, target, args.timeout)
            if left:
                return _fail(f"{target}: {plural(left, 'session')} still open after "
                             f"{show_duration(args.timeout)}")
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
def _global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    # Given to the main parser (default None) and to every subcommand
    # (default SUPPRESS, so a flag before the command is not reset by the
    # subparser): `haproxy-k8s --config-dir D status` = `status --config-dir D`.
    parser.add_argument("--config-dir", default=default, metavar="DIR",
                        help="config directory (env HAPROXY_K8S_CONFIG_DIR, "
                        f"default {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--state-dir", default=default, metavar="DIR",
                        help="the daemon's state dir (default: haproxy.state_dir of the config)")


def build_parser() -> argparse.ArgumentParser:
    from . import helptext
    from .common import duration

    parser = argparse.ArgumentParser(
        prog="haproxy-k8s", description="HAProxy in front of kube-apiservers, declaratively.")
    parser.add_argument("--version", action="version", version=f"haproxy-k8s {__version__}")
    _global_flags(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    _status_arguments(status)
    reload = sub.add_parser("reload", parents=[common], help="re-apply the drop-ins now")
    reload.add_argument("--timeout", type=duration, default=60.0, metavar="DURATION",
                        help="how long to wait for the daemon's answer (default 60s)")
    reload.set_defaults(func=cmd_reload)
    restart = sub.add_parser("restart-daemon", parents=[common],
                             help="re-execute the daemon (after an upgrade); HAProxy keeps serving")
    restart.add_argument("--timeout", type=duration, default=60.0, metavar="DURATION",
                         help="how long to wait for the new daemon (default 60s)")
    restart.set_defaults(func=cmd_restart_daemon)
    # Run by haproxy-k8s-keepalived.service (root, netlink), not by hand: vip/unitside.py.
    install = sub.add_parser("keepalived-install", parents=[common],
                             help="[vip] manage=unit: test the published keepalived.conf and "
                                  "install it for the keepalived unit")
    install.add_argument("--keepalived", default="keepalived", help="the binary")
    install.add_argument("--hup", type=int, metavar="PID", help="then reload this keepalived")
    install.set_defaults(func=cmd_keepalived_install)
    for state, aliases, text in (
            ("drain", ["cordon"], "stop new connections to a node; existing ones finish"),
            ("ready", ["uncordon"], "put a node back into service"),
            ("maint", [], "take a node out of service at once")):
        verb = sub.add_parser(state, parents=[common], help=text, aliases=aliases)
        verb.add_argument("target", metavar="CLUSTER/NODE")
        if state != "ready":
            verb.add_argument("--wait", action="store_true",
                              help="return once the node has no sessions left")
            verb.add_argument("--timeout", type=duration, default=300.0, metavar="DURATION",
                              help="with --wait (default 5m)")
        if state == "maint":
            verb.add_argument("--force", action="store_true",
                              help="even when it is the last serving node of its cluster")
        verb.set_defaults(func=cmd_admin_state, state=state, wait=False, timeout=300.0,
                          force=False)
    _inspect_commands(sub, common)
    demo = sub.add_parser("demo", help="run a local demo: stand-in apiservers behind HAProxy")
    demo.add_argument("--duration", type=duration, default=None, metavar="DURATION",
                      help="stop after this long (default: until Ctrl-C)")
    demo.add_argument("--dir", help="use this directory instead of a temporary one")
    demo.set_defaults(func=cmd_demo)
    helptext.generator_commands(sub, parser)
    helptext.decorate(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
