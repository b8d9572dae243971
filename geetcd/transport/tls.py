"""TLS client contexts: ``gevent.ssl`` (cooperative whether or not the program was monkey
patched), TLS >= 1.2, verification on unless turned off.

A :class:`~geetcd.transport.Transport` builds its HTTP/1.1 context once (at construction
when it was given TLS settings, so bad files fail early) and shares it between its pools,
streams and WebSockets. gRPC calls need ALPN ``h2`` on a context of their own (offering
``h2`` on the HTTP/1.1 context would let etcd pick HTTP/2 for the pools): :func:`h2_context`
builds it once per TLS value and reuses it until one of its files changes.
"""

from __future__ import annotations

import os
import ssl as _stdlib_ssl
from collections.abc import Sequence

import gevent.ssl

from geetcd.config import TLS
from geetcd.errors import TLSError

__all__ = ["h2_context", "make_ssl_context"]


def make_ssl_context(tls: TLS, *, alpn: Sequence[str] = ()) -> _stdlib_ssl.SSLContext:
    """A gevent.ssl client context (TLS >= 1.2) from a TLS value object.

    Verification is on unless ``tls.verify`` is False: ``tls.ca_file`` or else the system trust
    store. ``alpn`` protocols are offered when given. Raises TLSError naming the file when a
    CA, certificate or key cannot be loaded.
    """
    ctx = gevent.ssl.SSLContext(_stdlib_ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _stdlib_ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = tls.verify
    ctx.verify_mode = _stdlib_ssl.CERT_REQUIRED if tls.verify else _stdlib_ssl.CERT_NONE
    source = tls.ca_file or "the system trust store"
    try:
        if tls.verify and tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
        elif tls.verify:
            ctx.load_default_certs()
        if tls.cert_file:
            source = f"{tls.cert_file} / {tls.key_file or '(key in the same file)'}"
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TLSError(f"cannot load TLS material from {source}: {exc}") from exc
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


_Stamp = tuple[tuple[str, int, int], ...]
_H2_CONTEXTS: dict[TLS, tuple[_Stamp, _stdlib_ssl.SSLContext]] = {}
_H2_CACHE_SIZE = 16


def _stamp(tls: TLS) -> _Stamp:
    """(path, mtime, size) of each file of ``tls`` (missing files: zeros)."""
    stamp = []
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        if path:
            try:
                info = os.stat(path)
            except OSError:
                stamp.append((path, 0, 0))
            else:
                stamp.append((path, info.st_mtime_ns, info.st_size))
    return tuple(stamp)


def h2_context(tls: TLS | None) -> _stdlib_ssl.SSLContext:
    """The gRPC context (ALPN ``h2``) for ``tls`` (None: ``TLS()``, the system trust store).

    Built once per TLS value: calls with equal settings get the same context, rebuilt only
    when the CA, certificate or key file changed on disk (a rotated client certificate is
    picked up by the next call). Raises TLSError as :func:`make_ssl_context`.
    """
    settings = tls if tls is not None else TLS()
    stamp = _stamp(settings)
    cached = _H2_CONTEXTS.get(settings)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    ctx = make_ssl_context(settings, alpn=("h2",))
    if settings not in _H2_CONTEXTS and len(_H2_CONTEXTS) >= _H2_CACHE_SIZE:
        _H2_CONTEXTS.pop(next(iter(_H2_CONTEXTS)))  # the oldest settings
    _H2_CONTEXTS[settings] = (stamp, ctx)
    return ctx
