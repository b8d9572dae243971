"""The ``geetcd`` command line against the real etcdctl on one real 3-member cluster: the
same ``-w json`` fields and values for get, put, del, txn, lease and member list, the same
simple and table output, lock exclusion with ``etcdctl lock``, exit codes, environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from geetcd.testing import EtcdCluster
from geetcd.testing.binary import find_etcd_binary

pytestmark = pytest.mark.timeout(120)

ETCDCTL = os.path.join(os.path.dirname(find_etcd_binary()), "etcdctl")
GEETCD = [sys.executable, "-m", "geetcd.cli"]


def run(
    tool: list[str], endpoint: str, *args: str, stdin: str | None = None, env: Any = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tool, "--endpoints", endpoint, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "ETCDCTL_API": "3", **(env or {})},
    )


def both(endpoint: str, *args: str, stdin: str | None = None) -> tuple[Any, Any]:
    """(geetcd's, etcdctl's) output of one command."""
    ours = run(GEETCD, endpoint, *args, stdin=stdin)
    theirs = run([ETCDCTL], endpoint, *args, stdin=stdin)
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stderr
    return ours.stdout, theirs.stdout


def shape(value: Any) -> Any:
    """The field names and value types, recursively (values that differ between two writes,
    revisions and ids, compared separately)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


@pytest.fixture(scope="module")
def endpoint(etcd_cluster: EtcdCluster) -> str:
    return etcd_cluster.members[0].client_url


def test_get_json_and_simple_output_are_etcdctls(endpoint: str) -> None:
    run(GEETCD, endpoint, "put", "cli/get/a", "1")
    run(GEETCD, endpoint, "put", "cli/get/b", "two words")
    for extra in (
        [],
        ["--keys-only"],
        ["--limit", "1"],
        ["--order", "DESCEND", "--sort-by", "KEY"],
    ):
        ours, theirs = both(endpoint, "get", "cli/get/", "--prefix", "-w", "json", *extra)
        assert json.loads(ours) == json.loads(theirs), extra
        assert ours == theirs  # byte for byte: field order, numbers, base64
    ours, theirs = both(endpoint, "get", "cli/get/", "--prefix")
    assert ours == theirs == "cli/get/a\n1\ncli/get/b\ntwo words\n"
    ours, theirs = both(endpoint, "get", "cli/get/", "--prefix", "--print-value-only")
    assert ours == theirs
    ours, theirs = both(endpoint, "get", "cli/get/missing", "-w", "json")
    assert json.loads(ours) == json.loads(theirs) and "kvs" not in json.loads(ours)
    args = ("get", "cli/get/", "--prefix", "--count-only", "-w", "fields")
    ours_count = run(GEETCD, endpoint, *args)
    assert ours_count.returncode == 0 and '"Count" : 2' in ours_count.stdout
    theirs_count = run([ETCDCTL], endpoint, *args)
    if "unknown flag" not in theirs_count.stderr:  # etcdctl 3.4 has no --count-only
        assert ours_count.stdout == theirs_count.stdout


def test_put_and_del_json_match(endpoint: str) -> None:
    ours = json.loads(run(GEETCD, endpoint, "put", "cli/put/a", "1", "-w", "json").stdout)
    theirs = json.loads(run([ETCDCTL], endpoint, "put", "cli/put/b", "1", "-w", "json").stdout)
    assert shape(ours) == shape(theirs)
    assert theirs["header"]["revision"] == ours["header"]["revision"] + 1
    assert {k: v for k, v in ours["header"].items() if k != "revision"} == {
        k: v for k, v in theirs["header"].items() if k != "revision"
    }
    ours = json.loads(
        run(GEETCD, endpoint, "put", "cli/put/a", "2", "--prev-kv", "-w", "json").stdout
    )
    theirs = json.loads(
        run([ETCDCTL], endpoint, "put", "cli/put/b", "2", "--prev-kv", "-w", "json").stdout
    )
    assert shape(ours) == shape(theirs)
    assert ours["prev_kv"]["value"] == theirs["prev_kv"]["value"] == "MQ=="
    ours_text, theirs_text = (
        run(GEETCD, endpoint, "put", "cli/put/a", "3", "--prev-kv").stdout,
        run([ETCDCTL], endpoint, "put", "cli/put/b", "3", "--prev-kv").stdout,
    )
    assert ours_text.replace("cli/put/a", "K") == theirs_text.replace("cli/put/b", "K")

    ours = json.loads(run(GEETCD, endpoint, "del", "cli/put/a", "-w", "json").stdout)
    theirs = json.loads(run([ETCDCTL], endpoint, "del", "cli/put/b", "-w", "json").stdout)
    assert shape(ours) == shape(theirs) and ours["deleted"] == theirs["deleted"] == 1
    ours, theirs = both(endpoint, "del", "cli/put/", "--prefix", "-w", "json")
    assert "deleted" not in json.loads(ours)  # zero values are left out
    assert json.loads(ours).keys() == json.loads(theirs).keys()
    ours, theirs = both(endpoint, "del", "cli/put/nothing")
    assert ours == theirs == "0\n"


