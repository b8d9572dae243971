"""``geetcd user|role|auth ...``: etcd's auth admin, with etcdctl's arguments and output."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from geetcd.cli import output as out
from geetcd.client import Client
from geetcd.protocol.codec import prefix_end

__all__ = ["COMMANDS", "add_parsers", "cmd_auth", "cmd_role", "cmd_user"]


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type[Any]) -> None:
    """The ``user``, ``role`` and ``auth`` subcommands."""
    user = sub.add_parser("user", parents=[common]).add_subparsers(
        dest="user_command", required=True, parser_class=parser_class
    )
    add = user.add_parser("add", parents=[common])
    add.add_argument("name")
    add.add_argument("--new-user-password", default=None)
    add.add_argument("--interactive", default="true")
    for name in ("delete", "get"):
        user.add_parser(name, parents=[common]).add_argument("name")
    user.add_parser("list", parents=[common])
    passwd = user.add_parser("passwd", parents=[common])
    passwd.add_argument("name")
    passwd.add_argument("--interactive", default="true")
    for name in ("grant-role", "revoke-role"):
        parsed = user.add_parser(name, parents=[common])
        parsed.add_argument("name")
        parsed.add_argument("role")

    role = sub.add_parser("role", parents=[common]).add_subparsers(
        dest="role_command", required=True, parser_class=parser_class
    )
    for name in ("add", "delete", "get"):
        role.add_parser(name, parents=[common]).add_argument("name")
    role.add_parser("list", parents=[common])
    grant = role.add_parser("grant-permission", parents=[common])
    grant.add_argument("name")
    grant.add_argument("perm", choices=("read", "write", "readwrite"))
    grant.add_argument("key")
    grant.add_argument("range_end", nargs="?")
    grant.add_argument("--prefix", action="store_true")
    grant.add_argument("--from-key", action="store_true")
    revoke = role.add_parser("revoke-permission", parents=[common])
    revoke.add_argument("name")
    revoke.add_argument("key")
    revoke.add_argument("range_end", nargs="?")
    revoke.add_argument("--prefix", action="store_true")
    revoke.add_argument("--from-key", action="store_true")

    auth = sub.add_parser("auth", parents=[common]).add_subparsers(
        dest="auth_command", required=True, parser_class=parser_class
    )
    for name in ("enable", "disable", "status"):
        auth.add_parser(name, parents=[common])


def _password(args: argparse.Namespace, given: str | None) -> str:
    """A password given on the command line, else the first line of stdin (etcdctl's
    ``--interactive=false``; geetcd never prompts on a terminal it does not own)."""
    if given is not None:
        return given
    if sys.stdin.isatty() and args.interactive != "false":
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user(client: Client, args: argparse.Namespace) -> int:
    admin = client.auth
    what = args.user_command
    if what == "add":
        name, _, inline = args.name.partition(":")
        password = inline if inline else _password(args, args.new_user_password)
        admin.user_add(name, password)
        out.line(f"User {name} created")
    elif what == "delete":
        admin.user_delete(args.name)
        out.line(f"User {args.name} deleted")
    elif what == "get":
        roles = admin.user_get(args.name)
        out.line(f"User: {args.name}")
        out.line(f"Roles: {' '.join(roles)}")
    elif what == "list":
        for name in admin.user_list():
            out.line(name)
    elif what == "passwd":
        admin.user_change_password(args.name, _password(args, None))
        out.line("Password updated")
    elif what == "grant-role":
        admin.user_grant_role(args.name, args.role)
        out.line(f"Role {args.role} is granted to user {args.name}")
    else:
        admin.user_revoke_role(args.name, args.role)
        out.line(f"Role {args.role} is revoked from user {args.name}")
    return 0


def _span(args: argparse.Namespace) -> tuple[str | bytes, str | bytes | None, bool]:
    if args.from_key:
        return args.key, b"\0", False
    return args.key, args.range_end, bool(args.prefix)


def cmd_role(client: Client, args: argparse.Namespace) -> int:
    admin = client.auth
    what = args.role_command
    if what == "add":
        admin.role_add(args.name)
        out.line(f"Role {args.name} created")
    elif what == "delete":
        admin.role_delete(args.name)
        out.line(f"Role {args.name} deleted")
    elif what == "list":
        for name in admin.role_list():
            out.line(name)
    elif what == "get":
        perms = admin.role_get(args.name)
        out.line(f"Role {args.name}")
        for title, kinds in (
            ("KV Read:", ("read", "readwrite")),
            ("KV Write:", ("write", "readwrite")),
        ):
            out.line(title)
            for p in perms:
                if p.perm not in kinds:
                    continue
                key = p.key.decode("utf-8", "surrogateescape")
                if p.range_end is None:
                    out.line(f"\t{key}")
                    continue
                end = p.range_end.decode("utf-8", "surrogateescape")
                line = f"\t[{key}, {end})" if p.range_end != b"\0" else f"\t[{key}, <open ended>"
                if p.key and prefix_end(p.key) == p.range_end:
                    line += f" (prefix {key})"
                out.line(line)
    elif what == "grant-permission":
        span_key, span_end, prefix = _span(args)
        admin.role_grant_permission(args.name, span_key, span_end, prefix=prefix, perm=args.perm)
        out.line(f"Role {args.name} updated")
    else:
        span_key, span_end, prefix = _span(args)
        admin.role_revoke_permission(args.name, span_key, span_end, prefix=prefix)
        single = span_end is None and not prefix
        shown = args.key if single else f"[{args.key}, {args.range_end or '<open ended>'})"
        out.line(
            f"Permission of {'key' if single else 'range'} {shown} is revoked from role {args.name}"
        )
    return 0


def cmd_auth(client: Client, args: argparse.Namespace) -> int:
    admin = client.auth
    if args.auth_command == "enable":
        admin.enable()
        out.line("Authentication Enabled")
    elif args.auth_command == "disable":
        admin.disable()
        out.line("Authentication Disabled")
    else:
        status = admin.status()
        out.line(f"Authentication Status: {str(status.enabled).lower()}")
        out.line(f"AuthRevision: {status.auth_revision}")
    return 0


COMMANDS = {"user": cmd_user, "role": cmd_role, "auth": cmd_auth}
