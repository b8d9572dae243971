"""geetcd.v2: etcd's v2 keys API (the API of go-etcd), on geetcd's transport and cluster state.

    from geetcd import v2
    with v2.Client("http://127.0.0.1:2379") as etcd:
        etcd.set("/config/mode", "fast", ttl=60)
        etcd.get("/config", recursive=True).node.nodes
        with etcd.watcher("/config", recursive=True) as watch:
            for item in watch:          # Response, or Resync after a history gap
                ...

Needs etcd 3.4/3.5 started with ``--enable-v2=true``; etcd 3.6 removed the v2 API. The v2 and
v3 key spaces are separate.
"""

from geetcd.models import MemberInfo
from geetcd.v2.client import Client
from geetcd.v2.errors import (
    CompareFailed,
    DirNotEmpty,
    EventIndexCleared,
    IndexNaN,
    InternalError,
    InvalidRequest,
    KeyNotFound,
    LeaderElect,
    NodeExist,
    NotDir,
    NotFile,
    PrevValueRequired,
    RaftInternal,
    RefreshTTLRequired,
    RefreshValue,
    RootReadOnly,
    TestFailed,
    TTLNaN,
    V2AuthRequired,
    V2Error,
    WatcherCleared,
)
from geetcd.v2.models import Node, Response, Resync, Version
from geetcd.v2.watch import V2Watch

__all__ = [
    "Client",
    "CompareFailed",
    "DirNotEmpty",
    "EventIndexCleared",
    "IndexNaN",
    "InternalError",
    "InvalidRequest",
    "KeyNotFound",
    "LeaderElect",
    "MemberInfo",
    "Node",
    "NodeExist",
    "NotDir",
    "NotFile",
    "PrevValueRequired",
    "RaftInternal",
    "RefreshTTLRequired",
    "RefreshValue",
    "Response",
    "Resync",
    "RootReadOnly",
    "TTLNaN",
    "TestFailed",
    "V2AuthRequired",
    "V2Error",
    "V2Watch",
    "Version",
    "WatcherCleared",
]
