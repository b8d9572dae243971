"""The command line's arguments: the global flags (each also read from ``GEETCD_<NAME>`` in
the environment; flags win), the Go-style durations and hex IDs etcdctl takes, and
:class:`Parser`, argparse raising :class:`~geetcd.cli.errors.UsageError`."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, NoReturn

from geetcd.cli.errors import UsageError

__all__ = ["Parser", "add_globals", "duration", "hex_id"]


class Parser(argparse.ArgumentParser):
    """argparse, raising :class:`UsageError` (exit code 128) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration ("5s", "500ms", "1m30s") or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def hex_id(text: str) -> int:
    """A member or lease id in hex, as etcdctl takes them."""
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad ID {text!r} (hex expected)") from None


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"GEETCD_{name}", default)


def _env_bool(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes")


def add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global flags on ``parser``; with ``suppress``, without defaults (the copies after
    the command, which only override when given)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--endpoints", default=default(_env("ENDPOINTS", "127.0.0.1:2379")))
    parser.add_argument(
        "--dial-timeout",
        type=duration,
        default=default(duration(_env("DIAL_TIMEOUT", "2s") or "2s")),
    )
    parser.add_argument(
        "--command-timeout",
        type=duration,
        default=default(duration(_env("COMMAND_TIMEOUT", "5s") or "5s")),
    )
    for name in ("cacert", "cert", "key", "user", "password"):  # dest: tls_key, not key
        parser.add_argument(f"--{name}", dest=f"tls_{name}", default=default(_env(name.upper())))
    parser.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        default=default(_env_bool("INSECURE_SKIP_TLS_VERIFY")),
    )
    parser.add_argument(
        "-w",
        "--write-out",
        choices=("simple", "json", "table", "fields"),
        default=default(_env("WRITE_OUT", "simple")),
    )
    parser.add_argument("--hex", action="store_true", default=default(_env_bool("HEX")))
