"""KV mix: random gets and puts over a fixed key space.

    locust -f loadtests/locustfile_kv.py --headless -u 20 -r 20 -t 20s \
        --host http://127.0.0.1:2379 --kv-read-ratio 0.8 --kv-keys 1000 --kv-value-size 128

Options (each also read from the environment variable in brackets):

--kv-read-ratio  [GEETCD_KV_READ_RATIO]  share of gets among operations (default 0.8)
--kv-keys        [GEETCD_KV_KEYS]        number of distinct keys (default 1000)
--kv-value-size  [GEETCD_KV_VALUE_SIZE]  bytes per value (default 128)
--kv-prefix      [GEETCD_KV_PREFIX]      namespace of every key (default /geetcd-bench/kv/)

Before the users start, the coordinator (local runner or master) writes every key once, in
transactions of 100 puts; after the run it deletes the prefix. Requests: ``get`` and ``put``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from locust import events, task
from locust.env import Environment

from geetcd import Client, Op
from geetcd.locust import EtcdUser, is_coordinator, parsed_options

log = logging.getLogger("loadtests.kv")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("geetcd KV mix")
    group.add_argument(
        "--kv-read-ratio",
        type=float,
        default=0.8,
        env_var="GEETCD_KV_READ_RATIO",
        help="share of gets among operations, 0..1 (default 0.8)",
    )
    group.add_argument(
        "--kv-keys",
        type=int,
        default=1000,
        env_var="GEETCD_KV_KEYS",
        help="number of distinct keys (default 1000)",
    )
    group.add_argument(
        "--kv-value-size",
        type=int,
        default=128,
        env_var="GEETCD_KV_VALUE_SIZE",
        help="bytes per value (default 128)",
    )
    group.add_argument(
        "--kv-prefix",
        default="/geetcd-bench/kv/",
        env_var="GEETCD_KV_PREFIX",
        help="namespace of every key (default /geetcd-bench/kv/)",
    )


def _key(index: int) -> str:
    return f"key-{index:08d}"


@events.test_start.add_listener
def _populate(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    options = parsed_options(environment)
    value = b"v" * options.kv_value_size
    with Client(environment.host, namespace=options.kv_prefix) as client:
        for start in range(0, options.kv_keys, 100):
            stop = min(start + 100, options.kv_keys)
            client.txn(success=[Op.put(_key(i), value) for i in range(start, stop)])
    log.info("wrote %d keys of %d bytes under %s", options.kv_keys, len(value), options.kv_prefix)


# After the run (on a master: after the workers were told to quit and sent their last
# stats), not at test_stop, which a master fires before its workers stop.
@events.quitting.add_listener
def _clean_up(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    prefix = parsed_options(environment).kv_prefix
    with Client(environment.host, namespace=prefix) as client:
        deleted = client.delete_prefix("").deleted
    log.info("deleted %d keys under %s", deleted, prefix)


class KVUser(EtcdUser):
    """Each task is one get (probability ``--kv-read-ratio``) or one put of a random key."""

    def client_kwargs(self) -> dict[str, Any]:
        return {"namespace": parsed_options(self.environment).kv_prefix}

    def on_start(self) -> None:
        options = parsed_options(self.environment)
        self.read_ratio = float(options.kv_read_ratio)
        self.keys = int(options.kv_keys)
        self.value = b"v" * int(options.kv_value_size)

    @task
    def get_or_put(self) -> None:
        key = _key(random.randrange(self.keys))
        if random.random() < self.read_ratio:
            self.client.get(key)
        else:
            self.client.put(key, self.value)
