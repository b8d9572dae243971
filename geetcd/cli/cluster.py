"""``geetcd member ...`` and ``geetcd endpoint health|status|hashkv``, with etcdctl's
arguments and output."""

from __future__ import annotations

import argparse
import time
from typing import Any

from geetcd.cli import output as out
from geetcd.cli.args import hex_id
from geetcd.cli.errors import EXIT_ERROR
from geetcd.cli.factory import call, call_on, endpoints_for, raw_json
from geetcd.client import Client
from geetcd.errors import EtcdError
from geetcd.protocol import cluster as cluster_proto

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The subcommands of this group (``sub``: the parser's subparsers)."""
    member = sub.add_parser("member", parents=[common]).add_subparsers(
        dest="member_command", required=True, parser_class=parser_class
    )
    add = member.add_parser("add", parents=[common])
    add.add_argument("name")
    add.add_argument("--peer-urls", required=True)
    add.add_argument("--learner", action="store_true")
    member.add_parser("remove", parents=[common]).add_argument("id", type=hex_id)
    update = member.add_parser("update", parents=[common])
    update.add_argument("id", type=hex_id)
    update.add_argument("--peer-urls", required=True)
    member.add_parser("promote", parents=[common]).add_argument("id", type=hex_id)
    member.add_parser("list", parents=[common])

    endpoint = sub.add_parser("endpoint", parents=[common]).add_subparsers(
        dest="endpoint_command", required=True, parser_class=parser_class
    )
    for name in ("health", "status", "hashkv"):
        parsed = endpoint.add_parser(name, parents=[common])
        parsed.add_argument("--cluster", action="store_true")
        if name == "hashkv":
            parsed.add_argument("--rev", type=int, default=0)


def _members(client: Client) -> dict[str, Any]:
    answer: dict[str, Any] = call(client, cluster_proto.MEMBER_LIST, {}, idempotent=True)
    return answer


def cmd_member(client: Client, args: argparse.Namespace) -> int:
    what = args.member_command
    json_out = args.write_out == "json"
    if what == "list":
        answer = _members(client)
        members = answer.get("members") or []
        rows = [
            [
                f"{int(m['ID']):x}",
                "started" if m.get("name") else "unstarted",
                m.get("name", ""),
                ",".join(m.get("peerURLs") or []),
                ",".join(m.get("clientURLs") or []),
                str(bool(m.get("isLearner"))).lower(),
            ]
            for m in members
        ]
        if json_out:
            out.print_json(out.numbers(answer))
        elif args.write_out == "table":
            header = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
            out.line(out.table(header, rows))
        else:
            for row in rows:
                out.line(", ".join(row))
        return 0
    if what == "add":
        peers = [u.strip() for u in args.peer_urls.split(",") if u.strip()]
        added = client.member_add(peers, learner=args.learner)
        cluster_id = added.header.cluster_id
        out.line(f"Member {added.member.id:16x} added to cluster {cluster_id:16x}")
        parts: list[str] = []
        for m in added.members:
            name = args.name if m.id == added.member.id else m.name
            parts.extend(f"{name}={u}" for u in m.peer_urls)
        out.line(f"\nETCD_NAME={args.name!r}".replace("'", '"'))
        out.line(f'ETCD_INITIAL_CLUSTER="{",".join(parts)}"')
        out.line(f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{",".join(peers)}"')
        out.line('ETCD_INITIAL_CLUSTER_STATE="existing"')
        return 0
    if what == "remove":
        listed = client.member_remove(args.id)
        out.line(f"Member {args.id:16x} removed from cluster {listed.header.cluster_id:16x}")
    elif what == "update":
        peers = [u.strip() for u in args.peer_urls.split(",") if u.strip()]
        listed = client.member_update(args.id, peers)
        out.line(f"Member {args.id:16x} updated in cluster {listed.header.cluster_id:16x}")
    else:
        listed = client.member_promote(args.id)
        out.line(f"Member {args.id:16x} promoted in cluster {listed.header.cluster_id:16x}")
    return 0


def cmd_endpoint(client: Client, args: argparse.Namespace) -> int:
    targets = endpoints_for(client, args.cluster)
    if args.endpoint_command == "health":
        failed = 0
        results = []
        for url in targets:
            started = time.monotonic()
            try:
                call_on(client, url)
                took = time.monotonic() - started
                results.append({"endpoint": url, "health": True, "took": f"{took * 1000:.6f}ms"})
                if args.write_out != "json":
                    out.line(
                        f"{url} is healthy: successfully committed proposal: "
                        f"took = {took * 1000:.6f}ms"
                    )
            except EtcdError as exc:
                failed += 1
                results.append({"endpoint": url, "health": False, "error": str(exc)})
                out.error(f"{url} is unhealthy: failed to commit proposal: {exc}")
        if args.write_out == "json":
            out.print_json(results)
        if failed:
            out.error("Error: unhealthy cluster")
            return EXIT_ERROR
        return 0
    if args.endpoint_command == "hashkv":
        hashes = [(url, client.hash_kv(url, args.rev)) for url in targets]
        if args.write_out == "json":
            out.print_json([{"Endpoint": u, "HashKV": out.hash_json(h)} for u, h in hashes])
        elif args.write_out == "table":
            out.line(out.table(["ENDPOINT", "HASH"], [[u, str(h.hash)] for u, h in hashes]))
        else:
            for url, h in hashes:
                out.line(f"{url}, {h.hash}")
        return 0
    statuses = []
    for url in targets:
        answer = client.core.executor.execute(
            "POST",
            cluster_proto.STATUS,
            b"{}",
            raw_json,
            idempotent=True,
            deadline=client.core.executor.deadline(None),
            v3=True,
            endpoint=url,
        )
        statuses.append((url, answer))
    if args.write_out == "json":
        out.print_json([{"Endpoint": u, "Status": out.numbers(s)} for u, s in statuses])
        return 0
    rows = []
    for url, s in statuses:
        member_id = int((s.get("header") or {}).get("member_id", 0))
        rows.append(
            [
                url,
                f"{member_id:x}",
                str(s.get("version", "")),
                out.human_bytes(int(s.get("dbSize", 0))),
                str(int(s.get("leader", 0)) == member_id).lower(),
                str(bool(s.get("isLearner"))).lower(),
                str(int(s.get("raftTerm", 0))),
                str(int(s.get("raftIndex", 0))),
                str(int(s.get("raftAppliedIndex", 0))),
                ", ".join(s.get("errors") or []),
            ]
        )
    if args.write_out == "table":
        header = [
            "ENDPOINT",
            "ID",
            "VERSION",
            "DB SIZE",
            "IS LEADER",
            "IS LEARNER",
            "RAFT TERM",
            "RAFT INDEX",
            "RAFT APPLIED INDEX",
            "ERRORS",
        ]
        out.line(out.table(header, rows))
    else:
        for row in rows:
            out.line(", ".join(row[:-1]) + ", " + row[-1])
    return 0


COMMANDS = {"member": cmd_member, "endpoint": cmd_endpoint}