def test_txn_json_matches(endpoint: str) -> None:
    for tool, key in ((GEETCD, "cli/txn/a"), ([ETCDCTL], "cli/txn/b")):
        run(tool, endpoint, "put", key, "v")
    answers = []
    for tool, key in ((GEETCD, "cli/txn/a"), ([ETCDCTL], "cli/txn/b")):
        stdin = (
            f'value("{key}") = "v"\nmod("{key}") > "0"\n\nput {key} w\nget {key}\n\ndel {key}\n\n'
        )
        result = run(tool, endpoint, "txn", "-w", "json", stdin=stdin)
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout))
    ours, theirs = answers
    # etcdctl 3.4 names the oneof wrappers ResponsePut...; 3.5 (geetcd's model) response_put.
    renamed = {
        "ResponsePut": "response_put",
        "ResponseRange": "response_range",
        "ResponseDeleteRange": "response_delete_range",
    }
    theirs["responses"] = [
        {"Response": {renamed.get(k, k): v for k, v in r["Response"].items()}}
        for r in theirs["responses"]
    ]
    assert shape(ours) == shape(theirs)
    assert ours["succeeded"] is theirs["succeeded"] is True
    assert [list(r["Response"]) for r in ours["responses"]] == [
        ["response_put"],
        ["response_range"],
    ]
    for tool, key in ((GEETCD, "cli/txn/a"), ([ETCDCTL], "cli/txn/b")):
        stdin = f'value("{key}") = "nope"\n\nput {key} x\n\nget {key}\n\n'
        answers.append(run(tool, endpoint, "txn", stdin=stdin).stdout.replace(key, "K"))
    assert answers[2] == answers[3] and answers[2].startswith("FAILURE\n\nK\nw\n")


def test_lease_json_matches(endpoint: str) -> None:
    ours = json.loads(run(GEETCD, endpoint, "lease", "grant", "60", "-w", "json").stdout)
    theirs = json.loads(run([ETCDCTL], endpoint, "lease", "grant", "60", "-w", "json").stdout)
    assert list(ours) == list(theirs)  # flat: header fields beside ID, TTL, Error
    assert shape(ours) == shape(theirs) and ours["TTL"] == theirs["TTL"] == 60
    assert ours["Error"] == theirs["Error"] == ""
    lease = f"{ours['ID']:x}"
    ours_text = run(GEETCD, endpoint, "lease", "timetolive", lease).stdout
    theirs_text = run([ETCDCTL], endpoint, "lease", "timetolive", lease).stdout
    assert ours_text.split("remaining")[0] == theirs_text.split("remaining")[0]
    ours_list, theirs_list = both(endpoint, "lease", "list", "-w", "json")
    ours, theirs = json.loads(ours_list), json.loads(theirs_list)
    assert list(ours) == list(theirs)  # flat header, then "leases"
    assert sorted(x["id"] for x in ours["leases"]) == sorted(x["id"] for x in theirs["leases"])
    ours_list, theirs_list = both(endpoint, "lease", "list")
    assert sorted(ours_list.splitlines()) == sorted(theirs_list.splitlines())
    other = theirs_id(endpoint)
    ours = json.loads(run(GEETCD, endpoint, "lease", "revoke", lease, "-w", "json").stdout)
    theirs = json.loads(run([ETCDCTL], endpoint, "lease", "revoke", other, "-w", "json").stdout)
    assert shape(ours) == shape(theirs)
    gone = run(GEETCD, endpoint, "lease", "revoke", other)
    assert gone.returncode == 1 and "lease not found" in gone.stderr
    assert run(GEETCD, endpoint, "lease", "timetolive", lease).stdout == (
        run([ETCDCTL], endpoint, "lease", "timetolive", lease).stdout
    )


