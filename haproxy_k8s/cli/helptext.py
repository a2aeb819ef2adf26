"""Every command's `--help`: what it does, an example, its exit codes.

Kept apart from the parser so the words can be read (and reviewed) as a
whole; `decorate` puts them on the parser, and the man page and shell
completions are generated from that same parser (cli/generate.py).
"""

from __future__ import annotations

import argparse
import textwrap
from types import ModuleType
from typing import NamedTuple

# Here, not in generate.py: every command line builds the parser, and only
# `completion` and `man` need that module.
SHELLS = ("bash", "zsh", "fish")


# A NamedTuple, not a dataclass: importing dataclasses is a tenth of `status`'s imports.
class Help(NamedTuple):
    description: str
    examples: tuple[str, ...]
    exits: tuple[tuple[int, str], ...]


_STATUS_EXITS = ((0, "every node is UP"), (1, "degraded: some node is not UP"),
                 (2, "some cluster has no UP node"),
                 (3, "the daemon or HAProxy cannot be reached (or may not be read)"),
                 (4, "CLUSTER[/NODE] names nothing that runs"))
_DAEMON_EXITS = ((0, "done"), (1, "the daemon refused or the apply failed"),
                 (2, "bad arguments"), (3, "no daemon answers on the control socket"))
_ADMIN = ("Asks the running daemon, the one writer to HAProxy; the state is kept in "
          "the state dir, so it survives reloads, HAProxy restarts and daemon restarts.")

HELP: dict[str, Help] = {
    "run": Help("Run the daemon in the foreground: render haproxy.cfg from the drop-ins, "
                "validate it, run and supervise HAProxy, apply every change. This is what "
                "the systemd unit runs (Type=notify).",
                ("haproxy-k8s run --config-dir /etc/haproxy-k8s --log-level debug",),
                ((0, "stopped by SIGTERM or SIGINT"), (1, "could not start serving"))),
    "check": Help("Validate the config directory: load and merge the drop-ins, render "
                  "haproxy.cfg and run `haproxy -c` on it in a temporary directory, then try "
                  "the binds the running balancer does not hold yet. Changes nothing; "
                  "*.yaml and *.yml drop-ins, which are not read, are named.",
                  ("haproxy-k8s check",
                   "haproxy-k8s check --config-dir ./conf --no-bind-check"),
                  ((0, "valid"), (1, "invalid: the error names the file and key"))),
    "render": Help("Print the haproxy.cfg the drop-ins make, without validating it.",
                   ("haproxy-k8s render | less",), ((0, "printed"), (1, "invalid config"))),
    "firewall": Help("Print an nftables table that opens the binds' ports, and the stats "
                     "port to stats.allow.",
                     ("haproxy-k8s firewall > /etc/nftables.d/haproxy-k8s.nft",),
                     ((0, "printed"), (1, "invalid config"))),
    "status": Help("Each node's health as HAProxy sees it, read live from its sockets (it "
                   "tells the truth with the daemon down). CLUSTER or CLUSTER/NODE narrows "
                   "the output and the exit code. A node deleted from the config shows as "
                   "DRAIN (removing) until its sessions end.",
                   ("haproxy-k8s status", "haproxy-k8s status cluster-0 -o wide",
                    "haproxy-k8s status cluster-0/k8s-master-1 -o json",
                    "haproxy-k8s status --watch"), _STATUS_EXITS),
    "reload": Help("Ask the running daemon to re-apply the drop-ins now and report what that "
                   "apply did: nothing, runtime changes, or a verified reload.",
                   ("haproxy-k8s reload", "haproxy-k8s reload --timeout 2m"), _DAEMON_EXITS),
    "restart-daemon": Help(
        "Make the running daemon re-execute itself (SIGUSR2) after its package was "
        "upgraded: it stops its threads but not HAProxy, starts the new code with the same "
        "pid and adopts the running HAProxy master. Waits until the new code reports.",
        ("pip install --upgrade haproxy-k8s && haproxy-k8s restart-daemon",
         "systemctl kill -s SIGUSR2 --kill-who=main haproxy-k8s"),
        ((0, "the new daemon runs and adopted HAProxy"),
         (1, "it did not come back in time, or its first apply failed"),
         (3, "no daemon runs"))),
    "keepalived-install": Help(
        "[vip] with manage = \"unit\": run by haproxy-k8s-keepalived.service (root, netlink), "
        "not by hand. Copies the keepalived.conf the daemon published into the unit's runtime "
        "dir, runs `keepalived --config-test` on the copy with every interface visible, and "
        "only then installs it (and sends --hup PID a SIGHUP). A refused config leaves the "
        "running one in place; the verdict is shown by `haproxy-k8s status`.",
        ("haproxy-k8s keepalived-install --state-dir /run/haproxy-k8s --hup 1234",),
        ((0, "installed (and keepalived reloaded)"),
         (1, "keepalived refused the config, or it could not be read: nothing changed"))),
    "drain": Help("No new connections to the node; its existing ones finish. " + _ADMIN
                  + " `cordon` is the same command.",
                  ("haproxy-k8s drain cluster-0/k8s-master-1 --wait --timeout 10m",
                   "haproxy-k8s cordon cluster-0/k8s-master-1"),
                  ((0, "done (with --wait: no sessions left)"),
                   (1, "refused, or sessions still open at the --timeout"),
                   (2, "bad arguments"), (3, "no daemon answers"))),
    "ready": Help("Put the node back into service. " + _ADMIN + " `uncordon` is the same "
                  "command.", ("haproxy-k8s ready cluster-0/k8s-master-1",
                               "haproxy-k8s uncordon cluster-0/k8s-master-1"), _DAEMON_EXITS),
    "maint": Help("Take the node out of service at once: no traffic, no health checks. "
                  + _ADMIN + " The last serving node of a cluster needs --force.",
                  ("haproxy-k8s maint cluster-0/k8s-master-1",
                   "haproxy-k8s maint cluster-0/k8s-master-1 --force"),
                  ((0, "done (with --wait: no sessions left)"),
                   (1, "refused (the last serving node without --force, an unknown node), or "
                       "sessions still open at the --timeout"),
                   (2, "bad arguments"), (3, "no daemon answers"))),
    "describe": Help("Everything about one node: where it is configured (file and key, or "
                     "discovery), its HAProxy server line, state, last check, sessions, the "
                     "operator's state and who set it, and its last 20 transitions.",
                     ("haproxy-k8s describe cluster-0/k8s-master-1",
                      "haproxy-k8s describe cluster-0/k8s-master-1 -o yaml"),
                     ((0, "described"), (1, "no such node"), (2, "bad arguments"),
                      (3, "no daemon answers"))),
    "events": Help("The daemon's state changes and applies, one line each (time, kind, "
                   "object, message), oldest first; the journal carries the same lines. "
                   "Kinds: health, apply, config, operator, haproxy.",
                   ("haproxy-k8s events", "haproxy-k8s events --follow"),
                   ((0, "printed (or Ctrl-C with --follow)"), (3, "no daemon answers"))),
    "diff": Help("What an apply of the drop-ins would change against what runs now: the plan "
                 "(noop, runtime changes or reload, and why) and a unified diff of "
                 "haproxy.cfg. Applies nothing. Without a daemon it compares with the last "
                 "published haproxy.cfg, without a plan.",
                 ("haproxy-k8s diff", "haproxy-k8s diff && echo nothing to apply"),
                 ((0, "nothing to apply"), (1, "an apply would change something"),
                  (2, "the config is invalid"),
                  (3, "no daemon and no published config to compare with"))),
    "demo": Help("A local demo: three stand-in kube-apiservers (real TLS) on 127.0.8.10-12 "
                 "behind HAProxy on 127.0.8.1, with the commands to try. Needs the demo "
                 "extra.", ("haproxy-k8s demo", "haproxy-k8s demo --duration 60s"),
                 ((0, "stopped"), (1, "could not start"))),
    "completion": Help("Print a shell completion script, generated from this parser.",
                       ("source <(haproxy-k8s completion bash)",
                        "haproxy-k8s completion zsh > \"${fpath[1]}/_haproxy-k8s\"",
                        "haproxy-k8s completion fish > ~/.config/fish/completions/"
                        "haproxy-k8s.fish"), ((0, "printed"), (2, "unknown shell"))),
    "man": Help("Print the haproxy-k8s(1) man page (roff), generated from this parser.",
                ("haproxy-k8s man | man -l -",
                 "haproxy-k8s man > /usr/local/share/man/man1/haproxy-k8s.1"),
                ((0, "printed"),)),
}


