"""Fork severing: a forked child never reads or writes a byte of a socket its parent opened.

:func:`geetcd.transport.dial.dial` registers every client socket here (weakly: a socket
that was dropped leaves by itself, a closed one is skipped). After a fork, in the child
only, :func:`sever_inherited_sockets` (run by ``os.register_at_fork``) makes each of them a
dead end. The child's pooled connections are then seen as dropped and reopened, and its
streams (watches, keepalives) reconnect as after any lost connection, while the parent
keeps using its own connections undisturbed.
"""

from __future__ import annotations

import os
import socket as _stdlib_socket
import weakref
from typing import Any

__all__ = ["sever_inherited_sockets", "track_socket", "track_socket_holder"]

# Every socket dial() opened, and objects whose ``sock`` attribute is one.
_SOCKETS: weakref.WeakSet[Any] = weakref.WeakSet()
_HOLDERS: weakref.WeakSet[Any] = weakref.WeakSet()


def track_socket(sock: Any) -> None:
    """Register a socket this process opened, so that a forked child never shares it with
    its parent (idempotent; the socket is held weakly)."""
    _SOCKETS.add(sock)


def track_socket_holder(holder: Any) -> None:
    """Register an object whose ``sock`` attribute is (or will be) a socket this process
    opened, so that a forked child never shares it with its parent (idempotent)."""
    _HOLDERS.add(holder)


def _registered_descriptors() -> set[int]:
    sockets = [*_SOCKETS, *(getattr(holder, "sock", None) for holder in list(_HOLDERS))]
    descriptors = set()
    for sock in sockets:
        fd = sock.fileno() if sock is not None else -1
        if fd >= 0:
            descriptors.add(fd)
    return descriptors


def sever_inherited_sockets() -> int:
    """In a freshly forked child: replace the descriptor of every socket opened before the
    fork with the dead end of a closed socket pair, in place (``dup2``), and return how many.

    The child then never reads or writes a byte of a connection its parent still uses: a
    read sees end-of-file, a write fails, a pooled connection is seen as dropped and
    reopened, and streams (watches, keepalives) reconnect as after any lost connection. No
    byte is sent on the parent's connections (no TLS close_notify, no FIN: the parent's
    descriptors stay open). Only system calls are made: safe to run inside
    ``os.register_at_fork(after_in_child=...)`` before gevent's hub is re-initialised.
    """
    descriptors = _registered_descriptors()
    if not descriptors:
        return 0
    live, peer = _stdlib_socket.socketpair()
    peer.close()
    try:
        for fd in descriptors:
            os.dup2(live.fileno(), fd)
    finally:
        live.close()
    return len(descriptors)


os.register_at_fork(after_in_child=sever_inherited_sockets)
