"""The base of the feature groups built on a core: :class:`Feature`, and :class:`HasCore`.

Like Go's ``clientv3.NewKV(c)`` / ``NewLease(c)`` / ``NewWatcher(c)``, each feature group
(:class:`geetcd.kv.KV`, :class:`geetcd.watch.Watcher`, :class:`geetcd.lease.Leases`,
:class:`geetcd.maintenance.Maintenance`, :class:`geetcd.membership.Membership`,
:class:`geetcd.auth.Auth`) is a class whose only state is a :class:`geetcd.core.Core` (and
what it builds on it): ``KV(core)`` works on its own. :class:`geetcd.Client` composes them
by inheritance over the one core it builds, so every method of a group is a method of the
client, documented once, with no delegation in between.
"""

from __future__ import annotations

from typing import Protocol

from geetcd.core import Core
from geetcd.errors import InvalidType

__all__ = ["Feature", "HasCore", "core_of"]


class HasCore(Protocol):
    """Anything that stands on a core (a :class:`geetcd.Client`, a feature group)."""

    @property
    def core(self) -> Core: ...


class Feature:
    """A feature group on ``core`` (see the module docstring). Building one does no I/O."""

    _core: Core

    def __init__(self, core: Core) -> None:
        if not isinstance(core, Core):
            kind = type(core).__name__  # type: ignore[unreachable]  # untyped callers
            raise InvalidType(f"a feature is built on a geetcd.core.Core, got {kind}")
        self._core = core

    @property
    def core(self) -> Core:
        """The :class:`geetcd.core.Core` this stands on: what the features (watch hub,
        leases, v2, recipes) are built on."""
        return self._core


def core_of(owner: Core | HasCore) -> Core:
    """``owner`` itself if it is a core, else the core it stands on (``owner.core``)."""
    return owner if isinstance(owner, Core) else owner.core
