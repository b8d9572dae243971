"""The geetcd command line without etcd: etcdctl's txn grammar, durations, hex ids, the
JSON conversion (numbers, txn wrapping, flat lease shape), humanized sizes, tables, and
bad arguments exiting 128 before any I/O."""

from __future__ import annotations

import argparse
import base64

import pytest

from geetcd.cli import app as cli_app
from geetcd.cli import output as out
from geetcd.cli.app import build_parser, duration, hex_id, main
from geetcd.cli.txn import TxnSyntaxError, has_writes, parse_compare, parse_op, parse_txn


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_compares_of_every_target() -> None:
    assert parse_compare('value("k") = "v"') == {
        "key": b64("k"),
        "target": "VALUE",
        "result": "EQUAL",
        "value": b64("v"),
    }
    assert parse_compare('mod("k") > "3"')["mod_revision"] == "3"
    assert parse_compare('ver("k") != "0"')["result"] == "NOT_EQUAL"
    assert parse_compare('c("k") < "9"')["create_revision"] == "9"
    assert parse_compare('lease("k") = "0"')["target"] == "LEASE"
    assert parse_compare('val("a b") = "x \\" y"')["value"] == b64('x " y')
    for bad in ('foo("k") = "v"', 'mod("k") = "x"', "value(k) = v", 'value("k") == "v"'):
        with pytest.raises(TxnSyntaxError):
            parse_compare(bad)


def test_ops_and_blocks() -> None:
    assert parse_op("put k 'two words'") == {
        "request_put": {"key": b64("k"), "value": b64("two words")}
    }
    get = parse_op("get k --prefix --limit 2")["request_range"]
    assert get["range_end"] == b64("l") and get["limit"] == "2"
    assert parse_op("del a --from-key")["request_delete_range"]["range_end"] == b64("\0")
    with pytest.raises(TxnSyntaxError):
        parse_op("incr k")
    with pytest.raises(TxnSyntaxError):
        parse_op("put k")
    body = parse_txn(['mod("k") = "0"\n', "\n", "put k v\n", "\n", "get k\n", "\n"])
    assert len(body["compare"]) == 1 and len(body["success"]) == 1 and len(body["failure"]) == 1
    assert has_writes(body)
    assert not has_writes(parse_txn(["\n", "get k\n", "\n", "\n"]))
    assert parse_txn([]) == {}


def test_durations_and_ids() -> None:
    assert duration("5s") == 5 and duration("500ms") == 0.5 and duration("1m30s") == 90
    assert duration("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError):
        duration("5 s")
    assert hex_id("ff") == 255
    with pytest.raises(argparse.ArgumentTypeError):
        hex_id("zz")


def test_json_conversion_is_etcdctls() -> None:
    answer = {
        "header": {"cluster_id": "18446744073709551615", "member_id": "2", "revision": "7"},
        "kvs": [{"key": "aw==", "create_revision": "7", "version": "1", "value": "dg=="}],
        "count": "1",
    }
    converted = out.numbers(answer)
    assert converted["header"]["cluster_id"] == 2**64 - 1 and converted["count"] == 1
    assert converted["kvs"][0]["key"] == "aw=="  # bytes stay base64
    assert out.numbers({"version": "3.5.1"}) == {"version": "3.5.1"}
    txn = out.txn_json({"responses": [{"response_put": {"header": {"revision": "3"}}}]})
    assert txn == {"responses": [{"Response": {"response_put": {"header": {"revision": 3}}}}]}
    assert list(out.flat({"header": {"cluster_id": "1", "raft_term": "2"}}, {"ID": 5})) == [
        "cluster_id",
        "raft_term",
        "ID",
    ]


def test_human_bytes_and_table() -> None:
    assert out.human_bytes(5) == "5 B"
    assert out.human_bytes(20480) == "20 kB"
    assert out.human_bytes(64155648) == "64 MB"
    assert out.human_bytes(1500) == "1.5 kB"
    text = out.table(["ID", "NAME"], [["abc", "m1"]])
    assert text.splitlines() == [
        "+-----+------+",
        "| ID  | NAME |",
        "+-----+------+",
        "| abc |   m1 |",
        "+-----+------+",
    ]


def test_bad_arguments_exit_128_without_io(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["put"]) == 128
    assert capsys.readouterr().err.startswith("Error: ")
    assert main(["frobnicate"]) == 128
    assert main(["--endpoints", "ftp://x", "get", "k"]) == 128
    assert main(["get", "k", "--count-only", "--endpoints", "127.0.0.1:1"]) == 128


def test_global_flags_after_the_command() -> None:
    args = build_parser().parse_args(["get", "k", "-w", "json", "--endpoints", "h:1", "--key", "f"])
    assert args.write_out == "json" and args.endpoints == "h:1"
    assert args.key == "k" and args.tls_key == "f"
    args = build_parser().parse_args(["-w", "table", "member", "list"])
    assert args.write_out == "table"
    assert cli_app.EXIT_BAD_ARGS == 128


def test_commands_after_double_dash_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_watch(client: object, args: argparse.Namespace) -> int:
        seen["exec"], seen["prefix"] = args.exec, args.prefix
        return 0

    monkeypatch.setitem(cli_app.COMMANDS, "watch", fake_watch)
    assert main(["watch", "k", "--prefix", "--", "sh", "-c", "echo -n x"]) == 0
    assert seen == {"exec": ["sh", "-c", "echo -n x"], "prefix": True}
    assert main(["get", "k", "--", "x"]) == 128  # get runs no command
