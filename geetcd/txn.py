"""Transaction builders: ``Compare`` conditions and ``Op`` operations.

    Compare.value("k") == b"x"        Compare.version("k") > 0
    Compare.create_revision("k") == 0 Compare.mod_revision("k") < 42
    Compare.lease("k") == lease_id    (each with optional range_end=...)

    Op.get(key, ...), Op.put(key, value, ...), Op.delete(key, ...),
    Op.txn(compare, success, failure)

Builders validate their arguments at once (InvalidArgument / InvalidType) and hold plain
values; the client encodes them (with its namespace) when the transaction is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from geetcd.errors import InvalidType, TooManyOperations
from geetcd.protocol.codec import Keyspace, b64, to_bytes
from geetcd.protocol.kv import (
    RangeOptions,
    check_bool,
    check_int,
    delete_body,
    put_body,
    range_body,
)

__all__ = ["Compare", "Comparison", "Op", "OpDelete", "OpGet", "OpPut", "OpTxn", "TxnOp"]

MAX_TXN_OPS = 128


class _Target(enum.Enum):
    VERSION = ("VERSION", "version")
    CREATE = ("CREATE", "create_revision")
    MOD = ("MOD", "mod_revision")
    VALUE = ("VALUE", "value")
    LEASE = ("LEASE", "lease")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One compare of a transaction (built by :class:`Compare`, not by hand)."""

    key: object
    range_end: object
    target: str
    field: str
    result: str
    operand: int | bytes

    def to_json(self, ks: Keyspace) -> dict[str, Any]:
        """The wire form, keys mapped through ``ks``."""
        wire = ks.key(self.key)
        body: dict[str, Any] = {"key": b64(wire), "target": self.target, "result": self.result}
        end = ks.range_end(wire, self.range_end, False)
        if end is not None:
            body["range_end"] = b64(end)
        if isinstance(self.operand, bytes):
            body[self.field] = b64(self.operand)
        else:
            body[self.field] = self.operand
        return body


class Compare:
    """Start of a compare: ``Compare.value(key) == b"x"`` and the like.

    ``==``, ``!=``, ``<`` and ``>`` return a :class:`Comparison`; an instance is not a bool.
    """

    __slots__ = ("_key", "_range_end", "_target")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, key: object, target: _Target, range_end: object = None) -> None:
        _check_key(key)
        if range_end is not None:
            to_bytes(range_end, "range_end")
        self._key = key
        self._target = target
        self._range_end = range_end

    @classmethod
    def value(cls, key: object, range_end: object = None) -> Compare:
        """Compare the value (operand: str or bytes)."""
        return cls(key, _Target.VALUE, range_end)

    @classmethod
    def version(cls, key: object, range_end: object = None) -> Compare:
        """Compare the version (0 = the key does not exist)."""
        return cls(key, _Target.VERSION, range_end)

    @classmethod
    def create_revision(cls, key: object, range_end: object = None) -> Compare:
        """Compare the create revision (0 = the key does not exist)."""
        return cls(key, _Target.CREATE, range_end)

    @classmethod
    def mod_revision(cls, key: object, range_end: object = None) -> Compare:
        """Compare the last modification revision."""
        return cls(key, _Target.MOD, range_end)

    @classmethod
    def lease(cls, key: object, range_end: object = None) -> Compare:
        """Compare the attached lease id (0 = none)."""
        return cls(key, _Target.LEASE, range_end)

    def _make(self, result: str, operand: object) -> Comparison:
        target_name, field = self._target.value
        value: int | bytes
        if self._target is _Target.VALUE:
            value = to_bytes(operand, "compare value")
        else:
            if isinstance(operand, bool) or not isinstance(operand, int):
                raise InvalidType(
                    f"Compare.{field} needs an int operand, got {type(operand).__name__}"
                )
            value = operand
        return Comparison(self._key, self._range_end, target_name, field, result, value)

    def __eq__(self, other: object) -> Comparison:  # type: ignore[override]
        return self._make("EQUAL", other)

    def __ne__(self, other: object) -> Comparison:  # type: ignore[override]
        return self._make("NOT_EQUAL", other)

    def __lt__(self, other: object) -> Comparison:
        return self._make("LESS", other)

    def __gt__(self, other: object) -> Comparison:
        return self._make("GREATER", other)

    def __repr__(self) -> str:
        return f"Compare.{self._target.value[1]}({self._key!r})"


@dataclass(frozen=True, slots=True)
class OpGet:
    """A range inside a transaction."""

    key: object
    range_end: object = None
    prefix: bool = False
    options: RangeOptions = field(default_factory=RangeOptions)

    def to_json(self, ks: Keyspace) -> dict[str, Any]:
        key, end = ks.span(self.key, self.range_end, self.prefix)
        return {"request_range": range_body(key, end, self.options)}


