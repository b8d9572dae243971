"""Reading a Prometheus exposition in tests: every sample by (name, labels)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition, keyed by (sample name, sorted label pairs)."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(registry: CollectorRegistry) -> dict[tuple[str, Labels], float]:
    return parse(generate_latest(registry).decode())


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels`` (None if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, pairs), v in samples.items()
        if n == name and all(dict(pairs).get(k) == w for k, w in labels.items())
    )


def promtool_check(exposition: bytes) -> str:
    """Run ``promtool check metrics`` on ``exposition``; fails the test (never skips) when
    promtool is missing or finds a problem. Returns its output."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (CI: .ci/run-matrix)")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output
    return output
