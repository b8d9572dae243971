"""``geetcd alarm|defrag|snapshot|move-leader``: maintenance, with etcdctl's arguments and
output."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from geetcd.cli import output as out
from geetcd.cli.args import hex_id
from geetcd.cli.errors import EXIT_ERROR, UsageError
from geetcd.cli.factory import endpoints_for
from geetcd.client import Client
from geetcd.errors import EtcdError

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The subcommands of this group (``sub``: the parser's subparsers)."""
    alarm = sub.add_parser("alarm", parents=[common]).add_subparsers(
        dest="alarm_command", required=True, parser_class=parser_class
    )
    alarm.add_parser("list", parents=[common])
    alarm.add_parser("disarm", parents=[common])

    defrag = sub.add_parser("defrag", parents=[common])
    defrag.add_argument("--cluster", action="store_true")

    snapshot = sub.add_parser("snapshot", parents=[common]).add_subparsers(
        dest="snapshot_command", required=True, parser_class=parser_class
    )
    snapshot.add_parser("save", parents=[common]).add_argument("filename")

    sub.add_parser("move-leader", parents=[common]).add_argument("id", type=hex_id)


def cmd_alarm(client: Client, args: argparse.Namespace) -> int:
    alarms = client.alarm_list() if args.alarm_command == "list" else client.alarm_disarm()
    for a in alarms:
        out.line(f"memberID:{a.member_id} alarm:{a.alarm} ")
    return 0


def cmd_defrag(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for url in endpoints_for(client, args.cluster):
        try:
            client.defragment(url)
            out.line(f"Finished defragmenting etcd member[{url}]")
        except EtcdError as exc:
            failed = True
            out.error(f"Failed to defragment etcd member[{url}] ({exc})")
    return EXIT_ERROR if failed else 0


def cmd_snapshot(client: Client, args: argparse.Namespace) -> int:
    endpoints = client.endpoints
    if len(endpoints) != 1:
        raise UsageError(
            f"snapshot must be requested to one selected node, not multiple {endpoints}"
        )
    started = time.monotonic()
    last = [0.0]
    tty = sys.stderr.isatty()

    def progress(received: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and received < total + 32:
            return
        last[0] = now
        rate = received / max(now - started, 1e-6)
        text = (
            f"{out.human_bytes(received)} of {out.human_bytes(total)} "
            f"({out.human_bytes(int(rate))}/s)"
        )
        out.progress(text, tty)

    info = client.snapshot(args.filename, endpoint=endpoints[0], progress=progress, timeout=3600)
    if tty:
        out.error()
    out.line(
        f"Snapshot saved at {args.filename} ({out.human_bytes(info.size)} in "
        f"{info.seconds:.2f}s, {out.human_bytes(int(info.rate))}/s)"
    )
    return 0


def cmd_move_leader(client: Client, args: argparse.Namespace) -> int:
    before = client.status().leader or 0
    client.move_leader(args.id)
    out.line(f"Leadership transferred from {before:x} to {args.id:x}")
    return 0


COMMANDS = {
    "alarm": cmd_alarm,
    "defrag": cmd_defrag,
    "snapshot": cmd_snapshot,
    "move-leader": cmd_move_leader,
}
