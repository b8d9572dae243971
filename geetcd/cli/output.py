"""etcdctl's output formats, from the gateway's JSON answers, and the command line's one
output path: every byte a command writes goes through :func:`line`, :func:`print_json`,
:func:`kvs`, :func:`error` and :func:`progress` here (no I/O but ``print``).

``-w json`` is etcdctl's shape exactly: etcdctl marshals the Go protobuf structs with
``encoding/json``, so int64/uint64 are JSON numbers (the gateway sends strings), bytes are
base64, zero values are left out (``omitempty``; the gateway leaves them out too), a txn's
ops are wrapped as ``{"Response": {"response_put": ...}}`` (Go's oneof field), and
``lease grant`` / ``lease list`` / ``lease timetolive`` / ``lease keep-alive`` are flat:
the header fields sit at the top level (clientv3 embeds ``*pb.ResponseHeader``).
"""

from __future__ import annotations

import base64
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from geetcd.protocol.codec import b64

__all__ = [
    "error",
    "flush",
    "hash_json",
    "human_bytes",
    "kv_json",
    "kvs",
    "line",
    "numbers",
    "print_json",
    "progress",
    "table",
]

# Every int64/uint64 field name etcd answers with (as strings, through the gateway).
_INT_FIELDS = frozenset(
    {
        "cluster_id",
        "member_id",
        "revision",
        "raft_term",
        "create_revision",
        "mod_revision",
        "version",
        "lease",
        "count",
        "deleted",
        "compact_revision",
        "ID",
        "id",
        "TTL",
        "grantedTTL",
        "dbSize",
        "dbSizeInUse",
        "leader",
        "raftIndex",
        "raftTerm",
        "raftAppliedIndex",
        "memberID",
        "hash",
        "hash_revision",
        "remaining_bytes",
    }
)


def numbers(value: Any) -> Any:
    """The gateway's JSON with every int64 field (a string there) turned into a number."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _INT_FIELDS and isinstance(item, str) and item.lstrip("-").isdigit():
                out[key] = int(item)
            else:
                out[key] = numbers(item)
        return out
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def txn_json(answer: dict[str, Any]) -> dict[str, Any]:
    """A txn answer in etcdctl's shape (each op wrapped in ``{"Response": ...}``)."""
    out: dict[str, Any] = numbers(answer)
    if "responses" in out:
        out["responses"] = [{"Response": r} for r in out["responses"]]
    return out


def flat(answer: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """clientv3's embedded header: the header fields at the top, then ``fields``."""
    return {**numbers(answer.get("header") or {}), **fields}


def print_json(value: Any) -> None:
    """One compact line, as Go's json.Marshal writes it."""
    print(json.dumps(value, separators=(",", ":")))


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def show(data: bytes, hex_mode: bool) -> str:
    """Bytes as etcdctl prints them: raw (decoded leniently) or ``\\x..`` hex with --hex."""
    if hex_mode:
        return "".join(f"\\x{b:02x}" for b in data)
    return data.decode("utf-8", "surrogateescape")


def human_bytes(size: int) -> str:
    """go-humanize's Bytes (SI units): 20480 -> "20 kB"."""
    if size < 10:
        return f"{size} B"
    sizes = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    exp = min(math.floor(math.log(size) / math.log(1000)), len(sizes) - 1)
    value = math.floor(size / 1000**exp * 10 + 0.5) / 10
    return f"{value:.0f} {sizes[exp]}" if value >= 10 else f"{value:.1f} {sizes[exp]}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """olekukonko/tablewriter as etcdctl sets it up: borders, centered header, cells right
    aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def center(text: str, width: int) -> str:
        gap = width - len(text)
        left = gap // 2
        return " " * left + text + " " * (gap - left)

    titles = "|".join(f" {center(h, w)} " for h, w in zip(header, widths, strict=True))
    out = [line, f"|{titles}|", line]
    out.extend(
        "|" + "|".join(f" {c.rjust(w)} " for c, w in zip(row, widths, strict=True)) + "|"
        for row in rows
    )
    out.append(line)
    return "\n".join(out)


def fields_header(header: dict[str, Any]) -> list[str]:
    """etcdctl's ``-w fields`` header lines."""
    h = numbers(header)
    lines = [f'"ClusterID" : {h.get("cluster_id", 0)}', f'"MemberID" : {h.get("member_id", 0)}']
    if h.get("revision", 0) > 0:
        lines.append(f'"Revision" : {h["revision"]}')
    lines.append(f'"RaftTerm" : {h.get("raft_term", 0)}')
    return lines


def fields_kv(kv: dict[str, Any], prefix: str = "") -> list[str]:
    """etcdctl's ``-w fields`` lines for one key-value."""
    k = numbers(kv)
    return [
        f'"{prefix}Key" : {json.dumps(show(unb64(k.get("key")), False))}',
        f'"{prefix}CreateRevision" : {k.get("create_revision", 0)}',
        f'"{prefix}ModRevision" : {k.get("mod_revision", 0)}',
        f'"{prefix}Version" : {k.get("version", 0)}',
        f'"{prefix}Value" : {json.dumps(show(unb64(k.get("value")), False))}',
        f'"{prefix}Lease" : {k.get("lease", 0)}',
    ]


# ---------------------------------------------------------------------- the output path
def line(text: object = "") -> None:
    """One line on stdout."""
    print(text)


def error(text: object = "") -> None:
    """One line on stderr (errors, prompts, progress)."""
    print(text, file=sys.stderr)


def progress(text: str, tty: bool) -> None:
    """A progress line on stderr: rewritten in place on a terminal, one line each else."""
    print(("\r" if tty else "") + text, end="" if tty else "\n", file=sys.stderr)


def flush() -> None:
    """Flush stdout (streaming commands: watch, lease keep-alive, lock, elect)."""
    sys.stdout.flush()


def kvs(items: Sequence[dict[str, Any]], hex_mode: bool, value_only: bool = False) -> None:
    """Gateway key-values as etcdctl's simple output prints them: key line, value line."""
    for kv in items:
        if not value_only:
            print(show(unb64(kv.get("key")), hex_mode))
        print(show(unb64(kv.get("value")), hex_mode))


def kv_json(kv: Any) -> dict[str, Any]:
    """A :class:`geetcd.KeyValue` back in the gateway's JSON shape (key and value only)."""
    return {"key": b64(kv.key), "value": b64(kv.value)}


def hash_json(h: Any) -> dict[str, Any]:
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
