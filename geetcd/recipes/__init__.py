"""Coordination recipes with the semantics and key layouts of Go's ``client/v3/concurrency``:
:class:`Lock` (``client.lock``), :class:`Election` (``client.election``) and software
transactions (``client.stm``, :func:`run_stm`, :class:`STMTx`). They interoperate with
``etcdctl lock`` / ``etcdctl elect`` and Go programs using that package.
"""

from geetcd.recipes.election import Election
from geetcd.recipes.lock import Lock
from geetcd.recipes.sessions import SessionPool
from geetcd.recipes.stm import STMTx, run_stm

__all__ = ["Election", "Lock", "STMTx", "SessionPool", "run_stm"]
