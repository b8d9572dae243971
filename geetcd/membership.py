"""Cluster membership changes, named after Go clientv3's: add, remove, update, promote.

Every call takes the core and runs once through its attempt loop as a non-idempotent request that
waits for its answer until the call's deadline (``timeout``, the client's by default), not
just the client's ``attempt_timeout``: a lost answer raises
:class:`~geetcd.errors.OutcomeUnknown` (list the members to find out), and the call is only
moved to another member when the request surely never reached one
(connection refused). A definite refusal of etcd is raised as such and never benches the
member that answered: :class:`UnhealthyCluster` (the strict reconfiguration check, answered
for about 5 s after a membership change, before anything is proposed), NotFound ("member not
found"), FailedPrecondition ("peerURL exists", "can only promote a learner member which is in
sync with leader", "not enough started members"...).

After each change the member list in etcd's answer is applied to the client's cluster state
(:meth:`geetcd.cluster.ClusterState.apply_member_list`): a removed member drops out at once,
learners are known as learners (never picked for client traffic) and a promoted learner
becomes pickable.

:class:`Membership` is this API, with ``member_list``, as methods on a core (Go's
``clientv3.NewCluster``; the client is a Membership).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from geetcd.cluster import Member
from geetcd.config import Retry
from geetcd.core import Core
from geetcd.errors import EtcdError, InvalidType, ServerError
from geetcd.feature import Feature
from geetcd.maintenance import unary
from geetcd.models import MemberList
from geetcd.protocol import cluster as cluster_proto
from geetcd.protocol import maintenance as proto
from geetcd.protocol.maintenance import MemberAddResponse, check_member_id, check_peer_urls

log = logging.getLogger(__name__)

__all__ = [
    "MemberAddResponse",
    "Membership",
    "UnhealthyCluster",
    "member_add",
    "member_promote",
    "member_remove",
    "member_update",
]


class UnhealthyCluster(ServerError):
    """etcd refused a membership change because the cluster is not healthy enough for it
    (``etcdserver: unhealthy cluster``: the strict reconfiguration check, answered for about
    5 s after a membership change). Nothing was proposed: the change did not happen and may
    be sent again later. Not a member failure: the member is not benched."""

    retry_safe = True


def _refine(error: EtcdError) -> EtcdError:
    if error.code == 14 and "unhealthy cluster" in error.message.lower():
        return UnhealthyCluster(
            error.message, code=error.code, http_status=error.http_status, member=error.member
        )
    return error


def _apply(core: Core, members: MemberList) -> None:
    core.cluster.apply_member_list(members)


def member_add(
    core: Core,
    peer_urls: str | Sequence[str],
    *,
    learner: bool = False,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> MemberAddResponse:
    """Add a member (a learner when ``learner``) with ``peer_urls``; returns the new member
    (``.member``, no name or client URLs until it starts) and the whole list (``.members``).
    Start the new etcd with ``--initial-cluster-state existing`` afterwards."""
    if not isinstance(learner, bool):
        raise InvalidType(f"learner must be a bool, got {type(learner).__name__}")
    body = {"peerURLs": check_peer_urls(peer_urls), "isLearner": learner}
    answer = unary(
        core,
        proto.MEMBER_ADD,
        body,
        proto.parse_member_add,
        idempotent=False,
        timeout=timeout,
        retry=retry,
        refine=_refine,
    )
    _apply(core, MemberList(header=answer.header, members=answer.members))
    return answer


def _change(
    core: Core,
    path: str,
    member_id: int,
    peer_urls: list[str] | None,
    *,
    timeout: float | None,
    retry: Retry | None,
) -> MemberList:
    target = check_member_id(member_id)
    body = proto.member_body(target, peer_urls)
    avoid: list[Member] = []
    if path == proto.MEMBER_REMOVE:
        # A member asked to remove itself applies the change and stops, often before it
        # answers: send the removal to another member (learn the ids first if need be).
        if any(m.id is None for m in core.cluster.members):
            budget = core.executor.attempt_timeout if timeout is None else timeout
            try:
                listing = unary(
                    core,
                    cluster_proto.MEMBER_LIST,
                    {},
                    cluster_proto.parse_member_list,
                    idempotent=True,
                    timeout=min(budget, core.executor.attempt_timeout),
                    retry=Retry(attempts=0),
                )
                core.cluster.apply_member_list(listing)
            except EtcdError as exc:  # best effort: the removal itself is what matters
                log.debug("member list before member_remove failed: %s", exc)
        avoid = [m for m in core.cluster.members if m.id == target]

    def parse(obj: dict[str, Any]) -> MemberList:
        header, members = proto.parse_members(obj)
        return MemberList(header=header, members=members)

    answer: MemberList = unary(
        core,
        path,
        body,
        parse,
        idempotent=False,
        timeout=timeout,
        retry=retry,
        refine=_refine,
        avoid=avoid,
    )
    _apply(core, answer)
    return answer


def member_remove(
    core: Core, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
) -> MemberList:
    """Remove the member ``member_id``; returns the members left (the client stops using
    the removed one at once). Sent to another member than the one removed whenever one is
    usable (a member removing itself stops, often before answering: OutcomeUnknown then).
    NotFound if there is no such member."""
    return _change(core, proto.MEMBER_REMOVE, member_id, None, timeout=timeout, retry=retry)


def member_update(
    core: Core,
    member_id: int,
    peer_urls: str | Sequence[str],
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> MemberList:
    """Set the peer URLs of ``member_id``; returns the members."""
    return _change(
        core,
        proto.MEMBER_UPDATE,
        member_id,
        check_peer_urls(peer_urls),
        timeout=timeout,
        retry=retry,
    )


def member_promote(
    core: Core, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
) -> MemberList:
    """Promote the learner ``member_id`` to a voting member; returns the members.
    FailedPrecondition while the learner is not yet in sync with the leader (retry later)."""
    return _change(core, proto.MEMBER_PROMOTE, member_id, None, timeout=timeout, retry=retry)


class Membership(Feature):
    """The membership API on a core (Go's ``clientv3.NewCluster``): :meth:`member_list`,
    :meth:`member_add`, :meth:`member_remove`, :meth:`member_update`, :meth:`member_promote`.
    :class:`geetcd.Client` is a Membership; ``Membership(core)`` works on its own. Building
    it does no I/O."""

    def member_list(
        self, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """The cluster's members as the answering member knows them."""
        result: MemberList = self._core.call(
            cluster_proto.MEMBER_LIST, {}, cluster_proto.parse_member_list, True, timeout, retry
        )
        return result

    def member_add(
        self,
        peer_urls: str | Sequence[str],
        *,
        learner: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> MemberAddResponse:
        """Add a member (a learner if ``learner``): ``.member`` is the new one, ``.members``
        the list. Not idempotent (OutcomeUnknown on a lost answer); UnhealthyCluster,
        FailedPrecondition... are refusals. See :mod:`geetcd.membership`."""
        return member_add(self._core, peer_urls, learner=learner, timeout=timeout, retry=retry)

    def member_remove(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """Remove a member; returns the members left (see :mod:`geetcd.membership`)."""
        return member_remove(self._core, member_id, timeout=timeout, retry=retry)

    def member_update(
        self,
        member_id: int,
        peer_urls: str | Sequence[str],
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> MemberList:
        """Set a member's peer URLs; returns the members (see :mod:`geetcd.membership`)."""
        return member_update(self._core, member_id, peer_urls, timeout=timeout, retry=retry)

    def member_promote(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """Promote a learner to a voting member (see :mod:`geetcd.membership`)."""
        return member_promote(self._core, member_id, timeout=timeout, retry=retry)
