"""FairGate: the FIFO bound on a member's pooled connections (at most ``maxsize`` in use): the
one FIFO gate of geetcd, :class:`geetcd.fifo.FifoGate`, under the name the transport uses."""

from __future__ import annotations

from geetcd.fifo import FifoGate as FairGate

__all__ = ["FairGate"]
