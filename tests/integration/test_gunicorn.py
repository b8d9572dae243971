"""geetcd inside real gevent servers: the example service (loadtests/app) under
``gunicorn -k gevent`` with 2 workers, with and without ``--preload``, and under
``gevent.pywsgi``, against a real 3-member cluster.

Checked: every worker sees a config change; both workers register and a SIGKILLed worker's
key expires; exactly one worker runs the leader duty at a time and another takes over when
the holder is killed; under an HTTP load (greenlets as clients, bounded in time) no answer
ever belongs to another request or process; a SIGKILL of the etcd leader causes no 5xx
except writes reported as OutcomeUnknown, and the service recovers by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from geventhttpclient import HTTPClient
from metrics_scrape import Labels, parse, promtool_check, total
from polling import wait_for

import geetcd
from geetcd.testing import EtcdCluster, free_port

pytestmark = [pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
TTL = 3


class Service:
    """One running server process tree (gunicorn master + workers, or one pywsgi process)."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = HTTPClient(
            "127.0.0.1", port, concurrency=64, connection_timeout=5, network_timeout=10
        )

    def request(
        self, method: str, path: str, body: bytes | None = None, *, fresh: bool = False
    ) -> tuple[int, Any]:
        """One request; ``fresh``: on a new connection (closed after the answer), so that
        it may be accepted by any worker."""
        headers = {"Connection": "close"} if fresh else None
        response = self.http.request(method, path, body=body, headers=headers)
        data = response.read()
        return response.status_code, json.loads(data)

    def children(self) -> set[int]:
        """The gunicorn workers (the master's children), or the pywsgi process itself."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return set()
        return {int(p) for p in text.split()} or {self.proc.pid}

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_file.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _env(cluster: EtcdCluster, namespace: str, eager: bool) -> dict[str, str]:
    return {
        **os.environ,
        "GEETCD_APP_ENDPOINTS": ",".join(cluster.endpoints),
        "GEETCD_APP_NAMESPACE": namespace,
        "GEETCD_APP_TTL": str(TTL),
        "GEETCD_APP_EAGER": "1" if eager else "0",
        "PYTHONPATH": str(REPO),
    }


def gunicorn(cluster: EtcdCluster, namespace: str, tmp: Path, preload: bool) -> Service:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", "loadtests/app/gunicorn_conf.py",
        "-w", "2", "-b", f"127.0.0.1:{port}", "loadtests.app:app",
    ]  # fmt: skip
    if preload:
        command.append("--preload")
    env = _env(cluster, namespace, preload)
    # /metrics summed over the workers (prometheus_client's multiprocess mode).
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
    (tmp / "prometheus").mkdir()
    return Service(command, env, port, tmp / "gunicorn.log")


def pywsgi(cluster: EtcdCluster, namespace: str, tmp: Path) -> Service:
    port = free_port()
    command = [sys.executable, "-m", "loadtests.app", "--port", str(port)]
    return Service(command, _env(cluster, namespace, False), port, tmp / "pywsgi.log")


@pytest.fixture
def namespace() -> str:
    return f"/geetcd-app-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster, namespace: str) -> Iterator[geetcd.Client]:
    with geetcd.Client(etcd_cluster.endpoints, namespace=namespace) as client:
        yield client


def registered(client: geetcd.Client) -> set[int]:
    return {int(kv.key.rsplit(b"/", 1)[1]) for kv in client.get_prefix("workers/")}


def duty_holder(client: geetcd.Client) -> int | None:
    leader = client.election("duty").leader()
    return int(leader.value) if leader is not None else None


def scrape(service: Service) -> tuple[bytes, dict[tuple[str, Labels], float]]:
    """``GET /metrics`` (on a fresh connection: any worker may answer): the exposition and
    its samples by (name, labels)."""
    response = service.http.get("/metrics", headers={"Connection": "close"})
    page = response.read()
    assert response.status_code == 200, page[:300]
    return page, parse(page.decode())


def check_metrics(service: Service, statuses: dict[int, int], workers: int) -> None:
    """After :func:`run_load` with no error (each of its iterations is one PUT and one GET
    of /kv, and nothing else in the service calls ``client.get``), the counters summed over
    the workers hold exactly the requests served."""
    gets = puts = statuses[200] // 2
    page, samples = scrape(service)
    assert total(samples, "geetcd_requests_total", method="get") == gets
    assert total(samples, "geetcd_requests_total", method="get", outcome="ok") == gets
    assert total(samples, "geetcd_request_duration_seconds_count", method="get") == gets
    # Each worker also wrote its registration key once.
    assert total(samples, "geetcd_requests_total", method="put", outcome="ok") == puts + workers
    ups = {dict(k[1])["member"]: v for k, v in samples.items() if k[0] == "geetcd_member_up"}
    assert len(ups) == 3 and set(ups.values()) == {1.0}, ups
    assert total(samples, "geetcd_leases_kept_alive") >= workers  # registration leases
    promtool_check(page)


def check_config_reaches_every_worker(service: Service, etcd: geetcd.Client, workers: int) -> float:
    value = uuid.uuid4().hex
    etcd.put("config/color", value)
    started = time.monotonic()
    seen: set[int] = set()

    def ask() -> None:
        # Fresh connections: a kept-alive one stays with the worker that accepted it.
        status, body = service.request("GET", "/config/color", fresh=True)
        if status == 200 and body["value"] == value:
            seen.add(body["pid"])

    def every_worker_has_it() -> bool:
        # A burst over several connections reaches both workers (each accepts some).
        gevent.joinall([gevent.spawn(ask) for _ in range(16)], timeout=10)
        return len(seen) >= workers

    wait_for(every_worker_has_it, timeout=10, what="the config change in every worker")
    return time.monotonic() - started


def run_load(
    service: Service, seconds: float, greenlets: int = 32
) -> tuple[list[str], dict[int, int], list[str], set[int]]:
    """Each greenlet PUTs its own unique value then GETs it back, for ``seconds``.
    Returns (answers that were not the request's own, status counts, 5xx bodies, pids)."""
    stop_at = time.monotonic() + seconds
    foreign: list[str] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    pids: set[int] = set()

    def client(n: int) -> None:
        i = 0
        while time.monotonic() < stop_at and i < 100_000:
            key, value = f"g{n}-{i}", uuid.uuid4().hex
            for method, body in (("PUT", value.encode()), ("GET", None)):
                status, answer = service.request(method, f"/kv/{key}", body)
                statuses[status] = statuses.get(status, 0) + 1
                pids.add(answer["pid"])
                if status >= 500:
                    errors.append(f"{method} {answer.get('error')}")
                    break
                if method == "GET" and answer.get("value") != value:
                    foreign.append(f"{key}: {answer}")
            i += 1

    gevent.joinall([gevent.spawn(client, n) for n in range(greenlets)], timeout=seconds + 60)
    return foreign, statuses, errors, pids


@pytest.mark.parametrize("preload", [False, True], ids=["post_fork", "preload"])
def test_service_under_gunicorn(
    etcd_cluster: EtcdCluster, etcd: geetcd.Client, namespace: str, tmp_path: Path, preload: bool
) -> None:
    service = gunicorn(etcd_cluster, namespace, tmp_path, preload)
    try:
        wait_for(lambda: len(registered(etcd)) == 2, timeout=30, what="2 registered workers")
        workers = service.children()
        assert registered(etcd) == workers, service.tail()

        took = check_config_reaches_every_worker(service, etcd, workers=2)
        print(f"config change seen by both workers after {took * 1000:.0f} ms")

        foreign, statuses, errors, pids = run_load(service, seconds=3)
        assert foreign == []  # no answer ever belonged to another request or process
        assert errors == [] and set(statuses) <= {200}, (statuses, errors[:5])
        assert pids == workers  # both workers served
        check_metrics(service, statuses, workers=2)

        # Leader duty: one holder; killing it hands the duty to the other worker.
        wait_for(lambda: duty_holder(etcd) in workers, timeout=15, what="a duty holder")
        holder = duty_holder(etcd)
        assert holder is not None
        last = etcd.get("duty-log/last")
        assert last is not None and int(last.value.split()[0]) == holder
        os.kill(holder, signal.SIGKILL)
        wait_for(
            lambda: duty_holder(etcd) not in (None, holder), timeout=4 * TTL, what="a new holder"
        )
        survivor = duty_holder(etcd)
        wait_for(lambda: holder not in registered(etcd), timeout=3 * TTL, what="expiry")
        wait_for(lambda: len(registered(etcd)) == 2, timeout=30, what="the respawned worker")
        wait_for(
            lambda: (etcd.get("duty-log/last") or last).value.split()[0] == str(survivor).encode(),
            timeout=10,
            what="the new holder running the duty",
        )
    finally:
        service.stop()


def test_duty_is_never_run_by_two_workers_at_once(
    etcd_cluster: EtcdCluster, etcd: geetcd.Client, namespace: str, tmp_path: Path
) -> None:
    writers: list[int] = []
    watch = etcd.watch(
        "duty-log/last", callback=lambda e: writers.append(int(e.kv.value.split()[0]))
    )
    service = gunicorn(etcd_cluster, namespace, tmp_path, preload=False)
    try:
        wait_for(lambda: len(registered(etcd)) == 2, timeout=30, what="2 registered workers")
        for _ in range(2):  # two hand-overs
            wait_for(lambda: len(writers) > 5, timeout=15, what="duty runs")
            holder = writers[-1]
            os.kill(holder, signal.SIGKILL)
            wait_for(lambda h=holder: writers[-1] != h, timeout=4 * TTL, what="a hand-over")
            before = len(writers)
            wait_for(lambda b=before: len(writers) > b + 3, timeout=10, what="more runs")
        runs = [w for i, w in enumerate(writers) if i == 0 or writers[i - 1] != w]
        assert len(runs) == len(set(runs)), writers  # a holder never comes back after a hand-over
    finally:
        watch.cancel()
        service.stop()


@pytest.mark.fault
def test_leader_sigkill_under_http_load(
    healed_cluster: EtcdCluster, namespace: str, tmp_path: Path
) -> None:
    service = gunicorn(healed_cluster, namespace, tmp_path, preload=True)
    with geetcd.Client(healed_cluster.endpoints, namespace=namespace) as etcd:
        try:
            wait_for(lambda: len(registered(etcd)) == 2, timeout=30, what="2 registered workers")
            load = gevent.spawn(run_load, service, 8.0)
            gevent.sleep(2.0)
            healed_cluster.leader().kill()
            foreign, statuses, errors, _ = load.get(timeout=90)
            assert foreign == []
            assert all(e.startswith("PUT OutcomeUnknown") for e in errors), errors[:5]
            assert statuses.get(200, 0) > 100
            print(f"statuses {statuses}, {len(errors)} OutcomeUnknown writes")
            # Recovered with no restart: every request of a short load succeeds.
            foreign, statuses, errors, _ = run_load(service, seconds=1.5, greenlets=8)
            assert foreign == [] and errors == [] and set(statuses) == {200}
        finally:
            service.stop()


def test_service_under_pywsgi(
    etcd_cluster: EtcdCluster, etcd: geetcd.Client, namespace: str, tmp_path: Path
) -> None:
    service = pywsgi(etcd_cluster, namespace, tmp_path)
    try:
        wait_for(lambda: registered(etcd) == {service.proc.pid}, timeout=30, what="registered")
        check_config_reaches_every_worker(service, etcd, workers=1)
        wait_for(lambda: duty_holder(etcd) == service.proc.pid, timeout=15, what="the duty")
        foreign, statuses, errors, pids = run_load(service, seconds=2)
        assert foreign == [] and errors == [] and set(statuses) == {200}
        assert pids == {service.proc.pid}
        check_metrics(service, statuses, workers=1)
        status, health = service.request("GET", "/health")
        assert status == 200 and health["leader"] is True and len(health["members"]) == 3
        service.proc.kill()  # the process dies: its registration expires within the TTL
        service.proc.wait(10)
        wait_for(lambda: not registered(etcd), timeout=3 * TTL, what="the registration expiry")
    finally:
        service.stop()
