"""`haproxy-k8s status` as operators use it: -o table|wide|json|yaml, a
CLUSTER or CLUSTER/NODE filter, --watch, and a clear word when the sockets
cannot be read for lack of permission."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RuntimeApiError
from .common import OUTPUTS, duration, to_yaml

# The document model is imported where it is used: `status --json` into a pipe
# prints the daemon's bytes as they came, and needs none of it.
if TYPE_CHECKING:
    from ..daemon.status import StatusDocument
    from ..haproxy.paths import StatePaths

EXIT_NO_SUCH = 4  # status CLUSTER[/NODE] names nothing HAProxy runs
EXIT_UNREACHABLE = 3  # daemon.status.EXIT_UNREACHABLE, without importing it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="CLUSTER[/NODE]",
                        help="show only this cluster, or this one node")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table",
                        help="table (default), wide (adds weight, admin state, session "
                             "rate, check detail, source), json or yaml")
    parser.add_argument("--json", dest="output", action="store_const", const="json",
                        help="the same as -o json")
    parser.add_argument("-w", "--watch", action="store_true",
                        help="print again on every change, until Ctrl-C")
    parser.add_argument("--interval", type=duration, default=1.0, metavar="DURATION",
                        help="with --watch: how often to look (default 1s)")


def cmd_status(args: argparse.Namespace, paths: StatePaths, config_dir: Path) -> int:
    denied = permission_problem(paths)
    if denied:
        print(f"haproxy-k8s: {denied}", file=sys.stderr)
        return EXIT_UNREACHABLE

    # Indented for a person; into a pipe compact, which json writes several
    # times faster (a megabyte at 6,000 nodes: most of `status --json`).
    indent = 2 if sys.stdout.isatty() else None
    if args.output == "json" and indent is None and not args.target and not args.watch:
        return print_as_sent(paths, config_dir)

    def once() -> tuple[str, int, str]:
        from .status import collect  # psutil and the sockets: not for `--help`

        # Only one cluster is asked for (of the daemon, or of HAProxy) for `status CLUSTER`.
        cluster = args.target.partition("/")[0] if args.target else None
        doc, code = collect(paths, config_dir, cluster)
        text, code = render(doc, code, args.target, args.output, indent)
        # Only --watch compares one document with the next.
        return text, code, change_key(doc) if args.watch else ""

    if not args.watch:
        text, code, _ = once()
        (sys.stdout if code != EXIT_NO_SUCH else sys.stderr).write(text)
        return code
    return watch(once, args.interval, args.output in ("table", "wide"))


def print_as_sent(paths: StatePaths, config_dir: Path) -> int:
    """`status --json` into a pipe: the daemon's compact document as it sent it.

    Decoding a megabyte of JSON into the document and encoding it again (at
    3,000 nodes) was most of the command, to print the same bytes. Whatever
    the daemon cannot vouch for takes the usual way (collect()), asking it once.
    """
    from .live import as_sent, ask

    try:
        asked: bytes | RuntimeApiError = ask(paths)
    except RuntimeApiError as e:
        asked = e
    sent = as_sent(asked) if isinstance(asked, bytes) else None
    if sent is not None:
        text, code = sent
        out = getattr(sys.stdout, "buffer", None)  # none when replaced by a StringIO
        if out is None:
            sys.stdout.write(text.decode())
        else:
            sys.stdout.flush()
            out.write(text)
        return code
    from .status import collect

    doc, code = collect(paths, config_dir, None, asked)
    sys.stdout.write(doc.dumps(None))
    return code


def change_key(doc: StatusDocument) -> str:
    """The document minus what changes by itself (ages): a change is news, a tick is not."""
    data = doc.to_json()
    for cluster in data["clusters"]:
        for node in cluster["nodes"]:
            node.pop("last_change_s", None)
    return json.dumps(data, sort_keys=True)


def render(doc: StatusDocument, code: int, target: str | None, output: str,
           indent: int | None = 2) -> tuple[str, int]:
    """The text to print and the exit code, for the whole document or one target
    (`indent`: of JSON; None is compact)."""
    if target:
        from ..daemon.status import exit_code

        filtered = select(doc, target)
        if filtered is None:
            return f"haproxy-k8s: {target}: no such cluster or node\n", EXIT_NO_SUCH
        doc, code = filtered, exit_code(filtered)
    if output == "json":
        return doc.dumps(indent), code
    if output == "yaml":
        return to_yaml(doc.to_json()), code
    from .status import format_table

    return format_table(doc, wide=output == "wide"), code


def select(doc: StatusDocument, target: str) -> StatusDocument | None:
    """The document narrowed to CLUSTER or CLUSTER/NODE (None: no such thing)."""
    cluster_name, _, node_name = target.partition("/")
    clusters = [c for c in doc.clusters if c.name == cluster_name]
    if not clusters:
        return None
    if node_name:
        cluster = clusters[0]
        nodes = [n for n in cluster.nodes if n.name == node_name]
        if not nodes:
            return None
        clusters = [type(cluster)(cluster.name, cluster.bind, nodes)]
    return type(doc)(doc.daemon, doc.haproxy, clusters, doc.unreachable)


def watch(once: Callable[[], tuple[str, int, str]], interval: float, table: bool) -> int:
    """Print on every change until Ctrl-C, like `kubectl get -w`.

    On a terminal a table is redrawn in place (as `watch` does); into a pipe
    each change is appended, so `status -w | tee` keeps the record.
    """
    redraw = table and sys.stdout.isatty()
    last, code = "", 0
    try:
        while True:
            text, code, key = once()
            if key != last:
                if redraw:
                    sys.stdout.write("\033[H\033[2J")
                elif last:
                    sys.stdout.write("\n")
                sys.stdout.write(text)
                sys.stdout.flush()
                last = key
            time.sleep(interval)
    except KeyboardInterrupt:
        return code


def permission_problem(paths: StatePaths) -> str | None:
    """Why this user cannot read the daemon's state (None: it can, or nothing is there).

    Without this a user who may not read the sockets would be told the
    daemon is NOT RUNNING while it serves.
    """
    hint = "permission denied: run as root or haproxy"
    checks = ((paths.root, os.R_OK | os.X_OK, "read"), (paths.admin_socket, os.W_OK, "use"),
              (paths.master_socket, os.W_OK, "use"), (paths.status, os.R_OK, "read"))
    for path, mode, verb in checks:
        try:
            path.stat()
        except FileNotFoundError:
            continue  # nothing there: the caller says what is missing
        except PermissionError:
            return f"{hint} (cannot {verb} {path})"
        if not os.access(path, mode):
            return f"{hint} (cannot {verb} {path})"
    return None
