"""``geetcd lock|elect``: the lock and election recipes, with etcdctl's arguments and
output (``lock NAME -- cmd`` runs ``cmd`` while holding the lock)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from typing import Any

import gevent
import gevent.event

from geetcd.cli import output as out
from geetcd.client import Client

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The subcommands of this group (``sub``: the parser's subparsers)."""
    lock = sub.add_parser("lock", parents=[common])
    lock.add_argument("name")
    lock.add_argument("exec", nargs="*")
    lock.add_argument("--ttl", type=int, default=10)

    elect = sub.add_parser("elect", parents=[common])
    elect.add_argument("name")
    elect.add_argument("proposal", nargs="?")
    elect.add_argument("-l", "--listen", action="store_true")


def _wait_for_signal() -> None:
    done = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, done.set)
    done.wait()


def cmd_lock(client: Client, args: argparse.Namespace) -> int:
    exec_args = list(args.exec)
    lock = client.lock(args.name, ttl=args.ttl)
    lock.acquire()
    try:
        key = (lock.key or b"").decode("utf-8", "surrogateescape")
        if exec_args:
            env = {**os.environ, "ETCD_LOCK_KEY": key, "ETCD_LOCK_REV": str(lock.revision)}
            return subprocess.run(exec_args, env=env, check=False).returncode
        out.line(key)
        out.flush()
        _wait_for_signal()
        return 0
    finally:
        lock.release()


def cmd_elect(client: Client, args: argparse.Namespace) -> int:
    election = client.election(args.name)
    if args.listen or args.proposal is None:
        for kv in election.observe():
            out.line(kv.key.decode("utf-8", "surrogateescape"))
            out.line(kv.value.decode("utf-8", "surrogateescape"))
            out.flush()
        return 0
    election.campaign(args.proposal)
    try:
        leader = election.leader()
        if leader is not None:
            out.line(leader.key.decode("utf-8", "surrogateescape"))
            out.line(leader.value.decode("utf-8", "surrogateescape"))
        out.flush()
        _wait_for_signal()
        return 0
    finally:
        election.resign()


COMMANDS = {"lock": cmd_lock, "elect": cmd_elect}
