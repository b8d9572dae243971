"""Start, control and stop real etcd server processes for tests.

:class:`EtcdCluster` spawns one or more ``etcd`` members on free loopback ports, waits until
every member answers ``GET /health`` with ``{"health":"true"}``, and offers the fault
injection that integration tests need: :meth:`EtcdMember.kill` (SIGKILL),
:meth:`EtcdMember.pause` / :meth:`EtcdMember.resume` (SIGSTOP / SIGCONT), restarts on the
existing data dir, runtime membership changes and :meth:`EtcdCluster.heal`.

The harness talks to etcd with :mod:`http.client` only (never with the geetcd client), over
loopback addresses, with a timeout on every request.

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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType, TracebackType
from typing import Any

from geetcd.testing.binary import EtcdBinaryNotFound, find_etcd_binary

__all__ = ["EtcdCluster", "EtcdMember", "free_port"]

_REQUEST_TIMEOUT = 2.0
_HEALTH_TIMEOUT = 1.0
_POLL_INTERVAL = 0.1
_PORT_RETRIES = 3
_LEADER_TIMEOUT = 10.0
# etcd's strict reconfiguration check refuses member add/remove until the member handling the
# request has been connected to its peers for 5 s (etcdserver.HealthInterval).
_RECONFIG_TIMEOUT = 20.0
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


# --------------------------------------------------------------------------------------------
# members


class EtcdMember:
    """One etcd server process of an :class:`EtcdCluster` (create members through the cluster).

    ``name``, ``client_url``, ``peer_url`` and ``data_dir`` are fixed for the member's life;
    restarts reuse them. ``member_id`` is the etcd member id (an int that may exceed 2**63),
    known once the member has answered a status request, else ``None``.
    """

    def __init__(
        self,
        *,
        name: str,
        host: str,
        client_port: int,
        peer_port: int | None,
        data_dir: str,
        log_path: str,
        external: bool = False,
    ) -> None:
        self.name = name
        self.client_url = _url(host, client_port)
        self.peer_url = _url(host, peer_port) if peer_port is not None else ""
        self.data_dir = data_dir
        self.log_path = log_path
        self.member_id: int | None = None
        self._host = host
        self._client_port = client_port
        self._external = external
        self._command: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._log_offset = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running process (also while paused), ``None`` when not running."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        return proc.pid

    @property
    def is_running(self) -> bool:
        """True while the process exists and has not exited (a paused process is running)."""
        return self.pid is not None

    @property
    def is_paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or kill/stop) of a running process."""
        return self._paused and self.is_running

    def __repr__(self) -> str:
        if self._external:
            state = "external"
        elif self.is_paused:
            state = "paused"
        elif self.is_running:
            state = "running"
        else:
            state = "stopped"
        return f"<EtcdMember {self.name} {self.client_url} pid={self.pid} {state}>"

    def _require_owned(self, action: str) -> None:
        if self._external:
            raise RuntimeError(f"cannot {action} {self!r}: it was not started by this harness")

    # -- process control --------------------------------------------------------------------

    def _start(self) -> None:
        """Spawn the process with the stored command line. Does not wait for health."""
        self._require_owned("start")
        if self.is_running:
            raise RuntimeError(f"{self!r} is already running")
        if not self._command:
            raise RuntimeError(f"{self!r} has no command line")
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            proc = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                close_fds=True,
                start_new_session=True,
                # Spec'd on purpose: PR_SET_PDEATHSIG needs code in the child before exec; the
                # function only calls prctl and getppid, which are safe after fork.
                preexec_fn=_preexec_for(os.getpid()),  # noqa: PLW1509
            )
        self._proc = proc
        self._paused = False
        _register(proc)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        _unregister(proc)
        self._paused = False

    def kill(self) -> None:
        """Send SIGKILL and wait until the process has exited (no-op when not running).

        Raises :class:`RuntimeError` if the process is still alive 10 s after SIGKILL.
        """
        self._require_owned("kill")
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            if not _wait_exit(proc, 10.0):
                raise RuntimeError(f"{self!r} did not exit 10 s after SIGKILL")
        self._reap(proc)

    def pause(self) -> None:
        """Send SIGSTOP; returns once Linux reports the process stopped (at most ~1 s).

        The member then accepts TCP connections (the kernel completes the handshake) but never
        answers. Raises :class:`RuntimeError` if the member is not running.
        """
        self._require_owned("pause")
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"cannot pause {self!r}: not running")
        os.kill(pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            state = _process_state(pid)
            if state is None or state in ("T", "t"):
                break
            _sleep(0.005)

    def resume(self) -> None:
        """Send SIGCONT to a running member (paused or not); no-op when not running."""
        self._require_owned("resume")
        pid = self.pid
        self._paused = False
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def _terminate(self) -> None:
        """Send SIGTERM (and SIGCONT, so that a paused member can act on it)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()
            proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it is still alive after ``timeout`` s.

        Works on paused members (SIGCONT follows SIGTERM). Returns once the process has exited;
        no-op when not running. Keeps the data dir. Raises :class:`RuntimeError` only if the
        process survives SIGKILL for 10 s.
        """
        self._require_owned("stop")
        proc = self._proc
        if proc is None:
            return
        self._terminate()
        if not _wait_exit(proc, timeout):
            self.kill()
        self._reap(proc)

    def restart(self, wait: bool = True) -> None:
        """Start the member again on its existing data dir with the same command line.

        A running member is stopped first. etcd ignores the ``--initial-cluster*`` flags once the
        data dir holds a member, so the member rejoins with its old id. With ``wait=True`` this
        returns once the member is healthy (see :meth:`wait_healthy`); raises
        :class:`RuntimeError` (with the log tail) if it exits or is not healthy within 20 s.
        """
        self._require_owned("restart")
        if self.is_running:
            self.stop()
        self._start()
        if wait:
            self.wait_healthy()

    # -- HTTP -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        timeout: float = _REQUEST_TIMEOUT,
    ) -> bytes:
        return _request(self._host, self._client_port, method, path, body, timeout=timeout)

    def _post(
        self, path: str, payload: dict[str, Any], *, timeout: float = _REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        return _post_json(self._host, self._client_port, path, payload, timeout=timeout)

    def _status(self, *, timeout: float = _REQUEST_TIMEOUT) -> dict[str, Any]:
        """POST /v3/maintenance/status; records ``member_id`` from the answer's header."""
        status = self._post("/v3/maintenance/status", {}, timeout=timeout)
        self.member_id = int(status["header"]["member_id"])
        return status

    def _check_health(self) -> tuple[bool, str]:
        """One ``GET /health`` probe: (healthy, description of the answer or error)."""
        try:
            data = self._request("GET", "/health", timeout=_HEALTH_TIMEOUT)
            decoded = json.loads(data)
        except _REQUEST_ERRORS as exc:
            return False, _describe(exc)
        if isinstance(decoded, dict) and decoded.get("health") == "true":
            return True, "healthy"
        return False, data.decode("utf-8", "replace")[:200]

    def _startup_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _exit_error(self) -> RuntimeError:
        proc = self._proc
        code = proc.returncode if proc is not None else None
        message = f"etcd member {self.name} exited with code {code}\n{self._log_section()}"
        if _ADDRESS_IN_USE in self._startup_log():
            return _PortInUse(message)
        return RuntimeError(message)

    def _log_section(self, n: int = 30) -> str:
        return f"--- last lines of {self.log_path} ---\n{self.log_tail(n)}\n---"

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Poll ``GET /health`` every 0.1 s until it answers ``{"health":"true"}``.

        Also learns ``member_id``. Raises :class:`RuntimeError` with the tail of the member's log
        if the process exits, is paused, or is not healthy within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        detail = "no answer yet"
        while True:
            if not self._external:
                if not self.is_running:
                    raise self._exit_error()
                if self.is_paused:
                    raise RuntimeError(f"{self!r} is paused; resume it before waiting")
            healthy, detail = self._check_health()
            if healthy:
                if self.member_id is None:
                    with contextlib.suppress(*_REQUEST_ERRORS):
                        self._status()
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"etcd member {self.name} ({self.client_url}) not healthy within "
                    f"{timeout} s; last answer: {detail}\n{self._log_section()}"
                )
            _sleep(_POLL_INTERVAL)

    def metrics(self) -> dict[str, float]:
        """``GET /metrics`` and parse the Prometheus text.

        Returns ``{"name{labels}": value}`` for labelled samples plus ``{"name": value}``, the
        sum over all labels (or the single unlabelled sample). Raises :class:`OSError` or
        :class:`RuntimeError` when the member does not answer with 200 within 2 s.
        """
        try:
            data = self._request("GET", "/metrics")
        except (_EtcdHTTPError, http.client.HTTPException) as exc:
            raise RuntimeError(f"GET /metrics on {self!r} failed: {exc}") from exc
        return _parse_metrics(data.decode("utf-8", "replace"))

    def log_tail(self, n: int = 50) -> str:
        """Return the last ``n`` lines of the member's log (etcd's stdout and stderr).

        Returns ``""`` when there is no log file (for example for an external member).
        """
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max(n, 1) * 2048))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = text.splitlines()
        return "\n".join(lines[-n:]) if n > 0 else ""


