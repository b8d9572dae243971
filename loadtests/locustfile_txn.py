"""Txn contention: many users increment a few counters with compare-and-swap.

    locust -f loadtests/locustfile_txn.py --headless -u 20 -r 20 -t 20s \
        --host http://127.0.0.1:2379 --txn-counters 4

One increment is a loop of transactions ``if mod_revision(counter) == seen: put(counter, n+1)
else: get(counter)``: a failed compare returns the current value and revision, so the next
attempt needs no extra read. Fewer counters mean more contention.

Requests reported:

* ``txn`` / ``cas``: every transaction round trip;
* ``conflict`` / ``increment``: every failed compare (another user won), with its round trip;
* ``retry`` / ``increment``: every further attempt after a conflict, with its round trip;
* ``cas`` / ``increment``: one per increment, from the first attempt to success (retries
  included); it fails with :class:`CASGaveUp` after ``--txn-max-attempts`` conflicts
  (with N users on one counter an attempt wins about 1 time in N, so 50 attempts would
  starve about 1 increment in 200 at N = 10; hence the default of 200).

After the run the coordinator of a local run (not a distributed master, whose statistics may
still be in flight) checks that the counters add up to the successful increments, give or
take the transactions whose answer never came (errors, users stopped mid-call): a lost or
doubled update is logged as an error and sets the exit code to 3. Then it deletes the prefix.

Options (each also read from the environment variable in brackets):

--txn-counters      [GEETCD_TXN_COUNTERS]      number of counters (default 4)
--txn-max-attempts  [GEETCD_TXN_MAX_ATTEMPTS]  transactions per increment at most (default 200)
--txn-prefix        [GEETCD_TXN_PREFIX]        namespace (default /geetcd-bench/txn/)
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from locust import events, task
from locust.env import Environment
from locust.runners import LocalRunner

from geetcd import Client, Compare, KeyValue, Op, RangeResponse
from geetcd.locust import EtcdUser, is_coordinator, parsed_options

log = logging.getLogger("loadtests.txn")
# Transactions that got no answer in this process (errors, users killed mid-call): each may
# or may not have been applied, so the final check allows that many extra increments.
_in_doubt = [0]


class CASGaveUp(Exception):
    """An increment met a conflict on each of its ``--txn-max-attempts`` transactions."""


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("geetcd txn contention")
    group.add_argument(
        "--txn-counters",
        type=int,
        default=4,
        env_var="GEETCD_TXN_COUNTERS",
        help="number of counters the users increment (default 4)",
    )
    group.add_argument(
        "--txn-max-attempts",
        type=int,
        default=200,
        env_var="GEETCD_TXN_MAX_ATTEMPTS",
        help="transactions per increment before it fails (default 200)",
    )
    group.add_argument(
        "--txn-prefix",
        default="/geetcd-bench/txn/",
        env_var="GEETCD_TXN_PREFIX",
        help="namespace of the counters (default /geetcd-bench/txn/)",
    )


def _counter(index: int) -> str:
    return f"counter-{index:04d}"


def _value(kv: KeyValue | None) -> tuple[int, int]:
    """(count, mod_revision) of a counter; (0, 0) when it does not exist yet."""
    if kv is None:
        return 0, 0
    return int(kv.value or b"0"), kv.mod_revision


@events.test_start.add_listener
def _reset(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    with Client(environment.host, namespace=parsed_options(environment).txn_prefix) as client:
        client.delete_prefix("")


@events.quitting.add_listener
def _check_and_clean_up(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    options = parsed_options(environment)
    with Client(environment.host, namespace=options.txn_prefix) as client:
        total = sum(_value(kv)[0] for kv in client.get_prefix(""))
        if isinstance(environment.runner, LocalRunner):
            entry = environment.stats.get("increment", "cas")
            done = entry.num_requests - entry.num_failures
            doubt = _in_doubt[0]
            if done <= total <= done + doubt:
                log.info("counters add up: sum %d, %d increments, %d in doubt", total, done, doubt)
            else:
                log.error(
                    "lost or doubled update: counters sum to %d, %d increments succeeded, "
                    "%d transactions in doubt",
                    total,
                    done,
                    doubt,
                )
                environment.process_exit_code = 3
        client.delete_prefix("")


class TxnUser(EtcdUser):
    """Each task increments one random counter with a compare-and-swap loop."""

    def client_kwargs(self) -> dict[str, Any]:
        return {"namespace": parsed_options(self.environment).txn_prefix}

    def on_start(self) -> None:
        options = parsed_options(self.environment)
        self.counters = max(1, int(options.txn_counters))
        self.max_attempts = max(1, int(options.txn_max_attempts))
        self.seen: dict[str, tuple[int, int]] = {}

    @task
    def increment(self) -> None:
        key = _counter(random.randrange(self.counters))
        count, revision = self.seen.get(key, (0, 0))
        report = self.client.report
        start = time.perf_counter()
        for attempt in range(self.max_attempts):
            began = time.perf_counter()
            answered = False
            try:
                response = self.client.txn(
                    [Compare.mod_revision(key) == revision],
                    [Op.put(key, str(count + 1))],
                    [Op.get(key)],
                    name="cas",
                )
                answered = True
            except Exception as exc:
                report("cas", "increment", (time.perf_counter() - start) * 1000.0, 0, exc)
                raise
            finally:
                if not answered:  # an error or a kill (user stopped): it may have applied
                    _in_doubt[0] += 1
            took = (time.perf_counter() - began) * 1000.0
            if attempt:
                report("retry", "increment", took)
            if response.succeeded:
                self.seen[key] = (count + 1, response.header.revision)
                report("cas", "increment", (time.perf_counter() - start) * 1000.0)
                return
            report("conflict", "increment", took)
            current = response.responses[0]
            assert isinstance(current, RangeResponse)
            count, revision = _value(current.kvs[0] if current.kvs else None)
        self.seen.pop(key, None)
        gave_up = CASGaveUp(f"{key}: {self.max_attempts} conflicts in a row")
        report("cas", "increment", (time.perf_counter() - start) * 1000.0, 0, gave_up)
