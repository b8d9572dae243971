"""``geetcd``: a command line shaped like etcdctl (v3), on geetcd's client.

argparse, not click/typer: etcdctl's grammar (global flags before or after the command,
``--flag=value``, ``-w json``, ``-- cmd``) fits argparse's subparsers, the standard library
costs no dependency, and the console script starts faster.

Global flags as etcdctl's, each also read from ``GEETCD_<NAME>`` (``GEETCD_ENDPOINTS``,
``GEETCD_DIAL_TIMEOUT``, ``GEETCD_COMMAND_TIMEOUT``, ``GEETCD_CACERT``, ``GEETCD_CERT``,
``GEETCD_KEY``, ``GEETCD_USER``, ``GEETCD_PASSWORD``, ``GEETCD_INSECURE_SKIP_TLS_VERIFY``,
``GEETCD_WRITE_OUT``, ``GEETCD_HEX``): flags win over the environment.

Exit codes as etcdctl's: 0 success, 1 an etcd or connection error (message on stderr as
``Error: ...``), 128 bad arguments. ``geetcd bench ...`` and ``geetcd demo ...`` are the
``geetcd-bench`` and ``geetcd-demo`` scripts.

One module per command group: :mod:`~geetcd.cli.kv`, :mod:`~geetcd.cli.lease`,
:mod:`~geetcd.cli.concurrency` (lock, elect), :mod:`~geetcd.cli.cluster` (member, endpoint),
:mod:`~geetcd.cli.maintenance` (alarm, defrag, snapshot, move-leader) and
:mod:`~geetcd.cli.auth_commands` (user, role, auth), each with its ``add_parsers`` and
``COMMANDS``; :mod:`~geetcd.cli.args` (global flags, environment), :mod:`~geetcd.cli.factory`
(the client), :mod:`~geetcd.cli.output` (every byte written). This module composes them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from geetcd.cli import auth_commands, cluster, concurrency, kv, lease, maintenance
from geetcd.cli import output as out
from geetcd.cli.args import Parser, add_globals, duration, hex_id
from geetcd.cli.errors import EXIT_BAD_ARGS, EXIT_ERROR, UsageError
from geetcd.cli.factory import make_client
from geetcd.client import Client
from geetcd.errors import EtcdError, InvalidArgument

__all__ = [
    "COMMANDS",
    "EXIT_BAD_ARGS",
    "EXIT_ERROR",
    "UsageError",
    "build_parser",
    "duration",
    "hex_id",
    "main",
]

GROUPS = (kv, lease, concurrency, cluster, maintenance, auth_commands)
"""The command groups, in etcdctl's order (the order of ``geetcd --help``)."""

COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    name: handler for group in GROUPS for name, handler in group.COMMANDS.items()
}


def build_parser() -> Parser:
    """The whole command grammar."""
    parser = Parser(prog="geetcd", description="A command line for etcd v3, shaped like etcdctl.")
    add_globals(parser, suppress=False)
    # The same flags after the command (etcdctl's cobra takes them anywhere): without
    # defaults there, so that they only override when given.
    common = Parser(add_help=False)
    add_globals(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add_parsers(sub, common, Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``geetcd`` console script; returns the exit status (0, 1 or 128)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench and demo are programs of their own (geetcd-bench, geetcd-demo), imported only
    # when asked for: every other command starts without the benchmark and the test harness.
    if argv and argv[0] == "bench":
        from geetcd.bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "demo":
        from geetcd.demo import main as demo_main

        return demo_main(argv[1:])
    tail: list[str] = []
    if "--" in argv:  # `watch KEY -- cmd args`, `lock NAME -- cmd args`: cmd is not parsed
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    try:
        args = build_parser().parse_args(argv)
        if tail:
            if not hasattr(args, "exec"):
                raise UsageError(f"{args.command} takes no command after --")
            args.exec = [*args.exec, *tail]
        client = make_client(args)
    except UsageError as exc:
        out.error(f"Error: {exc}")
        return EXIT_BAD_ARGS
    except InvalidArgument as exc:
        out.error(f"Error: {exc}")
        return EXIT_BAD_ARGS
    try:
        return COMMANDS[args.command](client, args)
    except UsageError as exc:
        out.error(f"Error: {exc}")
        return EXIT_BAD_ARGS
    except EtcdError as exc:
        out.error(f"Error: {exc.message if exc.message else exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
