"""geetcd.txn: Compare / Op builders and the wire JSON of a TxnRequest (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from geetcd import Compare, Comparison, Op
from geetcd.errors import InvalidArgument, InvalidType, TooManyOperations
from geetcd.protocol.codec import Keyspace, b64, encode_json
from geetcd.txn import OpDelete, OpGet, OpPut, OpTxn, TxnOp, check_txn, lease_id, txn_body

PLAIN = Keyspace()
NS = Keyspace(b"/ns/")

# Compare constructor, wire target name, wire operand field, a valid operand, its wire form
TARGETS: list[tuple[Callable[..., Compare], str, str, object, object]] = [
    (Compare.value, "VALUE", "value", "v1", b64(b"v1")),
    (Compare.version, "VERSION", "version", 3, 3),
    (Compare.create_revision, "CREATE", "create_revision", 0, 0),
    (Compare.mod_revision, "MOD", "mod_revision", 1000, 1000),
    (Compare.lease, "LEASE", "lease", 7282217346993512239, 7282217346993512239),
]
OPERATORS: list[tuple[Callable[[Compare, object], Any], str]] = [
    (lambda c, v: c == v, "EQUAL"),
    (lambda c, v: c != v, "NOT_EQUAL"),
    (lambda c, v: c < v, "LESS"),
    (lambda c, v: c > v, "GREATER"),
]


@pytest.mark.parametrize(("make", "target", "field", "operand", "wire_operand"), TARGETS)
@pytest.mark.parametrize(("apply", "result"), OPERATORS)
def test_compare_every_target_and_operator(
    make: Callable[..., Compare],
    target: str,
    field: str,
    operand: object,
    wire_operand: object,
    apply: Callable[[Compare, object], Any],
    result: str,
) -> None:
    comparison = apply(make("k"), operand)
    assert isinstance(comparison, Comparison)
    assert comparison.target == target and comparison.result == result
    assert comparison.to_json(PLAIN) == {
        "key": b64(b"k"),
        "target": target,
        "result": result,
        field: wire_operand,
    }
    assert comparison.to_json(NS)["key"] == b64(b"/ns/k")


@pytest.mark.parametrize(("make", "target", "field", "operand", "wire_operand"), TARGETS)
def test_compare_with_range_end(
    make: Callable[..., Compare],
    target: str,
    field: str,
    operand: object,
    wire_operand: object,
) -> None:
    comparison = make("a", range_end="c") == operand
    assert comparison.to_json(PLAIN) == {
        "key": b64(b"a"),
        "range_end": b64(b"c"),
        "target": target,
        "result": "EQUAL",
        field: wire_operand,
    }
    assert comparison.to_json(NS)["range_end"] == b64(b"/ns/c")
    # "\0" = to the end: the end of the namespace when there is one
    to_end = make("a", range_end="\0") == operand
    assert to_end.to_json(PLAIN)["range_end"] == b64(b"\0")
    assert to_end.to_json(NS)["range_end"] == b64(b"/ns0")


def test_reflected_comparisons_keep_their_meaning() -> None:
    # 0 < version  <=>  version > 0
    reflected = 0 < Compare.version("k")  # noqa: SIM300 - the reflected form is the test
    assert isinstance(reflected, Comparison) and reflected.result == "GREATER"
    assert (5 > Compare.mod_revision("k")).result == "LESS"  # noqa: SIM300
    equal: Any = 0 == Compare.create_revision("k")  # noqa: SIM300
    assert equal.result == "EQUAL"


def test_value_compare_accepts_str_and_bytes() -> None:
    assert (Compare.value("k") == "é").operand == b"\xc3\xa9"
    assert (Compare.value(b"k") == b"\x00\xff").to_json(PLAIN)["value"] == b64(b"\x00\xff")
    assert (Compare.value("k") == "").to_json(PLAIN)["value"] == ""


@pytest.mark.parametrize("operand", [1, None, 1.5, True])
def test_value_compare_refuses_non_bytes(operand: object) -> None:
    with pytest.raises(InvalidType):
        Compare.value("k") == operand  # noqa: B015


@pytest.mark.parametrize(
    "make", [Compare.version, Compare.create_revision, Compare.mod_revision, Compare.lease]
)
@pytest.mark.parametrize("operand", ["1", b"1", 1.0, None, True, False])
def test_numeric_compares_refuse_non_ints(make: Callable[..., Compare], operand: object) -> None:
    with pytest.raises(InvalidType) as info:
        make("k") > operand  # noqa: B015
    assert isinstance(info.value, TypeError)


def test_compare_refuses_bad_keys() -> None:
    with pytest.raises(InvalidType):
        Compare.value(5)
    with pytest.raises(InvalidType):
        Compare.version("k", range_end=5)
    # an empty key is refused when the txn is encoded, before anything is sent
    with pytest.raises(InvalidArgument):
        (Compare.version("") == 0).to_json(PLAIN)


def test_compare_is_not_a_bool_and_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(Compare.value("k"))
    with pytest.raises(TypeError):
        Compare.version("k") <= 1  # type: ignore[operator]  # noqa: B015
    assert "version" in repr(Compare.version("k")) and "'k'" in repr(Compare.version("k"))


def test_comparison_is_frozen() -> None:
    comparison = Compare.version("k") == 1
    with pytest.raises(AttributeError):
        comparison.result = "LESS"  # type: ignore[misc]


# ---------------------------------------------------------------------------- Op
def test_op_get() -> None:
    op = Op.get("k")
    assert isinstance(op, OpGet)
    assert op.to_json(PLAIN) == {"request_range": {"key": b64(b"k")}}
    assert Op.get("d/", prefix=True, limit=5, keys_only=True).to_json(NS) == {
        "request_range": {
            "key": b64(b"/ns/d/"),
            "range_end": b64(b"/ns/d0"),
            "limit": 5,
            "keys_only": True,
        }
    }
    assert Op.get("a", "c", count_only=True).to_json(PLAIN) == {
        "request_range": {"key": b64(b"a"), "range_end": b64(b"c"), "count_only": True}
    }
    assert Op.get("", prefix=True).to_json(NS) == {
        "request_range": {"key": b64(b"/ns/"), "range_end": b64(b"/ns0")}
    }


def test_op_put() -> None:
    op = Op.put("k", "v")
    assert isinstance(op, OpPut) and op.value == b"v"
    assert op.to_json(NS) == {"request_put": {"key": b64(b"/ns/k"), "value": b64(b"v")}}
    assert Op.put(b"k", b"", lease=42, prev_kv=True).to_json(PLAIN) == {
        "request_put": {"key": b64(b"k"), "value": "", "lease": 42, "prev_kv": True}
    }


def test_op_put_takes_a_lease_object() -> None:
    class Lease:
        id = 99

    assert Op.put("k", "v", lease=Lease()).lease == 99
    assert lease_id(None) == 0
    assert lease_id(7) == 7
    with pytest.raises(InvalidType):
        lease_id("7")


def test_op_delete() -> None:
    op = Op.delete("k")
    assert isinstance(op, OpDelete)
    assert op.to_json(PLAIN) == {"request_delete_range": {"key": b64(b"k")}}
    assert Op.delete("d/", prefix=True, prev_kv=True).to_json(NS) == {
        "request_delete_range": {
            "key": b64(b"/ns/d/"),
            "range_end": b64(b"/ns/d0"),
            "prev_kv": True,
        }
    }
    assert Op.delete("a", "\0").to_json(NS)["request_delete_range"]["range_end"] == b64(b"/ns0")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Op.get(1),
        lambda: Op.get("k", limit="5"),  # type: ignore[arg-type]
        lambda: Op.get("k", keys_only="true"),  # type: ignore[arg-type]
        lambda: Op.get("k", prefix=1),  # type: ignore[arg-type]
        lambda: Op.put(1, "v"),
        lambda: Op.put("k", 1),
        lambda: Op.put("k", None),
        lambda: Op.put("k", "v", lease="12"),
        lambda: Op.put("k", "v", prev_kv="yes"),  # type: ignore[arg-type]
        lambda: Op.delete(None),
        lambda: Op.delete("k", prev_kv=0),  # type: ignore[arg-type]
        lambda: Op.txn(["not a compare"]),  # type: ignore[list-item]
        lambda: Op.txn([], [Compare.version("k") == 0]),  # type: ignore[list-item]
        lambda: Op.txn([], [], [("request_put", {})]),  # type: ignore[list-item]
    ],
)
def test_ops_refuse_wrong_types_at_build_time(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidType):
        build()


def test_op_get_refuses_negative_limit() -> None:
    with pytest.raises(InvalidArgument):
        Op.get("k", limit=-1)


def test_prefix_and_range_end_together_are_refused_before_sending() -> None:
    with pytest.raises(InvalidArgument):
        Op.get("a", "b", prefix=True).to_json(PLAIN)


# ---------------------------------------------------------------------------- txn body
def test_txn_body_wire_shape() -> None:
    compare = [Compare.value("tx") == "v1", Compare.create_revision("lock") == 0]
    success: list[TxnOp] = [Op.put("tx", "v2", prev_kv=True), Op.get("tx")]
    failure: list[TxnOp] = [Op.get("tx")]
    body = txn_body(*check_txn(compare, success, failure), PLAIN)
    assert body == {
        "compare": [
            {"key": "dHg=", "target": "VALUE", "result": "EQUAL", "value": "djE="},
            {"key": "bG9jaw==", "target": "CREATE", "result": "EQUAL", "create_revision": 0},
        ],
        "success": [
            {"request_put": {"key": "dHg=", "value": "djI=", "prev_kv": True}},
            {"request_range": {"key": "dHg="}},
        ],
        "failure": [{"request_range": {"key": "dHg="}}],
    }
    # the bytes that go out are plain JSON with enum names and JSON booleans
    text = encode_json(body).decode()
    assert json.loads(text) == body
    assert '"prev_kv":true' in text and '"target":"VALUE"' in text


def test_empty_txn_body() -> None:
    assert txn_body(*check_txn([], [], []), PLAIN) == {}


def test_nested_txn_wire_shape() -> None:
    inner = Op.txn([Compare.version("a") > 0], [Op.delete("a")], [Op.put("a", "x")])
    assert isinstance(inner, OpTxn)
    outer = Op.txn([], [inner, Op.get("b")])
    body = txn_body(*check_txn([Compare.mod_revision("b") < 5], [outer], []), NS)
    assert body == {
        "compare": [{"key": b64(b"/ns/b"), "target": "MOD", "result": "LESS", "mod_revision": 5}],
        "success": [
            {
                "request_txn": {
                    "success": [
                        {
                            "request_txn": {
                                "compare": [
                                    {
                                        "key": b64(b"/ns/a"),
                                        "target": "VERSION",
                                        "result": "GREATER",
                                        "version": 0,
                                    }
                                ],
                                "success": [{"request_delete_range": {"key": b64(b"/ns/a")}}],
                                "failure": [
                                    {"request_put": {"key": b64(b"/ns/a"), "value": b64(b"x")}}
                                ],
                            }
                        },
                        {"request_range": {"key": b64(b"/ns/b")}},
                    ]
                }
            }
        ],
    }


def test_check_txn_returns_tuples() -> None:
    compare, success, failure = check_txn([Compare.version("k") == 0], [Op.get("k")], [])
    assert isinstance(compare, tuple) and isinstance(success, tuple) and failure == ()


def test_check_txn_refuses_non_builder_items() -> None:
    with pytest.raises(InvalidType) as info:
        check_txn([True], [], [])  # type: ignore[list-item]
    assert "Compare" in str(info.value)
    with pytest.raises(InvalidType):
        check_txn([], [{"request_put": {}}], [])  # type: ignore[list-item]
    with pytest.raises(InvalidType):
        check_txn([], [], [Compare.value("k") == "v"])  # type: ignore[list-item]


def test_too_many_operations_refused_before_sending() -> None:
    ops = [Op.put(f"k{i}", "v") for i in range(129)]
    with pytest.raises(TooManyOperations):
        check_txn([], ops, [])
    with pytest.raises(TooManyOperations):
        check_txn([], [], ops)
    assert len(check_txn([], ops[:128], ops[:128])[1]) == 128
