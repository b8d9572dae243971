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
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import gevent
import gevent.event

from geetcd.cli import auth_commands
from geetcd.cli import output as out
from geetcd.cli.txn import has_writes, parse_txn, range_end
from geetcd.client import Client
from geetcd.config import TLS
from geetcd.errors import EtcdError, InvalidArgument
from geetcd.protocol import cluster as cluster_proto
from geetcd.protocol import kv as kv_proto
from geetcd.protocol import lease as lease_proto
from geetcd.protocol.codec import b64

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_BAD_ARGS = 128


class UsageError(Exception):
    """Bad command line: exit code 128."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration ("5s", "500ms", "1m30s") or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def hex_id(text: str) -> int:
    """A member or lease id in hex, as etcdctl takes them."""
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad ID {text!r} (hex expected)") from None


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"GEETCD_{name}", default)


def _env_bool(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes")


# ---------------------------------------------------------------------- the parser
def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--endpoints", default=default(_env("ENDPOINTS", "127.0.0.1:2379")))
    parser.add_argument(
        "--dial-timeout",
        type=duration,
        default=default(duration(_env("DIAL_TIMEOUT", "2s") or "2s")),
    )
    parser.add_argument(
        "--command-timeout",
        type=duration,
        default=default(duration(_env("COMMAND_TIMEOUT", "5s") or "5s")),
    )
    for name in ("cacert", "cert", "key", "user", "password"):  # dest: tls_key, not key
        parser.add_argument(f"--{name}", dest=f"tls_{name}", default=default(_env(name.upper())))
    parser.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        default=default(_env_bool("INSECURE_SKIP_TLS_VERIFY")),
    )
    parser.add_argument(
        "-w",
        "--write-out",
        choices=("simple", "json", "table", "fields"),
        default=default(_env("WRITE_OUT", "simple")),
    )
    parser.add_argument("--hex", action="store_true", default=default(_env_bool("HEX")))


def build_parser() -> _Parser:
    """The whole command grammar."""
    parser = _Parser(prog="geetcd", description="A command line for etcd v3, shaped like etcdctl.")
    _add_globals(parser, suppress=False)
    # The same flags after the command (etcdctl's cobra takes them anywhere): without
    # defaults there, so that they only override when given.
    common = _Parser(add_help=False)
    _add_globals(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    lease = sub.add_parser("lease", parents=[common]).add_subparsers(
        dest="lease_command", required=True, parser_class=_Parser
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

    lock = sub.add_parser("lock", parents=[common])
    lock.add_argument("name")
    lock.add_argument("exec", nargs="*")
    lock.add_argument("--ttl", type=int, default=10)

    elect = sub.add_parser("elect", parents=[common])
    elect.add_argument("name")
    elect.add_argument("proposal", nargs="?")
    elect.add_argument("-l", "--listen", action="store_true")

    member = sub.add_parser("member", parents=[common]).add_subparsers(
        dest="member_command", required=True, parser_class=_Parser
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
        dest="endpoint_command", required=True, parser_class=_Parser
    )
    for name in ("health", "status", "hashkv"):
        parsed = endpoint.add_parser(name, parents=[common])
        parsed.add_argument("--cluster", action="store_true")
        if name == "hashkv":
            parsed.add_argument("--rev", type=int, default=0)

    alarm = sub.add_parser("alarm", parents=[common]).add_subparsers(
        dest="alarm_command", required=True, parser_class=_Parser
    )
    alarm.add_parser("list", parents=[common])
    alarm.add_parser("disarm", parents=[common])

    defrag = sub.add_parser("defrag", parents=[common])
    defrag.add_argument("--cluster", action="store_true")

    snapshot = sub.add_parser("snapshot", parents=[common]).add_subparsers(
        dest="snapshot_command", required=True, parser_class=_Parser
    )
    snapshot.add_parser("save", parents=[common]).add_argument("filename")

    sub.add_parser("move-leader", parents=[common]).add_argument("id", type=hex_id)
    auth_commands.add_parsers(sub, common, _Parser)
    return parser


# ---------------------------------------------------------------------- helpers
def make_client(args: argparse.Namespace) -> Client:
    """The client the global flags describe."""
    tls = None
    if args.tls_cacert or args.tls_cert or args.tls_key or args.insecure_skip_tls_verify:
        tls = TLS(
            ca_file=args.tls_cacert,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            verify=not args.insecure_skip_tls_verify,
        )
    user, password = args.tls_user, args.tls_password
    if user is not None and password is None and ":" in user:
        user, password = user.split(":", 1)
    endpoints = args.endpoints
    if tls is not None:  # etcdctl dials TLS when given certificates
        endpoints = ",".join(
            e if "://" in e else f"https://{e}" for e in endpoints.split(",") if e.strip()
        )
    return Client(
        endpoints,
        timeout=args.command_timeout,
        attempt_timeout=args.command_timeout,
        connect_timeout=args.dial_timeout,
        tls=tls,
        user=user,
        password=password,
    )


def call(client: Client, path: str, body: dict[str, Any], *, idempotent: bool) -> Any:
    """One gateway call through the client's attempt loop; the raw JSON answer."""
    return client.core.call(path, body, lambda obj: obj, idempotent=idempotent)


def _range_body(args: argparse.Namespace) -> dict[str, Any]:
    key = args.key.encode()
    body: dict[str, Any] = {"key": b64(key)}
    end = range_end(key, args.range_end, args.prefix, args.from_key)
    if end is not None:
        body["range_end"] = b64(end)
    return body


def _print_kvs(kvs: Sequence[dict[str, Any]], hex_mode: bool, value_only: bool = False) -> None:
    for kv in kvs:
        if not value_only:
            print(out.show(out.unb64(kv.get("key")), hex_mode))
        print(out.show(out.unb64(kv.get("value")), hex_mode))


# ---------------------------------------------------------------------- KV commands
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
        print("\n".join(lines))
    else:
        _print_kvs(kvs, args.hex, args.print_value_only)
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
        print("\n".join(lines))
    else:
        print("OK")
        if answer.get("prev_kv"):
            _print_kvs([answer["prev_kv"]], args.hex)
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
        print("\n".join(lines))
    else:
        print(int(answer.get("deleted", 0)))
        _print_kvs(answer.get("prev_kvs") or [], args.hex)
    return 0


def cmd_txn(client: Client, args: argparse.Namespace) -> int:
    if args.interactive:
        print("compares:", file=sys.stderr)
    body = parse_txn(sys.stdin)
    answer = call(client, kv_proto.TXN, body, idempotent=not has_writes(body))
    if args.write_out == "json":
        out.print_json(out.txn_json(answer))
        return 0
    print("SUCCESS" if answer.get("succeeded") else "FAILURE")
    for response in answer.get("responses") or []:
        print("")
        if "response_put" in response:
            print("OK")
        elif "response_range" in response:
            _print_kvs(response["response_range"].get("kvs") or [], args.hex)
        else:
            print(int(response.get("response_delete_range", {}).get("deleted", 0)))
    return 0


def cmd_compaction(client: Client, args: argparse.Namespace) -> int:
    client.compact(args.revision, physical=args.physical)
    print(f"compacted revision {args.revision}")
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
                print(kind)
                if event.prev_kv is not None:
                    _print_kvs([_kv_json(event.prev_kv)], args.hex)
                _print_kvs([_kv_json(event.kv)], args.hex)
            sys.stdout.flush()
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


def _kv_json(kv: Any) -> dict[str, Any]:
    return {"key": b64(kv.key), "value": b64(kv.value)}


