"""The only package that touches sockets: every client socket, TLS context and network
exception of geetcd is made or met here.

One job per module:

* :mod:`~geetcd.transport.dial` -- ``dial()``, the one function that creates client
  sockets: gevent sockets (cooperative, patched or not), connect timeout, ``TCP_NODELAY``,
  TLS, registration for fork severing;
* :mod:`~geetcd.transport.fork` -- a forked child never reads or writes a byte of its
  parent's sockets;
* :mod:`~geetcd.transport.tls` -- ``gevent.ssl`` contexts, built once per transport (and
  once per TLS value for gRPC);
* :mod:`~geetcd.transport.endpoint` -- ``http(s)://host:port`` parsing;
* :mod:`~geetcd.transport.gate` -- FairGate, the FIFO bound on a member's connections;
* :mod:`~geetcd.transport.connection` -- urllib3 connection objects whose sockets are dialed;
* :mod:`~geetcd.transport.pool` -- the unary connections to one member;
* :mod:`~geetcd.transport.stream` -- one streaming HTTP/1.1 response;
* :mod:`~geetcd.transport.websocket` -- WebSockets to the gateway's stream proxy;
* :mod:`~geetcd.transport.grpc` -- gRPC calls over HTTP/2 (framing in
  :mod:`geetcd.protocol.grpc`);
* :mod:`~geetcd.transport.errors` -- the one translation of socket/TLS/HTTP exceptions;
* :mod:`~geetcd.transport.transport` -- Transport, what the rest of geetcd talks to.

No private urllib3 API is used. HTTP/1.1 bytes of unary calls are written and read by
:mod:`geetcd.http1`.
"""

from geetcd.transport.connection import CooperativeHTTPConnection, CooperativeHTTPSConnection
from geetcd.transport.dial import dial
from geetcd.transport.endpoint import parse_endpoint
from geetcd.transport.errors import translate
from geetcd.transport.fork import sever_inherited_sockets, track_socket, track_socket_holder
from geetcd.transport.gate import FairGate
from geetcd.transport.pool import MemberPool, close_dropped_idle
from geetcd.transport.stream import Stream
from geetcd.transport.tls import h2_context, make_ssl_context
from geetcd.transport.transport import RawResponse, Transport

__all__ = [
    "CooperativeHTTPConnection",
    "CooperativeHTTPSConnection",
    "FairGate",
    "MemberPool",
    "RawResponse",
    "Stream",
    "Transport",
    "close_dropped_idle",
    "dial",
    "h2_context",
    "make_ssl_context",
    "parse_endpoint",
    "sever_inherited_sockets",
    "track_socket",
    "track_socket_holder",
    "translate",
]
