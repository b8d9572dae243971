"""Run by test_unpatched.py in a fresh interpreter that NEVER monkey-patches.

Usage: python unpatched_worker.py ENDPOINT [GREENLETS] [OPS_PER_GREENLET]

200 greenlets share one geetcd.Client and do gets and puts while a ticker greenlet sleeps
5 ms at a time. If any socket operation blocked the hub, requests would not overlap and the
ticker would see a long gap. Prints one JSON object on stdout:

    {"patched": false, "ticks": N, "max_tick_gap": s, "max_inflight": N,
     "max_pool_in_use": N, "ops": N, "errors": [...], "elapsed": s}
"""

from __future__ import annotations

import json
import sys
import time

import gevent
import gevent.monkey

import geetcd


def main() -> int:
    endpoint = sys.argv[1]
    greenlets = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    ops_per_greenlet = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    assert not gevent.monkey.is_module_patched("socket"), "socket must not be patched"
    assert not gevent.monkey.is_module_patched("ssl"), "ssl must not be patched"

    client = geetcd.Client(endpoint, namespace=f"/geetcd-test/unpatched-{time.time_ns()}/")
    state = {"inflight": 0, "max_inflight": 0, "max_pool_in_use": 0, "ops": 0}
    errors: list[str] = []
    ticks = 0
    max_gap = 0.0
    running = True

    def tracked(fn, *args):  # type: ignore[no-untyped-def]
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
                in_use, _ = client._transport.pool_usage(member.url)
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

    tick = gevent.spawn(ticker)
    gevent.sleep(0.02)  # the ticker is running before the load starts
    started = time.monotonic()
    workers = [gevent.spawn(worker, i) for i in range(greenlets)]
    finished = gevent.joinall(workers, timeout=60)
    elapsed = time.monotonic() - started
    running = False
    tick.join(timeout=1)
    if len(finished) != greenlets:
        errors.append(f"{greenlets - len(finished)} greenlets did not finish in 60 s")
    try:
        client.delete("", prefix=True)
    finally:
        client.close()

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
            }
        )
    )
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