@dataclass(frozen=True, slots=True)
class OpPut:
    """A put inside a transaction."""

    key: object
    value: bytes
    lease: int = 0
    prev_kv: bool = False

    def to_json(self, ks: Keyspace) -> dict[str, Any]:
        body = put_body(ks.key(self.key), self.value, lease=self.lease, prev_kv=self.prev_kv)
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class OpDelete:
    """A delete-range inside a transaction."""

    key: object
    range_end: object = None
    prefix: bool = False
    prev_kv: bool = False

    def to_json(self, ks: Keyspace) -> dict[str, Any]:
        key, end = ks.span(self.key, self.range_end, self.prefix)
        return {"request_delete_range": delete_body(key, end, prev_kv=self.prev_kv)}


@dataclass(frozen=True, slots=True)
class OpTxn:
    """A nested transaction."""

    compare: tuple[Comparison, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]

    def to_json(self, ks: Keyspace) -> dict[str, Any]:
        return {"request_txn": txn_body(self.compare, self.success, self.failure, ks)}


TxnOp: TypeAlias = OpGet | OpPut | OpDelete | OpTxn


def _check_key(key: object) -> None:
    """InvalidType for a non-str/bytes key, InvalidArgument for an empty one."""
    Keyspace().key(key)


def lease_id(lease: object) -> int:
    """A lease id from an int or any object with an int ``id`` (a Lease); 0 means none."""
    if lease is None:
        return 0
    value = getattr(lease, "id", lease)
    return check_int(value, "lease")


class Op:
    """Operation builders for :meth:`geetcd.Client.txn`."""

    @staticmethod
    def get(
        key: object,
        range_end: object = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> OpGet:
        """A range read; validated now (an empty key only with ``prefix=True``)."""
        if not prefix:
            _check_key(key)
        options = RangeOptions(
            limit=check_int(limit, "limit"),
            keys_only=check_bool(keys_only, "keys_only"),
            count_only=check_bool(count_only, "count_only"),
        )
        return OpGet(key, range_end, check_bool(prefix, "prefix"), options)

    @staticmethod
    def put(key: object, value: object, *, lease: object = None, prev_kv: bool = False) -> OpPut:
        """A put; validated now."""
        _check_key(key)
        return OpPut(key, to_bytes(value, "value"), lease_id(lease), check_bool(prev_kv, "prev_kv"))

    @staticmethod
    def delete(
        key: object, range_end: object = None, *, prefix: bool = False, prev_kv: bool = False
    ) -> OpDelete:
        """A delete-range; validated now (an empty key only with ``prefix=True``)."""
        if not prefix:
            _check_key(key)
        return OpDelete(
            key, range_end, check_bool(prefix, "prefix"), check_bool(prev_kv, "prev_kv")
        )

    @staticmethod
    def txn(
        compare: Sequence[Comparison] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> OpTxn:
        """A nested transaction; validated now."""
        return OpTxn(*check_txn(compare, success, failure))


def check_txn(
    compare: Sequence[Comparison], success: Sequence[TxnOp], failure: Sequence[TxnOp]
) -> tuple[tuple[Comparison, ...], tuple[TxnOp, ...], tuple[TxnOp, ...]]:
    """Validate the three lists of a transaction; InvalidType names the offending item.

    Each of the three must be a list or tuple (a single Comparison/Op or None is refused
    with InvalidType, which says to wrap it in a list).
    """
    for name, items in (("compare", compare), ("success", success), ("failure", failure)):
        if not isinstance(items, (list, tuple)):
            raise InvalidType(
                f"txn {name} must be a list or tuple (e.g. [Compare.value(k) == v]), "
                f"got {type(items).__name__}"
            )
    for item in compare:
        if not isinstance(item, Comparison):
            raise InvalidType(
                f"txn compare items must come from geetcd.Compare (e.g. Compare.value(k) == v), "
                f"got {item!r}"
            )
    for name, ops in (("success", success), ("failure", failure)):
        for op in ops:
            if not isinstance(op, (OpGet, OpPut, OpDelete, OpTxn)):
                raise InvalidType(f"txn {name} items must come from geetcd.Op, got {op!r}")
    if max(len(success), len(failure)) > MAX_TXN_OPS:
        raise TooManyOperations(f"a txn branch may hold at most {MAX_TXN_OPS} operations")
    return tuple(compare), tuple(success), tuple(failure)


def txn_body(
    compare: Sequence[Comparison],
    success: Sequence[TxnOp],
    failure: Sequence[TxnOp],
    ks: Keyspace,
) -> dict[str, Any]:
    """The JSON body of a TxnRequest (empty lists are not sent)."""
    body: dict[str, Any] = {}
    if compare:
        body["compare"] = [c.to_json(ks) for c in compare]
    if success:
        body["success"] = [op.to_json(ks) for op in success]
    if failure:
        body["failure"] = [op.to_json(ks) for op in failure]
    return body
