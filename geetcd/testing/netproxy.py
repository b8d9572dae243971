"""The fault-injecting TCP proxy of the etcd test harness, run as one child process per cluster.

:class:`~geetcd.testing.EtcdCluster` with ``faults=True`` starts this file as a script
(``python -I netproxy.py <fd>``; standard library only, so it imports neither geetcd nor
gevent) and controls it over the inherited socket ``<fd>``: one JSON object per line in, one
JSON answer per line out. When that socket closes (the test process exited or closed the
cluster) the proxy closes every socket and exits.

Each member gets two listeners: its advertised client URL (forwarded to the port etcd listens
on for clients) and its advertised peer URL (forwarded to etcd's peer port). The proxy keeps
a fault state per member:

``blackholed``
    its client listener stops calling ``accept()``: the kernel still completes handshakes into
    the listen backlog (1024, capped by ``net.core.somaxconn``), so a connect succeeds and
    then nothing answers; once the backlog is full, SYNs are dropped and connects hang. No
    connection is refused or reset. Established client connections stop being read and
    written in both directions.
``isolated``
    its peer listener stops accepting and every connection through it stalls (traffic *to*
    the member), and so does every peer connection the member dialed (traffic *from* it).
    Those are told apart by the ``X-Server-From: <member id>`` header of their first HTTP
    request (etcd sets it on every raft stream, raft message and snapshot request); for a
    connection whose first request has none (``/raft/probing``, ``/version``, lease renewals
    forwarded over ``/leases``; Go may reuse such a connection for raft messages later), by
    the process holding the dialing socket (``/proc/net/tcp`` and ``/proc/<pid>/fd`` on
    Linux; elsewhere such connections are not cut).
``delay``
    every chunk read from a client connection of the member, in either direction, is written
    ``delay`` seconds after it was read (order kept); a request/answer exchange therefore
    takes at least ``2 * delay`` longer. Connection setup is not delayed.

A stalled connection keeps its bytes: nothing read before or during a fault is dropped, and
when the fault is lifted it is delivered, like TCP retransmission after a network heals. A
request sent during a black-hole can therefore still reach etcd after the heal.

Commands (``{"op": ...}``): ``listen`` (member, kind ``client``/``peer``, host, port,
upstream), ``unlisten`` (member), ``pid`` (member, pid), ``set`` (member, id, blackholed,
isolated, delay), ``heal`` (member or null), ``stats``, ``quit`` (not answered). Answers
are ``{"ok": true, ...}`` or ``{"ok": false, "error": "...", "in_use": bool}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 65536
_QUEUE_LIMIT = 4 << 20  # bytes held per direction and connection before reading pauses
_HEADER_LIMIT = 65536
_HEAD_TIMEOUT = 2.0
_ACCEPT_BATCH = 64
_BACKLOG = 1024
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class _Member:
    pid: int = 0
    peer_id: str = ""
    blackholed: bool = False
    isolated: bool = False
    delay: float = 0.0
    listeners: dict[str, _Listener] = field(default_factory=dict)


@dataclass
class _Listener:
    member: str
    kind: str
    sock: socket.socket
    upstream: tuple[str, int]
    closed: bool = False


@dataclass(eq=False)
class _Conn:
    member: str
    kind: str
    sender: str | None = None  # X-Server-From of the first request (peer connections)
    owner: str | None = None  # the member whose process dialed it, if looked up and found
    looked_up: bool = False
    remote: tuple[str, int] = ("", 0)
    local: tuple[str, int] = ("", 0)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` so that the other end sees a reset (RST), not an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _sender(head: bytes) -> str | None:
    """The ``X-Server-From`` value of the first HTTP request in ``head``, lower-cased."""
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-server-from":
            return value.strip().decode("ascii", "replace").lower()
    return None


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; ``queue`` holds what was read from it and not yet
    written to the other side, with the loop time at which it may be written."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.other: _Side = self
        self.transport: asyncio.Transport | None = None
        self.holds: set[str] = set()
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.holds:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.relay.received(self, data)

    def eof_received(self) -> bool:
        self.relay.received(self, b"")
        return True  # keep the socket open: the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(exc)

    def pause_writing(self) -> None:
        self.other.hold("full")  # our send buffer is full: stop reading the other side

    def resume_writing(self) -> None:
        self.other.release("full")

    def hold(self, reason: str) -> None:
        if not self.holds and self.transport is not None:
            self.transport.pause_reading()
        self.holds.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self.holds:
            return
        self.holds.discard(reason)
        if not self.holds and self.transport is not None:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if data:
            self.transport.write(data)
        elif self.transport.can_write_eof():
            self.transport.write_eof()

    def reset(self) -> None:
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()


class _Relay:
    """Both sockets of one proxied connection: forwards bytes while its connection's member is
    not faulted, after the member's delay, in order, and holds them (without reading more)
    while it is."""

    def __init__(self, proxy: _Proxy, conn: _Conn) -> None:
        self.proxy = proxy
        self.conn = conn
        self.member = proxy._member(conn.member)
        self.down = _Side(self)
        self.up = _Side(self)
        self.down.other, self.up.other = self.up, self.down
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.ready = False
        self.eofs = 0

    def start(self) -> None:
        self.ready = True
        self.changed()

    def flows(self) -> bool:
        return self.ready and self.proxy._flows(self.conn)

    def received(self, src: _Side, data: bytes) -> None:
        delay = self.member.delay if self.conn.kind == "client" else 0.0
        if not src.queue and delay <= 0 and self.flows():
            self._forward(src, data)
            return
        src.queue.append((self.loop.time() + delay, data))
        src.queued += len(data)
        if src.queued > _QUEUE_LIMIT:
            src.hold("queue")
        self.pump(src)

    def _forward(self, src: _Side, data: bytes) -> None:
        if self.done.done():
            return
        src.other.write(data)
        if not data:
            self.eofs += 1
            if self.eofs == 2:
                self.close()

    def pump(self, src: _Side) -> None:
        """Write what ``src`` queued and is due; re-arm a timer for the rest."""
        if src.timer is not None:
            src.timer.cancel()
            src.timer = None
        if not self.flows():
            return
        now = self.loop.time()
        while src.queue and not self.done.done():
            due, data = src.queue[0]
            if due > now:
                src.timer = self.loop.call_at(due, self.pump, src)
                return
            src.queue.popleft()
            src.queued -= len(data)
            self._forward(src, data)
        if src.queued <= _QUEUE_LIMIT:
            src.release("queue")

    def changed(self) -> None:
        """The fault state changed: hold both sides, or release them and catch up."""
        if self.flows():
            for side in (self.down, self.up):
                side.release("fault")
                self.pump(side)
        else:
            for side in (self.down, self.up):
                side.hold("fault")

    def lost(self, exc: Exception | None) -> None:
        """One socket is gone: after an error reset both sides, else close both."""
        if exc is not None:
            self.down.reset()
            self.up.reset()
        self.close()

    def close(self) -> None:
        for side in (self.down, self.up):
            if side.timer is not None:
                side.timer.cancel()
            if side.transport is not None:
                side.transport.close()
        if not self.done.done():
            self.done.set_result(None)


def _address(text: str, family: socket.AddressFamily) -> tuple[str, int]:
    """Decode ``0100007F:0050`` (IPv4; IPv6 alike, 4 words) from /proc/net/tcp[6]."""
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    packed = b"".join(
        struct.pack("=I", int.from_bytes(raw[i : i + 4], "big")) for i in range(0, len(raw), 4)
    )
    return socket.inet_ntop(family, packed), int(port, 16)


def _tcp_inodes() -> dict[tuple[tuple[str, int], tuple[str, int]], str]:
    """(local address, remote address) -> socket inode, for every TCP socket of this network
    namespace (Linux /proc; empty elsewhere)."""
    table: dict[tuple[tuple[str, int], tuple[str, int]], str] = {}
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            try:
                key = (_address(fields[1], family), _address(fields[2], family))
            except (ValueError, OSError):
                continue
            table[key] = fields[9]
    return table


def _socket_owners(pids: dict[str, int]) -> dict[str, str]:
    """Socket inode -> name, for every socket the processes ``{name: pid}`` hold open."""
    owners: dict[str, str] = {}
    for name, pid in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = name
    return owners


class _Proxy:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.members: dict[str, _Member] = {}
        self.conns: set[_Conn] = set()
        self.relays: set[_Relay] = set()
        self.isolated_ids: set[str] = set()
        self.isolated_names: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    # -- fault state ------------------------------------------------------------------------

    def _notify(self) -> None:
        """The fault state changed: wake every waiter and every relay."""
        self.isolated_ids = {m.peer_id for m in self.members.values() if m.isolated and m.peer_id}
        self.isolated_names = {name for name, m in self.members.items() if m.isolated}
        self._identify(self.conns)
        event, self.changed = self.changed, asyncio.Event()
        event.set()
        for member in self.members.values():
            for listener in member.listeners.values():
                self._watch(listener)
        for relay in list(self.relays):
            relay.changed()

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Return once ``ready()`` is true; it is re-checked after every state change."""
        while not ready():
            await self.changed.wait()

    def _member(self, name: str) -> _Member:
        return self.members.setdefault(name, _Member())

    def _flows(self, conn: _Conn) -> bool:
        member = self._member(conn.member)
        if conn.kind == "client":
            return not member.blackholed
        return not (
            member.isolated
            or (conn.sender is not None and conn.sender in self.isolated_ids)
            or (conn.owner is not None and conn.owner in self.isolated_names)
        )

    def _identify(self, conns: Iterable[_Conn]) -> None:
        """Find the member that dialed each peer connection whose first request carried no
        ``X-Server-From`` (Go reuses such connections for raft messages), by the owner of the
        dialing socket in /proc. Done only while some member is isolated, once per connection.
        """
        if not self.isolated_names:
            return
        pending = [c for c in conns if c.kind == "peer" and c.sender is None and not c.looked_up]
        if not pending:
            return
        inodes = _tcp_inodes()
        owners = _socket_owners({n: m.pid for n, m in self.members.items() if m.pid})
        for conn in pending:
            conn.looked_up = True
            inode = inodes.get((conn.remote, conn.local))  # the dialer's end of it
            conn.owner = owners.get(inode) if inode is not None else None

    def _accepts(self, listener: _Listener) -> bool:
        member = self._member(listener.member)
        return not (member.blackholed if listener.kind == "client" else member.isolated)

    # -- listeners --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def listen(self, member: str, kind: str, host: str, port: int, upstream: int) -> None:
        state = self._member(member)
        if kind in state.listeners:
            return
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        listener = _Listener(member, kind, sock, (host, upstream))
        state.listeners[kind] = listener
        self._watch(listener)

    def unlisten(self, member: str) -> None:
        loop = asyncio.get_running_loop()
        state = self._member(member)
        for listener in state.listeners.values():
            listener.closed = True
            loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
        state.listeners.clear()

    def _watch(self, listener: _Listener) -> None:
        """Accept on ``listener`` while its member's faults allow it, else leave connections in
        the kernel's backlog."""
        loop = asyncio.get_running_loop()
        if listener.closed:
            return
        if self._accepts(listener):
            loop.add_reader(listener.sock.fileno(), self._accept, listener)
        else:
            loop.remove_reader(listener.sock.fileno())

    def _accept(self, listener: _Listener) -> None:
        for _ in range(_ACCEPT_BATCH):
            if listener.closed or not self._accepts(listener):
                return
            try:
                sock, _ = listener.sock.accept()
            except OSError:  # nothing left to accept (EAGAIN), or the listener is closed
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._serve(listener, sock))

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, listener: _Listener, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn = _Conn(listener.member, listener.kind)
        relay: _Relay | None = None
        self.conns.add(conn)
        try:
            head = b""
            if conn.kind == "peer":
                conn.remote = sock.getpeername()[:2]
                conn.local = sock.getsockname()[:2]
                head = await self._read_head(sock)
                conn.sender = _sender(head)
                self._identify([conn])
            await self._wait_until(lambda: self._flows(conn))
            relay = _Relay(self, conn)
            try:
                await loop.create_connection(lambda: relay.up, *listener.upstream)
            except OSError:
                _reset(sock)
                return
            if head:
                relay.up.write(head)
            await loop.connect_accepted_socket(lambda: relay.down, sock)
            self.relays.add(relay)
            relay.start()
            await relay.done
        except OSError:
            _reset(sock)
        finally:
            self.conns.discard(conn)
            if relay is not None:
                self.relays.discard(relay)
                relay.close()
            if relay is None or relay.down.transport is None:
                sock.close()  # else the transport owns it and closes it once flushed

    async def _read_head(self, sock: socket.socket) -> bytes:
        """Read until the end of the first request's header; stop early at EOF, at 64 KiB, after
        2 s, or when the first bytes are not an HTTP request line (peer TLS, for one)."""
        loop = asyncio.get_running_loop()
        buf = bytearray()
        deadline = loop.time() + _HEAD_TIMEOUT
        while b"\r\n\r\n" not in buf and len(buf) < _HEADER_LIMIT:
            try:
                data = await asyncio.wait_for(
                    loop.sock_recv(sock, _CHUNK), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                break
            if not data:
                break
            buf += data
            if not (buf[:1].isalpha() and buf[:1].isupper()):
                break  # not an HTTP method: TLS (0x16) or something else we cannot read
        return bytes(buf)

    # -- control ----------------------------------------------------------------------------

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.get("op")
        if op == "listen":
            try:
                self.listen(
                    str(command["member"]),
                    str(command["kind"]),
                    str(command["host"]),
                    int(command["port"]),
                    int(command["upstream"]),
                )
            except OSError as exc:
                return {"ok": False, "error": str(exc), "in_use": exc.errno == errno.EADDRINUSE}
        elif op == "pid":
            self._member(str(command["member"])).pid = int(command["pid"])
        elif op == "unlisten":
            self.unlisten(str(command["member"]))
        elif op == "set":
            state = self._member(str(command["member"]))
            state.peer_id = str(command.get("id") or "").lower()
            state.blackholed = bool(command.get("blackholed"))
            state.isolated = bool(command.get("isolated"))
            state.delay = max(0.0, float(command.get("delay") or 0.0))
            self._notify()
        elif op == "heal":
            name = command.get("member")
            targets = list(self.members.values()) if name is None else [self._member(str(name))]
            for state in targets:
                state.blackholed = state.isolated = False
                state.delay = 0.0
            self._notify()
        elif op == "stats":
            counts: dict[str, int] = {}
            for conn in self.conns:
                key = f"{conn.member}/{conn.kind}"
                counts[key] = counts.get(key, 0) + 1
            return {"ok": True, "connections": counts}
        elif op != "quit":
            return {"ok": False, "error": f"unknown op {op!r}", "in_use": False}
        return {"ok": True}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        buf = b""
        try:
            while True:  # ends when the controlling process closes its end or sends quit
                try:
                    data = await loop.sock_recv(self.control, 65536)
                except OSError:
                    return  # the controlling process is gone
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        command = json.loads(line)
                        answer = self.handle(command)
                    except (ValueError, KeyError, TypeError) as exc:
                        command, answer = {}, {"ok": False, "error": repr(exc), "in_use": False}
                    if command.get("op") == "quit":
                        return  # no answer: the controlling process has closed its end
                    try:
                        await loop.sock_sendall(self.control, json.dumps(answer).encode() + b"\n")
                    except OSError:
                        return
        finally:
            for name in list(self.members):
                self.unlisten(name)
            for relay in list(self.relays):
                relay.close()


async def _main(fd: int) -> None:
    control = socket.socket(fileno=fd)
    control.setblocking(False)
    await _Proxy(control).run()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
