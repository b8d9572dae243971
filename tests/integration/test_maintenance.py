"""Maintenance on real etcd: per-member status and defragment (endpoint=, no failover),
move_leader, alarms and NOSPACE (QuotaExceeded), compaction, and streamed snapshots checked
with etcdutl (status and restore)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time

import pytest
from polling import wait_for

import geetcd
from geetcd.errors import (
    CompactedRevision,
    DeadlineExceeded,
    FutureRevision,
    InvalidArgument,
    InvalidType,
    QuotaExceeded,
    ResponseTimeout,
)
from geetcd.testing import EtcdCluster
from geetcd.testing.binary import find_etcd_binary

pytestmark = pytest.mark.timeout(120)


def etcd_tool(name: str) -> str:
    """A tool beside the etcd binary under test; etcd 3.4 has no etcdutl, and its etcdctl
    does what etcdutl does (snapshot status / restore)."""
    path = os.path.join(os.path.dirname(find_etcd_binary()), name)
    if name == "etcdutl" and not os.path.exists(path):
        return etcd_tool("etcdctl")
    return path


# ---------------------------------------------------------------------- endpoint= targeting
def test_status_asks_exactly_the_given_member(etcd_cluster: EtcdCluster) -> None:
    with geetcd.Client(etcd_cluster.endpoints) as client:
        leaders = set()
        for member in etcd_cluster.members:
            status = client.status(member.client_url)
            assert status.header.member_id == member.member_id
            assert status.leader is not None
            leaders.add(status.leader)
        assert len(leaders) == 1  # one leader, seen by every member
        with pytest.raises(InvalidArgument, match="not a member this client knows"):
            client.status("http://127.0.0.1:1")
        with pytest.raises(InvalidType):
            client.status(12)  # type: ignore[arg-type]


@pytest.mark.fault
def test_status_of_a_hung_member_never_fails_over(healed_cluster: EtcdCluster) -> None:
    hung = healed_cluster.members[0]
    with geetcd.Client(healed_cluster.endpoints, attempt_timeout=0.5) as client:
        client.status()  # warm
        hung.pause()
        started = time.monotonic()
        with pytest.raises((DeadlineExceeded, ResponseTimeout)):
            client.status(hung.client_url, timeout=1.5)
        assert time.monotonic() - started < 3.0
        other = healed_cluster.members[1]
        assert client.status(other.client_url).header.member_id == other.member_id
        hung.resume()


def test_defragment_each_member(etcd_cluster: EtcdCluster) -> None:
    with geetcd.Client(etcd_cluster.endpoints, namespace="/defrag/") as client:
        for i in range(300):
            client.put(f"k{i}", b"x" * 2000)
        client.delete_prefix("")
        rev = client.put("last", "1").header.revision
        client.compact(rev, physical=True)
        for member in etcd_cluster.members:
            before = client.status(member.client_url)
            client.defragment(member.client_url)
            after = client.status(member.client_url)
            assert after.header.member_id == member.member_id
            assert after.db_size < before.db_size, (before, after)
            assert after.db_size - after.db_size_in_use < 64 * 1024
        with pytest.raises(InvalidArgument):
            client.defragment(None)  # type: ignore[arg-type]


def test_compact_keeps_working(etcd_endpoints: list[str], etcd_prefix: str) -> None:
    with geetcd.Client(etcd_endpoints, namespace=etcd_prefix) as client:
        old = client.put("k", "1").header.revision
        new = client.put("k", "2").header.revision
        client.compact(new)
        with pytest.raises(CompactedRevision):
            client.get("k", revision=old)
        assert client.get("k", revision=new).value == b"2"  # type: ignore[union-attr]


def test_move_leader_moves_the_leader(etcd_cluster: EtcdCluster) -> None:
    with geetcd.Client(etcd_cluster.endpoints) as client:
        leader = client.status().leader
        target = next(m for m in etcd_cluster.members if m.member_id != leader)
        assert target.member_id is not None
        client.move_leader(target.member_id)
        wait_for(
            lambda: all(
                client.status(m.client_url).leader == target.member_id for m in etcd_cluster.members
            ),
            timeout=10,
            what="every member to see the new leader",
        )


def test_hash_kv_is_equal_on_every_member_at_one_revision(etcd_cluster: EtcdCluster) -> None:
    with geetcd.Client(etcd_cluster.endpoints, namespace="/hashkv/") as client:
        for i in range(50):
            client.put(f"k{i}", str(i))
        revision = client.put("last", "x").header.revision
        wait_for(
            lambda: all(
                client.status(u).header.revision >= revision for u in etcd_cluster.endpoints
            ),
            timeout=10,
            what="every member to apply the writes",
        )
        hashes = {u: client.hash_kv(u, revision) for u in etcd_cluster.endpoints}
        assert len({h.hash for h in hashes.values()}) == 1
        assert len({h.compact_revision for h in hashes.values()}) == 1
        for member in etcd_cluster.members:
            assert hashes[member.client_url].header.member_id == member.member_id
        # Really the keyspace at that revision: later writes do not change it...
        client.put("later", "y")
        url = etcd_cluster.endpoints[0]
        assert client.hash_kv(url, revision).hash == hashes[url].hash
        assert client.hash_kv(url).hash != hashes[url].hash  # ...but the current one moved
        # ...and etcdctl's endpoint hashkv agrees.
        answer = subprocess.run(
            [
                etcd_tool("etcdctl"),
                "--endpoints",
                url,
                "endpoint",
                "hashkv",
                "--rev",
                str(revision),
                "-w",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert json.loads(answer.stdout)[0]["HashKV"]["hash"] == hashes[url].hash
        with pytest.raises(FutureRevision):
            client.hash_kv(url, revision + 10_000)
        with pytest.raises(InvalidArgument):
            client.hash_kv(url, -1)


# ---------------------------------------------------------------------- alarms / NOSPACE
def test_nospace_raises_quota_exceeded_then_disarm() -> None:
    with (
        EtcdCluster(size=1, extra_args=["--quota-backend-bytes=2000000"]) as cluster,
        geetcd.Client(cluster.endpoints) as client,
    ):
        member_id = cluster.members[0].member_id
        assert client.alarm_list() == ()
        value = b"v" * 100_000
        error: QuotaExceeded | None = None
        for i in range(60):
            try:
                client.put(f"fill/{i}", value)
            except QuotaExceeded as exc:
                error = exc
                break
        assert error is not None, "the quota never ran out"
        assert error.alarm == "NOSPACE"
        assert "NOSPACE" in str(error) and "database space exceeded" in str(error)
        assert not client.core.cluster.members[0].benched()  # a refusal, not a failure
        alarms = client.alarm_list()
        assert [(a.member_id, a.alarm) for a in alarms] == [(member_id, "NOSPACE")]
        assert any("NOSPACE" in e for e in client.status().errors)
        with pytest.raises(QuotaExceeded):
            client.lease(10)
        assert client.get("fill/0") is not None  # reads still work
        # Free space, then disarm: writes work again.
        current = client.delete_prefix("fill/").header.revision
        client.compact(current, physical=True)
        client.defragment(cluster.endpoints[0])
        assert client.alarm_disarm(alarm="CORRUPT") == ()
        disarmed = client.alarm_disarm()
        assert [(a.member_id, a.alarm) for a in disarmed] == [(member_id, "NOSPACE")]
        assert client.alarm_list() == ()
        client.put("after", "ok")
        with pytest.raises(InvalidArgument):
            client.alarm_disarm(alarm="FULL")


# ---------------------------------------------------------------------- snapshot
def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRSS:
    """Samples the RSS of ``pid`` every 10 ms in a real thread (works while the hub blocks)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.base = _rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _rss_kib(self.pid))
            except OSError:
                return
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_snapshot_of_50_mib_passes_etcdutl_and_restores(tmp_path: object) -> None:
    assert isinstance(tmp_path, os.PathLike)
    base = os.fspath(tmp_path)
    with EtcdCluster(size=1) as cluster, geetcd.Client(cluster.endpoints) as client:
        value = os.urandom(512 * 1024)  # random: etcd's bbolt file does not compress it
        for i in range(100):
            client.put(f"big/{i:03d}", value[i:] + value[:i])
        keys = {kv.key: kv.value for kv in client.get_prefix("big/")}
        db_size = client.status().db_size
        assert db_size >= 50 * 1024 * 1024
        path = os.path.join(base, "geetcd.db")
        seen: list[tuple[int, int]] = []
        with PeakRSS(os.getpid()) as rss:
            info = client.snapshot(path, progress=lambda got, total: seen.append((got, total)))
        assert not os.path.exists(path + ".part")
        assert info.size == db_size
        assert os.path.getsize(path) == db_size + 32  # the sha256 trailer is kept
        assert seen and seen[-1][0] == db_size + 32 and seen[0][1] == db_size
        grown = rss.peak - rss.base
        assert grown < 16 * 1024, f"client RSS grew by {grown} KiB during the save"

        etcdctl_path = os.path.join(base, "etcdctl.db")
        env = {**os.environ, "ETCDCTL_API": "3"}
        started = time.monotonic()
        with subprocess.Popen(
            [
                etcd_tool("etcdctl"),
                "--endpoints",
                cluster.endpoints[0],
                "snapshot",
                "save",
                etcdctl_path,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        ) as proc:
            theirs = PeakRSS(proc.pid)
            with theirs:
                proc.wait(60)
        etcdctl_seconds = time.monotonic() - started
        assert proc.returncode == 0
        report = {
            "db_bytes": db_size,
            "geetcd_MiB_per_s": round(info.rate / 2**20, 1),
            "geetcd_peak_rss_growth_KiB": grown,
            "geetcd_peak_rss_KiB": rss.peak,
            "etcdctl_MiB_per_s": round(db_size / etcdctl_seconds / 2**20, 1),
            "etcdctl_peak_rss_KiB": theirs.peak,
        }
        print("SNAPSHOT", json.dumps(report))

        out = subprocess.run(
            [etcd_tool("etcdutl"), "snapshot", "status", path, "-w", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        ours = json.loads(out.stdout)
        out = subprocess.run(
            [etcd_tool("etcdutl"), "snapshot", "status", etcdctl_path, "-w", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert ours["totalKey"] == json.loads(out.stdout)["totalKey"]
        assert ours["revision"] == client.status().header.revision

    # Restore into a new data dir and serve it: the same keys.
    restored = os.path.join(base, "restored")
    subprocess.run(
        [
            etcd_tool("etcdutl"),
            "snapshot",
            "restore",
            path,
            "--data-dir",
            restored,
            "--name",
            "r1",
            "--initial-cluster",
            "r1=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    with _serve_restored(restored) as endpoints, geetcd.Client(endpoints) as client:
        got = {kv.key: kv.value for kv in client.get_prefix("big/")}
        assert got == keys


class _serve_restored:
    """Run etcd on a restored data dir (member r1) on free ports, for one test."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> list[str]:
        import socket

        ports = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
            s.close()
        client_url = f"http://127.0.0.1:{ports[0]}"
        self.proc = subprocess.Popen(
            [
                find_etcd_binary(),
                "--name",
                "r1",
                "--data-dir",
                self.data_dir,
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{ports[1]}",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with geetcd.Client(client_url, timeout=2) as probe:

            def up() -> bool:
                try:
                    probe.status()
                    return True
                except geetcd.EtcdError:
                    return False

            wait_for(up, timeout=20, what="the restored member to answer")
        return [client_url]

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)


def test_snapshot_into_a_file_object_and_bad_input(etcd_endpoints: list[str]) -> None:
    with geetcd.Client(etcd_endpoints) as client:
        buffer = io.BytesIO()
        info = client.snapshot(buffer, endpoint=etcd_endpoints[0])
        data = buffer.getvalue()
        assert len(data) == info.size + 32
        import hashlib

        assert hashlib.sha256(data[:-32]).digest() == data[-32:]
        assert info.sha256 == data[-32:].hex()
        # The JSON gateway path (base64 blobs) gives a verified snapshot too.
        from geetcd import maintenance

        other = io.BytesIO()
        via_gateway = maintenance.snapshot(client.core, other, via="gateway")
        blob = other.getvalue()
        assert hashlib.sha256(blob[:-32]).digest() == blob[-32:]
        assert via_gateway.size == len(blob) - 32 > 0
        with pytest.raises(InvalidType):
            client.snapshot(42)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            client.snapshot(buffer, endpoint="http://127.0.0.1:1")


def test_maintenance_over_tls_with_client_certificates(tmp_path: object) -> None:
    """https members: hash_kv's gRPC negotiates h2 by ALPN with the client's certificates;
    the streamed snapshot and status go over the same TLS settings."""
    from pathlib import Path

    from tls_etcd import TlsEtcd, make_pki

    base = Path(os.fspath(tmp_path))  # type: ignore[call-overload]
    pki = make_pki(base / "pki")
    (base / "mtls").mkdir()
    member = TlsEtcd(
        base / "mtls", pki, server_cert=pki.ip_cert, server_key=pki.ip_key, client_cert_auth=True
    ).start()
    try:
        tls = geetcd.TLS(ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key)
        with geetcd.Client(member.url, tls=tls) as client:
            revision = client.put("k", "v").header.revision
            result = client.hash_kv(member.url, revision)
            assert result.hash and result.header.revision >= revision
            buffer = io.BytesIO()
            info = client.snapshot(buffer, endpoint=member.url)
            assert len(buffer.getvalue()) == info.size + 32
        no_cert = geetcd.TLS(ca_file=pki.ca_file)
        refused = geetcd.Client(member.url, tls=no_cert, timeout=3)
        with refused, pytest.raises(geetcd.TLSError, match="gRPC"):
            refused.hash_kv(member.url)  # a TLS refusal, named as such, never retried
    finally:
        member.stop()
