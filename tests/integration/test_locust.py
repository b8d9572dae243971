"""The locust integration (geetcd.locust) and the loadtests/ locustfiles, against real etcd.

locust monkey-patches the process that imports it, so nothing here imports locust or
geetcd.locust: every locust run is a subprocess (``python -m locust`` headless, or a small
script for the wrapper's contract).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import geetcd
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(180)

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"


def _run_locust(
    locustfile: str,
    host: str,
    out: Path,
    *options: str,
    users: int = 10,
    seconds: int = 4,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[tuple[str, str], dict[str, Any]]]:
    """Run a locustfile headless with CSV, JSON and HTML output; return the process and the
    JSON statistics keyed by (request type, name)."""
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOADTESTS / locustfile),
        "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
        "--host", host,
        "--csv", str(out / "run"), "--json-file", str(out / "run"),
        "--html", str(out / "report.html"),
        "--only-summary", "--stop-timeout", "2",
        *options,
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 90,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert (out / "report.html").stat().st_size > 10_000, proc.stderr[-3000:]
    assert (out / "run_stats.csv").is_file()
    assert (out / "run_stats_history.csv").is_file()
    stats = json.loads((out / "run.json").read_text())
    return proc, {(e["method"], e["name"]): e for e in stats}


def _host(endpoints: list[str]) -> str:
    return ",".join(endpoints)


@pytest.mark.slow
def test_kv_mix(etcd_endpoints: list[str], tmp_path: Path) -> None:
    prefix = f"/geetcd-test/locust-kv-{secrets.token_hex(4)}/"
    proc, stats = _run_locust(
        "locustfile_kv.py",
        _host(etcd_endpoints),
        tmp_path,
        "--kv-keys", "50", "--kv-read-ratio", "0.7", "--kv-prefix", prefix,
        env={"GEETCD_KV_VALUE_SIZE": "300"},  # an option given through its variable
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(stats) == {("get", "get"), ("put", "put")}
    for entry in stats.values():
        assert entry["num_requests"] > 0
        assert entry["num_failures"] == 0
        # Keys were written with 300-byte values before the run: reads and writes carry 300.
        assert entry["total_content_length"] == 300 * entry["num_requests"]
    gets, puts = stats["get", "get"]["num_requests"], stats["put", "put"]["num_requests"]
    assert gets > puts  # 70 % reads
    assert "wrote 50 keys of 300 bytes" in proc.stderr
    with geetcd.Client(etcd_endpoints) as client:
        assert client.get_prefix(prefix) == []  # the coordinator cleaned up


@pytest.mark.slow
def test_watch_fan_out(etcd_endpoints: list[str], tmp_path: Path) -> None:
    users = 5
    prefix = f"/geetcd-test/locust-watch-{secrets.token_hex(4)}/"
    proc, stats = _run_locust(
        "locustfile_watch.py",
        _host(etcd_endpoints),
        tmp_path,
        "--watch-per-user", "2", "--watch-shared-keys", "1", "--watch-prefix", prefix,
        users=users,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(e["num_failures"] == 0 for e in stats.values()), stats
    assert stats["watch_open", "shared"]["num_requests"] == users
    assert stats["watch_open", "own"]["num_requests"] == users
    shared_puts = stats["put", "put shared"]["num_requests"]
    own_puts = stats["put", "put own"]["num_requests"]
    shared = stats["watch", "shared"]["num_requests"]
    own = stats["watch", "own"]["num_requests"]
    assert shared_puts > 0 and own_puts > 0
    # Every user watches the shared key: one put there reaches several watchers.
    assert shared > shared_puts
    assert shared <= shared_puts * users
    # Each own key has one watcher: every put is delivered once, never twice (the last few
    # may still be in flight when the users are stopped).
    assert own_puts - 5 * users <= own <= own_puts
    assert stats["watch", "own"]["total_content_length"] == 64 * own


@pytest.mark.slow
def test_txn_contention_counts_conflicts(etcd_endpoints: list[str], tmp_path: Path) -> None:
    prefix = f"/geetcd-test/locust-txn-{secrets.token_hex(4)}/"
    proc, stats = _run_locust(
        "locustfile_txn.py",
        _host(etcd_endpoints),
        tmp_path,
        "--txn-counters", "1", "--txn-prefix", prefix,
    )  # fmt: skip
    # Exit status 3 would mean that the counters do not add up to the increments.
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "counters add up" in proc.stderr
    increments = stats["cas", "increment"]
    conflicts = stats["conflict", "increment"]["num_requests"]
    retries = stats["retry", "increment"]["num_requests"]
    assert increments["num_requests"] > 0
    assert increments["num_failures"] == 0
    assert conflicts > 0  # ten users on one counter
    assert 0 < retries <= conflicts
    txns = stats["txn", "cas"]["num_requests"]
    assert txns >= increments["num_requests"] + retries


def test_failover_refuses_without_members(etcd_endpoints: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GEETCD_BENCH_MEMBERS"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(LOADTESTS / "locustfile_failover.py"),
            "--headless", "-u", "1", "-r", "1", "-t", "10s", "--host", _host(etcd_endpoints),
            "--json-file", str(tmp_path / "run"),
        ],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "refusing to run" in proc.stderr


@pytest.mark.slow
@pytest.mark.fault
def test_failover_pause_leader(healed_cluster: EtcdCluster, tmp_path: Path) -> None:
    members = [{"name": m.name, "url": m.client_url, "pid": m.pid} for m in healed_cluster.members]
    try:
        proc, stats = _run_locust(
            "locustfile_failover.py",
            _host(healed_cluster.endpoints),
            tmp_path,
            "--fault-at", "2", "--fault-duration", "2",
            "--failover-prefix", f"/geetcd-test/locust-failover-{secrets.token_hex(4)}/",
            users=6,
            seconds=9,
            env={"GEETCD_BENCH_MEMBERS": json.dumps(members)},
        )  # fmt: skip
    finally:
        for member in healed_cluster.members:
            if member.pid is not None:  # a crashed run must not leave a member stopped
                os.kill(member.pid, signal.SIGCONT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = "|".join(m.name for m in healed_cluster.members)
    assert re.search(rf"fault: pause leader ({names}) \(", proc.stderr), proc.stderr[-3000:]
    first_write = stats["failover", "first write after pause leader"]
    assert (first_write["num_requests"], first_write["num_failures"]) == (1, 0)
    resumed = stats["failover", "resumed member answers"]
    assert (resumed["num_requests"], resumed["num_failures"]) == (1, 0)
    # A local run sends the fault message to itself: its users saw it once.
    fault = re.search(r"fault: (pause leader m\d) \(", proc.stderr)
    assert fault, proc.stderr[-3000:]
    seen = stats["failover", f"fault seen: {fault.group(1)}"]
    assert (seen["num_requests"], seen["num_failures"]) == (1, 0)
    assert f"fault: 1 of 1 worker(s) saw {fault.group(1)}: local" in proc.stderr
    gets = stats["get", "get"]
    assert gets["num_requests"] > gets["num_failures"]
    # Requests kept succeeding in the last seconds, after the member came back.
    last = max(int(t) for t in gets["num_reqs_per_sec"])
    recent = sum(n for t, n in gets["num_reqs_per_sec"].items() if int(t) >= last - 2)
    failed = sum(n for t, n in gets["num_fail_per_sec"].items() if int(t) >= last - 2)
    assert recent > failed
    assert stats["watch", "shared"]["num_requests"] > 0


_CONTRACT = textwrap.dedent(
    """
    import locust  # first: it patches, and geetcd imports urllib3
    import json, sys, time
    from locust.env import Environment
    import geetcd
    from geetcd import Compare, Op
    from geetcd.locust import LatencyHistogram, LocustEtcdClient, read_stamp, stamp_value

    seen = []
    environment = Environment(events=locust.events)
    environment.events.request.add_listener(lambda **kw: seen.append(kw))
    endpoints, prefix = sys.argv[1], sys.argv[2]
    members = endpoints.split(",")
    tag = {"phase": "contract"}
    client = LocustEtcdClient(
        geetcd.Client(endpoints, namespace=prefix), environment, context=lambda: dict(tag)
    )
    # The keywords of locust's own HTTP users, so their listeners work unchanged.
    KEYWORDS = {"request_type", "name", "start_time", "response_time", "response_length",
                "response", "context", "exception", "url"}

    def last(n=1):
        assert len(seen) == n, seen
        event = seen.pop()
        seen.clear()
        assert set(event) == KEYWORDS, sorted(event)
        assert event["context"] == tag and event["response_time"] >= 0
        assert event["response"] is None
        # start_time: wall clock at the start; response_time later.
        assert 0 <= time.time() - event["start_time"] < 30
        assert event["start_time"] + event["response_time"] / 1000 <= time.time() + 0.01
        return event

    client.put("a", b"x" * 10)
    e = last()
    assert (e["request_type"], e["name"], e["response_length"], e["exception"]) == (
        "put", "put", 10, None)
    assert e["url"] in members  # the member that answered
    sticky = e["url"]
    tag["phase"] = "later"  # the context is asked for at each request
    client.put(key="a2", value="yyy", name="kw")  # values given by keyword count too
    e = last()
    assert (e["name"], e["response_length"], e["context"]) == ("kw", 3, {"phase": "later"})
    assert e["url"] == sticky  # the default pick policy keeps one member
    client.raw.delete("a2")
    assert client.get("a", name="read a").value == b"x" * 10
    e = last()
    assert (e["request_type"], e["name"], e["response_length"]) == ("get", "read a", 10)
    assert len(client.get_prefix("")) == 1 and last()["request_type"] == "get_prefix"
    assert client.range("a").count == 1 and last()["request_type"] == "range"
    assert [kv.key for kv in client.iter_prefix("")] == [b"a"]
    e = last()
    assert (e["request_type"], e["response_length"]) == ("iter_prefix", 10)
    r = client.txn([Compare.version("a") > 0], [Op.get("a")], [])
    assert r.succeeded and last()["response_length"] == 10
    assert client.put_if_absent("b", "yy") is True and last()["request_type"] == "put_if_absent"
    assert client.replace("b", "yy", "zzz") is True and last()["response_length"] == 3
    assert client.status().version and last()["request_type"] == "status"
    assert client.member_list().members and last()["request_type"] == "member_list"
    lease = client.lease(5)
    assert last()["request_type"] == "lease"
    assert client.lease_time_to_live(lease).ttl > 0 and last()["name"] == "lease_time_to_live"
    assert lease.id in client.leases()  # every public method is reported the same way
    assert last()["request_type"] == "leases"
    assert client.endpoints == client.raw.endpoints and not seen  # not a method: as is
    client.revoke_lease(lease, name="revoke")
    e = last()
    assert (e["request_type"], e["name"]) == ("revoke_lease", "revoke")
    try:
        client.get("a", revision=10**12)
    except geetcd.FutureRevision as exc:
        e = last()
        assert e["exception"] is exc and e["request_type"] == "get"
        assert e["url"]  # a member, or the endpoints when none can be told
    else:
        raise AssertionError("no FutureRevision")
    assert client.delete("a").deleted == 1 and last()["request_type"] == "delete"

    reporter = client.watch("w", name="w")
    e = last()
    assert e["request_type"] == "watch_open" and e["url"] in members
    client.raw.put("w", stamp_value(40))
    client.raw.put("w", b"no stamp")
    deadline = time.monotonic() + 10
    while reporter.delivered + reporter.unstamped < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # patched: yields to the watch greenlet
    e = last()
    assert (e["request_type"], e["name"], e["response_length"]) == ("watch", "w", 40)
    assert 0 <= e["response_time"] < 10_000
    assert e["url"] == reporter.watch.member and e["url"] in members
    assert (reporter.delivered, reporter.unstamped) == (1, 1)

    stamp = stamp_value(0, now=1234.5)
    assert read_stamp(stamp) == 1234.5 and read_stamp(b"x") is None
    assert len(stamp_value(100)) == 100
    h = LatencyHistogram()
    for i in range(1, 1001):
        h.add(i / 100)  # 0.01 .. 10 ms
    assert abs(h.percentile(0.5) - 5.0) / 5.0 < 0.01, h.percentile(0.5)
    assert abs(h.percentile(0.99) - 9.9) / 9.9 < 0.01, h.percentile(0.99)
    other = LatencyHistogram()
    other.merge_json(json.loads(json.dumps(h.to_json())))
    assert other.count == 1000 and other.percentile(0.5) == h.percentile(0.5)
    client.raw.delete_prefix("")
    client.close()
    assert client.raw.closed and reporter.watch.done
    print("contract ok")
    """
)


def test_client_wrapper_contract(etcd_endpoints: list[str]) -> None:
    prefix = f"/geetcd-test/locust-contract-{secrets.token_hex(4)}/"
    proc = subprocess.run(
        [sys.executable, "-c", _CONTRACT, _host(etcd_endpoints), prefix],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("contract ok")
