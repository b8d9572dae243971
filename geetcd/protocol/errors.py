"""Turn an error answer of the gateway into a :mod:`geetcd.errors` exception (returned).

Two JSON shapes exist (ETCD-PROTOCOL.md §3.0): unary calls answer
``{"error": msg, "code": grpc_code, "message": msg}``; streams (watch, keepalive) answer
``{"error": {"grpc_code": .., "http_code": .., "message": .., "http_status": ..}}``.
Anything else (a proxy page, ``404 page not found``) is kept as text with the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

from geetcd.errors import CompactedRevision, EtcdError, error_from_status

__all__ = ["error_from_body", "error_from_object"]


def _code(value: object) -> int | None:
    """An integer status/code field, or None when it is missing or not an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (str, float)):
        try:
            return int(value)
        except (ValueError, OverflowError):  # "abc", NaN, 1e400
            return None
    return None


def error_from_object(
    obj: dict[str, Any], http_status: int | None, member: str | None
) -> EtcdError | None:
    """The exception for a decoded error object of either shape, or None if it is not one."""
    err = obj.get("error")
    if isinstance(err, dict):
        status = _code(err.get("http_code"))
        message = str(err.get("message", ""))
        return error_from_status(
            status if status is not None else http_status,
            _code(err.get("grpc_code")),
            message,
            member=member,
        )
    if err is None and "code" not in obj:
        return None
    message = str(obj.get("message") or err or "")
    return error_from_status(http_status, _code(obj.get("code")), message, member=member)


def error_from_body(http_status: int, body: bytes, member: str | None = None) -> EtcdError:
    """The exception for a non-200 answer. Never raises, whatever the bytes are."""
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        error = error_from_object(obj, http_status, member)
        if error is not None:
            return error
    message = text[:200] or f"HTTP {http_status} with an empty body"
    return error_from_status(http_status, None, message, member=member)


def compacted_from_watch(compact_revision: int, member: str | None) -> CompactedRevision:
    """The error for a watch canceled because its start revision was compacted."""
    return CompactedRevision(
        f"required revision has been compacted (compact_revision={compact_revision})",
        compact_revision=compact_revision,
        member=member,
    )
