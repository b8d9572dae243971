"""Test PKI (made with trustme) and a single etcd member serving https, for the TLS tests.

The harness (:class:`geetcd.testing.EtcdCluster`) builds ``http://`` client URLs and checks
health over plain HTTP, so TLS members are started here: the etcd binary from
:func:`geetcd.testing.find_etcd_binary`, free loopback ports, health polled over https with the
test CA, stopped by PID (SIGTERM, then SIGKILL) by :meth:`TlsEtcd.stop`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from geetcd.testing import find_etcd_binary, free_port

__all__ = ["Pki", "TlsEtcd", "make_pki", "mtls_member_session"]

# cert files are written once per directory; names of the identities in the certificates
IP_NAME = "127.0.0.1"
DNS_NAME = "etcd.geetcd.test"


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file the TLS tests use."""

    ca_file: str  # the CA that signed every certificate below
    other_ca_file: str  # an unrelated CA (verification must fail with it)
    ip_cert: str  # server certificate for 127.0.0.1 only
    ip_key: str
    dns_cert: str  # server certificate for DNS_NAME only (no IP: a hostname mismatch)
    dns_key: str
    client_cert: str  # a client certificate (CN "root") signed by ca_file
    client_key: str
    rogue_client_cert: str  # a client certificate signed by the other CA
    rogue_client_key: str


def make_pki(directory: Path) -> Pki:
    """Write a fresh CA, server and client certificates under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    other = trustme.CA()

    def write(blob: trustme.Blob, name: str) -> str:
        path = directory / name
        blob.write_to_path(str(path))
        return str(path)

    def write_pair(cert: trustme.LeafCert, name: str) -> tuple[str, str]:
        chain = directory / f"{name}.pem"
        for index, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(chain), append=index > 0)
        return str(chain), write(cert.private_key_pem, f"{name}.key")

    ip_cert = ca.issue_cert(IP_NAME)
    dns_cert = ca.issue_cert(DNS_NAME)
    # A SAN is needed: trustme marks the (then empty) SAN extension critical and Go refuses it.
    client = ca.issue_cert("client.geetcd.test", common_name="root")
    rogue = other.issue_cert("client.geetcd.test", common_name="root")
    ip_pem, ip_key = write_pair(ip_cert, "server-ip")
    dns_pem, dns_key = write_pair(dns_cert, "server-dns")
    client_pem, client_key = write_pair(client, "client")
    rogue_pem, rogue_key = write_pair(rogue, "rogue-client")
    return Pki(
        ca_file=write(ca.cert_pem, "ca.pem"),
        other_ca_file=write(other.cert_pem, "other-ca.pem"),
        ip_cert=ip_pem,
        ip_key=ip_key,
        dns_cert=dns_pem,
        dns_key=dns_key,
        client_cert=client_pem,
        client_key=client_key,
        rogue_client_cert=rogue_pem,
        rogue_client_key=rogue_key,
    )


_live: dict[int, subprocess.Popen[bytes]] = {}


def _stop_all() -> None:
    for proc in list(_live.values()):
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(timeout=5)


atexit.register(_stop_all)


class TlsEtcd:
    """One etcd member with https client URLs on 127.0.0.1 (plain-http peer URL)."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        server_cert: str,
        server_key: str,
        client_cert_auth: bool = False,
        also_http: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.pki = pki
        self.server_cert = server_cert
        self.server_key = server_key
        self.client_cert_auth = client_cert_auth
        self.extra_args = extra_args
        self.port = free_port()
        self.peer_port = free_port()
        self.url = f"https://{IP_NAME}:{self.port}"
        # also_http: the same member also serves plain http (for side-by-side benchmarks)
        self.http_url = f"http://{IP_NAME}:{free_port()}" if also_http else None
        self.log_path = directory / f"etcd-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        peer = f"http://{IP_NAME}:{self.peer_port}"
        urls = ",".join(u for u in (self.url, self.http_url) if u)
        command = [
            find_etcd_binary(),
            f"--name=tls{self.port}",
            f"--data-dir={self.directory / f'data-{self.port}'}",
            f"--listen-client-urls={urls}",
            f"--advertise-client-urls={urls}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=tls{self.port}={peer}",
            "--initial-cluster-state=new",
            f"--cert-file={self.server_cert}",
            f"--key-file={self.server_key}",
            "--log-level=warn",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.client_cert_auth:
            # etcd 3.5 requires client certificates as soon as --trusted-ca-file is given.
            command += ["--client-cert-auth", f"--trusted-ca-file={self.pki.ca_file}"]
        command.extend(self.extra_args)
        return command

    def ssl_context(self) -> ssl.SSLContext:
        """A stdlib context that trusts the test CA (and presents the client cert)."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_file)
        ctx.check_hostname = False  # the DNS-only certificate has no 127.0.0.1
        if self.client_cert_auth:
            ctx.load_cert_chain(self.pki.client_cert, self.pki.client_key)
        return ctx

    def start(self, timeout: float = 20.0) -> TlsEtcd:
        """Spawn etcd and wait until ``GET /health`` over https says healthy."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live[self.proc.pid] = self.proc
        deadline = time.monotonic() + timeout
        detail = "no answer"
        ctx = self.ssl_context()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            conn = http.client.HTTPSConnection(IP_NAME, self.port, timeout=1.0, context=ctx)
            try:
                conn.request("GET", "/health")
                body = conn.getresponse().read()
                if json.loads(body).get("health") == "true":
                    return self
                detail = body.decode(errors="replace")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                detail = repr(exc)
            finally:
                conn.close()
            time.sleep(0.1)
        log_text = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"TLS etcd {self.url} not healthy: {detail}\n{log_text}")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 5 s. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        _live.pop(proc.pid, None)


def mtls_member_session(directory_for: Callable[[str], Path]) -> Iterator[tuple[TlsEtcd, Pki]]:
    """Body of a ``mtls_member`` fixture: a started member that requires a client certificate
    (``--client-cert-auth``, DNS-name server certificate) and its PKI; stopped afterwards.

    ``directory_for(name)`` makes a fresh directory (``tmp_path_factory.mktemp``).
    """
    pki = make_pki(directory_for("pki"))
    member = TlsEtcd(
        directory_for("mtls"),
        pki,
        server_cert=pki.dns_cert,
        server_key=pki.dns_key,
        client_cert_auth=True,
    )
    try:
        yield member.start(), pki
    finally:
        member.stop()