# ---------------------------------------------------------------------- lease
def cmd_lease(client: Client, args: argparse.Namespace) -> int:
    what = args.lease_command
    json_out = args.write_out == "json"
    if what == "grant":
        answer = call(client, lease_proto.GRANT, {"TTL": str(args.ttl)}, idempotent=False)
        lease_id, ttl = int(answer.get("ID", 0)), int(answer.get("TTL", 0))
        if json_out:
            out.print_json(out.flat(answer, {"ID": lease_id, "TTL": ttl, "Error": ""}))
        else:
            print(f"lease {lease_id:016x} granted with TTL({ttl}s)")
    elif what == "revoke":
        answer = call(client, lease_proto.REVOKE, {"ID": str(args.id)}, idempotent=True)
        if json_out:
            out.print_json(out.numbers(answer))
        else:
            print(f"lease {args.id:016x} revoked")
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
            print(f"lease {args.id:016x} already expired")
        else:
            text = f"lease {args.id:016x} granted with TTL({granted}s), remaining({ttl}s)"
            if args.keys:
                shown = " ".join(k.decode("utf-8", "surrogateescape") for k in keys)
                text += f", attached keys([{shown}])"
            print(text)
    elif what == "list":
        answer = call(client, lease_proto.LEASES, {}, idempotent=True)
        ids = [int(item.get("ID", 0)) for item in answer.get("leases") or []]
        if json_out:
            leases = [{"id": i} for i in ids]
            out.print_json(out.flat(answer, {"leases": leases} if leases else {}))
        else:
            print(f"found {len(ids)} leases")
            for i in ids:
                print(f"{i:016x}")
    else:  # keep-alive
        while True:
            info = client.lease_time_to_live(args.id)
            if info.ttl == -1:
                print(f"lease {args.id:016x} expired or revoked.")
                return 0
            answer = call(client, lease_proto.KEEPALIVE, {"ID": str(args.id)}, idempotent=True)
            result = answer.get("result", answer)
            ttl = int(result.get("TTL", 0))
            if json_out:
                out.print_json(out.flat(result, {"ID": args.id, "TTL": ttl}))
            else:
                print(f"lease {args.id:016x} keepalived with TTL({ttl})")
            sys.stdout.flush()
            if args.once:
                return 0
            gevent.sleep(max(0.5, ttl / 3))
    return 0


# ---------------------------------------------------------------------- lock / elect
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
        print(key)
        sys.stdout.flush()
        _wait_for_signal()
        return 0
    finally:
        lock.release()


def cmd_elect(client: Client, args: argparse.Namespace) -> int:
    election = client.election(args.name)
    if args.listen or args.proposal is None:
        for kv in election.observe():
            print(kv.key.decode("utf-8", "surrogateescape"))
            print(kv.value.decode("utf-8", "surrogateescape"))
            sys.stdout.flush()
        return 0
    election.campaign(args.proposal)
    try:
        leader = election.leader()
        if leader is not None:
            print(leader.key.decode("utf-8", "surrogateescape"))
            print(leader.value.decode("utf-8", "surrogateescape"))
        sys.stdout.flush()
        _wait_for_signal()
        return 0
    finally:
        election.resign()


