"""Process plumbing of the etcd test harness, shared by :mod:`geetcd.testing.member` and
:mod:`geetcd.testing.cluster`.

It owns everything below the member level: spawning etcd with ``PR_SET_PDEATHSIG``, the
registry of spawned processes and temporary data roots with its :mod:`atexit` cleanup, free
loopback ports (:func:`free_port`), the small :mod:`http.client` helpers the harness uses to
talk to etcd (loopback only, a timeout on every request), cooperative waiting, and the parser
of etcd's Prometheus metrics.

Cleanup guarantees:

* every spawned process is recorded in a module-level registry and an :mod:`atexit` hook
  terminates the ones still alive when the interpreter exits;
* on Linux each etcd gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so it is killed by the kernel
  even when the test process itself is SIGKILLed. Note that Linux delivers that signal when
  the *thread* that spawned the process exits, so start clusters from a long-lived thread
  (pytest runs fixtures in the main thread);
* each etcd runs in its own session, so a Ctrl-C in the terminal reaches only the test
  process, which then stops its members in order.

When gevent is imported and a hub is running in the calling thread, waits and HTTP requests
yield to the hub (``gevent.sleep`` and gevent sockets), so background greenlets such as lease
keepalives and watches keep running while a test waits for the cluster. Without gevent the
harness uses plain blocking calls. It never monkey-patches anything.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import importlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["free_port"]

_REQUEST_TIMEOUT = 2.0
_POLL_INTERVAL = 0.1
_ATEXIT_GRACE = 2.0
_PR_SET_PDEATHSIG = 1
_ADDRESS_IN_USE = "address already in use"


# --------------------------------------------------------------------------------------------
# process registry and atexit cleanup


_registry_lock = threading.Lock()
_live_processes: dict[int, subprocess.Popen[bytes]] = {}
_temp_roots: set[str] = set()


def _register(proc: subprocess.Popen[bytes]) -> None:
    with _registry_lock:
        _live_processes[proc.pid] = proc


def _unregister(proc: subprocess.Popen[bytes]) -> None:
    with _registry_lock:
        if _live_processes.get(proc.pid) is proc:
            del _live_processes[proc.pid]


def _register_temp_root(root: str) -> None:
    """Record a temporary data root for removal at exit (unless unregistered before)."""
    with _registry_lock:
        _temp_roots.add(root)


def _unregister_temp_root(root: str) -> None:
    with _registry_lock:
        _temp_roots.discard(root)


def _cleanup_at_exit() -> None:
    """Terminate every etcd this process started and still runs; remove temporary data roots.

    SIGTERM (plus SIGCONT for stopped processes) first, SIGKILL after a short grace period.
    Only processes recorded in the registry (started here, by PID) are signalled.
    """
    with _registry_lock:
        procs = [p for p in _live_processes.values() if p.poll() is None]
        _live_processes.clear()
        roots = list(_temp_roots)
        _temp_roots.clear()
    for proc in procs:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
    deadline = time.monotonic() + _ATEXIT_GRACE
    for proc in procs:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            try:
                proc.kill()
                proc.wait(timeout=5.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def _forget_in_child() -> None:
    # A forked child (not exec'd) must never stop its parent's members from its own atexit.
    global _registry_lock
    _registry_lock = threading.Lock()
    _live_processes.clear()
    _temp_roots.clear()


atexit.register(_cleanup_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)


# --------------------------------------------------------------------------------------------
# cooperative helpers (gevent-aware without importing gevent)


def _gevent_if_hub_running() -> ModuleType | None:
    """Return the ``gevent`` module when the caller may yield to a hub in this thread."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return None
    try:
        hub_local = importlib.import_module("gevent._hub_local")
        hub = hub_local.get_hub_if_exists()
    except (ImportError, AttributeError):
        return None
    if hub is None or gevent.getcurrent() is hub:
        return None
    return gevent


def _sleep(seconds: float) -> None:
    gevent = _gevent_if_hub_running()
    if gevent is not None:
        gevent.sleep(seconds)
    else:
        time.sleep(seconds)


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until ``proc`` has exited and been reaped; return False if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        _sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


# --------------------------------------------------------------------------------------------
# ports, URLs and HTTP


