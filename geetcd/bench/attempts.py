"""Per-member attempts and failovers for ``geetcd-bench``: an observer (:mod:`geetcd.observe`)
attached to every client of a locust process, and the summary lines it becomes.

:class:`AttemptCounter` counts, per member URL: ``attempts`` (every attempt of a call sent
there), ``failed`` (attempts that ended with an error), and ``failed_over`` (calls that
failed there and were then answered by another member: a failover away from it, counted
once per call); and ``failovers``, the calls answered after at least one failed attempt
elsewhere. Attempts of a batched txn count once per call it carried (the bench's users do
not batch unless a scenario asks for it). Pure bookkeeping: no locust import, no I/O.
"""

from __future__ import annotations

from typing import Any

from geetcd.observe import CallRecord, Observer

__all__ = ["FIELDS", "AttemptCounter", "format_attempts", "merge_attempts"]

FIELDS = ("attempts", "failed", "failed_over")
"""The counts kept per member, in this order."""


class AttemptCounter(Observer):
    """Attempts and failovers by member (see the module docstring). Attach it with
    ``client.core.add_observer(counter)``; one counter may serve many clients."""

    def __init__(self) -> None:
        self.members: dict[str, list[int]] = {}
        self.failovers = 0

    def __repr__(self) -> str:
        return f"<AttemptCounter members={len(self.members)} failovers={self.failovers}>"

    def _row(self, member: str) -> list[int]:
        row = self.members.get(member)
        if row is None:
            row = self.members[member] = [0] * len(FIELDS)
        return row

    def call_started(self, call: CallRecord) -> Any:
        return []  # the members this call failed on

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        row = self._row(member)
        row[0] += 1
        if error is not None:
            row[1] += 1
            failed_on: list[str] | None = call.context_of(self)
            if failed_on is not None and member not in failed_on:
                failed_on.append(member)

    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        failed_on: list[str] | None = call.context_of(self)
        if error is not None or not failed_on or call.member is None:
            return
        moved = [m for m in failed_on if m != call.member]
        if moved:
            self.failovers += 1
            for member in moved:
                self._row(member)[2] += 1

    def take(self) -> dict[str, Any]:
        """The counts as JSON (``{"members": {url: {field: n}}, "failovers": n}``), and
        reset them (a locust worker ships what it counted since its last report)."""
        data = self.to_json()
        self.members, self.failovers = {}, 0
        return data

    def to_json(self) -> dict[str, Any]:
        """The counts as JSON, unchanged."""
        members = {url: dict(zip(FIELDS, row, strict=True)) for url, row in self.members.items()}
        return {"members": members, "failovers": self.failovers}

    def merge(self, data: dict[str, Any]) -> None:
        """Add counts in the form of :meth:`to_json` (from a worker)."""
        for url, counts in dict(data.get("members") or {}).items():
            row = self._row(str(url))
            for index, field in enumerate(FIELDS):
                row[index] += int(counts.get(field, 0))
        self.failovers += int(data.get("failovers") or 0)


def merge_attempts(*parts: dict[str, Any]) -> dict[str, Any]:
    """The sum of several :meth:`AttemptCounter.to_json` results."""
    counter = AttemptCounter()
    for part in parts:
        counter.merge(part)
    return counter.to_json()


def format_attempts(data: dict[str, Any] | None) -> list[str]:
    """The summary lines of the counts (none when nothing was counted)::

    attempts by member: http://127.0.0.1:2379 5,120, http://127.0.0.1:22379 4,870
      (312 failed, 298 failed over), ...
    calls failed over to another member: 298
    """
    if not data or not data.get("members"):
        return []
    shares = []
    for url, counts in sorted(data["members"].items()):
        text = f"{url} {int(counts.get('attempts', 0)):,}"
        failed, moved = int(counts.get("failed", 0)), int(counts.get("failed_over", 0))
        if failed or moved:
            text += f" ({failed:,} failed, {moved:,} failed over)"
        shares.append(text)
    lines = ["  attempts by member: " + ", ".join(shares)]
    lines.append(f"  calls failed over to another member: {int(data.get('failovers') or 0):,}")
    return lines
