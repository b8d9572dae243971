"""Endpoint URLs: ``http(s)://host:port`` split into the pieces a socket needs."""

from __future__ import annotations

import urllib3

from geetcd.errors import InvalidArgument, InvalidType

__all__ = ["authority", "parse_endpoint"]


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """Split ``http(s)://host:port`` into (scheme, host, port); InvalidArgument otherwise.

    ``host:port`` without a scheme means ``http://host:port`` (as etcdctl accepts it); a
    missing port means 2379. An IPv6 host comes back without its brackets.
    """
    if not isinstance(url, str):
        raise InvalidType(f"endpoint must be a str URL, got {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = urllib3.util.parse_url(text)
    except urllib3.exceptions.LocationParseError as exc:
        raise InvalidArgument(f"endpoint is not a URL: {url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument(f"endpoint must look like http://host:port, got {url!r}")
    if parsed.path not in (None, "", "/"):
        raise InvalidArgument(f"endpoint must not have a path, got {url!r}")
    port = parsed.port or 2379
    host = parsed.host.strip("[]")
    return parsed.scheme, host, port


def authority(host: str, port: int) -> str:
    """``host:port`` as a Host header or ``:authority`` writes it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
