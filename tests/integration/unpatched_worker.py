"""Run by test_unpatched.py in a fresh interpreter that NEVER monkey-patches.

Usage: python unpatched_worker.py ENDPOINT [GREENLETS] [OPS_PER_GREENLET]

200 greenlets share one geetcd.Client and do gets and puts while a ticker greenlet sleeps
5 ms at a time. Meanwhile 5 greenlets call a "hung member": a socket that listens but never
answers (TCP connect succeeds, no byte comes back), through a second client whose attempts
time out after HUNG_TIMEOUT seconds. If any socket operation blocked the hub, requests would
not overlap and the ticker would see a gap of at least HUNG_TIMEOUT. Prints one JSON object:

    {"patched": false, "ticks": N, "max_tick_gap": s, "max_inflight": N,
     "max_pool_in_use": N, "ops": N, "errors": [...], "elapsed": s,
     "hung_errors": [exception class names], "hung_max_elapsed": s}
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import gevent
import gevent.monkey

import geetcd

T = TypeVar("T")
HUNG_TIMEOUT = 2.0
HUNG_CALLS = 5


def main() -> int:
    endpoint = sys.argv[1]
    greenlets = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    ops_per_greenlet = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    assert not gevent.monkey.is_module_patched("socket"), "socket must not be patched"
    assert not gevent.monkey.is_module_patched("ssl"), "ssl must not be patched"

    client = geetcd.Client(endpoint, namespace=f"/geetcd-test/unpatched-{time.time_ns()}/")
    silent = socket.socket()  # the stdlib socket: nothing here is patched
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accept(): the kernel completes the handshake, nobody answers
    hung_client = geetcd.Client(
        f"http://127.0.0.1:{silent.getsockname()[1]}",
        timeout=HUNG_TIMEOUT,
        attempt_timeout=HUNG_TIMEOUT,
        connect_timeout=1.0,
    )
    hung_errors: list[str] = []
    hung_elapsed: list[float] = []
    state = {"inflight": 0, "max_inflight": 0, "max_pool_in_use": 0, "ops": 0}
    errors: list[str] = []
    ticks = 0
    max_gap = 0.0
    running = True

    def tracked(fn: Callable[..., T], *args: object) -> T:
        state["inflight"] += 1
        state["max_inflight"] = max(state["max_inflight"], state["inflight"])
        try:
            return fn(*args)
        finally:
            state["inflight"] -= 1
            state["ops"] += 1

    def ticker() -> None:
        nonlocal ticks, max_gap
        last = time.monotonic()
        while running:
            gevent.sleep(0.005)
            now = time.monotonic()
            max_gap = max(max_gap, now - last)
            last = now
            ticks += 1
            for member in client.cluster_state.members:
                in_use, _ = client.core.transport.pool_usage(member.url)
                state["max_pool_in_use"] = max(state["max_pool_in_use"], in_use)

    def worker(i: int) -> None:
        try:
            for j in range(ops_per_greenlet // 2):
                key, value = f"w{i}/{j}", f"{i}:{j}"
                tracked(client.put, key, value)
                kv = tracked(client.get, key)
                if kv is None or kv.value != value.encode():
                    errors.append(f"greenlet {i}: read {kv!r}, expected {value!r}")
        except Exception as exc:  # reported in the JSON, never swallowed
            errors.append(f"greenlet {i}: {exc!r}")

    def hung_caller() -> None:
        started = time.monotonic()
        try:
            hung_client.get("k")
        except geetcd.EtcdError as exc:  # the expected outcome, reported in the JSON
            hung_errors.append(type(exc).__name__)
        else:
            errors.append("a call to the silent member returned")
        hung_elapsed.append(time.monotonic() - started)

    tick = gevent.spawn(ticker)
    gevent.sleep(0.02)  # the ticker is running before the load starts
    started = time.monotonic()
    everyone: list[gevent.Greenlet[..., None]] = []
    everyone.extend(gevent.spawn(hung_caller) for _ in range(HUNG_CALLS))
    everyone.extend(gevent.spawn(worker, i) for i in range(greenlets))
    finished = gevent.joinall(everyone, timeout=60)
    elapsed = time.monotonic() - started
    running = False
    tick.join(timeout=1)
    if len(finished) != greenlets + HUNG_CALLS:
        errors.append(f"{greenlets + HUNG_CALLS - len(finished)} greenlets did not finish in 60 s")
    try:
        client.delete("", prefix=True)
    finally:
        client.close()
        hung_client.close()
        silent.close()

    print(
        json.dumps(
            {
                "patched": gevent.monkey.is_module_patched("socket"),
                "ticks": ticks,
                "max_tick_gap": max_gap,
                "max_inflight": state["max_inflight"],
                "max_pool_in_use": state["max_pool_in_use"],
                "ops": state["ops"],
                "errors": errors[:20],
                "elapsed": elapsed,
                "hung_errors": hung_errors,
                "hung_max_elapsed": max(hung_elapsed, default=0.0),
            }
        )
    )
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
