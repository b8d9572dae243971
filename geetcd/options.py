"""``ClientConfig``: every option of a client in one frozen, validated value object.

``geetcd.Client(urls, timeout=5)``, ``geetcd.v2.Client(urls, timeout=5)`` and
``geetcd.Client(config=ClientConfig(endpoints=urls, timeout=5))`` all end here: the options
are validated once, when the value is built (wrong types raise InvalidType, a TypeError;
out-of-range values raise InvalidArgument, a ValueError), and the core reads them from it. A
config is immutable and can be shared by several clients; ``config.replace(timeout=1)`` (or
``Client(config=config, timeout=1)``) makes a changed copy.

Callables and objects with state are not options: ``on_state_change=`` and ``transport=`` are
passed to the client beside its config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geetcd.cluster import PickPolicy, normalize_endpoints
from geetcd.config import TLS, Retry, check_duration
from geetcd.errors import InvalidArgument, InvalidType
from geetcd.protocol.codec import to_bytes
from geetcd.protocol.kv import check_bool

__all__ = ["DEFAULT_ENDPOINT", "STREAM_KINDS", "ClientConfig"]

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
"""The endpoint of a client given none (etcd's default client URL)."""

STREAM_KINDS = ("websocket", "http")
"""The values of ``streams``."""


def _optional_duration(value: object, what: str) -> float | None:
    return None if value is None else check_duration(value, what)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """The options of one client (see the module docstring and the README's tour).

    ``endpoints``: member URLs (a list, or one comma-separated string; ``host:port`` means
    ``http://``), normalized to a tuple. ``timeout``: deadline of one call, failover
    included. ``attempt_timeout``: how long one attempt waits before the member is treated as
    hung. ``connect_timeout``. ``maxsize``: connections per member. ``retry``: the retry
    budget and backoff. ``namespace``: a key prefix (bytes once built). ``policy``: how a
    member is picked. ``sync_interval`` / ``sync_on_start``: learning members from the
    cluster. ``tls``. ``user`` / ``password``. ``api_prefix`` (None: ``/v3``, with
    ``/v3beta`` detected). ``hedge_delay``: reads still unanswered then go to a second member
    too. ``streams``: ``"websocket"`` or ``"http"``. ``batch_reads`` / ``batch_writes``.
    """

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    timeout: float = 10.0
    attempt_timeout: float = 2.0
    connect_timeout: float = 1.0
    maxsize: int = 64
    retry: Retry = field(default_factory=Retry)
    namespace: bytes = b""
    policy: PickPolicy = PickPolicy.STICKY_RANDOM
    sync_interval: float | None = None
    sync_on_start: bool = False
    tls: TLS | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    api_prefix: str | None = None
    hedge_delay: float | None = None
    streams: str = "websocket"
    batch_reads: bool = True
    batch_writes: bool = False

    def __post_init__(self) -> None:
        endpoints: object = self.endpoints
        if not isinstance(endpoints, (str, Sequence)):
            raise InvalidType(f"endpoints must be a str or a list of str, got {endpoints!r}")
        self._set("endpoints", tuple(normalize_endpoints(endpoints)))
        self._set("timeout", check_duration(self.timeout, "timeout"))
        self._set("attempt_timeout", check_duration(self.attempt_timeout, "attempt_timeout"))
        self._set("connect_timeout", check_duration(self.connect_timeout, "connect_timeout"))
        maxsize: object = self.maxsize
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise InvalidArgument(f"maxsize must be an int >= 1, got {maxsize!r}")
        if not isinstance(self.retry, Retry):
            raise InvalidType(f"retry must be a geetcd.Retry, got {type(self.retry).__name__}")
        namespace: object = self.namespace
        self._set("namespace", b"" if namespace is None else to_bytes(namespace, "namespace"))
        if not isinstance(self.policy, PickPolicy):
            raise InvalidArgument(f"policy must be a PickPolicy, got {self.policy!r}")
        self._set("sync_interval", _optional_duration(self.sync_interval, "sync_interval"))
        self._set("hedge_delay", _optional_duration(self.hedge_delay, "hedge_delay"))
        check_bool(self.sync_on_start, "sync_on_start")
        if self.tls is not None and not isinstance(self.tls, TLS):
            raise InvalidType(f"tls must be a geetcd.TLS, got {type(self.tls).__name__}")
        streams: object = self.streams
        if not isinstance(streams, str):
            raise InvalidType(
                f"streams must be 'websocket' or 'http', got {type(streams).__name__}"
            )
        if streams not in STREAM_KINDS:
            raise InvalidArgument(f"streams must be 'websocket' or 'http', got {streams!r}")
        check_bool(self.batch_reads, "batch_reads")
        check_bool(self.batch_writes, "batch_writes")
        api_prefix: object = self.api_prefix
        if api_prefix is not None and not isinstance(api_prefix, str):
            raise InvalidType(f"api_prefix must be a str, got {type(api_prefix).__name__}")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # normalizing a frozen value while it is built

    def replace(self, **options: Any) -> ClientConfig:
        """A copy with ``options`` changed (validated like a new one). InvalidType (a
        TypeError) naming the option for an unknown one."""
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise InvalidType(
                f"unknown client option(s) {', '.join(unknown)} (the options: "
                f"{', '.join(OPTION_NAMES)})"
            )
        return dataclasses.replace(self, **options)

    @classmethod
    def build(
        cls,
        endpoints: str | Sequence[str] | None,
        config: ClientConfig | None,
        options: Mapping[str, Any],
    ) -> ClientConfig:
        """The config of ``Client(endpoints, config=config, **options)``: ``config`` (or the
        defaults) with ``endpoints`` (when given) and ``options`` applied."""
        if config is not None and not isinstance(config, ClientConfig):
            raise InvalidType(f"config must be a ClientConfig, got {type(config).__name__}")
        base = config if config is not None else cls()
        changes = dict(options)
        if endpoints is not None:
            changes["endpoints"] = endpoints
        return base.replace(**changes) if changes else base


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ClientConfig))
"""Every option's name, in declaration order."""
