"""Real-etcd test harness for geetcd: binary lookup, process control and a pytest plugin.

``from geetcd.testing import EtcdCluster`` starts throwaway etcd clusters on free loopback
ports; :mod:`geetcd.testing.plugin` provides the pytest fixtures. Importing this package starts
nothing, imports neither gevent nor the geetcd client and patches nothing.
"""

from geetcd.testing.binary import (
    EtcdBinaryNotFound,
    EtcdVersion,
    etcd_binary_version,
    find_etcd_binary,
)
from geetcd.testing.cluster import EtcdCluster
from geetcd.testing.member import EtcdMember
from geetcd.testing.process import free_port

__all__ = [
    "EtcdBinaryNotFound",
    "EtcdCluster",
    "EtcdMember",
    "EtcdVersion",
    "etcd_binary_version",
    "find_etcd_binary",
    "free_port",
]