def theirs_id(endpoint: str) -> str:
    answer = json.loads(run([ETCDCTL], endpoint, "lease", "grant", "5", "-w", "json").stdout)
    return f"{answer['ID']:x}"


def test_member_list_and_endpoint_status_match(endpoint: str, etcd_cluster: EtcdCluster) -> None:
    ours, theirs = both(endpoint, "member", "list", "-w", "json")
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs
    for fmt in ("simple", "table"):
        ours, theirs = both(endpoint, "member", "list", "-w", fmt)
        assert ours == theirs, fmt
    ours, theirs = both(endpoint, "endpoint", "status", "-w", "json")
    assert shape(json.loads(ours)) == shape(json.loads(theirs))
    ours, theirs = both(endpoint, "endpoint", "status", "-w", "table", "--cluster")
    assert ours.splitlines()[:3] == theirs.splitlines()[:3]
    assert len(ours.splitlines()) == len(theirs.splitlines()) == 3 + 3 + 1
    ours, theirs = both(endpoint, "endpoint", "status")
    assert ours.split(", ")[:6] == theirs.split(", ")[:6]


def test_lock_excludes_etcdctl_lock(endpoint: str) -> None:
    name = f"cli-lock-{os.getpid()}"
    holder = subprocess.Popen(
        [*GEETCD, "--endpoints", endpoint, "lock", name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        key = holder.stdout.readline().strip()
        assert key.startswith(name + "/")
        waiter = subprocess.Popen(
            [ETCDCTL, "--endpoints", endpoint, "lock", name, "echo", "etcdctl got it"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiter.wait(1.5)  # excluded while geetcd holds the lock
            holder.send_signal(signal.SIGTERM)
            assert holder.wait(10) == 0
            out, _ = waiter.communicate(timeout=10)
            assert out.strip() == "etcdctl got it"
        finally:
            waiter.kill()
    finally:
        holder.kill()
    # and the other way round: geetcd lock -- cmd waits for etcdctl's holder
    theirs = subprocess.Popen(
        [ETCDCTL, "--endpoints", endpoint, "lock", name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert theirs.stdout is not None
        theirs.stdout.readline()
        started = time.monotonic()
        ours = subprocess.Popen(
            [
                *GEETCD,
                "--endpoints",
                endpoint,
                "lock",
                name,
                "--",
                "sh",
                "-c",
                "echo $ETCD_LOCK_KEY",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            ours.wait(1.5)
        theirs.send_signal(signal.SIGINT)
        out, _ = ours.communicate(timeout=15)
        assert ours.returncode == 0 and out.startswith(name + "/")
        assert time.monotonic() - started > 1.5
    finally:
        theirs.kill()


def test_exit_codes_and_errors_on_stderr(endpoint: str) -> None:
    bad = run(GEETCD, endpoint, "get", "k", "--rev", "999999999")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("Error: ") and "future revision" in bad.stderr
    usage = run(GEETCD, endpoint, "put")
    assert usage.returncode == 128 and usage.stderr.startswith("Error: ")
    assert run([ETCDCTL], endpoint, "put").returncode == usage.returncode
    counted = run(GEETCD, endpoint, "get", "k", "--count-only")
    assert counted.returncode == 128
    down = run(GEETCD, "http://127.0.0.1:1", "get", "k", "--command-timeout", "1s")
    assert down.returncode == 1 and "Error:" in down.stderr
    bad_id = run(GEETCD, endpoint, "member", "remove", "zz")
    assert bad_id.returncode == 128


def test_environment_and_one_entry_point(endpoint: str) -> None:
    result = subprocess.run(
        [*GEETCD, "put", "cli/env", "from-env"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "GEETCD_ENDPOINTS": endpoint, "GEETCD_WRITE_OUT": "json"},
    )
    assert result.returncode == 0, result.stderr
    assert "header" in json.loads(result.stdout)
    for argv in ([*GEETCD, "bench", "--help"], [*GEETCD, "demo", "--help"]):
        helped = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert helped.returncode == 0, helped.stderr
    scripts = os.path.dirname(sys.executable)
    for script in ("geetcd", "geetcd-bench", "geetcd-demo"):
        assert os.path.exists(os.path.join(scripts, script)), script


def test_alarm_defrag_compaction_move_leader(endpoint: str, etcd_cluster: EtcdCluster) -> None:
    assert run(GEETCD, endpoint, "alarm", "list").stdout == ""
    defrag = run(GEETCD, endpoint, "defrag", "--cluster")
    assert defrag.returncode == 0 and defrag.stdout.count("Finished defragmenting") == 3
    rev = json.loads(run(GEETCD, endpoint, "put", "cli/c", "1", "-w", "json").stdout)
    revision = rev["header"]["revision"]
    assert run(GEETCD, endpoint, "compaction", str(revision)).stdout == (
        f"compacted revision {revision}\n"
    )
    members = json.loads(run(GEETCD, endpoint, "member", "list", "-w", "json").stdout)
    status = json.loads(run(GEETCD, endpoint, "endpoint", "status", "-w", "json").stdout)
    leader = status[0]["Status"]["leader"]
    target = next(m["ID"] for m in members["members"] if m["ID"] != leader)
    moved = run(GEETCD, endpoint, "move-leader", f"{target:x}")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == f"Leadership transferred from {leader:x} to {target:x}\n"


def test_endpoint_hashkv_matches(endpoint: str) -> None:
    run(GEETCD, endpoint, "put", "cli/hash", "1")
    ours, theirs = both(endpoint, "endpoint", "hashkv", "--cluster", "-w", "json")
    assert [e["HashKV"]["hash"] for e in json.loads(ours)] == [
        e["HashKV"]["hash"] for e in json.loads(theirs)
    ]
    assert shape(json.loads(ours)) == shape(json.loads(theirs))


def test_user_role_auth_like_etcdctl() -> None:
    with EtcdCluster(size=1) as cluster:
        url = cluster.endpoints[0]
        for tool, suffix in ((GEETCD, "g"), ([ETCDCTL], "e")):
            assert run(tool, url, "role", "add", f"r{suffix}").stdout == f"Role r{suffix} created\n"
            assert run(tool, url, "user", "add", f"u{suffix}:pw").stdout == (
                f"User u{suffix} created\n"
            )
            granted = run(
                tool, url, "role", "grant-permission", f"r{suffix}", "read", "a", "--prefix"
            )
            assert granted.stdout == f"Role r{suffix} updated\n", granted.stderr
            run(tool, url, "role", "grant-permission", f"r{suffix}", "readwrite", "k")
            assert run(tool, url, "user", "grant-role", f"u{suffix}", f"r{suffix}").stdout == (
                f"Role r{suffix} is granted to user u{suffix}\n"
            )
        ours = run(GEETCD, url, "user", "get", "ug").stdout
        theirs = run([ETCDCTL], url, "user", "get", "ue").stdout
        assert ours == "User: ug\nRoles: rg\n" and theirs == "User: ue\nRoles: re\n"
        ours = run(GEETCD, url, "role", "get", "rg").stdout
        theirs = run([ETCDCTL], url, "role", "get", "re").stdout
        assert ours.split("\n", 1)[1] == theirs.split("\n", 1)[1], (ours, theirs)
        assert ours.startswith("Role rg\n")
        ours, theirs = both(url, "user", "list")
        assert ours == theirs
        ours, theirs = both(url, "role", "list")
        assert ours == theirs
        assert run(GEETCD, url, "user", "add", "root:rootpw").returncode == 0
        assert run(GEETCD, url, "user", "grant-role", "root", "root").returncode == 0
        assert run(GEETCD, url, "auth", "enable").stdout == "Authentication Enabled\n"
        denied = run(GEETCD, url, "put", "k", "v")
        assert denied.returncode == 1 and "Error:" in denied.stderr
        assert run(GEETCD, url, "--user", "ug:pw", "put", "k", "v").stdout == "OK\n"
        wrong = run(GEETCD, url, "--user", "ug", "--password", "nope", "get", "k")
        assert wrong.returncode == 1 and "authentication failed" in wrong.stderr
        ours_status = run(GEETCD, url, "--user", "root:rootpw", "auth", "status")
        theirs_status = run([ETCDCTL], url, "--user", "root:rootpw", "auth", "status")
        if "Authentication Status" in theirs_status.stdout:  # etcd 3.4 has no auth status
            assert ours_status.stdout == theirs_status.stdout
            assert ours_status.stdout.startswith("Authentication Status: true\nAuthRevision: ")
        else:
            assert ours_status.returncode == 1 and ours_status.stderr.startswith("Error: ")
        assert run(GEETCD, url, "--user", "root:rootpw", "auth", "disable").stdout == (
            "Authentication Disabled\n"
        )


def test_snapshot_save_watch_exec_and_endpoint_health(endpoint: str, tmp_path: Any) -> None:
    path = os.path.join(os.fspath(tmp_path), "cli.db")
    saved = run(GEETCD, endpoint, "snapshot", "save", path)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.startswith(f"Snapshot saved at {path}")
    assert "/s)" in saved.stderr  # progress: bytes and rate
    utl = os.path.join(os.path.dirname(find_etcd_binary()), "etcdutl")
    tool = utl if os.path.exists(utl) else ETCDCTL
    status = subprocess.run(
        [tool, "snapshot", "status", path, "-w", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totalKey"] > 0
    two = run(GEETCD, endpoint, "snapshot", "save", path, "--endpoints", f"{endpoint},{endpoint}x")
    assert two.returncode in (1, 128)

    watcher = subprocess.Popen(
        [
            *GEETCD,
            "--endpoints",
            endpoint,
            "watch",
            "cli/w/",
            "--prefix",
            "--",
            "sh",
            "-c",
            'echo "got $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE"',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            run(GEETCD, endpoint, "put", "cli/w/a", "1")
            stop.wait(0.3)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert watcher.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("got") for line in lines) and len(lines) < 40:
            lines.append(watcher.stdout.readline().strip())
        assert "got PUT cli/w/a=1" in lines, lines
        assert lines[:3] == ["PUT", "cli/w/a", "1"]
    finally:
        stop.set()
        watcher.kill()
        watcher.wait(5)
        thread.join(10)
    health = run(GEETCD, endpoint, "endpoint", "health", "--cluster")
    assert health.returncode == 0 and health.stdout.count("is healthy") == 3
    down = run(GEETCD, "http://127.0.0.1:1", "endpoint", "health", "--command-timeout", "1s")
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_elect_interoperates_with_etcdctl(endpoint: str) -> None:
    name = f"cli-elect-{os.getpid()}"
    ours = subprocess.Popen(
        [*GEETCD, "--endpoints", endpoint, "elect", name, "p-geetcd"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ours.stdout is not None
        assert ours.stdout.readline().startswith(name + "/")
        assert ours.stdout.readline().strip() == "p-geetcd"
        listener = subprocess.Popen(
            [ETCDCTL, "--endpoints", endpoint, "elect", name, "-l"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().startswith(name + "/")
            assert listener.stdout.readline().strip() == "p-geetcd"
        finally:
            listener.kill()
        theirs = subprocess.Popen(
            [ETCDCTL, "--endpoints", endpoint, "elect", name, "p-etcdctl"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                theirs.wait(1.0)  # geetcd leads
            ours.send_signal(signal.SIGTERM)  # resigns
            assert ours.wait(10) == 0
            assert theirs.stdout is not None
            assert theirs.stdout.readline().startswith(name + "/")
            assert theirs.stdout.readline().strip() == "p-etcdctl"
        finally:
            theirs.kill()
    finally:
        ours.kill()