# --------------------------------------------------------------------------------------------
# clusters


def _retryable_reconfig(exc: BaseException) -> bool:
    """Errors after which a member add/remove may succeed if simply sent again."""
    if isinstance(exc, _EtcdHTTPError):
        if exc.status >= 500:
            return True
        text = exc.message.lower()
        return any(
            s in text for s in ("unhealthy cluster", "not enough started members", "leader changed")
        )
    return isinstance(exc, (OSError, http.client.HTTPException))


class EtcdCluster:
    """A cluster of ``size`` etcd members on free loopback ports, spawned by :meth:`start`.

    Every member gets ``--log-level warn --logger=zap --log-outputs=stderr`` and a fresh
    ``--initial-cluster-token geetcd-<random>``; ``enable_v2`` adds ``--enable-v2=true``,
    ``progress_notify_interval`` (seconds) adds
    ``--experimental-watch-progress-notify-interval=<ms>ms``, and ``extra_args`` are appended
    last. etcd's default heartbeat and election timeouts are kept.

    Data dirs and logs live under ``data_root`` if given (kept on :meth:`stop`), else under a
    fresh ``tempfile.mkdtemp(prefix="geetcd-etcd-")`` that :meth:`stop` removes. ``binary``
    overrides :func:`~geetcd.testing.find_etcd_binary`.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        enable_v2: bool = False,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        data_root: str | None = None,
        name_prefix: str = "m",
        progress_notify_interval: float | None = None,
        binary: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        if progress_notify_interval is not None and progress_notify_interval <= 0:
            raise ValueError("progress_notify_interval must be positive seconds")
        _check_loopback(host)
        self.size = size
        self.enable_v2 = enable_v2
        self.extra_args = tuple(extra_args)
        self.host = host
        self.startup_timeout = startup_timeout
        self.data_root = data_root
        self.name_prefix = name_prefix
        self.progress_notify_interval = progress_notify_interval
        self.members: list[EtcdMember] = []
        self._binary = binary
        self._root: str | None = None
        self._token = ""
        self._spawned: list[EtcdMember] = []
        self._next_index = 1
        self._started = False
        self._external = False

    @classmethod
    def external(cls, endpoints: Iterable[str]) -> EtcdCluster:
        """Wrap an already running cluster (``http://<loopback>:<port>`` URLs) for tests.

        Health, status, metrics and :meth:`leader` work; anything that controls processes
        (kill, pause, restart, add/remove) raises :class:`RuntimeError`. :meth:`stop` and
        :meth:`start` do nothing (``start`` waits until healthy).
        """
        cluster = cls()
        cluster._external = True
        for index, endpoint in enumerate(endpoints):
            parts = urllib.parse.urlsplit(endpoint.strip())
            if parts.scheme != "http" or parts.hostname is None or parts.port is None:
                raise ValueError(f"endpoint must look like http://127.0.0.1:2379, not {endpoint!r}")
            cluster.members.append(
                EtcdMember(
                    name=f"external{index + 1}",
                    host=parts.hostname,
                    client_port=parts.port,
                    peer_port=None,
                    data_dir="",
                    log_path="",
                    external=True,
                )
            )
        if not cluster.members:
            raise ValueError("no endpoints given")
        cluster.size = len(cluster.members)
        return cluster

    # -- accessors ----------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Client URLs of the current members, in member order."""
        return [m.client_url for m in self.members]

    def member(self, index: int) -> EtcdMember:
        """Return ``members[index]``."""
        return self.members[index]

    def __repr__(self) -> str:
        return f"<EtcdCluster size={len(self.members)} {self.members!r}>"

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start / stop -------------------------------------------------------------------------

    def _command(
        self, binary: str, member: EtcdMember, initial_cluster: str, state: str
    ) -> list[str]:
        command = [
            binary,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self._token}",
            "--log-level=warn",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.enable_v2:
            command.append("--enable-v2=true")
        if self.progress_notify_interval is not None:
            millis = max(1, round(self.progress_notify_interval * 1000))
            command.append(f"--experimental-watch-progress-notify-interval={millis}ms")
        command.extend(self.extra_args)
        return command

    def _new_member(self, client_port: int, peer_port: int) -> EtcdMember:
        assert self._root is not None
        name = f"{self.name_prefix}{self._next_index}"
        self._next_index += 1
        return EtcdMember(
            name=name,
            host=self.host,
            client_port=client_port,
            peer_port=peer_port,
            data_dir=os.path.join(self._root, name),
            log_path=os.path.join(self._root, f"{name}.log"),
        )

    def start(self) -> EtcdCluster:
        """Spawn all members and wait until every one answers ``{"health":"true"}``.

        Picks fresh ports with :func:`free_port`; if a member exits with "address already in
        use", the whole attempt is discarded and retried with new ports, up to 3 times. Member
        ids are known when this returns. Returns ``self``; calling it on a started cluster does
        nothing.

        Raises :class:`~geetcd.testing.EtcdBinaryNotFound` when there is no etcd binary, and
        :class:`RuntimeError` (with the log tail of every failing member) when a member exits
        or is not healthy within ``startup_timeout``; in both cases nothing is left running.
        """
        if self._started:
            return self
        if self._external:
            self.wait_healthy(self.startup_timeout)
            self._started = True
            return self
        binary = self._binary or find_etcd_binary()
        if self._binary is not None and not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise EtcdBinaryNotFound(f"etcd binary {binary!r} is not an executable file")
        if self.data_root is not None:
            os.makedirs(self.data_root, exist_ok=True)
            self._root = self.data_root
        else:
            self._root = tempfile.mkdtemp(prefix="geetcd-etcd-")
            with _registry_lock:
                _temp_roots.add(self._root)
        try:
            for attempt in range(_PORT_RETRIES + 1):
                try:
                    self._start_attempt(binary)
                    break
                except _PortInUse:
                    self._discard_attempt()
                    if attempt == _PORT_RETRIES:
                        raise
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _start_attempt(self, binary: str) -> None:
        self._token = f"geetcd-{secrets.token_hex(4)}"
        self._next_index = 1
        ports = _free_ports(self.host, 2 * self.size)
        members = [self._new_member(ports[2 * i], ports[2 * i + 1]) for i in range(self.size)]
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
        for m in members:
            m._command = self._command(binary, m, initial_cluster, "new")
        self.members = members
        for m in members:
            self._spawned.append(m)
            m._start()
        self._wait_members(members, self.startup_timeout)
        for m in members:
            if m.member_id is None:
                m._status()

    def _discard_attempt(self) -> None:
        for m in self.members:
            m.kill()
            shutil.rmtree(m.data_dir, ignore_errors=True)
        self.members = []

    def _wait_members(self, members: Sequence[EtcdMember], timeout: float) -> None:
        """Wait until every member in ``members`` is healthy.

        Raises :class:`_PortInUse` if one exited because a port was taken, else
        :class:`RuntimeError` naming the failing members with their log tails.
        """
        deadline = time.monotonic() + timeout
        pending = list(members)
        details: dict[str, str] = {}
        while True:
            for m in list(pending):
                if not m._external and not m.is_running:
                    raise m._exit_error()
                healthy, details[m.name] = m._check_health()
                if healthy:
                    pending.remove(m)
                    if m.member_id is None:
                        with contextlib.suppress(*_REQUEST_ERRORS):
                            m._status()
            if not pending:
                return
            if time.monotonic() >= deadline:
                report = "\n".join(
                    f"{m!r}: last answer {details.get(m.name, '-')}\n{m._log_section()}"
                    for m in pending
                )
                names = ", ".join(m.name for m in pending)
                raise RuntimeError(
                    f"etcd members not healthy within {timeout} s: {names}\n{report}"
                )
            _sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Stop every member this cluster started and remove its data unless ``data_root``.

        Sends SIGTERM (plus SIGCONT, for paused members) first to all non-leaders at once,
        then to the leader, and SIGKILL to any member of a group still alive 5 s after its
        SIGTERM; returns when all have exited. (A leader that gets SIGTERM while its followers
        are also shutting down waits 7 s trying to hand over leadership; followers first avoids
        that.) Idempotent; never raises for members that already exited. Does nothing for an
        :meth:`external` cluster.
        """
        if self._external:
            self._started = False
            return
        running = [m for m in self._spawned if m.is_running]
        leader_ids: set[int] = set()
        for m in running:
            if not m.is_paused:
                with contextlib.suppress(*_REQUEST_ERRORS):
                    leader_ids.add(int(m._status(timeout=0.5).get("leader", 0)))
        last = [m for m in running if m.member_id in leader_ids]
        first = [m for m in running if m not in last]
        for group in (first, last):
            for m in group:
                m._terminate()
            deadline = time.monotonic() + 5.0
            for m in group:
                proc = m._proc
                if proc is None:
                    continue
                if not _wait_exit(proc, max(0.0, deadline - time.monotonic())):
                    m.kill()
                m._reap(proc)
        root = self._root
        if root is not None and self.data_root is None:
            shutil.rmtree(root, ignore_errors=True)
            with _registry_lock:
                _temp_roots.discard(root)
            self._root = None
        self._started = False

    # -- health, leader -----------------------------------------------------------------------

    def _available(self) -> list[EtcdMember]:
        return [m for m in self.members if m._external or (m.is_running and not m.is_paused)]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until every running, non-paused member answers ``{"health":"true"}``.

        Paused and stopped members are skipped (a paused member cannot answer). Raises
        :class:`RuntimeError` with log tails if one exits or is not healthy within ``timeout``.
        """
        try:
            self._wait_members(self._available(), timeout)
        except _PortInUse as exc:
            raise RuntimeError(str(exc)) from None

    def leader(self) -> EtcdMember:
        """Return the member that is the raft leader, asking every running, non-paused member.

        Sends ``POST /v3/maintenance/status`` to each; among the answers with the highest raft
        term, the reported ``leader`` id is matched against each member's own id (the
        ``header.member_id`` of its own status answer). A leader that is paused or not running
        (followers keep naming the old leader during an election) does not count. Retries every
        0.1 s for up to 10 s; then raises :class:`RuntimeError`.
        """
        deadline = time.monotonic() + _LEADER_TIMEOUT
        last = "no member answered"
        while True:
            answers: list[tuple[int, int]] = []
            for m in self._available():
                try:
                    status = m._status()
                    term = int(status.get("raftTerm", 0))
                    leader_id = int(status.get("leader", 0))
                except _REQUEST_ERRORS as exc:
                    last = f"{m.name}: {_describe(exc)}"
                    continue
                answers.append((term, leader_id))
            if answers:
                top = max(term for term, _ in answers)
                ids = {lid for term, lid in answers if term == top and lid}
                if len(ids) == 1:
                    (leader_id,) = ids
                    for m in self.members:
                        if m.member_id == leader_id and (
                            m._external or (m.is_running and not m.is_paused)
                        ):
                            return m
                    last = f"reported leader {leader_id} is not an available member"
                else:
                    last = f"leaders reported at term {top}: {sorted(ids) or 'none'}"
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no leader among the running members within 10 s: {last}")
            _sleep(_POLL_INTERVAL)

    def followers(self) -> list[EtcdMember]:
        """All members except :meth:`leader`, in member order (whatever their state).

        Raises :class:`RuntimeError` like :meth:`leader` when there is no leader for 10 s.
        """
        leader = self.leader()
        return [m for m in self.members if m is not leader]

    def heal(self) -> None:
        """Undo fault injection: resume paused members, restart stopped or killed ones.

        Then waits (``startup_timeout``) until every member is healthy; raises
        :class:`RuntimeError` if one is not. Members added or removed at runtime stay so.
        """
        for m in self.members:
            if not m._external and m.is_paused:
                m.resume()
        for m in self.members:
            if not m._external and not m.is_running:
                m.restart(wait=False)
        self.wait_healthy(self.startup_timeout)

    # -- runtime reconfiguration --------------------------------------------------------------

    def _reconfig(
        self, path: str, payload: dict[str, Any], exclude: EtcdMember | None = None
    ) -> dict[str, Any]:
        """POST a membership change to some available member, retrying while etcd refuses.

        etcd's strict reconfig check answers "unhealthy cluster" until the member has been
        connected to all peers for 5 s; this retries that (and 5xx / connection errors) for up
        to 20 s. Other errors are raised as :class:`RuntimeError` at once.
        """
        deadline = time.monotonic() + _RECONFIG_TIMEOUT
        last: BaseException | None = None
        while True:
            targets = [m for m in self._available() if m is not exclude]
            for target in targets:
                try:
                    return target._post(path, payload)
                except _REQUEST_ERRORS as exc:
                    last = exc
                    if not _retryable_reconfig(exc):
                        raise RuntimeError(f"{path} {payload} failed on {target!r}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{path} {payload} failed for {_RECONFIG_TIMEOUT} s: {last}")
            _sleep(0.25)

    def _require_started(self, action: str) -> str:
        if self._external:
            raise RuntimeError(f"cannot {action} on an external cluster")
        if not self._started or self._root is None:
            raise RuntimeError(f"cannot {action}: the cluster is not started")
        return self._binary or find_etcd_binary()

    def add_member(self) -> EtcdMember:
        """Add a voting member at runtime and start it; returns it once healthy.

        Sends ``POST /v3/cluster/member/add {"peerURLs": [...]}`` to a running member (retried
        while etcd's strict reconfig check refuses), then starts etcd with
        ``--initial-cluster-state existing`` and the full ``--initial-cluster`` built from the
        answer, and waits until it is healthy. The new member is appended to ``members``. A
        port clash is retried with new ports (the half-added member is removed again).
        Raises :class:`RuntimeError` if etcd refuses or the member does not become healthy.
        """
        binary = self._require_started("add a member")
        for attempt in range(_PORT_RETRIES + 1):
            client_port, peer_port = _free_ports(self.host, 2)
            member = self._new_member(client_port, peer_port)
            answer = self._add_request(member.peer_url)
            new_id = int(answer["member"]["ID"])
            member.member_id = new_id
            parts: list[str] = []
            for entry in answer.get("members", []):
                entry_id = int(entry["ID"])
                name = member.name if entry_id == new_id else entry.get("name") or ""
                if not name:  # another member that was added but never started
                    name = f"unstarted-{entry_id:x}"
                parts.extend(f"{name}={url}" for url in entry.get("peerURLs", []))
            member._command = self._command(binary, member, ",".join(parts), "existing")
            self._spawned.append(member)
            try:
                member._start()
                self._wait_members([member], self.startup_timeout)
            except Exception as exc:
                member.kill()
                try:
                    self._reconfig("/v3/cluster/member/remove", {"ID": str(new_id)}, member)
                except RuntimeError as cleanup_exc:
                    exc.add_note(f"removing the failed member also failed: {cleanup_exc}")
                if not isinstance(exc, _PortInUse) or attempt == _PORT_RETRIES:
                    raise
                continue
            self.members.append(member)
            return member
        raise AssertionError("unreachable")

    def _add_request(self, peer_url: str) -> dict[str, Any]:
        """member/add; if a retried request finds its own earlier success, rebuild the answer."""
        try:
            return self._reconfig("/v3/cluster/member/add", {"peerURLs": [peer_url]})
        except RuntimeError as exc:
            if "peer urls already exists" not in str(exc).lower():
                raise
            listing = self._reconfig("/v3/cluster/member/list", {})
            members: list[dict[str, Any]] = listing.get("members", [])
            for entry in members:
                if peer_url in entry.get("peerURLs", []):
                    return {"member": entry, "members": members}
            raise

    def remove_member(self, member: EtcdMember) -> None:
        """Remove ``member`` from the cluster, stop its process and drop it from ``members``.

        Sends ``POST /v3/cluster/member/remove {"ID": "<id>"}`` to another running member
        (retried while etcd's strict reconfig check refuses), then :meth:`EtcdMember.stop`.
        Its data dir is left in place until :meth:`stop`. Raises :class:`ValueError` if it is
        not a member of this cluster, :class:`RuntimeError` if etcd refuses.
        """
        self._require_started("remove a member")
        if member not in self.members:
            raise ValueError(f"{member!r} is not a member of this cluster")
        if member.member_id is None:
            member._status()
        assert member.member_id is not None
        try:
            self._reconfig("/v3/cluster/member/remove", {"ID": str(member.member_id)}, member)
        except RuntimeError as exc:
            if "member not found" not in str(exc):
                raise
        member.stop()
        self.members.remove(member)
