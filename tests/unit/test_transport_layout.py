"""The transport package is the one place that opens sockets, and geetcd uses no private
urllib3 API (both checked on the source's syntax tree); gRPC TLS contexts are built once
per TLS value; gRPC framing is sans-IO (geetcd.protocol.grpc)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import geetcd
from geetcd import errors as E
from geetcd.protocol import grpc as proto_grpc
from geetcd.transport import tls as tls_module

PACKAGE = Path(geetcd.__file__).parent
TRANSPORT = PACKAGE / "transport"
TESTING = PACKAGE / "testing"  # the test harness picks free ports with sockets of its own

# Module-level functions that create a socket (or wrap one in TLS).
SOCKET_MAKERS = {
    f"{module}.{name}"
    for module in ("socket", "gevent.socket", "_socket", "gevent._socket3")
    for name in ("socket", "create_connection", "create_server", "socketpair", "fromfd")
} | {"ssl.wrap_socket", "gevent.ssl.wrap_socket", "ssl.SSLSocket", "gevent.ssl.SSLSocket"}
# Methods that create one whatever their object (SSLContext.wrap_socket, ...).
SOCKET_METHODS = {"wrap_socket", "wrap_bio", "create_connection", "socketpair"}
PRIVATE_URLLIB3 = {
    "_get_conn",
    "_put_conn",
    "_dns_host",
    "_new_conn",
    "_make_request",
    "_validate_conn",
    "_prepare_proxy",
}


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as (``import socket as s``: s -> socket)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def socket_creations(path: Path) -> list[str]:
    """``line: call`` of every call in ``path`` that creates a socket."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if dotted is None:
            if isinstance(node.func, ast.Attribute) and node.func.attr in SOCKET_METHODS:
                found.append(f"{node.lineno}: .{node.func.attr}()")
            continue
        head, _, rest = dotted.partition(".")
        resolved = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        method = dotted.rsplit(".", 1)[-1]
        if resolved in SOCKET_MAKERS or ("." in dotted and method in SOCKET_METHODS):
            found.append(f"{node.lineno}: {dotted}()")
    return found


def test_no_module_outside_the_transport_package_creates_sockets() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): calls
        for path in _sources(PACKAGE)
        if TRANSPORT not in path.parents and TESTING not in path.parents
        for calls in [socket_creations(path)]
        if calls
    }
    assert offenders == {}


def test_inside_the_package_only_dial_creates_client_sockets() -> None:
    """The checker finds what it looks for: dial() (and the fork module's dead-end pair)."""
    makers = {
        path.name: socket_creations(path) for path in _sources(TRANSPORT) if socket_creations(path)
    }
    assert set(makers) == {"dial.py", "fork.py"}, makers
    assert any("create_connection" in call for call in makers["dial.py"])
    assert any("wrap_socket" in call for call in makers["dial.py"])
    assert all("socketpair" in call for call in makers["fork.py"])


def test_no_private_urllib3_api() -> None:
    used = []
    for path in _sources(PACKAGE):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name  # an override of a private hook
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value  # getattr(pool, "_get_conn")
            if name in PRIVATE_URLLIB3:
                used.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert used == []


# ------------------------------------------------------------------------ gRPC TLS context
def test_h2_context_is_built_once_per_tls_value(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = geetcd.TLS(ca_file=str(ca_file))
    first = tls_module.h2_context(tls)
    assert tls_module.h2_context(tls) is first
    assert tls_module.h2_context(geetcd.TLS(ca_file=str(ca_file))) is first  # an equal value
    assert tls_module.h2_context(geetcd.TLS(verify=False)) is not first
    # A rotated file (new content, new mtime) is picked up: a new context, then reused.
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rotated = tls_module.h2_context(tls)
    assert rotated is not first
    assert tls_module.h2_context(tls) is rotated


def test_h2_context_offers_h2_and_the_pools_context_does_not(tmp_path: Path) -> None:
    context = tls_module.h2_context(geetcd.TLS(verify=False))
    assert type(context).__module__.startswith("gevent")  # cooperative, patched or not
    assert context.verify_mode.name == "CERT_NONE"
    with pytest.raises(E.TLSError, match="missing"):
        tls_module.h2_context(geetcd.TLS(ca_file=str(tmp_path / "missing.pem")))


# ------------------------------------------------------------------------ gRPC framing
def test_grpc_frames_round_trip_incrementally() -> None:
    messages = [b"", b"a", b"x" * 70000]
    data = b"".join(proto_grpc.frame(m) for m in messages)
    assert proto_grpc.unframe(proto_grpc.frame(b"abc")) == b"abc"
    decoder = proto_grpc.FrameDecoder("http://m")
    out = []
    for i in range(0, len(data), 7):
        out.extend(decoder.feed(data[i : i + 7]))
    assert out == messages
    assert decoder.pending == 0
    assert list(decoder.feed(proto_grpc.frame(b"half")[:6])) == []
    assert decoder.pending == 6
    with pytest.raises(E.MalformedResponse):
        list(proto_grpc.FrameDecoder().feed(b"\x01\x00\x00\x00\x00"))  # compressed


def test_grpc_status_and_headers() -> None:
    assert proto_grpc.status_error("200", {"grpc-status": "0"}, "u", "/p") is None
    not_found = proto_grpc.status_error(
        "200", {"grpc-status": "5", "grpc-message": "a%20b"}, "u", "/p"
    )
    assert not_found is not None and "a b" in str(not_found)
    assert isinstance(proto_grpc.status_error("503", {}, "u", "/p"), E.MalformedResponse)
    headers = dict(proto_grpc.request_headers("http", "h:1", "/s/M", timeout=0.0, token="t"))
    assert headers["grpc-timeout"] == "1m"
    assert headers["authorization"] == "t"
    assert headers[":path"] == "/s/M"
