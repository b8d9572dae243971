"""loadtests/locustfile_lock.py headless against a real 3-member cluster (a subprocess:
locust monkey-patches the process that imports it)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

import geetcd
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile_lock.py"


@pytest.mark.slow
def test_lock_scenario_hands_off_with_fencing(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    prefix = f"/geetcd-test/locust-lock-{secrets.token_hex(4)}/"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "-u", "8", "-r", "8", "-t", "4s",
        "--host", ",".join(etcd_cluster.endpoints),
        "--json-file", str(tmp_path / "run"), "--only-summary", "--stop-timeout", "2",
        "--lock-names", "2", "--lock-hold", "1", "--lock-prefix", prefix,
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]  # 3: a fencing violation
    assert "fencing held" in proc.stderr
    stats = {(e["method"], e["name"]): e for e in json.loads((tmp_path / "run.json").read_text())}
    acquire = stats["lock", "acquire"]
    writes = stats["txn", "fenced write"]
    assert acquire["num_requests"] > 20 and acquire["num_failures"] == 0
    assert writes["num_failures"] == 0 and writes["num_requests"] >= acquire["num_requests"] - 8
    assert stats["lock", "hand-off"]["num_requests"] > 0
    assert ("fence", "violation") not in stats
    with geetcd.Client(etcd_cluster.endpoints) as client:
        assert client.get_prefix(prefix) == []  # the coordinator cleaned up
