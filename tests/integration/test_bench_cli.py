"""geetcd-bench: the one-command load test, end to end, plus its summary and chart code.

The runs are subprocesses (the console script); geetcd.bench itself never imports locust,
so its pure parts are tested in this process.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

import geetcd
from geetcd import bench

pytestmark = pytest.mark.timeout(180)


def _bench_command() -> list[str]:
    script = Path(sys.executable).with_name("geetcd-bench")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "geetcd.bench"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_bench_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB, unfiltered PNG as Canvas writes it: (width, height, rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, width, height = 8, b"", 0, 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        tag = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc
        if tag == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2)
        elif tag == b"IDAT":
            idat += body
        offset += 12 + length
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
def test_default_run_with_throwaway_cluster(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _run("--duration", "5", "--users", "10", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    # A throwaway 3-member cluster was started, and is gone afterwards.
    match = re.search(r"endpoints: (\S+) \(throwaway 3-member etcd 3\.5\.\d+", stdout)
    assert match, stdout
    urls = match.group(1).split(",")
    assert len(urls) == 3
    assert all(_refused(url) for url in urls)
    # Progress lines while it ran.
    assert re.search(r"\[\s+\d+ s\] users\s+\d+\s+[\d,]+ ops/s", stdout), stdout
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
    # The report files.
    html = (out / "report.html").read_text()
    assert "<html" in html.lower()
    assert f'"num_requests": {total}' in html  # the report's Aggregated row: the same run
    width, height, raw = _png_size_and_pixels((out / "chart.png").read_bytes())
    assert (width, height) == (1180, 760)
    assert len(set(raw)) > 10  # not a blank image
    latency = json.loads((out / "latency.json").read_text())
    counted = {(e["type"], e["name"]): e["count"] for e in latency["latency_ms"]}
    assert counted == {("get", "get"): by_name["get"]["num_requests"],
                       ("put", "put"): by_name["put"]["num_requests"],
                       ("", "Aggregated"): total}  # fmt: skip
    assert (out / "locust_stats_history.csv").is_file()
    assert (out / "locust.log").is_file()


@pytest.mark.slow
def test_processes_against_given_endpoints(etcd_endpoints: list[str], tmp_path: Path) -> None:
    prefix = f"/geetcd-test/bench-{secrets.token_hex(4)}/"
    proc = _run(
        "--endpoints", ",".join(etcd_endpoints), "--processes", "2", "--users", "4",
        "--duration", "4", "--out", str(tmp_path),
        "--", "--kv-prefix", prefix, "--kv-keys", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "etcd 3.5" in proc.stdout and "at the given endpoints" in proc.stdout
    assert "4 users, 4 s, 2 processes" in proc.stdout
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert {e["name"] for e in stats} == {"get", "put"}
    assert all(e["num_requests"] > 0 and e["num_failures"] == 0 for e in stats)
    # The workers' histograms reached the master.
    latency = json.loads((tmp_path / "latency.json").read_text())
    counted = {(e["type"], e["name"]): e["count"] for e in latency["latency_ms"]}
    assert counted["", "Aggregated"] == sum(e["num_requests"] for e in stats)
    assert counted["", "Aggregated"] == counted["get", "get"] + counted["put", "put"]
    with geetcd.Client(etcd_endpoints) as client:
        assert client.get_prefix(prefix) == []


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
    check = subprocess.run(
        [sys.executable, "-c", "import sys, geetcd.bench; print('locust' in sys.modules)"],
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
    assert command[-2:] == ["--kv-keys", "5"]
    processes = bench.locust_command(bench.parse_args(["--processes", "2"]), ["http://x:1"])
    bind = processes[processes.index("--master-bind-port") + 1]
    assert processes[processes.index("--master-port") + 1] == bind != "5557"


def _entry(method: str, name: str, times: dict[str, int], failures: int = 0) -> dict[str, Any]:
    count = sum(times.values())
    return {
        "method": method,
        "name": name,
        "num_requests": count,
        "num_failures": failures,
        "total_response_time": float(sum(int(k) * v for k, v in times.items())),
        "max_response_time": float(max(int(k) for k in times)),
        "response_times": times,
        "start_time": 1000.0,
        "last_request_timestamp": 1010.0,
    }


def test_summary_from_locust_json() -> None:
    stats = [
        _entry("put", "put shared", {"2": 50, "4": 50}),
        _entry("watch", "shared", {"3": 90, "40": 10}),
        _entry("cas", "increment", {"5": 20}, failures=2),
        _entry("conflict", "increment", {"1": 30}),
        _entry("retry", "increment", {"1": 25}),
    ]
    latency = {
        "latency_ms": [
            {"type": "put", "name": "put shared", "p50": 2.5, "p99": 3.9},
            {"type": "", "name": "Aggregated", "p50": 3.1, "p99": 39.0},
        ],
        "errors": [{"type": "cas", "name": "increment", "error": "CASGaveUp()", "occurrences": 2}],
    }
    summary = bench.summarize(stats, latency)
    rows = {(r.type, r.name): r for r in summary.rows}
    assert summary.duration == 10.0
    put = rows["put", "put shared"]
    assert (put.requests, put.rate, put.avg, put.p50, put.p99) == (100, 10.0, 3.0, 2.5, 3.9)
    watch = rows["watch", "shared"]  # no precise entry: locust's buckets
    assert (watch.p50, watch.p99) == (3.0, 40.0)
    total = summary.total
    assert (total.requests, total.failures, total.p50, total.p99) == (275, 2, 3.1, 39.0)
    without = bench.summarize(stats, None).total  # from locust's buckets
    assert (without.p50, without.p99) == (3.0, 40.0)
    text = bench.format_summary(summary, "title")
    assert text.startswith("title\n")
    assert (
        "watch deliveries 'shared': 100 (10.0/s), put-to-delivery p50 3.00 ms, p99 40.0 ms" in text
    )
    assert "txn contention: 18 increments, 30 conflicts (1.67 per increment), 25 retries" in text
    assert "2 x cas increment: CASGaveUp()" in text


def test_chart_from_history(tmp_path: Path) -> None:
    header = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,"
        "99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response "
        "Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,"
        "Total Average Content Size"
    )
    lines = [header]
    for second in range(10):
        count = 100 * (second + 1)
        p99 = 9 if second != 5 else 90
        tail = f"{count},0,2,2.0,1,9,0"
        lines.append(f"{1000 + second},5,get,get,0,0,2,2,2,3,4,5,6,{p99},9,9,9,{tail}")
        lines.append(f"{1000 + second},5,,Aggregated,0,0,2,2,2,3,4,5,6,{p99},9,9,9,{tail}")
    history = tmp_path / "history.csv"
    history.write_text("\n".join(lines) + "\n")
    png = tmp_path / "chart.png"
    bench.draw_chart(history, png, "test chart")
    width, height, raw = _png_size_and_pixels(png.read_bytes())
    assert (width, height) == (1180, 760)
    # The get line's colour (the first of the palette) is on the image.
    assert bytes(bench._PALETTE[0]) in raw
