"""The one latency histogram of geetcd's load tooling (locust runs, plain benchmarks, soak).

Every percentile geetcd prints (``geetcd-bench``'s table and progress lines, the
``loadtests/bench_*.py`` scripts) comes from :class:`LatencyHistogram`, so they all use
the same definition: the **nearest rank** (the ``ceil(q * n)``-th smallest sample, the
smallest sample at or above which lie at least ``q`` of the samples).

Samples go into logarithmic buckets 1 % wide, each remembering how many samples it holds
and the largest one. A percentile is the largest sample of the bucket that holds the true
nearest-rank sample ``x``, so it is a value that was really measured, never below ``x``
and less than 1.01 ``x`` (exactly ``x`` when its bucket holds one distinct value, as with
locust's whole-millisecond buckets). Memory is bounded (a few hundred buckets for
microseconds to minutes), histograms merge exactly, and they travel as JSON between locust
workers and the master. No I/O, no locust, no gevent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["LatencyHistogram"]

_PER_E = 100  # buckets per factor e: each is 1 % wide
_FLOOR = 0.001  # samples below this (ms: 1 µs) share its bucket


def _index(value: float) -> int:
    return round(math.log(max(value, _FLOOR)) * _PER_E)


class LatencyHistogram:
    """Samples (any unit; geetcd uses milliseconds) in 1 % logarithmic buckets.

    ``count``, ``total`` (the sum, for exact means), ``min`` and ``max`` are exact. Negative
    samples count as 0. Not thread-safe (greenlets are fine: no method yields).
    """

    __slots__ = ("_buckets", "count", "max", "min", "total")

    def __init__(self, samples: Iterable[float] = ()) -> None:
        self._buckets: dict[int, list[float]] = {}  # index -> [count, largest sample]
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0
        for sample in samples:
            self.add(sample)

    def __repr__(self) -> str:
        if not self.count:
            return "<LatencyHistogram empty>"
        return (
            f"<LatencyHistogram n={self.count} p50={self.percentile(0.5):.3g} "
            f"p99={self.percentile(0.99):.3g} max={self.max:.3g}>"
        )

    def __len__(self) -> int:
        return self.count

    def add(self, value: float, count: int = 1) -> None:
        """Count ``count`` samples of ``value``. Never raises for a finite number."""
        if count <= 0:
            return
        value = max(0.0, float(value))
        index = _index(value)
        bucket = self._buckets.get(index)
        if bucket is None:
            self._buckets[index] = [float(count), value]
        else:
            bucket[0] += count
            bucket[1] = max(bucket[1], value)
        self.count += count
        self.total += value * count
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    @classmethod
    def from_counts(cls, counts: Mapping[Any, int]) -> LatencyHistogram:
        """A histogram of ``{value: how many}`` pairs, e.g. locust's ``response_times``
        (keys may be strings of numbers, as in locust's JSON)."""
        histogram = cls()
        for value, count in counts.items():
            histogram.add(float(value), int(count))
        return histogram

    @property
    def mean(self) -> float:
        """The exact mean (0.0 when empty)."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile (``q`` in 0..1), within the guarantee of the module
        docstring; 0.0 when empty. ``q`` <= 0 is read as the first sample's rank, ``q`` >= 1
        gives the maximum. Raises ValueError for a ``q`` that is not a number."""
        if math.isnan(q):
            raise ValueError("q must be a number in 0..1")
        if not self.count:
            return 0.0
        rank = min(self.count, max(1, math.ceil(q * self.count)))
        seen = 0.0
        for index in sorted(self._buckets):
            count, largest = self._buckets[index]
            seen += count
            if seen >= rank:
                return largest
        return self.max

    def merge(self, other: LatencyHistogram) -> None:
        """Add every sample of ``other`` (exact: the result is as if added here)."""
        for index, (count, largest) in other._buckets.items():
            mine = self._buckets.get(index)
            if mine is None:
                self._buckets[index] = [count, largest]
            else:
                mine[0] += count
                mine[1] = max(mine[1], largest)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form; :meth:`from_json` (or :meth:`merge_json`) reads it back."""
        return {
            "b": {str(i): [int(c), m] for i, (c, m) in self._buckets.items()},
            "n": self.count,
            "t": self.total,
            "lo": self.min if self.count else None,
            "hi": self.max,
        }

    def merge_json(self, data: Mapping[str, Any]) -> None:
        """Add the samples of another histogram's :meth:`to_json`. Raises KeyError or
        ValueError when ``data`` is not such a form."""
        other = LatencyHistogram()
        for key, (count, largest) in data["b"].items():
            other._buckets[int(key)] = [float(count), float(largest)]
        other.count = int(data["n"])
        other.total = float(data["t"])
        other.min = math.inf if data["lo"] is None else float(data["lo"])
        other.max = float(data["hi"])
        self.merge(other)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        """The histogram :meth:`to_json` described."""
        histogram = cls()
        histogram.merge_json(data)
        return histogram

    def summary(self) -> dict[str, float | int]:
        """``count``, ``mean``, ``p50``, ``p90``, ``p99``, ``p999`` and ``max`` in one dict."""
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.percentile(0.5),
            "p90": self.percentile(0.9),
            "p99": self.percentile(0.99),
            "p999": self.percentile(0.999),
            "max": self.max,
        }