# ---------------------------------------------------------------------- cluster
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
            print(out.table(header, rows))
        else:
            for row in rows:
                print(", ".join(row))
        return 0
    if what == "add":
        peers = [u.strip() for u in args.peer_urls.split(",") if u.strip()]
        added = client.member_add(peers, learner=args.learner)
        cluster_id = added.header.cluster_id
        print(f"Member {added.member.id:16x} added to cluster {cluster_id:16x}")
        parts: list[str] = []
        for m in added.members:
            name = args.name if m.id == added.member.id else m.name
            parts.extend(f"{name}={u}" for u in m.peer_urls)
        print(f"\nETCD_NAME={args.name!r}".replace("'", '"'))
        print(f'ETCD_INITIAL_CLUSTER="{",".join(parts)}"')
        print(f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{",".join(peers)}"')
        print('ETCD_INITIAL_CLUSTER_STATE="existing"')
        return 0
    if what == "remove":
        listed = client.member_remove(args.id)
        print(f"Member {args.id:16x} removed from cluster {listed.header.cluster_id:16x}")
    elif what == "update":
        peers = [u.strip() for u in args.peer_urls.split(",") if u.strip()]
        listed = client.member_update(args.id, peers)
        print(f"Member {args.id:16x} updated in cluster {listed.header.cluster_id:16x}")
    else:
        listed = client.member_promote(args.id)
        print(f"Member {args.id:16x} promoted in cluster {listed.header.cluster_id:16x}")
    return 0


def _targets(client: Client, cluster: bool) -> list[str]:
    """The endpoints a per-member command talks to: the given ones, or every member's."""
    if not cluster:
        return client.endpoints
    client.sync_members()
    return client.endpoints


def cmd_endpoint(client: Client, args: argparse.Namespace) -> int:
    targets = _targets(client, args.cluster)
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
                    print(
                        f"{url} is healthy: successfully committed proposal: "
                        f"took = {took * 1000:.6f}ms"
                    )
            except EtcdError as exc:
                failed += 1
                results.append({"endpoint": url, "health": False, "error": str(exc)})
                print(f"{url} is unhealthy: failed to commit proposal: {exc}", file=sys.stderr)
        if args.write_out == "json":
            out.print_json(results)
        if failed:
            print("Error: unhealthy cluster", file=sys.stderr)
            return EXIT_ERROR
        return 0
    if args.endpoint_command == "hashkv":
        hashes = [(url, client.hash_kv(url, args.rev)) for url in targets]
        if args.write_out == "json":
            out.print_json([{"Endpoint": u, "HashKV": _hash_json(h)} for u, h in hashes])
        elif args.write_out == "table":
            print(out.table(["ENDPOINT", "HASH"], [[u, str(h.hash)] for u, h in hashes]))
        else:
            for url, h in hashes:
                print(f"{url}, {h.hash}")
        return 0
    statuses = []
    for url in targets:
        answer = client.core.executor.execute(
            "POST",
            cluster_proto.STATUS,
            b"{}",
            _raw_json,
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
        print(out.table(header, rows))
    else:
        for row in rows:
            print(", ".join(row[:-1]) + ", " + row[-1])
    return 0


def _hash_json(h: Any) -> dict[str, Any]:
    """A HashKV in etcdctl's JSON shape (zero fields left out)."""
    header = {
        k: v
        for k, v in (
            ("cluster_id", h.header.cluster_id),
            ("member_id", h.header.member_id),
            ("revision", h.header.revision),
            ("raft_term", h.header.raft_term),
        )
        if v
    }
    body: dict[str, Any] = {"header": header}
    for name in ("hash", "compact_revision", "hash_revision"):
        if getattr(h, name):
            body[name] = getattr(h, name)
    return body


def _raw_json(response: Any, member: Any) -> dict[str, Any]:
    from geetcd._executor import parse_answer
    from geetcd.protocol.errors import error_from_body

    if response.status == 200:
        result: dict[str, Any] = parse_answer(lambda obj: obj, response.data, member.url)
        return result
    raise error_from_body(response.status, response.data, member.url)


def call_on(client: Client, url: str) -> dict[str, Any]:
    """etcdctl's health check on one member: a linearizable get of "health"."""
    body = {"key": b64(b"health")}
    return client.core.executor.execute(
        "POST",
        kv_proto.RANGE,
        json.dumps(body).encode(),
        _raw_json,
        idempotent=True,
        deadline=client.core.executor.deadline(None),
        v3=True,
        endpoint=url,
    )


def cmd_alarm(client: Client, args: argparse.Namespace) -> int:
    alarms = client.alarm_list() if args.alarm_command == "list" else client.alarm_disarm()
    for a in alarms:
        print(f"memberID:{a.member_id} alarm:{a.alarm} ")
    return 0


def cmd_defrag(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for url in _targets(client, args.cluster):
        try:
            client.defragment(url)
            print(f"Finished defragmenting etcd member[{url}]")
        except EtcdError as exc:
            failed = True
            print(f"Failed to defragment etcd member[{url}] ({exc})", file=sys.stderr)
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
        print(("\r" if tty else "") + text, end="" if tty else "\n", file=sys.stderr)

    info = client.snapshot(args.filename, endpoint=endpoints[0], progress=progress, timeout=3600)
    if tty:
        print(file=sys.stderr)
    print(
        f"Snapshot saved at {args.filename} ({out.human_bytes(info.size)} in "
        f"{info.seconds:.2f}s, {out.human_bytes(int(info.rate))}/s)"
    )
    return 0


def cmd_move_leader(client: Client, args: argparse.Namespace) -> int:
    before = client.status().leader or 0
    client.move_leader(args.id)
    print(f"Leadership transferred from {before:x} to {args.id:x}")
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "get": cmd_get,
    "put": cmd_put,
    "del": cmd_del,
    "txn": cmd_txn,
    "compaction": cmd_compaction,
    "watch": cmd_watch,
    "lease": cmd_lease,
    "lock": cmd_lock,
    "elect": cmd_elect,
    "member": cmd_member,
    "endpoint": cmd_endpoint,
    "alarm": cmd_alarm,
    "defrag": cmd_defrag,
    "snapshot": cmd_snapshot,
    "move-leader": cmd_move_leader,
    "user": auth_commands.cmd_user,
    "role": auth_commands.cmd_role,
    "auth": auth_commands.cmd_auth,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``geetcd`` console script; returns the exit status (0, 1 or 128)."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except InvalidArgument as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    try:
        return COMMANDS[args.command](client, args)
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except EtcdError as exc:
        print(f"Error: {exc.message if exc.message else exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
