"""The client the global flags describe, and the raw gateway calls the commands send
through it (their answers are printed in etcdctl's shapes by :mod:`geetcd.cli.output`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from geetcd._executor import parse_answer
from geetcd.client import Client
from geetcd.config import TLS
from geetcd.protocol import kv as kv_proto
from geetcd.protocol.codec import b64
from geetcd.protocol.errors import error_from_body

__all__ = ["call", "call_on", "endpoints_for", "make_client", "raw_json"]


def make_client(args: argparse.Namespace) -> Client:
    """The client the global flags describe."""
    tls = None
    if args.tls_cacert or args.tls_cert or args.tls_key or args.insecure_skip_tls_verify:
        tls = TLS(
            ca_file=args.tls_cacert,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            verify=not args.insecure_skip_tls_verify,
        )
    user, password = args.tls_user, args.tls_password
    if user is not None and password is None and ":" in user:
        user, password = user.split(":", 1)
    endpoints = args.endpoints
    if tls is not None:  # etcdctl dials TLS when given certificates
        endpoints = ",".join(
            e if "://" in e else f"https://{e}" for e in endpoints.split(",") if e.strip()
        )
    return Client(
        endpoints,
        timeout=args.command_timeout,
        attempt_timeout=args.command_timeout,
        connect_timeout=args.dial_timeout,
        tls=tls,
        user=user,
        password=password,
    )


def call(client: Client, path: str, body: dict[str, Any], *, idempotent: bool) -> Any:
    """One gateway call through the client's attempt loop; the raw JSON answer."""
    return client.core.call(path, body, lambda obj: obj, idempotent=idempotent)


def endpoints_for(client: Client, cluster: bool) -> list[str]:
    """The endpoints a per-member command talks to: the given ones, or every member's."""
    if not cluster:
        return client.endpoints
    client.sync_members()
    return client.endpoints


def raw_json(response: Any, member: Any) -> dict[str, Any]:
    """The interpreter of a raw attempt (``Executor.execute``): the JSON answer, or the
    error an error answer stands for."""
    if response.status == 200:
        result: dict[str, Any] = parse_answer(lambda obj: obj, response.data, member.url)
        return result
    raise error_from_body(response.status, response.data, member.url)


def call_on(client: Client, url: str) -> dict[str, Any]:
    """etcdctl's health check on one member: a linearizable get of "health"."""
    body = {"key": b64(b"health")}
    return client.core.executor.execute(
        "POST",
        kv_proto.RANGE,
        json.dumps(body).encode(),
        raw_json,
        idempotent=True,
        deadline=client.core.executor.deadline(None),
        v3=True,
        endpoint=url,
    )
