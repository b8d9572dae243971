"""Control of the fault-injecting proxy process (:mod:`geetcd.testing.netproxy`).

One :class:`_NetProxy` per :class:`~geetcd.testing.EtcdCluster` created with ``faults=True``:
it spawns ``python -I netproxy.py <fd>`` with one end of a socket pair, registers the process
for the harness's cleanup (atexit, ``PR_SET_PDEATHSIG``, its own session, like etcd itself)
and sends it one JSON command per line. Commands wait for the answer (at most 10 s) and yield
to a running gevent hub while they wait, like every other wait of the harness.

Why a separate process: the proxy carries the members' peer traffic, so it must keep running
while the test process is busy, blocked or has its gevent hub hogged by a greenlet; a proxy
inside the test process would stall raft heartbeats and cause elections that no test asked for.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

from geetcd.testing.process import (
    _child_env,
    _gevent_if_hub_running,
    _PortInUse,
    _preexec_for,
    _register,
    _unregister,
    _wait_exit,
)

_COMMAND_TIMEOUT = 10.0
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netproxy.py")


def _wait_fd(fd: int, readable: bool, timeout: float) -> None:
    gevent = _gevent_if_hub_running()
    if gevent is not None:
        gsocket = importlib.import_module("gevent.socket")
        waiter = gsocket.wait_read if readable else gsocket.wait_write
        with contextlib.suppress(gsocket.timeout):
            waiter(fd, timeout=timeout)
        return
    if readable:
        select.select([fd], [], [], timeout)
    else:
        select.select([], [fd], [], timeout)


class _NetProxy:
    """The proxy child process of one cluster and the socket that controls it."""

    def __init__(self, log_path: str) -> None:
        parent, child = socket.socketpair()
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-I", _SCRIPT, str(child.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_child_env(),
                    pass_fds=(child.fileno(),),
                    start_new_session=True,
                    # see EtcdMember._start: prctl only, safe after fork
                    preexec_fn=_preexec_for(os.getpid()),  # noqa: PLW1509
                )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._sock: socket.socket | None = parent
        self._proc = proc
        self._buffer = b""
        self.log_path = log_path
        _register(proc)

    @property
    def pid(self) -> int | None:
        """PID of the proxy process, ``None`` once it has exited."""
        return self._proc.pid if self._proc.poll() is None else None

    def __repr__(self) -> str:
        return f"<_NetProxy pid={self.pid}>"

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one command and return its answer; :class:`RuntimeError` if none within 10 s."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("the network proxy of this cluster is closed")
        deadline = time.monotonic() + _COMMAND_TIMEOUT
        data = json.dumps({"op": op, **fields}).encode() + b"\n"
        try:
            while data:  # bounded by the deadline
                try:
                    sent = sock.send(data)
                    data = data[sent:]
                except BlockingIOError:
                    self._wait(sock, False, deadline)
            while b"\n" not in self._buffer:  # bounded by the deadline
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    self._wait(sock, True, deadline)
                    continue
                if not chunk:
                    raise RuntimeError(f"the network proxy exited; see {self.log_path}")
                self._buffer += chunk
        except OSError as exc:
            raise RuntimeError(f"the network proxy failed: {exc}; see {self.log_path}") from exc
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _wait(self, sock: socket.socket, readable: bool, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"the network proxy did not answer within {_COMMAND_TIMEOUT} s; see {self.log_path}"
            )
        _wait_fd(sock.fileno(), readable, remaining)

    def listen(self, member: str, kind: str, host: str, port: int, upstream: int) -> None:
        """Open the listener of ``member`` (``client`` or ``peer``) if not open yet.

        Raises :class:`_PortInUse` when ``port`` is taken, :class:`RuntimeError` otherwise.
        """
        answer = self.call(
            "listen", member=member, kind=kind, host=host, port=port, upstream=upstream
        )
        if not answer.get("ok"):
            text = f"network proxy cannot listen on {host}:{port}: {answer.get('error')}"
            if answer.get("in_use"):
                raise _PortInUse(f"{text} (errno {errno.EADDRINUSE}: address already in use)")
            raise RuntimeError(text)

    def started(self, member: str, pid: int) -> None:
        """Tell the proxy the PID of ``member``'s etcd (it tells connections apart by owner)."""
        self.call("pid", member=member, pid=pid)

    def unlisten(self, member: str) -> None:
        """Close the listeners of ``member``; best effort: never raises."""
        with contextlib.suppress(RuntimeError):
            self.call("unlisten", member=member)

    def set(
        self, member: str, *, peer_id: str, blackholed: bool, isolated: bool, delay: float
    ) -> None:
        """Replace the fault state of ``member``."""
        self.call(
            "set",
            member=member,
            id=peer_id,
            blackholed=blackholed,
            isolated=isolated,
            delay=delay,
        )

    def connections(self) -> dict[str, int]:
        """Open proxied connections, by ``"<member>/<client|peer>"``."""
        counts: dict[str, int] = self.call("stats").get("connections", {})
        return counts

    def close(self) -> None:
        """Ask the process to exit, then wait for it (SIGKILL after 2 s). Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(b'{"op": "quit"}\n')
            sock.close()
        proc = self._proc
        if not _wait_exit(proc, 2.0):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            _wait_exit(proc, 5.0)
        _unregister(proc)
