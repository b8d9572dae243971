"""``geetcd get|put|del|txn|compaction|watch``: the KV commands, with etcdctl's arguments
and output."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from geetcd.cli import output as out
from geetcd.cli.args import hex_id
from geetcd.cli.errors import UsageError
from geetcd.cli.factory import call
from geetcd.cli.txn import has_writes, parse_txn, range_end
from geetcd.client import Client
from geetcd.protocol import kv as kv_proto
from geetcd.protocol.codec import b64

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The subcommands of this group (``sub``: the parser's subparsers)."""
    get = sub.add_parser("get", parents=[common])
    get.add_argument("key")
    get.add_argument("range_end", nargs="?")
    for flag in ("--prefix", "--from-key", "--keys-only", "--count-only", "--print-value-only"):
        get.add_argument(flag, action="store_true")
    get.add_argument("--limit", type=int, default=0)
    get.add_argument("--rev", type=int, default=0)
    get.add_argument("--consistency", choices=("l", "s"), default="l")
    get.add_argument("--order", choices=("", "ASCEND", "DESCEND"), default="")
    get.add_argument(
        "--sort-by", choices=("", "CREATE", "KEY", "MODIFY", "VALUE", "VERSION"), default=""
    )

    put = sub.add_parser("put", parents=[common])
    put.add_argument("key")
    put.add_argument("value", nargs="?")
    put.add_argument("--lease", type=hex_id, default=0)
    put.add_argument("--prev-kv", action="store_true")

    delete = sub.add_parser("del", parents=[common])
    delete.add_argument("key")
    delete.add_argument("range_end", nargs="?")
    for flag in ("--prefix", "--from-key", "--prev-kv"):
        delete.add_argument(flag, action="store_true")

    txn = sub.add_parser("txn", parents=[common])
    txn.add_argument("-i", "--interactive", action="store_true")

    compaction = sub.add_parser("compaction", parents=[common])
    compaction.add_argument("revision", type=int)
    compaction.add_argument("--physical", action="store_true")

    watch = sub.add_parser("watch", parents=[common])
    watch.add_argument("key")
    watch.add_argument("range_end", nargs="?")
    watch.add_argument("--prefix", action="store_true")
    watch.add_argument("--rev", type=int, default=0)
    watch.add_argument("--prev-kv", action="store_true")
    watch.add_argument("exec", nargs="*")


def _range_body(args: argparse.Namespace) -> dict[str, Any]:
    key = args.key.encode()
    body: dict[str, Any] = {"key": b64(key)}
    end = range_end(key, args.range_end, args.prefix, args.from_key)
    if end is not None:
        body["range_end"] = b64(end)
    return body


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    if args.count_only and args.write_out != "fields":
        raise UsageError("--count-only is only for `--write-out=fields`")
    if args.print_value_only and args.write_out != "simple":
        raise UsageError("--print-value-only is only for `--write-out=simple`")
    body = _range_body(args)
    if args.limit:
        body["limit"] = str(args.limit)
    if args.rev:
        body["revision"] = str(args.rev)
    if args.consistency == "s":
        body["serializable"] = True
    for flag in ("keys_only", "count_only"):
        if getattr(args, flag):
            body[flag] = True
    if args.order:
        body["sort_order"] = args.order
    if args.sort_by:
        body["sort_target"] = "MOD" if args.sort_by == "MODIFY" else args.sort_by
    answer = call(client, kv_proto.RANGE, body, idempotent=True)
    kvs = answer.get("kvs") or []
    if args.write_out == "json":
        out.print_json(out.numbers(answer))
    elif args.write_out == "fields":
        lines = out.fields_header(answer.get("header") or {})
        for kv in kvs:
            lines += out.fields_kv(kv)
        lines += [f'"More" : {str(bool(answer.get("more"))).lower()}']
        lines += [f'"Count" : {int(answer.get("count", 0))}']
        out.line("\n".join(lines))
    else:
        out.kvs(kvs, args.hex, args.print_value_only)
    return 0


