"""The ``geetcd`` command line (see :mod:`geetcd.cli.app`)."""

from __future__ import annotations

from geetcd.cli.app import main

__all__ = ["main"]
