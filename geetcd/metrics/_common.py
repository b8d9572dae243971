"""What the Prometheus adapter's modules share (no optional dependency, no geetcd import):
histogram buckets and the outcome label of an error."""

from __future__ import annotations

__all__ = ["BATCH_BUCKETS", "DURATION_BUCKETS", "outcome_of"]

DURATION_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Buckets of ``geetcd_request_duration_seconds``: a 0.5 ms loopback call to a 10 s deadline."""

BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
"""Buckets of ``geetcd_batch_size`` (etcd's default ``--max-txn-ops`` is 128)."""

_GEVENT = ("greenlet", "gevent")


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome``/``result`` label of a call or attempt that ended with ``error``:
    ``ok`` (None); the class name of a geetcd exception (``OutcomeUnknown``,
    ``DeadlineExceeded``, ``CompactedRevision``...); ``GreenletExit`` (the caller's greenlet
    was killed); ``Timeout`` (a ``gevent.Timeout`` of the caller); ``other`` for any other
    exception. Bounded: the names come from geetcd's and gevent's code. Never raises."""
    if error is None:
        return "ok"
    cls = type(error)
    module = cls.__module__
    if module == "geetcd" or module.startswith("geetcd."):
        return cls.__name__
    if cls.__name__ in ("GreenletExit", "Timeout") and module.split(".")[0] in _GEVENT:
        return cls.__name__
    return "other"