def cmd_put(client: Client, args: argparse.Namespace) -> int:
    value = args.value if args.value is not None else sys.stdin.read()
    body: dict[str, Any] = {"key": b64(args.key.encode()), "value": b64(value.encode())}
    if args.lease:
        body["lease"] = str(args.lease)
    if args.prev_kv:
        body["prev_kv"] = True
    answer = call(client, kv_proto.PUT, body, idempotent=False)
    if args.write_out == "json":
        out.print_json(out.numbers(answer))
    elif args.write_out == "fields":
        lines = out.fields_header(answer.get("header") or {})
        if answer.get("prev_kv"):
            lines += out.fields_kv(answer["prev_kv"], "Prev")
        out.line("\n".join(lines))
    else:
        out.line("OK")
        if answer.get("prev_kv"):
            out.kvs([answer["prev_kv"]], args.hex)
    return 0


def cmd_del(client: Client, args: argparse.Namespace) -> int:
    body = _range_body(args)
    if args.prev_kv:
        body["prev_kv"] = True
    answer = call(client, kv_proto.DELETE, body, idempotent=False)
    if args.write_out == "json":
        out.print_json(out.numbers(answer))
    elif args.write_out == "fields":
        lines = out.fields_header(answer.get("header") or {})
        lines.append(f'"Deleted" : {int(answer.get("deleted", 0))}')
        for kv in answer.get("prev_kvs") or []:
            lines += out.fields_kv(kv, "Prev")
        out.line("\n".join(lines))
    else:
        out.line(int(answer.get("deleted", 0)))
        out.kvs(answer.get("prev_kvs") or [], args.hex)
    return 0


def cmd_txn(client: Client, args: argparse.Namespace) -> int:
    if args.interactive:
        out.error("compares:")
    body = parse_txn(sys.stdin)
    answer = call(client, kv_proto.TXN, body, idempotent=not has_writes(body))
    if args.write_out == "json":
        out.print_json(out.txn_json(answer))
        return 0
    out.line("SUCCESS" if answer.get("succeeded") else "FAILURE")
    for response in answer.get("responses") or []:
        out.line("")
        if "response_put" in response:
            out.line("OK")
        elif "response_range" in response:
            out.kvs(response["response_range"].get("kvs") or [], args.hex)
        else:
            out.line(int(response.get("response_delete_range", {}).get("deleted", 0)))
    return 0


def cmd_compaction(client: Client, args: argparse.Namespace) -> int:
    client.compact(args.revision, physical=args.physical)
    out.line(f"compacted revision {args.revision}")
    return 0


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    exec_args = list(args.exec)
    watch = client.watch(
        args.key,
        prefix=args.prefix,
        range_end=args.range_end,
        start_revision=args.rev or None,
        prev_kv=args.prev_kv,
    )
    try:
        for event in watch:
            kind = event.type.value
            if args.write_out == "json":
                kv = {"key": b64(event.kv.key), "mod_revision": event.kv.mod_revision}
                out.print_json({"Events": [{"type": 1 if kind == "DELETE" else 0, "kv": kv}]})
            else:
                out.line(kind)
                if event.prev_kv is not None:
                    out.kvs([out.kv_json(event.prev_kv)], args.hex)
                out.kvs([out.kv_json(event.kv)], args.hex)
            out.flush()
            if exec_args:
                env = {
                    **os.environ,
                    "ETCD_WATCH_REVISION": str(event.kv.mod_revision),
                    "ETCD_WATCH_EVENT_TYPE": kind,
                    "ETCD_WATCH_KEY": event.kv.key.decode("utf-8", "surrogateescape"),
                    "ETCD_WATCH_VALUE": event.kv.value.decode("utf-8", "surrogateescape"),
                }
                subprocess.run(exec_args, env=env, check=False)
    finally:
        watch.cancel()
    return 0


COMMANDS = {
    "get": cmd_get,
    "put": cmd_put,
    "del": cmd_del,
    "txn": cmd_txn,
    "compaction": cmd_compaction,
    "watch": cmd_watch,
}
