"""TLS against real etcd members serving https (certificates made with trustme), and the
mapping of every TLS failure to a clear, immediate TLSError naming the member and the reason.

Two members, started by :mod:`tls_etcd`: ``server`` has a certificate for 127.0.0.1 and no
client-certificate auth; ``mtls`` has a certificate for a DNS name only and runs with
``--client-cert-auth``.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_etcd import DNS_NAME, Pki, TlsEtcd, make_pki
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError, SSLError

import geetcd
from geetcd import errors as E
from geetcd.cluster import MemberState
from geetcd.transport import translate

pytestmark = pytest.mark.timeout(120)

URL = "https://127.0.0.1:2379"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsEtcd]:
    member = TlsEtcd(
        tmp_path_factory.mktemp("tls"), pki, server_cert=pki.ip_cert, server_key=pki.ip_key
    )
    yield member.start()
    member.stop()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsEtcd]:
    member = TlsEtcd(
        tmp_path_factory.mktemp("mtls"),
        pki,
        server_cert=pki.dns_cert,
        server_key=pki.dns_key,
        client_cert_auth=True,
    )
    yield member.start()
    member.stop()


def tls_error(url: str, tls: geetcd.TLS | None, timeout: float = 30.0) -> E.TLSError:
    """The TLSError of a put and of a get; both must come at once, not at the deadline."""
    with geetcd.Client(url, tls=tls, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(E.TLSError) as put_error:
            client.put("k", "v")  # a write: TLSError, not OutcomeUnknown
        with pytest.raises(E.TLSError) as get_error:
            client.get("k")
        assert time.monotonic() - started < 5.0  # never retried until the deadline
        assert client.cluster_state.members[0].state is not MemberState.DOWN
    assert put_error.value.member == url
    assert url in str(get_error.value)
    return get_error.value


# ---------------------------------------------------------------------------- working TLS
def test_tls_with_ca(server: TlsEtcd, pki: Pki) -> None:
    with geetcd.Client(server.url, tls=geetcd.TLS(ca_file=pki.ca_file)) as client:
        client.put("tls/k", "v1")
        assert client.get("tls/k").value == b"v1"
        with client.watch("tls/k", timeout=10) as watch:  # streams use TLS too
            client.put("tls/k", "v2")
            assert watch.next_event(timeout=10).kv.value == b"v2"
        assert client.endpoints == [server.url]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_can_be_turned_off(server: TlsEtcd) -> None:
    with geetcd.Client(server.url, tls=geetcd.TLS(verify=False)) as client:
        client.put("tls/unverified", "v")
        assert client.get("tls/unverified").value == b"v"


def test_client_certificate_auth(mtls: TlsEtcd, pki: Pki) -> None:
    tls = geetcd.TLS(
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
        server_hostname=DNS_NAME,
    )
    with geetcd.Client(mtls.url, tls=tls) as client:
        client.put("mtls/k", "v")
        assert client.get("mtls/k").value == b"v"


# ---------------------------------------------------------------------------- TLS failures
def test_unknown_ca(server: TlsEtcd, pki: Pki) -> None:
    error = tls_error(server.url, geetcd.TLS(ca_file=pki.other_ca_file))
    assert "unknown CA" in str(error)
    assert "certificate verify failed" in str(error)
    # without a CA file the system trust store is used: it does not know the test CA either
    assert "unknown CA" in str(tls_error(server.url, geetcd.TLS()))
    assert "unknown CA" in str(tls_error(server.url, None))  # https without tls=


def test_hostname_mismatch_against_ip(mtls: TlsEtcd, pki: Pki) -> None:
    tls = geetcd.TLS(ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key)
    error = tls_error(mtls.url, tls)  # the certificate names only DNS_NAME
    assert "does not match the host name" in str(error)
    assert "IP address mismatch" in str(error)


def test_hostname_mismatch_with_server_hostname(server: TlsEtcd, pki: Pki) -> None:
    tls = geetcd.TLS(ca_file=pki.ca_file, server_hostname="other.geetcd.test")
    error = tls_error(server.url, tls)
    assert "does not match the host name" in str(error)
    assert "other.geetcd.test" in str(error)


def test_missing_client_certificate(mtls: TlsEtcd, pki: Pki) -> None:
    error = tls_error(mtls.url, geetcd.TLS(ca_file=pki.ca_file, server_hostname=DNS_NAME))
    assert "refused the client certificate" in str(error)
    assert "bad certificate" in str(error)


def test_client_certificate_from_another_ca(mtls: TlsEtcd, pki: Pki) -> None:
    tls = geetcd.TLS(
        ca_file=pki.ca_file,
        cert_file=pki.rogue_client_cert,
        key_file=pki.rogue_client_key,
        server_hostname=DNS_NAME,
    )
    assert "refused the client certificate" in str(tls_error(mtls.url, tls))


def test_https_to_a_plain_http_listener(server: TlsEtcd, pki: Pki) -> None:
    url = f"https://127.0.0.1:{server.peer_port}"  # etcd's peer port speaks plain http
    error = tls_error(url, geetcd.TLS(ca_file=pki.ca_file))
    assert "does not speak TLS" in str(error)


def test_unloadable_tls_files(pki: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(E.TLSError, match=r"missing\.pem"):
        geetcd.Client(URL, tls=geetcd.TLS(ca_file=missing))
    with pytest.raises(E.TLSError, match=r"client\.pem"):
        geetcd.Client(URL, tls=geetcd.TLS(cert_file=pki.client_cert, key_file=pki.ca_file))


# ---------------------------------------------------------------------------- translate()
def _verify_error(message: str) -> ssl.SSLCertVerificationError:
    return ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")


@pytest.mark.parametrize(
    ("make", "cls", "fragment"),
    [
        (
            lambda: SSLError(_verify_error("unable to get local issuer certificate")),
            E.TLSError,
            "unknown CA",
        ),
        (  # TLS 1.3: a server refusing the client certificate alerts on the first read
            lambda: ProtocolError(
                "Connection aborted.",
                ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert (_ssl.c:1)"),
            ),
            E.TLSError,
            "refused the client certificate",
        ),
        (
            lambda: _caused(NewConnectionError(None, "handshake"), _verify_error("expired")),
            E.TLSError,
            "server certificate rejected",
        ),
        (
            lambda: SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")),
            E.ConnectionLost,
            "closed",
        ),
        (
            lambda: ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
            E.ConnectionLost,
            "broke",
        ),
        (
            lambda: _caused(NewConnectionError(None, "refused"), ConnectionRefusedError(111)),
            E.ConnectionFailed,
            "cannot connect",
        ),
        (lambda: ReadTimeoutError(None, "/", "read timed out"), E.ResponseTimeout, "no answer"),
    ],
)
def test_translate(make: object, cls: type[E.EtcdError], fragment: str) -> None:
    exc = make()  # type: ignore[operator]
    error = translate(exc, URL, "/kv/range")
    assert type(error) is cls
    assert fragment in str(error)
    assert error.member == URL


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc
