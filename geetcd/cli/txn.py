"""etcdctl's ``txn`` grammar, read from stdin (pure: lines in, gateway bodies out).

Three blocks, each ended by an empty line: compares, success ops, failure ops.

* a compare: ``<target>("<key>") <op> "<value>"`` with target ``val``/``value``,
  ``ver``/``version``, ``c``/``create``, ``m``/``mod`` or ``lease`` and op ``=``, ``!=``,
  ``<``, ``>`` (the value is quoted even when it is a number, as etcdctl wants);
* an op: ``put KEY VALUE [--lease=ID] [--prev-kv]``, ``get KEY [END] [--prefix]
  [--from-key] [--limit N] [--rev N] [--keys-only] [--count-only]``,
  ``del KEY [END] [--prefix] [--from-key] [--prev-kv]`` (shell quoting as etcdctl's).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
from collections.abc import Iterable
from typing import Any

from geetcd.errors import InvalidArgument
from geetcd.protocol.codec import prefix_end

__all__ = ["TxnSyntaxError", "parse_compare", "parse_op", "parse_txn"]

_COMPARE = re.compile(r'^\s*(\w+)\("((?:[^"\\]|\\.)*)"\)\s*(=|!=|<|>)\s*("(?:[^"\\]|\\.)*")\s*$')
_TARGETS = {
    "val": "VALUE",
    "value": "VALUE",
    "ver": "VERSION",
    "version": "VERSION",
    "c": "CREATE",
    "create": "CREATE",
    "m": "MOD",
    "mod": "MOD",
    "lease": "LEASE",
}
_FIELDS = {
    "VALUE": "value",
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "LEASE": "lease",
}
_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


class TxnSyntaxError(InvalidArgument):
    """A line of the txn input that etcdctl's grammar does not accept."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_compare(line: str) -> dict[str, Any]:
    """One compare line as a gateway Compare."""
    match = _COMPARE.match(line)
    if match is None:
        raise TxnSyntaxError(f"malformed comparison: {line}")
    target_word, key, op, quoted = match.groups()
    target = _TARGETS.get(target_word)
    if target is None:
        raise TxnSyntaxError(f"malformed comparison: {line} (unknown target {target_word})")
    value: str = json.loads(quoted)
    body: dict[str, Any] = {
        "key": b64(json.loads(f'"{key}"').encode()),
        "target": target,
        "result": _RESULTS[op],
    }
    if target == "VALUE":
        body["value"] = b64(value.encode())
    else:
        try:
            body[_FIELDS[target]] = str(int(value))
        except ValueError:
            raise TxnSyntaxError(f"malformed comparison: {line} (not a number)") from None
    return body


class _OpParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never exits: a syntax error of the txn
        raise TxnSyntaxError(message)


def _op_parsers() -> dict[str, _OpParser]:
    put = _OpParser(prog="put", add_help=False)
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--lease", default="0")
    put.add_argument("--prev-kv", action="store_true")
    get = _OpParser(prog="get", add_help=False)
    get.add_argument("key")
    get.add_argument("end", nargs="?")
    for flag in ("--prefix", "--from-key", "--keys-only", "--count-only"):
        get.add_argument(flag, action="store_true")
    get.add_argument("--limit", type=int, default=0)
    get.add_argument("--rev", type=int, default=0)
    delete = _OpParser(prog="del", add_help=False)
    delete.add_argument("key")
    delete.add_argument("end", nargs="?")
    for flag in ("--prefix", "--from-key", "--prev-kv"):
        delete.add_argument(flag, action="store_true")
    return {"put": put, "get": get, "del": delete}


_PARSERS = _op_parsers()


def range_end(key: bytes, end: str | None, prefix: bool, from_key: bool) -> bytes | None:
    """etcdctl's range end: explicit END, --prefix, --from-key (``\\0``) or none."""
    if prefix:
        return prefix_end(key) if key else b"\0"
    if from_key:
        return b"\0"
    return end.encode() if end is not None else None


def parse_op(line: str) -> dict[str, Any]:
    """One op line as a gateway RequestOp."""
    words = shlex.split(line)
    if not words or words[0] not in _PARSERS:
        raise TxnSyntaxError(f"invalid txn op: {line!r} (put, get or del)")
    args = _PARSERS[words[0]].parse_args(words[1:])
    key = args.key.encode()
    body: dict[str, Any] = {"key": b64(key)}
    if words[0] == "put":
        body["value"] = b64(args.value.encode())
        lease = int(args.lease, 16)
        if lease:
            body["lease"] = str(lease)
        if args.prev_kv:
            body["prev_kv"] = True
        return {"request_put": body}
    end = range_end(key, args.end, args.prefix, args.from_key)
    if end is not None:
        body["range_end"] = b64(end)
    if words[0] == "get":
        for flag in ("keys_only", "count_only"):
            if getattr(args, flag):
                body[flag] = True
        if args.limit:
            body["limit"] = str(args.limit)
        if args.rev:
            body["revision"] = str(args.rev)
        return {"request_range": body}
    if args.prev_kv:
        body["prev_kv"] = True
    return {"request_delete_range": body}


def parse_txn(lines: Iterable[str]) -> dict[str, Any]:
    """The three blocks of etcdctl's txn input as a gateway TxnRequest body."""
    blocks: list[list[str]] = [[], [], []]
    index = 0
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            index += 1
            if index == 3:
                break
            continue
        blocks[index].append(line)
    body: dict[str, Any] = {}
    compares = [parse_compare(line) for line in blocks[0]]
    success = [parse_op(line) for line in blocks[1]]
    failure = [parse_op(line) for line in blocks[2]]
    if compares:
        body["compare"] = compares
    if success:
        body["success"] = success
    if failure:
        body["failure"] = failure
    return body


def has_writes(body: dict[str, Any]) -> bool:
    """True if any op of the txn writes (it is then not idempotent)."""
    ops = list(body.get("success", ())) + list(body.get("failure", ()))
    return any("request_range" not in op for op in ops)
