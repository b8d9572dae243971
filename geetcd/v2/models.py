"""Immutable results of the v2 keys API: frozen, slotted dataclasses.

v2 keys and values are text (``str``); indexes are the v2 store's own counter, independent
of the v3 revision.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Node", "Response", "Resync", "Version"]


@dataclass(frozen=True, slots=True)
class Node:
    """One key or directory.

    ``key`` is the full path (``"/"`` for the root, which etcd sends without a key).
    ``value`` is None for a directory (and for deleted/expired nodes in events, which carry
    no value). ``ttl`` (seconds left when read) and ``expiration`` (UTC) are None for a key
    without a TTL. ``nodes`` are the children of a directory read with ``get``: one level,
    or the whole tree with ``recursive=True`` (a sub-directory read one level deep has
    ``dir=True`` and no ``nodes``).
    """

    key: str
    value: str | None = None
    dir: bool = False
    ttl: int | None = None
    expiration: _dt.datetime | None = None
    created_index: int = 0
    modified_index: int = 0
    nodes: tuple[Node, ...] = ()

    def walk(self) -> Iterator[Node]:
        """This node, then every node below it, depth first, in the order etcd sent them."""
        yield self
        for child in self.nodes:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Response:
    """One answer of ``/v2/keys``.

    ``action`` is etcd's verb: get, set, create, update, compareAndSwap, delete,
    compareAndDelete, expire. ``prev_node`` is the node before a write (None for a new key).
    ``etcd_index`` / ``raft_index`` / ``raft_term`` come from the ``X-Etcd-Index`` /
    ``X-Raft-Index`` / ``X-Raft-Term`` headers; they are 0 for watch results (their
    answers arrive on a stream whose headers are not kept: use ``node.modified_index``).
    """

    action: str
    node: Node
    prev_node: Node | None = None
    etcd_index: int = 0
    raft_index: int = 0
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class Resync:
    """Yielded by a persistent watch when etcd no longer had the events it was waiting for
    (errorCode 401: more than 1000 writes went by). Some changes were missed: rebuild your
    state from ``response`` (a fresh ``get`` of the watched key, recursive if the watch is;
    None when the key does not exist now). The watch goes on from ``etcd_index + 1``.
    """

    response: Response | None
    etcd_index: int


@dataclass(frozen=True, slots=True)
class Version:
    """``GET /version``: the member's etcd version and the cluster's (protocol) version."""

    server: str
    cluster: str
