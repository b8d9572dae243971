"""``geetcd-demo``: a first taste of geetcd against a throwaway local etcd.

Starts a single etcd member on a free loopback port (:class:`geetcd.testing.EtcdCluster`;
``--endpoints`` uses a running cluster instead), then shows put, get, the transaction
helpers, a raw transaction, a prefix read, a delete and the watch that saw all of it, each
as the Python call followed by its result. Every key lives under the namespace
``/geetcd-demo/<random>/``, deleted at the end, so a real cluster is left as it was.
Exit status: 0, or 2 when etcd cannot be started or reached.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Sequence

import geetcd
from geetcd import Compare, EventType, Op
from geetcd.errors import EtcdError
from geetcd.testing import EtcdBinaryNotFound, EtcdCluster

__all__ = ["main"]


def _show(call: str, result: object) -> None:
    print(f">>> {call}")
    print(f"    {result}")


def demo(endpoints: list[str]) -> None:
    """Run the walkthrough against ``endpoints``; raises geetcd errors unchanged."""
    namespace = f"/geetcd-demo/{secrets.token_hex(3)}/"
    with geetcd.Client(endpoints, namespace=namespace, timeout=5.0) as client:
        print(f">>> client = geetcd.Client({','.join(endpoints)!r}, namespace={namespace!r})")
        watch = client.watch("config/", prefix=True)
        print('>>> watch = client.watch("config/", prefix=True)   # changes arrive as they commit')
        put = client.put("config/color", "blue")
        _show('client.put("config/color", "blue")', f"stored at revision {put.header.revision}")
        _show('client.get("config/color")', client.get("config/color"))
        created = client.put_if_absent("config/color", "red")
        _show('client.put_if_absent("config/color", "red")', f"{created}   (it exists already)")
        swapped = client.replace("config/color", "blue", "green")
        _show('client.replace("config/color", "blue", "green")', f"{swapped}   (compare-and-swap)")
        response = client.txn(
            [Compare.version("config/size") == 0],
            [Op.put("config/size", "XL")],
            [Op.get("config/size")],
        )
        _show(
            'client.txn([Compare.version("config/size") == 0], [Op.put("config/size", "XL")], '
            '[Op.get("config/size")])',
            f"succeeded={response.succeeded} at revision {response.header.revision}",
        )
        pairs = ", ".join(
            f"{kv.key.decode()}={kv.value.decode()}" for kv in client.get_prefix("config/")
        )
        _show('client.get_prefix("config/")', pairs)
        deleted = client.delete("config/size").deleted
        _show('client.delete("config/size")', f"deleted {deleted} key")
        print(">>> for event in watch: ...")
        for _ in range(4):
            event = watch.next_event(timeout=5.0)
            value = f" = {event.kv.value.decode()}" if event.type is EventType.PUT else ""
            change = f"{event.kv.key.decode()}{value}"
            print(f"    {event.type.value:6} {change:22} (revision {event.revision})")
        watch.cancel()
        status = client.status()
        leader = "leader" if status.leader == status.header.member_id else "follower"
        _show("client.status()", f"etcd {status.version}, answered by the {leader}")
        client.delete_prefix("")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``geetcd-demo`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="geetcd-demo",
        description="Show geetcd's put/get/txn/watch against a throwaway local etcd.",
    )
    parser.add_argument(
        "--endpoints",
        default=None,
        help="comma-separated URLs of a running etcd (default: start a throwaway one)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cluster = None
    try:
        if args.endpoints:
            endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
        else:
            started = time.monotonic()
            cluster = EtcdCluster(size=1).start()
            endpoints = cluster.endpoints
            print(
                f"started a throwaway etcd at {endpoints[0]} in "
                f"{time.monotonic() - started:.1f} s (removed at exit)\n"
            )
        demo(endpoints)
    except EtcdBinaryNotFound as exc:
        print(f"geetcd-demo: {exc} (or pass --endpoints)", file=sys.stderr)
        return 2
    except (RuntimeError, EtcdError) as exc:
        print(f"geetcd-demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.stop()
    print("\nnext: geetcd-bench runs a load test against a throwaway 3-member cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
