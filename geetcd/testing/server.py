"""Compatibility re-exports: the etcd test harness used to be this one module.

It now lives in :mod:`geetcd.testing.process` (process spawning and cleanup, free ports, HTTP
and metrics helpers), :mod:`geetcd.testing.member` (:class:`EtcdMember`) and
:mod:`geetcd.testing.cluster` (:class:`EtcdCluster`). This module owns nothing; it keeps
``from geetcd.testing.server import ...`` working (including the private ``_parse_metrics``,
which tests import from here). New code imports from :mod:`geetcd.testing`.
"""

from geetcd.testing.cluster import EtcdCluster
from geetcd.testing.member import EtcdMember
from geetcd.testing.process import _parse_metrics as _parse_metrics  # noqa: PLC0414
from geetcd.testing.process import free_port

__all__ = ["EtcdCluster", "EtcdMember", "free_port"]
