"""geetcd-bench: the one-command load test, end to end, local and distributed.

The runs are subprocesses (the console script); geetcd.bench itself never imports locust
(only its collector does, inside the locust subprocess). The pure parts (histogram,
summary, chart) are tested in tests/unit/test_bench.py.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import geetcd
from geetcd import bench
from geetcd.bench import runner
from geetcd.testing import EtcdVersion

pytestmark = pytest.mark.timeout(180)

SVG = "{http://www.w3.org/2000/svg}"


def _bench_command() -> list[str]:
    script = Path(sys.executable).with_name("geetcd-bench")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "geetcd.bench"]


def _run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_bench_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def _svg_series(path: Path) -> dict[str, int]:
    """The polylines of a chart: their legend label -> number of points."""
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    assert root.tag == f"{SVG}svg"
    series: dict[str, int] = {}
    for line in root.iter(f"{SVG}polyline"):
        label = line.get("data-label")
        if label is not None:
            series[label] = len(line.get("points", "").split())
    return series


def _per_process(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("requests-*.json"))]


def _fired(files: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Requests by (type, name), summed over the processes' own counts."""
    total: Counter[tuple[str, str]] = Counter()
    for data in files:
        for request_type, name, count, _failures in data["requests"]:
            total[request_type, name] += count
    return total


def _locust_totals(out: Path) -> Counter[tuple[str, str]]:
    stats = json.loads((out / "locust.json").read_text())
    return Counter({(e["method"], e["name"]): e["num_requests"] for e in stats})


