"""The one translation of socket, TLS, HTTP and urllib3 exceptions into geetcd errors.

Applied once, at the boundary, with the original chained as ``__cause__``:

* could not connect (refused, unreachable, connect timeout, DNS)  -> ConnectionFailed
* sent, then no answer within the read timeout                    -> ResponseTimeout
* sent, then the connection broke                                 -> ConnectionLost
* TLS handshake or verification failed                            -> TLSError
* no pooled connection free before the deadline                   -> PoolTimeout

Connect failures are translated where the socket is created (:func:`geetcd.transport.dial.dial`
raises ConnectionFailed itself), so a bare ``OSError`` met here happened after the connect.
"""

from __future__ import annotations

import ssl as _stdlib_ssl
from http.client import HTTPException
from typing import Any

from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.ssl_match_hostname import CertificateError

from geetcd.errors import (
    ConnectionFailed,
    ConnectionLost,
    EtcdError,
    PoolTimeout,
    ResponseTimeout,
    TLSError,
)

__all__ = ["pending_tls_alert", "translate"]


def pending_tls_alert(sock: Any) -> _stdlib_ssl.SSLError | None:
    """The TLS alert waiting on a TLS socket whose write or read just failed, if any.

    Reads once, for at most 0.25 s: an alert the server sent before closing is already in
    the socket's receive queue (Linux keeps queued data readable after a reset). Returns
    the ssl error that read raised when it names an alert; None otherwise. Never raises.
    """
    if sock is None:
        return None
    try:
        sock.settimeout(0.25)
        sock.recv(1)
    except _stdlib_ssl.SSLError as exc:
        text = f"{getattr(exc, 'reason', '')} {exc}".upper()
        return exc if "ALERT" in text else None
    except (OSError, ValueError):
        return None
    return None


def translate(exc: BaseException, url: str, what: str) -> EtcdError:
    """Map one urllib3/socket/ssl exception to a geetcd error (returned, never raised).

    An ssl error is looked for wherever urllib3 wrapped it (SSLError, ProtocolError,
    NewConnectionError, ``__cause__``/``__context__``) and becomes a TLSError naming the member
    and the reason: server certificate not trusted, host name mismatch, client certificate
    refused by the server, or no TLS on the other side. A TLS connection that merely closed
    (EOF, reset) is a member failure (ConnectionLost, transient), not a TLSError. A socket
    timeout (``TimeoutError``: no byte within the socket's timeout after the connect) is a
    ResponseTimeout.
    """
    if isinstance(exc, (ReadTimeoutError, TimeoutError)):
        return ResponseTimeout(f"no answer from {url} to {what} in time", member=url)
    if isinstance(exc, EmptyPoolError):
        message = f"no free connection to {url} for {what} before the deadline"
        return PoolTimeout(message, member=url)
    chain: list[BaseException] = [exc]
    for err in chain:  # breadth-first over the wrapped errors (the list grows while iterated)
        if isinstance(err, (_stdlib_ssl.SSLError, CertificateError)):
            break
        links = (*err.args, err.__cause__, err.__context__)
        chain.extend(e for e in links if isinstance(e, BaseException) and e not in chain)
        if len(chain) > 8:
            break
    else:
        err = None
    if isinstance(err, (_stdlib_ssl.SSLEOFError, _stdlib_ssl.SSLZeroReturnError)):
        return ConnectionLost(f"TLS connection to {url} closed during {what}: {err}", member=url)
    if isinstance(err, (_stdlib_ssl.SSLError, CertificateError)):
        text = f"{getattr(err, 'reason', '')} {err}".upper()
        if "MISMATCH" in text or "DOESN'T MATCH" in text:
            why = "server certificate does not match the host name (see TLS.server_hostname)"
        elif "VERIFY_FAILED" in text and ("ISSUER" in text or "SELF" in text):
            why = "server certificate signed by an unknown CA (give TLS(ca_file=...))"
        elif "VERIFY_FAILED" in text:
            why = "server certificate rejected"
        elif "ALERT" in text and ("CERTIFICATE" in text or "UNKNOWN_CA" in text):
            why = (
                "the server refused the client certificate: none was given or its CA is not "
                "the server's --trusted-ca-file (etcd --client-cert-auth needs "
                "TLS(cert_file=..., key_file=...))"
            )
        elif "WRONG_VERSION_NUMBER" in text:
            why = "the member does not speak TLS (an http:// endpoint?)"
        else:
            why = "handshake failed"
        return TLSError(f"TLS with {url} failed during {what}: {why}: {err}", member=url)
    if isinstance(exc, (NewConnectionError, ConnectTimeoutError, NameResolutionError)):
        return ConnectionFailed(f"cannot connect to {url} for {what}: {exc}", member=url)
    if isinstance(exc, (ProtocolError, HTTPError, OSError, HTTPException)):
        return ConnectionLost(f"connection to {url} broke during {what}: {exc}", member=url)
    return ConnectionLost(f"unexpected failure talking to {url} during {what}: {exc!r}", member=url)
