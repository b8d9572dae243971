"""One unary gRPC call over HTTP/2, through the sans-IO ``h2`` library on a cooperative
``gevent.socket`` (no monkey patching needed), for the few calls etcd's JSON gateway lacks
(HashKV on etcd < 3.5.10) and for snapshots (raw bytes: about three times the gateway's
rate, which sends them base64 in JSON).

``http://`` members get h2c with prior knowledge (etcd serves gRPC and HTTP/1.1 on the same
port); ``https://`` members get TLS with ALPN ``h2``, using the client's TLS settings. One
connection per call, closed after it: these are rare maintenance calls, not worth a pool.

Failures are translated like the transport's: connect refused / timed out ->
ConnectionFailed, no answer within the read timeout -> ResponseTimeout, connection broken
-> ConnectionLost, TLS failures -> TLSError, a gRPC status other than OK -> the matching
geetcd error (:func:`geetcd.errors.error_from_status`).
"""

from __future__ import annotations

import socket as _stdlib_socket
import ssl as _stdlib_ssl
import time
import urllib.parse
from collections.abc import Generator, Iterator, Mapping

import gevent.socket
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from geetcd.config import TLS
from geetcd.errors import (
    ConnectionFailed,
    ConnectionLost,
    EtcdError,
    MalformedResponse,
    ResponseTimeout,
    TLSError,
    UnsupportedServer,
    error_from_status,
)
from geetcd.transport import make_ssl_context, parse_endpoint, translate

__all__ = ["stream_call", "unary_call"]

_monotonic = time.monotonic


def _connect(
    url: str, tls: TLS | None, connect_timeout: float
) -> tuple[_stdlib_socket.socket, str, str]:
    scheme, host, port = parse_endpoint(url)
    try:
        sock = gevent.socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {url} for gRPC: {exc}", member=url) from exc
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if scheme != "https":
        return sock, scheme, authority
    settings = tls or TLS()
    context = make_ssl_context(settings)
    context.set_alpn_protocols(["h2"])
    try:
        wrapped = context.wrap_socket(sock, server_hostname=settings.server_hostname or host)
    except (_stdlib_ssl.SSLError, OSError) as exc:
        sock.close()
        error = translate(exc, url, "gRPC TLS handshake")
        if isinstance(error, TLSError):
            raise error from exc
        raise TLSError(f"TLS with {url} failed for gRPC: {exc}", member=url) from exc
    if wrapped.selected_alpn_protocol() != "h2":
        wrapped.close()
        raise UnsupportedServer(f"{url} does not offer HTTP/2 (ALPN h2) for gRPC", member=url)
    return wrapped, scheme, authority


def unary_call(
    url: str,
    path: str,
    frame: bytes,
    *,
    tls: TLS | None,
    token: str | None,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
) -> bytes:
    """Send the gRPC ``frame`` (a length-prefixed message) to ``path`` on ``url`` and return
    the answer's body (its length-prefixed frame). Each read waits at most
    ``read_timeout``; the call ends by ``deadline`` (monotonic) at the latest. Raises the
    errors listed in the module docstring."""
    body = bytearray()
    for data in _exchange(
        url,
        path,
        frame,
        tls=tls,
        token=token,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        deadline=deadline,
    ):
        body += data
    return bytes(body)


def stream_call(
    url: str,
    path: str,
    frame: bytes,
    *,
    tls: TLS | None,
    token: str | None,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
) -> Generator[bytes, None, None]:
    """A server-streaming gRPC call: yields each answer message (protobuf bytes, without
    gRPC's 5-byte prefix) as soon as it is whole. Memory: one partial message plus one
    socket read. Reads, deadline and errors as :func:`unary_call`; an error status at the
    end of the stream is raised after the messages before it were yielded. Close the
    generator to abandon the call (the connection is closed)."""
    buffer = bytearray()
    for data in _exchange(
        url,
        path,
        frame,
        tls=tls,
        token=token,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        deadline=deadline,
        window=_STREAM_WINDOW,
    ):
        buffer += data
        while len(buffer) >= 5:
            if buffer[0] != 0:
                raise MalformedResponse(f"compressed gRPC message from {url}", member=url)
            size = int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 5 + size:
                break
            message = bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            yield message
    if buffer:
        raise ConnectionLost(f"{url} ended {path} inside a gRPC message", member=url)


# A bigger flow-control window for streams: etcd may send this much before our acks.
_STREAM_WINDOW = 4 * 1024 * 1024


def _exchange(
    url: str,
    path: str,
    frame: bytes,
    *,
    tls: TLS | None,
    token: str | None,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
    window: int = 0,
) -> Iterator[bytes]:
    """One gRPC request on a new connection: yields the answer's DATA as it arrives, then
    checks the status (grpc-status in the trailers, or in the headers of a trailers-only
    answer) and closes the connection."""
    sock, scheme, authority = _connect(url, tls, connect_timeout)
    try:
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        if window:
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            conn.increment_flow_control_window(window)
        stream = conn.get_next_available_stream_id()
        left_ms = max(1, int((deadline - _monotonic()) * 1000))
        headers = [
            (":method", "POST"),
            (":scheme", scheme),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{left_ms}m"),
            ("user-agent", "geetcd"),
        ]
        if token:
            headers.append(("authorization", token))
        conn.send_headers(stream, headers)
        conn.send_data(stream, frame, end_stream=True)
        sock.sendall(conn.data_to_send())
        status: Mapping[str, str] = {}
        trailers: dict[str, str] = {}
        ended = False
        while not ended:
            wait = min(read_timeout, deadline - _monotonic())
            if wait <= 0:
                raise ResponseTimeout(f"no gRPC answer from {url} to {path} in time", member=url)
            sock.settimeout(wait)
            try:
                data = sock.recv(256 * 1024)
            except TimeoutError as exc:
                raise ResponseTimeout(
                    f"no gRPC answer from {url} to {path} in time", member=url
                ) from exc
            if not data:
                raise ConnectionLost(f"{url} closed the gRPC connection during {path}", member=url)
            received: list[bytes] = []
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = _decode(event.headers)
                    trailers.update(status)  # a trailers-only answer carries grpc-status here
                elif isinstance(event, h2.events.DataReceived):
                    if event.data:
                        received.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers.update(_decode(event.headers))
                elif isinstance(event, h2.events.StreamEnded):
                    ended = ended or event.stream_id == stream
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionLost(
                        f"{url} reset the gRPC stream of {path} (code {event.error_code})",
                        member=url,
                    )
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionLost(
                        f"{url} ended the HTTP/2 connection during {path}", member=url
                    )
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
            if received and status.get(":status") == "200":
                yield from received
        if status.get(":status") != "200":
            raise MalformedResponse(
                f"{url} answered {path} with HTTP/2 status {status.get(':status')}", member=url
            )
        code = int(trailers.get("grpc-status", "2") or 2)
        if code != 0:
            message = urllib.parse.unquote(trailers.get("grpc-message", ""))
            raise error_from_status(None, code, message or f"gRPC status {code}", member=url)
    except h2.exceptions.ProtocolError as exc:
        raise ConnectionLost(f"HTTP/2 protocol error with {url}: {exc}", member=url) from exc
    except EtcdError:
        raise
    except OSError as exc:  # ssl.SSLError included: a refused client certificate -> TLSError
        raise translate(exc, url, f"gRPC {path}") from exc
    finally:
        sock.close()


def _decode(headers: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers or ():  # type: ignore[attr-defined]
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key] = value.decode() if isinstance(value, bytes) else str(value)
    return out
