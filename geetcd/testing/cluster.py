"""Throwaway etcd clusters for tests: :class:`EtcdCluster`.

:class:`EtcdCluster` spawns one or more ``etcd`` members (:class:`~geetcd.testing.EtcdMember`)
on free loopback ports, waits until every member answers ``GET /health`` with
``{"health":"true"}``, and offers the cluster-level control that integration tests need:
:meth:`EtcdCluster.leader` / :meth:`EtcdCluster.followers`, runtime membership changes,
:meth:`EtcdCluster.heal`, network faults (``faults=True``: :meth:`EtcdCluster.isolate`,
:meth:`EtcdCluster.blackhole`, :meth:`EtcdCluster.delay`, through the proxy process of
:mod:`geetcd.testing.netproxy`) and an orderly :meth:`EtcdCluster.stop`. It can also wrap an
already running cluster (:meth:`EtcdCluster.external`). Process plumbing and the cleanup
guarantees live in :mod:`geetcd.testing.process`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from geetcd.testing.binary import EtcdBinaryNotFound, find_etcd_binary
from geetcd.testing.member import EtcdMember
from geetcd.testing.network import _NetProxy
from geetcd.testing.process import (
    _POLL_INTERVAL,
    _REQUEST_ERRORS,
    _check_loopback,
    _describe,
    _EtcdHTTPError,
    _free_ports,
    _PortInUse,
    _register_temp_root,
    _sleep,
    _unregister_temp_root,
    _wait_exit,
)

__all__ = ["EtcdCluster"]

_PORT_RETRIES = 3
_LEADER_TIMEOUT = 10.0
# etcd's strict reconfiguration check refuses member add/remove until the member handling the
# request has been connected to its peers for 5 s (etcdserver.HealthInterval).
_RECONFIG_TIMEOUT = 20.0


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

    ``faults=True`` puts a TCP proxy (one child process per cluster,
    :mod:`geetcd.testing.netproxy`) in front of every member's client URL and peer URL: etcd
    listens on ``listen_client_url`` / ``listen_peer_url`` and advertises the proxy's
    ``client_url`` / ``peer_url``, so clients, the member list and raft traffic all pass
    through it. That enables :meth:`isolate`, :meth:`blackhole`, :meth:`delay` and
    :meth:`heal_network`. Killing or stopping a member closes its proxy listeners, so connects
    are refused as they would be by the member itself. It is off by default: the proxy costs
    throughput (measured in the README) and is one more process.
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
        faults: bool = False,
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
        self.faults = faults
        self._net: _NetProxy | None = None
        self._net_state: dict[str, tuple[bool, bool, float]] = {}
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

    @property
    def proxy_pid(self) -> int | None:
        """PID of the network proxy process (``faults=True``, while started), else ``None``."""
        return self._net.pid if self._net is not None else None

    def member(self, index: int) -> EtcdMember:
        """Return ``members[index]``."""
        return self.members[index]

    def __repr__(self) -> str:
        faults = ""
        if self._net_state:
            described = []
            for name, (isolated, blackholed, delay) in sorted(self._net_state.items()):
                what = [w for w, on in (("isolated", isolated), ("blackholed", blackholed)) if on]
                what += [f"delay={delay:g}s"] if delay else []
                if what:
                    described.append(f"{name}:{'+'.join(what)}")
            faults = f" faults=[{', '.join(described)}]" if described else ""
        return f"<EtcdCluster size={len(self.members)}{faults} {self.members!r}>"

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
            f"--listen-client-urls={member.listen_client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.listen_peer_url}",
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

    def _ports_per_member(self) -> int:
        return 4 if self.faults else 2

    def _new_member(self, ports: Sequence[int]) -> EtcdMember:
        """A member on ``ports``: client, peer (and, with faults, etcd's own client, peer)."""
        assert self._root is not None
        name = f"{self.name_prefix}{self._next_index}"
        self._next_index += 1
        return EtcdMember(
            name=name,
            host=self.host,
            client_port=ports[0],
            peer_port=ports[1],
            data_dir=os.path.join(self._root, name),
            log_path=os.path.join(self._root, f"{name}.log"),
            listen_client_port=ports[2] if self.faults else None,
            listen_peer_port=ports[3] if self.faults else None,
            net=self._net,
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
            _register_temp_root(self._root)
        try:
            if self.faults:
                self._net = _NetProxy(os.path.join(self._root, "netproxy.log"))
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
        n = self._ports_per_member()
        ports = _free_ports(self.host, n * self.size)
        members = [self._new_member(ports[n * i : n * (i + 1)]) for i in range(self.size)]
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
        net, self._net = self._net, None
        if net is not None:
            net.close()
        self._net_state.clear()
        root = self._root
        if root is not None and self.data_root is None:
            shutil.rmtree(root, ignore_errors=True)
            _unregister_temp_root(root)
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

        Sends ``POST /v3/maintenance/status`` to each; among the answers that name a leader, those
        with the highest raft term decide, and the reported ``leader`` id is matched against each
        member's own id (the ``header.member_id`` of its own status answer). (A member cut off
        from its peers campaigns at ever higher terms without a leader; it does not count.) A
        leader that is paused or not running (followers keep naming the old leader during an
        election) does not count. Retries every 0.1 s for up to 10 s; then raises
        :class:`RuntimeError`.
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
            if answers and not any(lid for _, lid in answers):
                last = "no member reports a leader"
            answers = [(term, lid) for term, lid in answers if lid]
            if answers:
                top = max(term for term, _ in answers)
                ids = {lid for term, lid in answers if term == top}
                if len(ids) == 1:
                    (leader_id,) = ids
                    for m in self.members:
                        if m.member_id == leader_id and (
                            m._external or (m.is_running and not m.is_paused)
                        ):
                            return m
                    last = f"reported leader {leader_id} is not an available member"
                else:
                    last = f"leaders reported at term {top}: {sorted(ids)}"
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
        """Undo fault injection: lift network faults (:meth:`heal_network`), resume paused
        members, restart stopped or killed ones.

        Then waits (``startup_timeout``) until every member is healthy; raises
        :class:`RuntimeError` if one is not. Members added or removed at runtime stay so.
        """
        if self._net is not None:
            self.heal_network()
        for m in self.members:
            if not m._external and m.is_paused:
                m.resume()
        for m in self.members:
            if not m._external and not m.is_running:
                m.restart(wait=False)
        self.wait_healthy(self.startup_timeout)

    # -- network faults (faults=True) ---------------------------------------------------------

    def _require_net(self, action: str) -> _NetProxy:
        if self._net is None:
            raise RuntimeError(
                f"cannot {action}: create the cluster with EtcdCluster(..., faults=True) and "
                "start it"
            )
        return self._net

    def _net_member(self, member: EtcdMember | int, action: str) -> tuple[_NetProxy, EtcdMember]:
        net = self._require_net(action)
        target = self.members[member] if isinstance(member, int) else member
        if target not in self.members:
            raise ValueError(f"{target!r} is not a member of this cluster")
        return net, target

    def _set_net(
        self,
        member: EtcdMember | int,
        action: str,
        *,
        isolated: bool | None = None,
        blackholed: bool | None = None,
        delay: float | None = None,
    ) -> None:
        net, target = self._net_member(member, action)
        old_isolated, old_blackholed, old_delay = self._net_state.get(
            target.name, (False, False, 0.0)
        )
        state = (
            old_isolated if isolated is None else isolated,
            old_blackholed if blackholed is None else blackholed,
            old_delay if delay is None else delay,
        )
        if state[0] and target.member_id is None:
            target._status()
        peer_id = format(target.member_id, "x") if target.member_id is not None else ""
        net.set(
            target.name, peer_id=peer_id, isolated=state[0], blackholed=state[1], delay=state[2]
        )
        self._net_state[target.name] = state

    def isolate(self, member: EtcdMember | int) -> None:
        """Cut ``member`` (an :class:`EtcdMember` or an index into ``members``) off from its peers.

        Both directions, established connections included: the proxy stops forwarding every
        peer connection to the member and every peer connection the member opened, and stops
        accepting on its peer URL. A connection's dialer is known from the ``X-Server-From``
        header etcd puts on every raft stream, raft message and snapshot request, else (lease
        renewals forwarded over ``/leases``, ``/version``, ``/raft/probing``) from the process
        that holds the dialing socket, read in ``/proc`` (Linux only; elsewhere those few
        header-less connections from the member are not cut). Like dropped packets, not like a
        refusal: connects still complete at TCP level, nothing is reset, and bytes held back
        are delivered after :meth:`heal_network` (as TCP would retransmit them). Clients still
        reach the member's client URL.

        Once etcd's election timeout (1 s by default) has passed, the isolated member has no
        leader: writes and linearizable reads through it fail, serializable reads still
        answer, and the other members elect a leader among themselves if they have a quorum.
        Returns at once. Raises :class:`RuntimeError` unless the cluster was started with
        ``faults=True``, :class:`ValueError` for a foreign member.
        """
        self._set_net(member, "isolate a member", isolated=True)

    def blackhole(self, member: EtcdMember | int) -> None:
        """Drop the client traffic of ``member`` (a member or an index into ``members``).

        The proxy on its client URL stops accepting connections and stops reading and writing
        the established ones, in both directions. A new connect still succeeds (the kernel
        completes the handshake into the listen backlog of 1024, capped by
        ``net.core.somaxconn``; past that the SYN goes unanswered), but no byte of an answer
        arrives: nothing is refused or reset, so clients see timeouts only. Bytes held back are
        delivered after :meth:`heal_network`, so a request sent during the black-hole may
        still be executed then (as a real network's retransmission would). Peer traffic is
        untouched: the member stays in the cluster and keeps applying writes. Returns at once.
        Raises like :meth:`isolate`.
        """
        self._set_net(member, "black-hole a member", blackholed=True)

    def delay(self, member: EtcdMember | int, seconds: float) -> None:
        """Delay the client traffic of ``member`` by ``seconds`` in each direction.

        Every chunk the proxy reads from a client connection of the member, request or answer,
        is written ``seconds`` after it was read, in order; a request/answer exchange thus
        takes at least ``2 * seconds`` longer (chunks already in the proxy keep the delay they
        were read with). Connection setup is not delayed, peer traffic is not delayed.
        ``seconds=0`` removes the delay. Raises :class:`ValueError` for a negative delay, else
        like :meth:`isolate`.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, not {seconds}")
        self._set_net(member, "delay a member", delay=float(seconds))

    def heal_network(self, member: EtcdMember | int | None = None) -> None:
        """Lift :meth:`isolate`, :meth:`blackhole` and :meth:`delay` on ``member``, or on all.

        Held-back connections resume and listeners accept again at once; this does not wait
        for the member to catch up or have a leader (:meth:`wait_healthy` does). Does not
        resume paused or restart killed members (:meth:`heal` does both). Raises like
        :meth:`isolate`.
        """
        if member is None:
            self._require_net("heal the network").call("heal", member=None)
            self._net_state.clear()
            return
        net, target = self._net_member(member, "heal the network")
        net.call("heal", member=target.name)
        self._net_state.pop(target.name, None)

    def network_faults(self, member: EtcdMember | int) -> dict[str, bool | float]:
        """The network faults in force on ``member``: ``isolated``, ``blackholed``, ``delay``."""
        _, target = self._net_member(member, "read network faults")
        isolated, blackholed, delay = self._net_state.get(target.name, (False, False, 0.0))
        return {"isolated": isolated, "blackholed": blackholed, "delay": delay}

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
            member = self._new_member(_free_ports(self.host, self._ports_per_member()))
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
        if self._net is not None and member.name in self._net_state:
            del self._net_state[member.name]
            self._net.call("heal", member=member.name)