@pytest.mark.slow
def test_default_run_with_throwaway_cluster(tmp_path: Path, etcd_version: EtcdVersion) -> None:
    out = tmp_path / "out"
    proc = _run("--duration", "5", "--users", "10", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    # A throwaway 3-member cluster of the session's etcd was started, and is gone afterwards.
    version = re.escape(str(etcd_version))
    match = re.search(rf"endpoints: (\S+) \(throwaway 3-member etcd {version}, started", stdout)
    assert match, stdout
    urls = match.group(1).split(",")
    assert len(urls) == 3
    assert all(_refused(url) for url in urls)
    # Progress lines while it ran, with the collector's percentiles.
    assert re.search(r"\[\s+\d+ s\] users\s+\d+\s+[\d,]+ ops/s .* p50 [\d.]+ ms", stdout), stdout
    # The summary table, with exact totals from locust's JSON.
    stats = json.loads((out / "locust.json").read_text())
    by_name = {e["name"]: e for e in stats}
    assert set(by_name) == {"get", "put"}
    total = sum(e["num_requests"] for e in stats)
    assert total > 0
    assert all(e["num_failures"] == 0 for e in stats)
    assert re.search(r"type\s+name\s+requests\s+fails\s+ops/s\s+avg ms\s+p50 ms\s+p99 ms", stdout)
    assert re.search(rf"\n\s+get\s+get\s+{by_name['get']['num_requests']:,}\s+0\s", stdout)
    assert re.search(rf"\n\s+total\s+{total:,}\s+0\s", stdout), stdout
    assert "percentiles to 1 %" in stdout
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in stdout
    # Every request names the member that answered: one of the cluster's three.
    latency = json.loads((out / "latency.json").read_text())
    assert set(latency["members"]) <= set(urls)
    assert sum(latency["members"].values()) == total
    assert "requests by member: http://127.0.0.1:" in stdout
    # Attempts per member, from the observer hook: every call had one attempt at least (the
    # clients' own member-list calls come on top), none failed, nothing failed over.
    attempts = latency["attempts"]
    assert set(attempts["members"]) <= set(urls)
    assert sum(m["attempts"] for m in attempts["members"].values()) >= total
    assert all(m["failed"] == m["failed_over"] == 0 for m in attempts["members"].values())
    assert attempts["failovers"] == 0
    assert "attempts by member: http://127.0.0.1:" in stdout
    assert "calls failed over to another member: 0" in summary
    # The report files.
    html = (out / "report.html").read_text()
    assert "<html" in html.lower()
    assert f'"num_requests": {total}' in html  # the report's Aggregated row: the same run
    series = _svg_series(out / "chart.svg")
    assert {"all", "get", "put", "get p50", "get p99", "put p50", "put p99"} <= set(series)
    assert series["all"] >= 3  # one point a second, from the history CSV
    counted = {(e["type"], e["name"]): e["count"] for e in latency["latency_ms"]}
    assert counted == {("get", "get"): by_name["get"]["num_requests"],
                       ("put", "put"): by_name["put"]["num_requests"],
                       ("", "Aggregated"): total}  # fmt: skip
    # The one local process counted every request itself.
    (own,) = _per_process(out)
    assert own["role"] == "local"
    assert _fired([own]) == _locust_totals(out)
    assert (out / "locust_stats_history.csv").is_file()
    assert (out / "locust.log").is_file()


@pytest.mark.slow
def test_processes_against_given_endpoints(
    etcd_endpoints: list[str], etcd_version: EtcdVersion, tmp_path: Path
) -> None:
    prefix = f"/geetcd-test/bench-{secrets.token_hex(4)}/"
    proc = _run(
        "--endpoints", ",".join(etcd_endpoints), "--processes", "2", "--users", "4",
        "--duration", "4", "--out", str(tmp_path),
        "--", "--kv-prefix", prefix, "--kv-keys", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"(etcd {etcd_version} at the given endpoints)" in proc.stdout
    assert "4 users, 4 s, 2 processes" in proc.stdout
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert {e["name"] for e in stats} == {"get", "put"}
    assert all(e["num_requests"] > 0 and e["num_failures"] == 0 for e in stats)
    # The workers' histograms reached the master.
    latency = json.loads((tmp_path / "latency.json").read_text())
    counted = {(e["type"], e["name"]): e["count"] for e in latency["latency_ms"]}
    assert counted["", "Aggregated"] == sum(e["num_requests"] for e in stats)
    assert counted["", "Aggregated"] == counted["get", "get"] + counted["put", "put"]
    # Each worker counted its own requests; together they are the master's totals.
    files = _per_process(tmp_path)
    assert sorted(f["role"] for f in files) == ["master", "worker0", "worker1"]
    workers = [f for f in files if f["role"] != "master"]
    assert all(_fired([w]).total() > 0 for w in workers)
    assert _fired(files) == _locust_totals(tmp_path)
    with geetcd.Client(etcd_endpoints) as client:
        assert client.get_prefix(prefix) == []


@pytest.mark.slow
@pytest.mark.fault
def test_distributed_failover_on_three_members(tmp_path: Path) -> None:
    """Master plus 2 workers on a throwaway 3-member cluster; the master pauses the leader
    and tells the workers with runner.send_message."""
    proc = _run(
        "--scenario", "failover", "--processes", "2", "--users", "4", "--duration", "9",
        "--out", str(tmp_path), "--", "--fault-at", "2", "--fault-duration", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    urls = re.search(r"endpoints: (\S+) \(throwaway 3-member", proc.stdout)
    assert urls, proc.stdout
    members = set(urls.group(1).split(","))
    assert len(members) == 3
    log = (tmp_path / "locust.log").read_text()
    fault = re.search(r"fault: (pause leader m\d) \(", log)
    assert fault, log[-3000:]
    what = fault.group(1)
    # Both workers saw the message: each fired one "fault seen" request and acknowledged.
    assert re.search(rf"fault: 2 of 2 worker\(s\) saw {what}: worker0, worker1", log), log[-3000:]
    totals = _locust_totals(tmp_path)
    assert totals["failover", f"fault seen: {what}"] == 2
    assert totals["failover", f"first write after {what.rsplit(' ', 1)[0]}"] == 1
    assert totals["failover", "resumed member answers"] == 1
    # The master's totals are exactly the sum of what each process fired itself.
    files = _per_process(tmp_path)
    assert sorted(f["role"] for f in files) == ["master", "worker0", "worker1"]
    assert _fired(files) == totals
    master = next(f for f in files if f["role"] == "master")
    assert {(t, n) for t, n, _, _ in master["requests"]} <= {
        ("failover", f"first write after {what.rsplit(' ', 1)[0]}"),
        ("failover", "resumed member answers"),
    }  # the master runs no users
    # Every worker tagged requests with the fault while it lasted (context), and others not.
    for worker in (f for f in files if f["role"] != "master"):
        assert worker["contexts"].get(json.dumps({"fault": what}), 0) > 0, worker
        assert worker["contexts"].get(json.dumps({"fault": None}), 0) > 0, worker
    # Requests name the member that answered; the known ones are the cluster's.
    latency = json.loads((tmp_path / "latency.json").read_text())
    known = {url for url in latency["members"] if "," not in url}
    assert known <= members and len(known) >= 2
    assert sum(latency["members"].values()) == totals.total()
    # The workers' attempt counts reached the master: the paused member's attempts failed.
    attempts = latency["attempts"]["members"]
    assert set(attempts) <= members
    assert sum(m["failed"] for m in attempts.values()) >= 1, attempts
    assert "attempts by member: " in (tmp_path / "summary.txt").read_text()


def test_failover_refuses_given_endpoints(tmp_path: Path) -> None:
    proc = _run(
        "--scenario", "failover", "--endpoints", "http://127.0.0.1:1", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "only runs on the throwaway cluster" in proc.stderr
    assert not (tmp_path / "locust.log").exists()  # refused before running anything


def test_help_does_not_import_locust() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "--scenario {kv,watch,txn,failover}" in proc.stdout
    modules = "geetcd.bench, geetcd.bench.cli, geetcd.bench.runner, geetcd.bench.report"
    check = subprocess.run(
        [sys.executable, "-c",
         f"import sys, {modules}, geetcd.bench.chart; print('locust' in sys.modules)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert check.stdout.strip() == "False"


def test_bad_arguments() -> None:
    with pytest.raises(bench.BenchError, match="--users"):
        bench.parse_args(["--users", "0"])
    with pytest.raises(bench.BenchError, match="cluster-size 3"):
        bench.parse_args(["--scenario", "failover", "--cluster-size", "1"])
    options = bench.parse_args(["--users", "7", "--", "--kv-keys", "5"])
    assert (options.spawn_rate, options.locust_args) == (7.0, ["--kv-keys", "5"])
    assert options.locustfile.name == "locustfile_kv.py" and options.locustfile.is_file()
    command = bench.locust_command(options, ["http://127.0.0.1:2379"])
    assert command[:3] == [sys.executable, "-c", runner.BOOTSTRAP]
    assert command[-2:] == ["--kv-keys", "5"]
    processes = bench.locust_command(bench.parse_args(["--processes", "2"]), ["http://x:1"])
    bind = processes[processes.index("--master-bind-port") + 1]
    assert processes[processes.index("--master-port") + 1] == bind != "5557"
