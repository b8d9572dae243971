"""geetcd-demo: the newcomer's first command, against its own etcd and against a given one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import geetcd

pytestmark = pytest.mark.timeout(120)


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("geetcd-demo")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "geetcd.demo"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=90, check=False
    )


def _check_walkthrough(stdout: str) -> None:
    lines = stdout.splitlines()
    for expected in (
        'client.put("config/color", "blue")',
        "value=b'blue', mod_revision=",
        "False   (it exists already)",
        "True   (compare-and-swap)",
        "succeeded=True at revision",
        "config/color=green, config/size=XL",
        "deleted 1 key",
        "answered by the",
    ):
        assert any(expected in line for line in lines), (expected, stdout)
    events = [line.split()[:2] for line in lines if line.startswith("    PUT") or "DELETE" in line]
    assert events == [
        ["PUT", "config/color"],
        ["PUT", "config/color"],
        ["PUT", "config/size"],
        ["DELETE", "config/size"],
    ], stdout
    assert len(lines) <= 30


def test_demo_with_its_own_etcd() -> None:
    proc = _demo()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("started a throwaway etcd at http://127.0.0.1:")
    _check_walkthrough(proc.stdout)


def test_demo_against_given_endpoints_leaves_nothing(etcd_endpoints: list[str]) -> None:
    proc = _demo("--endpoints", ",".join(etcd_endpoints))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "throwaway" not in proc.stdout.splitlines()[0]
    _check_walkthrough(proc.stdout)
    with geetcd.Client(etcd_endpoints) as client:
        assert client.get_prefix("/geetcd-demo/") == []


def test_demo_reports_unreachable_etcd() -> None:
    proc = _demo("--endpoints", "http://127.0.0.1:1")
    assert proc.returncode == 2
    assert any(line.startswith("geetcd-demo: ") for line in proc.stderr.splitlines())