def epilog(text: Help) -> str:
    examples = "\n".join(f"  {e}" for e in text.examples)
    exits = "\n".join(f"  {code}  {what}" for code, what in text.exits)
    return f"examples:\n{examples}\n\nexit codes:\n{exits}"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser by its name (aliases left out)."""
    for action in parser._actions:  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            names = [choice.dest for choice in action._choices_actions]
            return {name: action.choices[name] for name in names}
    return {}


def aliases(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Command name -> its aliases (`drain` -> [`cordon`])."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            by_id = {id(p): name for name, p in subcommands(parser).items()}
            for name, sub in action.choices.items():
                if by_id.get(id(sub)) not in (None, name):
                    found.setdefault(by_id[id(sub)], []).append(name)
    return found


def decorate(parser: argparse.ArgumentParser) -> None:
    """Put each command's description, examples and exit codes on its parser."""
    parser.epilog = ("Global flags (--config-dir, --state-dir) go before or after the "
                     "command.\nRun `haproxy-k8s COMMAND --help` for a command's examples "
                     "and exit codes.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, sub in subcommands(parser).items():
        text = HELP[name]  # a KeyError here means a command without help: a test catches it
        sub.description = textwrap.fill(text.description, 79)
        sub.epilog = epilog(text)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter


def generator_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                       root: argparse.ArgumentParser) -> None:
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=lambda a: _generate().print_completion(root, a.shell))
    man = sub.add_parser("man", help="print the man page (roff)")
    man.set_defaults(func=lambda a: _generate().print_man(root))


def _generate() -> ModuleType:
    from . import generate

    return generate
