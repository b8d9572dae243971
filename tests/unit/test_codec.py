"""geetcd.protocol.codec: the wire rules of ETCD-PROTOCOL.md §3.0, bytes in, values out.

No network: every input here is a literal the gateway sends or accepts.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string

import pytest

from geetcd.errors import InvalidArgument, InvalidType, MalformedResponse
from geetcd.protocol.codec import (
    Keyspace,
    as_int,
    b64,
    decode_json,
    encode_json,
    prefix_end,
    to_bytes,
    unb64,
)

STANDARD_ALPHABET = set(string.ascii_letters + string.digits + "+/=")


# ---------------------------------------------------------------------------- base64
@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"", ""),
        (b"a", "YQ=="),  # padded: "YQ" alone is a 400 "illegal base64 data"
        (b"ab", "YWI="),
        (b"foo", "Zm9v"),
        (b"\xfb\xff", "+/8="),  # standard alphabet, never URL-safe "-_8="
        (b"\xfb\xef\xbe", "++++"),
        (b"\xff\xff\xff", "////"),
        (b"/dir0", "L2RpcjA="),
        (b"\0", "AA=="),
    ],
)
def test_b64_is_standard_base64_with_padding(raw: bytes, wire: str) -> None:
    assert b64(raw) == wire
    assert unb64(wire) == raw


def test_b64_of_every_byte_uses_only_the_standard_alphabet() -> None:
    rng = random.Random(1234)
    for length in range(0, 40):
        data = bytes(rng.randrange(256) for _ in range(length))
        text = b64(data)
        assert set(text) <= STANDARD_ALPHABET
        assert len(text) % 4 == 0  # always padded
        assert text == base64.b64encode(data).decode("ascii")
        assert unb64(text) == data
    everything = bytes(range(256))
    assert unb64(b64(everything)) == everything
    assert "-" not in b64(everything) and "_" not in b64(everything)


@pytest.mark.parametrize(
    "bad",
    [
        "YQ",  # unpadded
        "-_8=",  # URL-safe alphabet
        "foo",  # a raw string, not base64
        "Zm9v!",
        "Zm 9v",
    ],
)
def test_unb64_rejects_what_the_gateway_would_never_send(bad: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        unb64(bad)
    assert isinstance(info.value.__cause__, (binascii.Error, ValueError))
    assert info.value.transient is True


# ---------------------------------------------------------------------------- int64 as strings
@pytest.mark.parametrize(
    ("wire", "value"),
    [
        ("2", 2),
        ("0", 0),
        ("-1", -1),  # timetolive TTL of a missing lease
        ("7282217346993512239", 7282217346993512239),  # lease ID
        ("11975791918105126159", 11975791918105126159),  # uint64 member id above 2**63
        ("18446744073709551615", 2**64 - 1),
        (5, 5),  # requests may carry numbers; parsers accept both
        (None, 0),  # omitted zero field
    ],
)
def test_as_int_parses_int64_and_uint64_strings(wire: object, value: int) -> None:
    assert as_int(wire) == value
    assert type(as_int(wire)) is int


def test_member_id_above_int64_survives_exactly() -> None:
    member_id = as_int("11975791918105126159")
    assert member_id > 2**63
    assert f"{member_id:x}" == "a6328f4c8ea6650f"  # the v2 API's hex form of the same id


@pytest.mark.parametrize("bad", ["abc", "1.5", "", {}, [], "0x10"])
def test_as_int_refuses_non_integers(bad: object) -> None:
    with pytest.raises(MalformedResponse):
        as_int(bad)


# ---------------------------------------------------------------------------- JSON
def test_encode_json_is_compact_ascii_and_keeps_big_ints_exact() -> None:
    data = encode_json({"ID": 7282217346994157852, "TTL": 30, "keys_only": True, "k": "é"})
    assert isinstance(data, bytes)
    assert data == b'{"ID":7282217346994157852,"TTL":30,"keys_only":true,"k":"\\u00e9"}'
    data.decode("ascii")
    # a float would be a 400 ("cannot unmarshal number 7282...852.0 into int64")
    assert b"." not in data


def test_booleans_are_encoded_as_json_booleans() -> None:
    text = encode_json({"keys_only": True, "count_only": False}).decode()
    assert json.loads(text) == {"keys_only": True, "count_only": False}
    assert '"true"' not in text and '"keys_only":true' in text


def test_decode_json_returns_the_object() -> None:
    obj = decode_json(b'{"header":{"revision":"2"},"count":"1"}')
    assert obj == {"header": {"revision": "2"}, "count": "1"}


@pytest.mark.parametrize(
    "data", [b"", b"404 page not found", b"[1,2]", b'"text"', b"null", b"\xff\xfe", b"{"]
)
def test_decode_json_refuses_non_objects(data: bytes) -> None:
    with pytest.raises(MalformedResponse) as info:
        decode_json(data)
    assert isinstance(info.value, MalformedResponse)


def test_decode_json_chains_the_parser_error() -> None:
    with pytest.raises(MalformedResponse) as info:
        decode_json(b"not json")
    assert isinstance(info.value.__cause__, ValueError)


# ---------------------------------------------------------------------------- to_bytes
def test_to_bytes_accepts_str_and_bytes_likes() -> None:
    assert to_bytes("é", "key") == b"\xc3\xa9"
    assert to_bytes(b"x", "key") == b"x"
    assert to_bytes(bytearray(b"ab"), "key") == b"ab"
    assert to_bytes(memoryview(b"cd"), "key") == b"cd"
    assert type(to_bytes(bytearray(b"ab"), "key")) is bytes


@pytest.mark.parametrize("bad", [1, 1.5, None, True, ["a"], object()])
def test_to_bytes_refuses_other_types_with_invalid_type(bad: object) -> None:
    with pytest.raises(InvalidType) as info:
        to_bytes(bad, "value")
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, InvalidArgument)
    assert "value" in str(info.value)


# ---------------------------------------------------------------------------- prefix_end
@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/dir/", b"/dir0"),  # the example of §3.2
        (b"a", b"b"),
        (b"a\xfe", b"a\xff"),
        (b"a\xff", b"b"),  # trailing 0xff dropped, previous byte incremented
        (b"a\xff\xff", b"b"),
        (b"\x00", b"\x01"),
        (b"\xff", b"\0"),  # all 0xff: to the end of the key space
        (b"\xff\xff\xff", b"\0"),
        (b"", b"\0"),  # empty: everything
    ],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_prefix_end_bounds_exactly_the_prefixed_keys() -> None:
    rng = random.Random(7)
    for _ in range(200):
        prefix = bytes(rng.choice((0, 1, 0x7F, 0xFE, 0xFF)) for _ in range(rng.randrange(1, 4)))
        end = prefix_end(prefix)
        for _ in range(20):
            key = prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3)))
            # every key with the prefix lies in [prefix, end) ("\0" = unbounded)
            assert key >= prefix
            assert end == b"\0" or key < end
        if end != b"\0":
            assert not end.startswith(prefix)


# ---------------------------------------------------------------------------- Keyspace
def test_keyspace_without_namespace_is_the_identity() -> None:
    ks = Keyspace()
    assert ks.key("a") == b"a"
    assert ks.key(b"\xff") == b"\xff"
    assert ks.unkey(b"/x/y") == b"/x/y"
    assert ks.span("a") == (b"a", None)
    assert ks.span("a", "c") == (b"a", b"c")
    assert ks.span("/dir/", prefix=True) == (b"/dir/", b"/dir0")
    assert ks.span("", prefix=True) == (b"\0", b"\0")  # every key, as etcdctl --prefix ""
    assert ks.span("a", "\0") == (b"a", b"\0")  # from a to the end


def test_keyspace_namespace_maps_keys_in_and_out() -> None:
    ks = Keyspace(b"/ns/")
    assert ks.prefix == b"/ns/"
    assert ks.key("a") == b"/ns/a"
    assert ks.key(b"a/b") == b"/ns/a/b"
    assert ks.unkey(b"/ns/a/b") == b"a/b"
    assert ks.unkey(ks.key("k")) == b"k"
    assert "/ns/" in repr(ks)


def test_keyspace_namespace_span() -> None:
    ks = Keyspace(b"/ns/")
    assert ks.span("a") == (b"/ns/a", None)
    assert ks.span("a", "c") == (b"/ns/a", b"/ns/c")
    assert ks.span("dir/", prefix=True) == (b"/ns/dir/", b"/ns/dir0")
    # "to the end" inside a namespace ends where the namespace ends, not at the key space's end
    assert ks.span("a", "\0") == (b"/ns/a", b"/ns0")
    assert ks.span("a", b"\0") == (b"/ns/a", b"/ns0")
    # the empty key with prefix=True is the whole namespace
    assert ks.span("", prefix=True) == (b"/ns/", b"/ns0")
    assert ks.span(b"", prefix=True) == (b"/ns/", b"/ns0")


def test_keyspace_namespace_ending_in_0xff() -> None:
    ks = Keyspace(b"n\xff")
    assert ks.span("", prefix=True) == (b"n\xff", b"o")
    assert ks.span("a", "\0") == (b"n\xffa", b"o")


def test_keyspace_refuses_empty_keys_before_io() -> None:
    for ks in (Keyspace(), Keyspace(b"/ns/")):
        with pytest.raises(InvalidArgument):
            ks.key("")
        with pytest.raises(InvalidArgument):
            ks.span("")
        with pytest.raises(InvalidArgument):
            ks.span(b"", "z")


def test_keyspace_refuses_prefix_and_range_end_together() -> None:
    with pytest.raises(InvalidArgument):
        Keyspace().span("a", "b", prefix=True)
    with pytest.raises(InvalidArgument):
        Keyspace(b"/ns/").span("a", "b", prefix=True)


@pytest.mark.parametrize("bad", [1, None, 2.5, ("a",)])
def test_keyspace_refuses_wrong_key_types(bad: object) -> None:
    with pytest.raises(InvalidType):
        Keyspace(b"/ns/").key(bad)
    with pytest.raises(InvalidType):
        Keyspace().span(bad, prefix=True)


def test_keyspace_refuses_wrong_range_end_type() -> None:
    with pytest.raises(InvalidType):
        Keyspace(b"/ns/").span("a", 5)
