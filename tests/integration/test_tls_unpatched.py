"""TLS is cooperative without monkey patching: a fresh interpreter that never patches runs 100
greenlets of TLS requests against a real https etcd member while a ticker greenlet ticks.

If a socket or TLS operation blocked the hub, the requests could not overlap (each greenlet
would finish its call before another one started), and one greenlet stuck in a TLS handshake
with a silent member would freeze every other greenlet and the ticker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from tls_etcd import Pki, TlsEtcd, make_pki

pytestmark = pytest.mark.timeout(120)

CHILD = textwrap.dedent(
    """
    import json, socket, ssl, sys, time

    import gevent
    import gevent.monkey
    import geetcd

    url, ca_file = sys.argv[1], sys.argv[2]
    GREENLETS, CALLS, PAUSE = 100, 10, 0.15
    tls = geetcd.TLS(ca_file=ca_file)
    client = geetcd.Client(url, tls=tls, maxsize=GREENLETS, timeout=30)
    client.put("unpatched/k", "v")
    # A member that accepts TCP connections but never answers the TLS handshake.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    hung = geetcd.Client(
        f"https://127.0.0.1:{silent.getsockname()[1]}",
        tls=tls, timeout=1.5, attempt_timeout=1.5, connect_timeout=1.5,
    )
    ticks, done = [], []
    state = {"inflight": 0, "peak": 0, "running": True}

    def ticker():
        while state["running"]:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    def worker(i):
        for _ in range(CALLS):
            state["inflight"] += 1
            state["peak"] = max(state["peak"], state["inflight"])
            try:
                assert client.get("unpatched/k").value == b"v"
            finally:
                state["inflight"] -= 1
            done.append(time.monotonic())
            gevent.sleep(PAUSE)

    def handshake_that_never_ends():
        started = time.monotonic()
        try:
            hung.get("k")
        except geetcd.EtcdError as exc:
            return started, time.monotonic(), type(exc).__name__
        return started, time.monotonic(), "no error"

    tick = gevent.spawn(ticker)
    gevent.sleep(0.05)
    started = time.monotonic()
    workers = [gevent.spawn(worker, i) for i in range(GREENLETS)]
    gevent.sleep(0.2)
    stuck = gevent.spawn(handshake_that_never_ends)
    gevent.joinall(workers + [stuck], raise_error=True)
    elapsed = time.monotonic() - started
    state["running"] = False
    tick.join()
    hung_from, hung_to, hung_error = stuck.value
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({
        "patched": gevent.monkey.is_anything_patched(),
        "socket_module": socket.socket.__module__,
        "ssl_module": ssl.SSLContext.__module__,
        "calls": len(done),
        "elapsed": elapsed,
        "ticks": len([t for t in ticks if started <= t <= started + elapsed]),
        "max_gap": max(gaps),
        "peak_inflight": state["peak"],
        "hung_seconds": hung_to - hung_from,
        "hung_error": hung_error,
        "calls_while_hung": len([t for t in done if hung_from < t < hung_to]),
        "ticks_while_hung": len([t for t in ticks if hung_from < t < hung_to]),
        "pools": sorted(type(p).__mro__[1].__name__ for p in client.core.transport._pools.values()),
    }))
    client.close()
    hung.close()
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsEtcd, Pki]]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    member = TlsEtcd(
        tmp_path_factory.mktemp("tls"), pki, server_cert=pki.ip_cert, server_key=pki.ip_key
    )
    yield member.start(), pki
    member.stop()


def test_100_greenlets_over_tls_without_monkey_patching(server: tuple[TlsEtcd, Pki]) -> None:
    member, pki = server
    done = subprocess.run(
        [sys.executable, "-c", CHILD, member.url, pki.ca_file],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["patched"] is False
    assert result["socket_module"] == "socket"  # the real, unpatched stdlib classes
    assert result["ssl_module"] == "ssl"
    assert result["pools"] == ["HTTPSConnectionPool"]
    assert result["calls"] == 1000
    # the requests overlapped: most greenlets were inside a TLS call at the same time
    assert result["peak_inflight"] >= 50, result
    # one greenlet stuck in a TLS handshake that never completes did not stop the others
    assert result["hung_seconds"] >= 1.0, result
    assert result["hung_error"] != "no error", result
    assert result["calls_while_hung"] >= 100, result
    # and the ticker kept ticking, also during that handshake
    assert result["ticks"] >= 50, result
    assert result["ticks_while_hung"] >= 10, result
