"""TLS is cooperative without monkey patching: a fresh interpreter that never patches runs 100
greenlets of TLS requests against a real https etcd member while a ticker greenlet ticks.

If any socket, TLS handshake or pool wait blocked the hub, the requests could not overlap
(each greenlet would finish its call before another one started) and the ticker would stall.
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
    GREENLETS, CALLS = 100, 20
    client = geetcd.Client(url, tls=geetcd.TLS(ca_file=ca_file), maxsize=16, timeout=30)
    client.put("unpatched/k", "v")
    ticks = []
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

    tick = gevent.spawn(ticker)
    gevent.sleep(0)
    started = time.monotonic()
    gevent.joinall([gevent.spawn(worker, i) for i in range(GREENLETS)], raise_error=True)
    elapsed = time.monotonic() - started
    state["running"] = False
    tick.join()
    during = [t for t in ticks if started <= t <= started + elapsed]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({
        "patched": gevent.monkey.is_anything_patched(),
        "stdlib_socket": socket.socket.__module__,
        "stdlib_ssl": ssl.SSLContext.__module__,
        "calls": GREENLETS * CALLS,
        "elapsed": elapsed,
        "ticks_during": len(during),
        "max_gap": max(gaps) if gaps else None,
        "peak_inflight": state["peak"],
        "tls_pools": sorted(type(p).__mro__[1].__name__ for p in client._transport._pools.values()),
    }))
    client.close()
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
    assert result["stdlib_socket"] == "socket"  # the real, unpatched stdlib classes
    assert result["stdlib_ssl"] == "ssl"
    assert result["tls_pools"] == ["HTTPSConnectionPool"]
    # the requests overlapped: many greenlets were inside a call at the same time
    assert result["peak_inflight"] >= 50, result
    # the ticker kept running during the whole run
    assert result["ticks_during"] >= 20, result
    assert result["max_gap"] < 1.0, result
