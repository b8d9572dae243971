"""Network faults of geetcd.testing (``EtcdCluster(faults=True)``) against real 3-member clusters.

Everything here talks to etcd with the standard library only (http.client, raw sockets), so a
bug in the geetcd client cannot hide or fake a harness bug. Timings that the report quotes are
printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from geetcd.testing import EtcdCluster, EtcdMember

pytestmark = pytest.mark.timeout(180)

HASLEADER = {"Grpc-Metadata-hasleader": "true"}
GET_VERSION = b"GET /version HTTP/1.1\r\nHost: etcd\r\n\r\n"


def _hostport(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _post(
    url: str,
    path: str,
    payload: dict[str, Any],
    *,
    timeout: float = 3.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    host, port = _hostport(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(payload).encode(), headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _put(url: str, key: str, value: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return _post(url, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, **kwargs)


def _local_value(url: str, key: str) -> str | None:
    """The value of ``key`` in the member's own store (serializable range, no leader needed)."""
    status, body = _post(url, "/v3/kv/range", {"key": _b64(key), "serializable": True})
    assert status == 200, body
    kvs = body.get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def _leader_id(url: str) -> int:
    status, body = _post(url, "/v3/maintenance/status", {})
    assert status == 200, body
    return int(body.get("leader", 0))


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` every 0.05 s; return the seconds it took, fail after ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def _read_answer(sock: socket.socket) -> bytes:
    """Read one HTTP answer with a Content-Length body (as etcd's /version sends) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        body += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def _connect(member: EtcdMember, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(_hostport(member.client_url), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _round_trip(sock: socket.socket) -> float:
    start = time.monotonic()
    sock.sendall(GET_VERSION)
    assert b"etcdserver" in _read_answer(sock)
    return time.monotonic() - start


def test_advertised_urls_are_the_proxy(faulty_cluster: EtcdCluster) -> None:
    status, body = _post(faulty_cluster.endpoints[0], "/v3/cluster/member/list", {})
    assert status == 200, body
    listed = {m["name"]: (m["clientURLs"], m["peerURLs"]) for m in body["members"]}
    for member in faulty_cluster.members:
        assert member.client_url != member.listen_client_url
        assert member.peer_url != member.listen_peer_url
        assert listed[member.name] == ([member.client_url], [member.peer_url])
    first, second = faulty_cluster.members[:2]
    assert _put(first.client_url, "/netfaults/urls", "x")[0] == 200
    _wait_for(
        "the write is on the second member",
        lambda: _local_value(second.listen_client_url, "/netfaults/urls") == "x",
        5.0,
    )


def test_isolated_follower_loses_its_leader_and_catches_up_after_heal(
    faulty_cluster: EtcdCluster,
) -> None:
    follower = faulty_cluster.followers()[0]
    others = [m for m in faulty_cluster.members if m is not follower]
    assert _put(follower.client_url, "/netfaults/iso/before", "1")[0] == 200
    _wait_for(
        "the follower has the first write",
        lambda: _local_value(follower.client_url, "/netfaults/iso/before") == "1",
        5.0,
    )

    faulty_cluster.isolate(follower)
    assert faulty_cluster.network_faults(follower)["isolated"] is True
    assert f"faults=[{follower.name}:isolated]" in repr(faulty_cluster)
    lost = _wait_for(
        "the isolated follower reports no leader",
        lambda: _leader_id(follower.client_url) == 0,
        15.0,
    )
    print(f"\nisolated follower without leader after {lost:.2f} s")

    # It cannot commit: a write through it fails (at once with the hasleader header, else it
    # is still pending when the client gives up).
    status, body = _put(follower.client_url, "/netfaults/iso/lost", "x", headers=HASLEADER)
    assert status == 503 and "no leader" in body.get("error", ""), (status, body)
    try:
        answer = _put(follower.client_url, "/netfaults/iso/lost2", "x", timeout=2.5)
    except TimeoutError:
        pass
    else:
        assert answer[0] != 200, answer
    # The other two still have a leader and commit.
    for member in others:
        status, body = _put(member.client_url, "/netfaults/iso/during", member.name)
        assert status == 200, body
    assert faulty_cluster.leader() in others
    # Clients still reach the isolated member, which does not see the new writes.
    host, port = _hostport(follower.client_url)
    conn = http.client.HTTPConnection(host, port, timeout=3.0)
    conn.request("GET", "/version")
    assert conn.getresponse().status == 200
    conn.close()
    assert _local_value(follower.client_url, "/netfaults/iso/before") == "1"
    time.sleep(0.5)
    assert _local_value(follower.client_url, "/netfaults/iso/during") is None

    faulty_cluster.heal_network(follower)
    assert faulty_cluster.network_faults(follower)["isolated"] is False
    caught_up = _wait_for(
        "the healed follower has the write made during isolation",
        lambda: _local_value(follower.client_url, "/netfaults/iso/during") == others[-1].name,
        20.0,
    )
    print(f"healed follower caught up after {caught_up:.2f} s")
    _wait_for("the healed follower has a leader", lambda: _leader_id(follower.client_url) != 0, 20)
    assert _put(follower.client_url, "/netfaults/iso/after", "1", headers=HASLEADER)[0] == 200


def _received_from(member: EtcdMember, sender: EtcdMember) -> float:
    """Bytes of raft messages ``member`` received from ``sender`` (etcd's own counter)."""
    assert sender.member_id is not None
    key = f'etcd_network_peer_received_bytes_total{{From="{sender.member_id:x}"}}'
    return member.metrics().get(key, 0.0)


def test_isolation_stops_raft_traffic_in_both_directions(faulty_cluster: EtcdCluster) -> None:
    leader = faulty_cluster.leader()
    follower = faulty_cluster.followers()[0]
    pairs = [(follower, leader), (leader, follower)]  # (receiver, sender)
    before = [_received_from(r, s) for r, s in pairs]
    time.sleep(0.5)
    assert all(_received_from(r, s) > b for (r, s), b in zip(pairs, before, strict=True))

    faulty_cluster.isolate(follower)
    time.sleep(0.5)  # what was already past the proxy is counted by now
    held = [_received_from(r, s) for r, s in pairs]
    time.sleep(2.0)  # 20 heartbeat intervals
    assert [_received_from(r, s) for r, s in pairs] == held

    faulty_cluster.heal_network(follower)
    _wait_for(
        "raft messages flow again both ways",
        lambda: all(_received_from(r, s) > h for (r, s), h in zip(pairs, held, strict=True)),
        10.0,
    )


def _keepalive(url: str, lease: str, timeout: float) -> int:
    """One keepalive through the gateway: the TTL it answers (0 when the lease is gone)."""
    status, body = _post(url, "/v3/lease/keepalive", {"ID": lease}, timeout=timeout)
    assert status == 200, body
    return int(body.get("result", {}).get("TTL", 0))


def test_isolated_follower_cannot_forward_lease_renewals(faulty_cluster: EtcdCluster) -> None:
    """A follower forwards keepalives to the leader over the peer URL (``POST /leases``) on a
    connection whose requests carry no ``X-Server-From``; isolation must cut it too."""
    leader = faulty_cluster.leader()
    follower = faulty_cluster.followers()[0]
    status, granted = _post(leader.client_url, "/v3/lease/grant", {"TTL": 60})
    assert status == 200, granted
    lease = str(granted["ID"])
    assert _keepalive(follower.client_url, lease, 3.0) > 0  # the forwarding connection is open

    faulty_cluster.isolate(follower)
    # Sent at once, while the follower still believes in its leader (election timeout 1 s).
    try:
        ttl = _keepalive(follower.client_url, lease, 3.0)
    except (TimeoutError, AssertionError):
        ttl = 0
    assert ttl == 0, "a renewal went from the isolated follower to the leader"

    faulty_cluster.heal_network(follower)
    faulty_cluster.wait_healthy()
    assert _keepalive(follower.client_url, lease, 5.0) > 0


def test_isolated_leader_is_replaced_and_rejoins(faulty_cluster: EtcdCluster) -> None:
    old = faulty_cluster.leader()
    assert old.member_id is not None
    others = [m for m in faulty_cluster.members if m is not old]

    faulty_cluster.isolate(old)
    start = time.monotonic()
    _wait_for("a new leader among the other two", lambda: faulty_cluster.leader() in others, 30.0)
    print(f"\nnew leader {time.monotonic() - start:.2f} s after isolating the leader")
    _wait_for(
        "the isolated leader steps down",
        lambda: _leader_id(old.client_url) != old.member_id,
        15.0,
    )
    status, body = _put(old.client_url, "/netfaults/lead/lost", "x", headers=HASLEADER)
    assert status == 503, (status, body)
    assert _put(others[0].client_url, "/netfaults/lead/during", "2")[0] == 200
    time.sleep(0.5)
    assert _local_value(old.client_url, "/netfaults/lead/during") is None

    faulty_cluster.heal_network()
    _wait_for(
        "the old leader has the write made during isolation",
        lambda: _local_value(old.client_url, "/netfaults/lead/during") == "2",
        20.0,
    )
    assert _local_value(old.client_url, "/netfaults/lead/lost") is None


def test_blackholed_member_accepts_connections_but_never_answers(
    faulty_cluster: EtcdCluster,
) -> None:
    member, other = faulty_cluster.members[0], faulty_cluster.members[1]
    established = _connect(member)
    _round_trip(established)

    faulty_cluster.blackhole(member)
    assert faulty_cluster.network_faults(member)["blackholed"] is True
    # Established connection: the request goes out, no answer comes back.
    established.settimeout(2.0)
    established.sendall(GET_VERSION)
    with pytest.raises(TimeoutError):
        established.recv(65536)
    # New connections: connect completes (never refused, never reset), then silence.
    fresh = [_connect(member, timeout=2.0) for _ in range(20)]
    for sock in fresh[:3]:
        sock.sendall(GET_VERSION)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        fresh[0].recv(65536)
    assert time.monotonic() - start >= 1.9
    # Its peers are untouched: a write through another member reaches it.
    assert _put(other.client_url, "/netfaults/bh/during", "1")[0] == 200
    _wait_for(
        "the black-holed member applies writes from its peers",
        lambda: _local_value(member.listen_client_url, "/netfaults/bh/during") == "1",
        5.0,
    )

    faulty_cluster.heal_network(member)
    # What was sent during the black-hole is delivered now, like a TCP retransmission.
    for sock in (established, *fresh[:3]):
        sock.settimeout(5.0)
        assert b"etcdserver" in _read_answer(sock)
    _round_trip(established)
    for sock in (established, *fresh):
        sock.close()
    assert _local_value(member.client_url, "/netfaults/bh/during") == "1"


def test_delay_adds_latency_in_each_direction(faulty_cluster: EtcdCluster) -> None:
    member = faulty_cluster.members[2]
    sock = _connect(member, timeout=10.0)
    try:
        baseline = min(_round_trip(sock) for _ in range(5))
        faulty_cluster.delay(member, 0.3)
        assert faulty_cluster.network_faults(member)["delay"] == 0.3
        delayed = [_round_trip(sock) for _ in range(3)]
        print(f"\nround trip {baseline * 1000:.1f} ms, with delay(0.3): {delayed}")
        assert min(delayed) >= 0.6  # 0.3 s on the request plus 0.3 s on the answer
        # A new connection gets the delay too.
        with _connect(member, timeout=10.0) as other:
            assert _round_trip(other) >= 0.6
        faulty_cluster.heal_network(member)
        assert min(_round_trip(sock) for _ in range(3)) < 0.5
    finally:
        sock.close()


def test_peer_proxy_forwards_what_is_not_http_at_once(faulty_cluster: EtcdCluster) -> None:
    """The peer proxy reads the first request's header to learn its sender; bytes that are not
    an HTTP request (peer TLS starts with 0x16) must be forwarded at once, not waited on."""
    peer = _hostport(faulty_cluster.members[0].peer_url)
    with socket.create_connection(peer, timeout=1.0) as sock:
        sock.sendall(b"\x16\x03\x01 x\r\n")  # one line, no end of header
        assert sock.recv(100).startswith(b"HTTP/1.1 400")  # etcd's answer, within 1 s
    with socket.create_connection(peer, timeout=1.0) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: etcd\r\n\r\n")
        assert b"etcdserver" in _read_answer(sock)


def test_killed_member_refuses_connections_through_the_proxy(
    faulty_cluster: EtcdCluster,
) -> None:
    member = faulty_cluster.followers()[0]
    member.kill()
    for url in (member.client_url, member.peer_url):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(_hostport(url), timeout=2.0).close()
    member.restart()
    with _connect(member) as sock:
        _round_trip(sock)


def test_isolation_survives_a_restart_and_heal_undoes_everything(
    faulty_cluster: EtcdCluster,
) -> None:
    member = faulty_cluster.followers()[0]
    others = [m for m in faulty_cluster.members if m is not member]
    faulty_cluster.isolate(member)
    member.kill()
    member.restart(wait=False)  # it cannot become healthy (no leader) while isolated
    assert _put(others[0].client_url, "/netfaults/restart/during", "1")[0] == 200
    time.sleep(2.5)  # more than an election timeout after its start
    # etcd serves clients only once it has published itself through raft, which an isolated
    # member cannot: the status request gets no answer.
    with pytest.raises(OSError):
        _post(member.listen_client_url, "/v3/maintenance/status", {}, timeout=2.0)
    member.pause()
    faulty_cluster.heal()  # lifts the isolation, resumes, waits until all are healthy
    assert faulty_cluster.network_faults(member) == {
        "isolated": False,
        "blackholed": False,
        "delay": 0.0,
    }
    _wait_for(
        "the restarted member catches up",
        lambda: _local_value(member.client_url, "/netfaults/restart/during") == "1",
        10.0,
    )


def test_peer_traffic_survives_a_busy_test_process(faulty_cluster: EtcdCluster) -> None:
    """The proxy runs in its own process: a test that hogs its own interpreter (here 2 s of
    pure Python, twice etcd's 1 s election timeout) must not cost a leader election."""
    url = faulty_cluster.leader().client_url
    _, before = _post(url, "/v3/maintenance/status", {})
    deadline = time.monotonic() + 2.0
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    _, after = _post(url, "/v3/maintenance/status", {})
    assert spins > 0
    assert (after["raftTerm"], after["leader"]) == (before["raftTerm"], before["leader"])


def test_add_member_is_proxied_and_can_be_isolated(faulty_cluster: EtcdCluster) -> None:
    added = faulty_cluster.add_member()
    try:
        assert added.client_url != added.listen_client_url
        status, body = _post(added.client_url, "/v3/cluster/member/list", {})
        assert status == 200
        assert [added.peer_url] in [m["peerURLs"] for m in body["members"]]
        faulty_cluster.isolate(added)
        _wait_for("the added member has no leader", lambda: _leader_id(added.client_url) == 0, 15)
        faulty_cluster.heal_network(added)
        _wait_for("the added member has a leader", lambda: _leader_id(added.client_url) != 0, 15)
    finally:
        faulty_cluster.remove_member(added)
    assert added not in faulty_cluster.members


def test_clusters_without_faults_have_no_proxy(etcd_server: EtcdCluster) -> None:
    member = etcd_server.members[0]
    assert member.client_url == member.listen_client_url
    with pytest.raises(RuntimeError, match="faults=True"):
        etcd_server.isolate(0)
    with pytest.raises(RuntimeError, match="faults=True"):
        etcd_server.heal_network()


def _pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_stop_ends_the_proxy_process() -> None:
    with EtcdCluster(size=1, faults=True) as cluster:
        pid = cluster.proxy_pid
        assert pid is not None
        os.kill(pid, 0)
    assert cluster.proxy_pid is None
    assert _pid_gone(pid)


def test_proxy_dies_with_a_sigkilled_parent() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from geetcd.testing import EtcdCluster\n"
            "c = EtcdCluster(size=1, faults=True).start()\n"
            "print(c.proxy_pid, c.member(0).pid, c.member(0).data_dir, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proxy_pid, etcd_pid, data_dir = proc.stdout.readline().split()
    finally:
        proc.kill()
        proc.wait()
    try:
        assert _pid_gone(int(proxy_pid)), "the proxy outlived its SIGKILLed parent"
        assert _pid_gone(int(etcd_pid))
    finally:
        shutil.rmtree(os.path.dirname(data_dir), ignore_errors=True)  # atexit never ran


@pytest.mark.parametrize("index", [0, 2], ids=["proxy-port", "etcd-port"])
def test_port_clash_is_retried_with_new_ports(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """A taken port, whether the proxy's (advertised) or etcd's own, discards the attempt."""
    from geetcd.testing import cluster as cluster_module
    from geetcd.testing.process import _free_ports as real_free_ports

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    calls: list[int] = []

    def clashing(host: str, count: int) -> list[int]:
        calls.append(count)
        ports = real_free_ports(host, count)
        if len(calls) == 1:
            ports[index] = taken
        return ports

    monkeypatch.setattr(cluster_module, "_free_ports", clashing)
    try:
        with EtcdCluster(size=1, faults=True) as cluster:
            member = cluster.member(0)
            assert calls == [4, 4]
            assert taken not in (_hostport(member.client_url)[1], member._client_port)
            with _connect(member) as sock:
                _round_trip(sock)
    finally:
        blocker.close()
