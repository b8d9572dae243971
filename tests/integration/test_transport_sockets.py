"""Every socket a client opens (pooled calls, streams, WebSockets, gRPC over h2c and TLS)
comes from geetcd.transport.dial.dial() and is registered for fork severing while in use;
the gRPC TLS context is built once, not per call."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import geetcd
from geetcd.transport import fork, tls
from geetcd.transport import grpc as transport_grpc
from geetcd.transport import pool as transport_pool
from geetcd.transport import transport as transport_module
from geetcd.transport import websocket as transport_websocket

pytestmark = pytest.mark.timeout(120)


class DialSpy:
    """Wraps dial() in one module: records each socket, whether fork severing would reach
    it, and the TLS context it was wrapped with."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sock = self.real(*args, **kwargs)
        self.calls.append(
            {
                "registered": sock.fileno() in fork._registered_descriptors(),
                "context": kwargs.get("ssl_context"),
                "alpn": getattr(sock, "selected_alpn_protocol", lambda: None)(),
            }
        )
        return sock


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any) -> DialSpy:
    spy = DialSpy(module.dial)
    monkeypatch.setattr(module, "dial", spy)
    return spy


def test_every_kind_of_socket_is_dialed_and_registered(
    monkeypatch: pytest.MonkeyPatch, etcd_endpoints: list[str], etcd_prefix: str
) -> None:
    spies = {
        "pool": _spy(monkeypatch, transport_pool),
        "stream": _spy(monkeypatch, transport_module),
        "websocket": _spy(monkeypatch, transport_websocket),
        "grpc": _spy(monkeypatch, transport_grpc),
    }
    url = etcd_endpoints[0]
    with geetcd.Client([url], namespace=etcd_prefix, batch_reads=False) as client:
        client.put("k", "v")
        transport = client.core.transport
        stream = transport.open_stream(
            url,
            "/v3/watch",
            b'{"create_request":{"key":"eA=="}}',
            connect_timeout=5,
            first_byte_timeout=5,
        )
        stream.close()
        ws = transport.open_websocket(url, "/v3/watch", connect_timeout=5, handshake_timeout=5)
        ws.close()
        client.hash_kv(url)
        client.snapshot(io.BytesIO(), endpoint=url)
    for kind, spy in spies.items():
        assert spy.calls, kind
        assert all(call["registered"] for call in spy.calls), (kind, spy.calls)
    assert len(spies["grpc"].calls) == 2  # hash_kv and the snapshot, one connection each


@pytest.fixture(scope="module")
def tls_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, geetcd.TLS]]:
    from tls_etcd import TlsEtcd, make_pki

    pki = make_pki(Path(tmp_path_factory.mktemp("pki")))
    member = TlsEtcd(
        Path(tmp_path_factory.mktemp("tls")),
        pki,
        server_cert=pki.ip_cert,
        server_key=pki.ip_key,
        client_cert_auth=True,
    ).start()
    settings = geetcd.TLS(ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key)
    yield member, settings
    member.stop()


def test_grpc_over_tls_builds_its_context_once(
    monkeypatch: pytest.MonkeyPatch, tls_member: tuple[Any, geetcd.TLS]
) -> None:
    member, settings = tls_member
    spy = _spy(monkeypatch, transport_grpc)
    with geetcd.Client(member.url, tls=settings) as client:
        client.put("k", "v")
        first = client.hash_kv(member.url)
        second = client.hash_kv(member.url)
        client.snapshot(io.BytesIO(), endpoint=member.url)
    assert first.hash == second.hash
    assert len(spy.calls) == 3
    contexts = {id(call["context"]) for call in spy.calls}
    assert contexts == {id(tls.h2_context(settings))}  # one context for every call
    assert all(call["registered"] and call["alpn"] == "h2" for call in spy.calls), spy.calls
    # The pools' HTTP/1.1 context is another one, and never offers h2.
    assert client.core.transport.ssl_context() is not tls.h2_context(settings)
