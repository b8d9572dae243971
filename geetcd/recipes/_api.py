"""What the recipes use of a client: the Protocol :class:`KVClient`.

Locks, elections, queues, sessions and STM are written against the public client API (KV,
watch, lease calls), typed by this Protocol rather than by the :class:`geetcd.Client`
class: the recipes never import the facade, and the facade builds them
(``client.lock(name)``...) without an import cycle. :class:`geetcd.Client` satisfies it
(mypy checks that where the client builds a recipe); the signatures below are the subsets
of the client's that the recipes call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import gevent

    from geetcd.core import Core
    from geetcd.lease import Session
    from geetcd.models import DeleteResponse, Event, KeyValue, RangeResponse, TxnResponse
    from geetcd.protocol.kv import SortOrder, SortTarget
    from geetcd.protocol.watch import WatchFilter
    from geetcd.txn import Comparison, TxnOp
    from geetcd.watch import Watch

__all__ = ["KVClient"]


class KVClient(Protocol):
    """The client API the recipes call (each method as documented on :class:`geetcd.Client`)."""

    @property
    def core(self) -> Core: ...

    @property
    def closed(self) -> bool: ...

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet[..., Any]: ...

    def range(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int | None = None,
        serializable: bool = False,
        keys_only: bool = False,
        sort_order: str | SortOrder | None = None,
        sort_target: str | SortTarget | None = None,
        timeout: float | None = None,
    ) -> RangeResponse: ...

    def get(
        self,
        key: str | bytes,
        *,
        revision: int | None = None,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> KeyValue | None: ...

    def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> DeleteResponse: ...

    def txn(
        self,
        compare: Sequence[Comparison] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResponse: ...

    def watch(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        start_revision: int | None = None,
        prev_kv: bool = False,
        filters: Sequence[str | WatchFilter] | str | WatchFilter = (),
        callback: Callable[[Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        timeout: float | None = None,
    ) -> Watch: ...

    def session(self, ttl: int = 10, *, timeout: float | None = None) -> Session: ...

    def revoke_lease(self, lease: object, *, timeout: float | None = None) -> None: ...
