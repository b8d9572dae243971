"""The transport is cooperative without monkey patching (DESIGN.md, "Cooperative without
monkey patching"): a fresh interpreter that never patches runs 200 concurrent greenlets on
one client; their requests must overlap and a 5 ms ticker must never be starved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

WORKER = Path(__file__).with_name("unpatched_worker.py")


def run_worker(endpoint: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(WORKER), endpoint, *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"worker printed nothing (rc={proc.returncode}); stderr:\n{proc.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0, f"worker failed: {report['errors']}\n{proc.stderr[-3000:]}"
    return report


def test_unpatched_process_overlaps_requests_and_keeps_the_hub_responsive(
    etcd_endpoints: list[str],
) -> None:
    report = run_worker(etcd_endpoints[0], "200", "4")
    assert report["patched"] is False
    assert report["errors"] == []
    assert report["ops"] == 200 * 4
    # requests overlapped: with a blocking socket only one call at a time would be in flight
    assert report["max_inflight"] >= 20, report
    assert report["max_pool_in_use"] >= 2, report
    assert report["max_pool_in_use"] <= 64  # the default maxsize bounds the sockets
    # the hub kept running: the ticker was never starved (generous for a shared 2-core box)
    assert report["ticks"] > 0
    assert report["max_tick_gap"] < 0.5, report
