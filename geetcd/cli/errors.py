"""The command line's own error and exit codes (etcdctl's)."""

from __future__ import annotations

__all__ = ["EXIT_BAD_ARGS", "EXIT_ERROR", "UsageError"]

EXIT_ERROR = 1
EXIT_BAD_ARGS = 128


class UsageError(Exception):
    """Bad command line: exit code 128."""
