"""Maintenance and cluster messages: status, member list, the health probe."""

from __future__ import annotations

from typing import Any

from geetcd.models import MemberInfo, MemberList, Status
from geetcd.protocol.codec import as_int, b64
from geetcd.protocol.kv import parse_header

__all__ = [
    "MEMBER_LIST",
    "LINEARIZABLE_PROBE_BODY",
    "PROBE_BODY",
    "STATUS",
    "parse_member_list",
    "parse_status",
]

STATUS = "/maintenance/status"
MEMBER_LIST = "/cluster/member/list"

# A serializable, count-only range: answered locally by the member, without consensus, and
# refused at once with "no leader" when sent with the hasleader header to a leaderless member.
PROBE_BODY: dict[str, Any] = {
    "key": b64(b"\0geetcd-probe"),
    "serializable": True,
    "count_only": True,
}

# The same, linearizable: answered only through the leader (a ReadIndex), so a member cut off
# from its peers (or forwarding to a paused leader) does not answer it, while it may still
# answer serializable reads from its own copy. The probe that says "this member serves".
LINEARIZABLE_PROBE_BODY: dict[str, Any] = {
    "key": b64(b"\0geetcd-probe"),
    "count_only": True,
}


def parse_status(obj: dict[str, Any]) -> Status:
    """A StatusResponse; no ``leader`` field means the member knows no leader."""
    leader = obj.get("leader")
    return Status(
        header=parse_header(obj.get("header")),
        version=str(obj.get("version", "")),
        db_size=as_int(obj.get("dbSize")),
        db_size_in_use=as_int(obj.get("dbSizeInUse")),
        leader=as_int(leader) if leader else None,
        raft_index=as_int(obj.get("raftIndex")),
        raft_term=as_int(obj.get("raftTerm")),
        raft_applied_index=as_int(obj.get("raftAppliedIndex")),
        errors=tuple(str(e) for e in obj.get("errors") or ()),
        is_learner=bool(obj.get("isLearner", False)),
    )


def parse_member_list(obj: dict[str, Any]) -> MemberList:
    """A MemberListResponse; members not yet started have no name and no client URLs."""
    members = tuple(
        MemberInfo(
            id=as_int(m.get("ID")),
            name=str(m.get("name", "")),
            peer_urls=tuple(m.get("peerURLs") or ()),
            client_urls=tuple(m.get("clientURLs") or ()),
            is_learner=bool(m.get("isLearner", False)),
        )
        for m in obj.get("members") or ()
    )
    return MemberList(header=parse_header(obj.get("header")), members=members)