_issued_ports: set[int] = set()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free_ports(host: str, count: int) -> list[int]:
    """Return ``count`` distinct ports that were free on ``host``, never one handed out before.

    All sockets stay bound until every port is picked, so the ports are distinct. Ports handed
    out earlier in this process are skipped, so a stopped member's ports are not given to a new
    member while the stopped one may still restart on them.
    """
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            sock = socket.socket(_family(host), socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            with _registry_lock:
                if port in _issued_ports and attempts < 200:
                    continue
                _issued_ports.add(port)
            ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port number that was free on ``host`` a moment ago.

    Binds port 0 on ``host``, reads the port the kernel chose and closes the socket. Another
    process may take the port before it is used; :class:`EtcdCluster` retries with new ports
    when etcd reports "address already in use". Raises :class:`OSError` if ``host`` cannot be
    bound.
    """
    return _free_ports(host, 1)[0]


def _url(host: str, port: int) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}"


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host must be a loopback IP address such as 127.0.0.1, not {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback IP address such as 127.0.0.1, not {host!r}")


class _EtcdHTTPError(Exception):
    """etcd answered with a non-2xx status."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        text = body.decode("utf-8", "replace").strip()
        self.message = text
        try:
            decoded = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
                self.message = decoded["message"]
        super().__init__(f"HTTP {status}: {text[:300]}")


# What a failed harness request can raise: socket errors (refused, timeout), HTTP protocol
# errors, non-2xx answers and malformed JSON.
_REQUEST_ERRORS = (OSError, http.client.HTTPException, _EtcdHTTPError, ValueError, KeyError)


def _request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    timeout: float = _REQUEST_TIMEOUT,
) -> bytes:
    """Send one HTTP/1.1 request on a fresh connection and return the body of a 2xx answer.

    Raises :class:`OSError` (including :class:`TimeoutError`, :class:`ConnectionRefusedError`),
    :class:`http.client.HTTPException`, or :class:`_EtcdHTTPError` for a non-2xx status.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    gevent = _gevent_if_hub_running()
    if gevent is not None:
        gsocket = importlib.import_module("gevent.socket")
        setattr(conn, "_create_connection", gsocket.create_connection)  # noqa: B010
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if not 200 <= response.status < 300:
        raise _EtcdHTTPError(response.status, data)
    return data


def _post_json(
    host: str, port: int, path: str, payload: dict[str, Any], *, timeout: float = _REQUEST_TIMEOUT
) -> dict[str, Any]:
    data = _request(host, port, "POST", path, json.dumps(payload).encode(), timeout=timeout)
    decoded = json.loads(data)
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object from {path}, got {data[:200]!r}")
    return decoded


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# process spawning


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def _preexec_for(parent_pid: int) -> Callable[[], None] | None:
    """Build the ``preexec_fn`` that asks Linux to SIGKILL the child when its parent dies."""
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        try:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent_pid:  # parent died before prctl took effect
                os._exit(1)
        except Exception:  # noqa: BLE001 - best effort by design: without it, atexit still runs
            pass

    return preexec


def _child_env() -> dict[str, str]:
    # etcd reads ETCD_<FLAG> variables as flags; keep the caller's (for example ETCD_BIN) out.
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


class _PortInUse(RuntimeError):
    """etcd exited because a client or peer port was taken (retry with new ports)."""


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


# --------------------------------------------------------------------------------------------
# metrics


def _closing_brace(line: str, start: int) -> int:
    in_quotes = False
    escaped = False
    for index in range(start + 1, len(line)):
        char = line[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "}" and not in_quotes:
            return index
    return -1


def _parse_metrics(text: str) -> dict[str, float]:
    """Parse Prometheus text exposition into ``{"name{labels}": v, "name": sum}``.

    Comment lines and lines that do not parse are skipped. A sample without labels is stored
    under its plain name; labelled samples are stored under ``name{labels}`` (as written by the
    server) and also summed under the plain ``name``.
    """
    labelled: dict[str, float] = {}
    sums: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            end = _closing_brace(line, brace)
            if end == -1:
                continue
            name, key, rest = line[:brace], line[: end + 1], line[end + 1 :]
        elif space != -1:
            name, key, rest = line[:space], line[:space], line[space:]
        else:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if key != name:
            labelled[key] = value
        sums[name] = sums.get(name, 0.0) + value
    labelled.update(sums)
    return labelled
