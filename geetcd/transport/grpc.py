"""gRPC calls over HTTP/2, through the sans-IO ``h2`` library on a socket from
:func:`geetcd.transport.dial.dial`, for the few calls etcd's JSON gateway lacks (HashKV on
etcd < 3.5.10) and for snapshots (raw bytes: about three times the gateway's rate, which
sends them base64 in JSON). Framing and status are :mod:`geetcd.protocol.grpc`'s.

``http://`` members get h2c with prior knowledge (etcd serves gRPC and HTTP/1.1 on the same
port); ``https://`` members get TLS with ALPN ``h2``, using the client's TLS settings
through :func:`geetcd.transport.tls.h2_context` (built once per TLS value). One connection
per call, closed after it: these are rare maintenance calls, not worth a pool. The socket
is cooperative (a gevent socket, patched or not) and registered for fork severing.

Failures are translated like the transport's: connect refused / timed out ->
ConnectionFailed, no answer within the read timeout -> ResponseTimeout, connection broken
-> ConnectionLost, TLS failures -> TLSError, a member without HTTP/2 over TLS ->
UnsupportedServer, a gRPC status other than OK -> the matching geetcd error
(:func:`geetcd.errors.error_from_status`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from geetcd.config import TLS
from geetcd.errors import ConnectionLost, EtcdError, ResponseTimeout, UnsupportedServer
from geetcd.protocol.grpc import FrameDecoder, request_headers, status_error
from geetcd.transport.dial import dial
from geetcd.transport.endpoint import authority, parse_endpoint
from geetcd.transport.errors import translate
from geetcd.transport.tls import h2_context

__all__ = ["stream_call", "unary_call"]

_monotonic = time.monotonic

# A bigger flow-control window for streams: etcd may send this much before our acks.
_STREAM_WINDOW = 4 * 1024 * 1024
_RECV_SIZE = 256 * 1024


def _connect(url: str, tls: TLS | None, connect_timeout: float, path: str) -> tuple[Any, str, str]:
    """(socket, scheme, authority) of a new HTTP/2 connection to ``url``."""
    scheme, host, port = parse_endpoint(url)
    if scheme != "https":
        sock = dial(url, host, port, timeout=connect_timeout, what=f"gRPC {path}")
        return sock, scheme, authority(host, port)
    sock = dial(
        url,
        host,
        port,
        timeout=connect_timeout,
        ssl_context=h2_context(tls),
        server_hostname=tls.server_hostname if tls is not None else None,
        what=f"gRPC {path} TLS handshake",
    )
    if sock.selected_alpn_protocol() != "h2":
        sock.close()
        raise UnsupportedServer(f"{url} does not offer HTTP/2 (ALPN h2) for gRPC", member=url)
    return sock, scheme, authority(host, port)


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
    decoder = FrameDecoder(url)
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
        yield from decoder.feed(data)
    if decoder.pending:
        raise ConnectionLost(f"{url} ended {path} inside a gRPC message", member=url)


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
    sock, scheme, host = _connect(url, tls, connect_timeout, path)
    try:
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        if window:
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            conn.increment_flow_control_window(window)
        stream = conn.get_next_available_stream_id()
        headers = request_headers(scheme, host, path, timeout=deadline - _monotonic(), token=token)
        conn.send_headers(stream, headers)
        conn.send_data(stream, frame, end_stream=True)
        sock.sendall(conn.data_to_send())
        status: dict[str, str] = {}
        trailers: dict[str, str] = {}
        ended = False
        while not ended:
            wait = min(read_timeout, deadline - _monotonic())
            if wait <= 0:
                raise ResponseTimeout(f"no gRPC answer from {url} to {path} in time", member=url)
            sock.settimeout(wait)
            try:
                data = sock.recv(_RECV_SIZE)
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
        error = status_error(status.get(":status"), trailers, url, path)
        if error is not None:
            raise error
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
