"""One etcd server process of the test harness: :class:`EtcdMember`.

It owns a member's life and fault injection (start, :meth:`EtcdMember.kill`,
:meth:`EtcdMember.pause` / :meth:`EtcdMember.resume`, stop, restart on the existing data dir)
and what is asked of a single member (health, status, metrics, log tail). Members are created
and wired together by :class:`~geetcd.testing.cluster.EtcdCluster`; the process plumbing they
use lives in :mod:`geetcd.testing.process`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

from geetcd.testing.process import (
    _ADDRESS_IN_USE,
    _POLL_INTERVAL,
    _REQUEST_ERRORS,
    _REQUEST_TIMEOUT,
    _child_env,
    _describe,
    _EtcdHTTPError,
    _parse_metrics,
    _PortInUse,
    _post_json,
    _preexec_for,
    _process_state,
    _register,
    _request,
    _sleep,
    _unregister,
    _url,
    _wait_exit,
)

if TYPE_CHECKING:
    from geetcd.testing.network import _NetProxy

__all__ = ["EtcdMember"]

_HEALTH_TIMEOUT = 1.0


class EtcdMember:
    """One etcd server process of an :class:`EtcdCluster` (create members through the cluster).

    ``name``, ``client_url``, ``peer_url`` and ``data_dir`` are fixed for the member's life;
    restarts reuse them. ``member_id`` is the etcd member id (an int that may exceed 2**63),
    known once the member has answered a status request, else ``None``.

    ``client_url`` and ``peer_url`` are the URLs etcd advertises (what clients and peers use);
    ``listen_client_url`` and ``listen_peer_url`` are where etcd itself listens. They are the
    same unless the cluster was created with ``faults=True``: then the advertised URLs belong
    to the cluster's network proxy, which forwards to the listen URLs. The harness's own
    health, status and metrics requests always go to ``listen_client_url``, so they work while
    a member is black-holed or delayed.
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
        listen_client_port: int | None = None,
        listen_peer_port: int | None = None,
        net: _NetProxy | None = None,
    ) -> None:
        self.name = name
        self.client_url = _url(host, client_port)
        self.peer_url = _url(host, peer_port) if peer_port is not None else ""
        listen_client_port = listen_client_port or client_port
        listen_peer_port = listen_peer_port or peer_port
        self.listen_client_url = _url(host, listen_client_port)
        self.listen_peer_url = _url(host, listen_peer_port) if listen_peer_port else ""
        self.data_dir = data_dir
        self.log_path = log_path
        self.member_id: int | None = None
        self._host = host
        self._client_port = listen_client_port
        self._proxy_ports = (client_port, peer_port)
        self._listen_ports = (listen_client_port, listen_peer_port)
        self._net = net
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
        self._net_up()
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
        if self._net is not None:
            self._net.started(self.name, proc.pid)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        _unregister(proc)
        self._paused = False
        self._net_down()

    def _net_up(self) -> None:
        """Open this member's proxy listeners (faults=True only); :class:`_PortInUse` if taken."""
        net = self._net
        if net is None:
            return
        for kind, port, upstream in zip(
            ("client", "peer"), self._proxy_ports, self._listen_ports, strict=True
        ):
            if port is not None and upstream is not None:
                net.listen(self.name, kind, self._host, port, upstream)

    def _net_down(self) -> None:
        """Close this member's proxy listeners, so that connects are refused as by a dead etcd.

        Connections already established through the proxy stay; they end when etcd's end does.
        """
        if self._net is not None:
            self._net.unlisten(self.name)

    def kill(self) -> None:
        """Send SIGKILL and wait until the process has exited (no-op when not running).

        Raises :class:`RuntimeError` if the process is still alive 10 s after SIGKILL.
        """
        self._require_owned("kill")
        proc = self._proc
        if proc is None:
            self._net_down()
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
