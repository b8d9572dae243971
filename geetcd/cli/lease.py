"""``geetcd lease grant|revoke|timetolive|list|keep-alive``, with etcdctl's arguments and
output."""

from __future__ import annotations

import argparse
from typing import Any

import gevent

from geetcd.cli import output as out
from geetcd.cli.args import hex_id
from geetcd.cli.factory import call
from geetcd.client import Client
from geetcd.protocol import lease as lease_proto
from geetcd.protocol.codec import b64

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The subcommands of this group (``sub``: the parser's subparsers)."""
    lease = sub.add_parser("lease", parents=[common]).add_subparsers(
        dest="lease_command", required=True, parser_class=parser_class
    )
    lease.add_parser("grant", parents=[common]).add_argument("ttl", type=int)
    lease.add_parser("revoke", parents=[common]).add_argument("id", type=hex_id)
    ttl = lease.add_parser("timetolive", parents=[common])
    ttl.add_argument("id", type=hex_id)
    ttl.add_argument("--keys", action="store_true")
    lease.add_parser("list", parents=[common])
    keep = lease.add_parser("keep-alive", parents=[common])
    keep.add_argument("id", type=hex_id)
    keep.add_argument("--once", action="store_true")


def cmd_lease(client: Client, args: argparse.Namespace) -> int:
    what = args.lease_command
    json_out = args.write_out == "json"
    if what == "grant":
        answer = call(client, lease_proto.GRANT, {"TTL": str(args.ttl)}, idempotent=False)
        lease_id, ttl = int(answer.get("ID", 0)), int(answer.get("TTL", 0))
        if json_out:
            out.print_json(out.flat(answer, {"ID": lease_id, "TTL": ttl, "Error": ""}))
        else:
            out.line(f"lease {lease_id:016x} granted with TTL({ttl}s)")
    elif what == "revoke":
        answer = call(client, lease_proto.REVOKE, {"ID": str(args.id)}, idempotent=True)
        if json_out:
            out.print_json(out.numbers(answer))
        else:
            out.line(f"lease {args.id:016x} revoked")
    elif what == "timetolive":
        body = {"ID": str(args.id), "keys": bool(args.keys)}
        answer = call(client, lease_proto.TIME_TO_LIVE, body, idempotent=True)
        ttl = int(answer.get("TTL", 0))
        granted = int(answer.get("grantedTTL", 0))
        keys = [out.unb64(k) for k in answer.get("keys") or []]
        if json_out:
            fields = {
                "id": int(answer.get("ID", args.id)),
                "ttl": ttl,
                "granted-ttl": granted,
                "keys": [b64(k) for k in keys] if keys else None,
            }
            out.print_json(out.flat(answer, fields))
        elif ttl == -1:
            out.line(f"lease {args.id:016x} already expired")
        else:
            text = f"lease {args.id:016x} granted with TTL({granted}s), remaining({ttl}s)"
            if args.keys:
                shown = " ".join(k.decode("utf-8", "surrogateescape") for k in keys)
                text += f", attached keys([{shown}])"
            out.line(text)
    elif what == "list":
        answer = call(client, lease_proto.LEASES, {}, idempotent=True)
        ids = [int(item.get("ID", 0)) for item in answer.get("leases") or []]
        if json_out:
            leases = [{"id": i} for i in ids]
            out.print_json(out.flat(answer, {"leases": leases} if leases else {}))
        else:
            out.line(f"found {len(ids)} leases")
            for i in ids:
                out.line(f"{i:016x}")
    else:  # keep-alive
        while True:
            info = client.lease_time_to_live(args.id)
            if info.ttl == -1:
                out.line(f"lease {args.id:016x} expired or revoked.")
                return 0
            answer = call(client, lease_proto.KEEPALIVE, {"ID": str(args.id)}, idempotent=True)
            result = answer.get("result", answer)
            ttl = int(result.get("TTL", 0))
            if json_out:
                out.print_json(out.flat(result, {"ID": args.id, "TTL": ttl}))
            else:
                out.line(f"lease {args.id:016x} keepalived with TTL({ttl})")
            out.flush()
            if args.once:
                return 0
            gevent.sleep(max(0.5, ttl / 3))
    return 0


COMMANDS = {"lease": cmd_lease}
