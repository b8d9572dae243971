"""Watch fan-out: every user holds several watches and writes stamped values.

    locust -f loadtests/locustfile_watch.py --headless -u 20 -r 20 -t 20s \
        --host http://127.0.0.1:2379 --watch-per-user 4 --watch-shared-keys 2

Each user opens ``--watch-per-user`` watches: half of them on the shared keys (every user
watches them, so one put there is delivered to many watchers: the fan-out), half on keys of
its own (one delivery per put). Every ``--watch-write-interval`` seconds each user puts a
stamped value (:func:`geetcd.locust.stamp_value`) to a random shared key or one of its own
keys. Every delivery is reported as request type ``watch`` with its put-to-delivery latency,
under the name ``shared`` or ``own``.

Options (each also read from the environment variable in brackets):

--watch-per-user        [GEETCD_WATCH_PER_USER]        watches per user (default 4)
--watch-shared-keys     [GEETCD_WATCH_SHARED_KEYS]     number of shared keys (default 2)
--watch-value-size      [GEETCD_WATCH_VALUE_SIZE]      bytes per value (default 64)
--watch-write-interval  [GEETCD_WATCH_WRITE_INTERVAL]  seconds between a user's puts (0.05)
--watch-prefix          [GEETCD_WATCH_PREFIX]          namespace (default /geetcd-bench/watch/)

Requests: ``watch_open`` (opening a watch), ``put`` (names ``put shared`` / ``put own``),
``watch`` (deliveries, names ``shared`` / ``own``). The coordinator deletes the prefix after
the run.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from typing import Any

from locust import events, task
from locust.env import Environment

from geetcd import Client
from geetcd.locust import EtcdUser, is_coordinator, parsed_options, stamp_value

log = logging.getLogger("loadtests.watch")
_user_ids = itertools.count(1)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("geetcd watch fan-out")
    group.add_argument(
        "--watch-per-user",
        type=int,
        default=4,
        env_var="GEETCD_WATCH_PER_USER",
        help="watches per user, half on shared keys, half on the user's own (default 4)",
    )
    group.add_argument(
        "--watch-shared-keys",
        type=int,
        default=2,
        env_var="GEETCD_WATCH_SHARED_KEYS",
        help="number of keys every user watches (default 2)",
    )
    group.add_argument(
        "--watch-value-size",
        type=int,
        default=64,
        env_var="GEETCD_WATCH_VALUE_SIZE",
        help="bytes per value, at least the time stamp (default 64)",
    )
    group.add_argument(
        "--watch-write-interval",
        type=float,
        default=0.05,
        env_var="GEETCD_WATCH_WRITE_INTERVAL",
        help="seconds between two puts of one user (default 0.05)",
    )
    group.add_argument(
        "--watch-prefix",
        default="/geetcd-bench/watch/",
        env_var="GEETCD_WATCH_PREFIX",
        help="namespace of every key (default /geetcd-bench/watch/)",
    )


# After the run (on a master: after the workers were told to quit and sent their last
# stats), not at test_stop, which a master fires before its workers stop.
@events.quitting.add_listener
def _clean_up(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    prefix = parsed_options(environment).watch_prefix
    with Client(environment.host, namespace=prefix) as client:
        deleted = client.delete_prefix("").deleted
    log.info("deleted %d keys under %s", deleted, prefix)


class WatchUser(EtcdUser):
    """Holds ``--watch-per-user`` watches and writes one stamped value per interval."""

    def client_kwargs(self) -> dict[str, Any]:
        return {"namespace": parsed_options(self.environment).watch_prefix}

    def wait_time(self) -> float:
        return self.interval

    def on_start(self) -> None:
        options = parsed_options(self.environment)
        self.interval = float(options.watch_write_interval)
        self.value_size = int(options.watch_value_size)
        user = f"{os.getpid()}-{next(_user_ids)}"
        count = max(1, int(options.watch_per_user))
        on_shared = (count + 1) // 2  # a user with one watch still takes part in the fan-out
        self.shared = [f"shared/{i}" for i in range(max(1, int(options.watch_shared_keys)))]
        self.own = [f"user/{user}/{i}" for i in range(max(1, count - on_shared))]
        for i in range(on_shared):
            self.client.watch(self.shared[i % len(self.shared)], name="shared")
        for key in self.own[: count - on_shared]:
            self.client.watch(key, name="own")

    @task
    def put_shared(self) -> None:
        value = stamp_value(self.value_size)
        self.client.put(random.choice(self.shared), value, name="put shared")

    @task
    def put_own(self) -> None:
        value = stamp_value(self.value_size)
        self.client.put(random.choice(self.own), value, name="put own")
