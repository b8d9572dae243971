"""Maintenance calls: status, defragment, hash_kv, alarms, leader transfer and snapshots.

Every call takes the core and runs through its one attempt loop (``core.executor.run``);
:class:`Maintenance` offers the same calls as methods on a core (the client is a
Maintenance). Calls about one member (:func:`status` with ``endpoint``,
:func:`defragment`, :func:`hash_kv`, :func:`snapshot` with ``endpoint``) are pinned to that
member with the loop's ``endpoint=``: every attempt goes there and only there, never to
another member.
:func:`move_leader` pins itself to the current leader. ``endpoint`` must be the URL of a
member the client knows (``client.endpoints``, learners included); InvalidArgument
otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import gevent

from geetcd._executor import Attempt, check_retry
from geetcd.cluster import Member
from geetcd.config import Retry
from geetcd.errors import (
    ConnectionLost,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    InvalidType,
    MalformedResponse,
    ResponseTimeout,
    UnsupportedServer,
)
from geetcd.feature import Feature
from geetcd.models import Status
from geetcd.protocol import cluster as cluster_proto
from geetcd.protocol import maintenance as proto
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.kv import parse_header
from geetcd.protocol.maintenance import (
    ALARM_NAMES,
    Alarm,
    HashKV,
    SnapshotDecoder,
    check_member_id,
)
from geetcd.transport.grpc import stream_call, unary_call

if TYPE_CHECKING:
    from geetcd.core import Core

__all__ = [
    "Alarm",
    "Maintenance",
    "SnapshotInfo",
    "alarm_disarm",
    "alarm_list",
    "defragment",
    "hash_kv",
    "move_leader",
    "snapshot",
    "status",
    "unary",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_monotonic = time.monotonic

#: Default deadline of a defragmentation (it blocks the member's writes while it runs).
DEFRAGMENT_TIMEOUT = 60.0
#: Default deadline of a whole snapshot save.
SNAPSHOT_TIMEOUT = 3600.0


def unary(
    core: Core,
    path: str,
    body: dict[str, Any],
    parse: Callable[[dict[str, Any]], T],
    *,
    idempotent: bool,
    timeout: float | None = None,
    retry: Retry | None = None,
    endpoint: str | None = None,
    attempt_timeout: float | None = None,
    refine: Callable[[EtcdError], EtcdError] | None = None,
    avoid: Sequence[Member] = (),
) -> T:
    """One POST of ``body`` to the gateway's ``path`` through the attempt loop; returns
    ``parse(json)`` of the 200 answer. ``endpoint``: pinned to that member (no failover).
    ``attempt_timeout``: this call's (default: the client's). ``refine(error)`` may turn an
    error answer into a more precise error before the loop judges it. A non-idempotent call
    (which cannot move on once sent) waits for its answer until the call's deadline unless
    ``attempt_timeout`` says otherwise: better a late answer than OutcomeUnknown. ``avoid``:
    members not to send to unless no other one is usable."""
    core.start()
    return core.executor.call(
        path,
        body,
        parse,
        idempotent=idempotent,
        timeout=timeout,
        retry=retry,
        endpoint=endpoint,
        attempt_timeout=attempt_timeout,
        wait_for_answer=True,
        refine=refine,
        avoid=avoid,
        hedge=False,
    )


def status(
    core: Core,
    endpoint: str | None = None,
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> Status:
    """The status of ``endpoint`` (only that member is asked), or of whichever member the
    client picks when None (its id is ``header.member_id``)."""
    return unary(
        core,
        cluster_proto.STATUS,
        {},
        cluster_proto.parse_status,
        idempotent=True,
        timeout=timeout,
        retry=retry,
        endpoint=endpoint,
    )


def defragment(core: Core, endpoint: str, *, timeout: float | None = None) -> None:
    """Defragment the member at ``endpoint`` (only that one; it blocks its own writes while
    it runs); returns once that member answered that it is done. The whole call, and each
    attempt, may take up to ``timeout`` seconds (default :data:`DEFRAGMENT_TIMEOUT`);
    retried on that member only."""
    if endpoint is None:
        raise InvalidArgument("defragment needs endpoint=, the URL of one member")
    seconds = DEFRAGMENT_TIMEOUT if timeout is None else timeout
    unary(
        core,
        proto.DEFRAGMENT,
        {},
        lambda obj: parse_header(obj.get("header")),
        idempotent=True,
        timeout=seconds,
        endpoint=endpoint,
        attempt_timeout=core.executor.deadline(seconds) - _monotonic(),
    )


def hash_kv(
    core: Core,
    endpoint: str,
    revision: int = 0,
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> HashKV:
    """The true HashKV of the member at ``endpoint`` (only that one): the hash of its
    keyspace up to ``revision`` (0: its current revision), with ``.hash``,
    ``.compact_revision`` (the compaction the hash starts from, -1 when the member never
    compacted) and ``.header`` (the member
    and its current revision). Members that applied the same history answer the same hash
    for the same revision.

    Sent as gRPC over HTTP/2 (geetcd.transport.grpc), since etcd 3.5.1's gateway has no
    HashKV route; never the gateway's whole-database ``/maintenance/hash``, which ignores
    the revision.
    CompactedRevision / FutureRevision for a revision outside what the member keeps. The
    attempt may take until the call's deadline (hashing a large keyspace takes a while).
    """
    if endpoint is None:
        raise InvalidArgument("hash_kv needs endpoint=, the URL of one member")
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise InvalidType(f"revision must be an int, got {type(revision).__name__}")
    if revision < 0:
        raise InvalidArgument(f"revision must be >= 0, got {revision}")
    if retry is not None:
        check_retry(retry)
    core.start()
    executor = core.executor
    deadline = executor.deadline(timeout)
    frame = proto.hash_kv_request(revision)
    tls = core.transport.tls

    def do(attempt: Attempt) -> HashKV:
        token = (attempt.headers or {}).get("Authorization")
        body = unary_call(
            attempt.member.url,
            proto.HASH_KV_GRPC,
            frame,
            tls=tls,
            token=token,
            connect_timeout=attempt.connect_timeout,
            read_timeout=attempt.read_timeout,
            deadline=attempt.deadline,
        )
        result = proto.parse_hash_kv(body)
        return result

    return executor.run(
        do,
        what="HashKV",
        idempotent=True,
        deadline=deadline,
        retry=retry,
        endpoint=endpoint,
        attempt_timeout=max(executor.attempt_timeout, deadline - _monotonic()),
    )


def alarm_list(
    core: Core, *, timeout: float | None = None, retry: Retry | None = None
) -> tuple[Alarm, ...]:
    """Every active alarm of the cluster (empty when none)."""
    return unary(
        core,
        proto.ALARM,
        proto.alarm_body("GET"),
        proto.parse_alarms,
        idempotent=True,
        timeout=timeout,
        retry=retry,
    )


def _check_alarm(alarm: object) -> str | None:
    if alarm is None:
        return None
    if not isinstance(alarm, str):
        raise InvalidType(f"alarm must be a str, got {type(alarm).__name__}")
    name = alarm.upper()
    if name not in ALARM_NAMES[1:]:
        raise InvalidArgument(f"alarm must be one of {', '.join(ALARM_NAMES[1:])}, got {alarm!r}")
    return name


def alarm_disarm(
    core: Core,
    member_id: int | None = None,
    alarm: str | None = None,
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> tuple[Alarm, ...]:
    """Deactivate the active alarms that match ``member_id`` and ``alarm`` (None matches
    any; with no arguments, every active alarm) and return those it deactivated.

    Lists the alarms first, then deactivates each one by member and type (a DEACTIVATE
    without them does nothing through the gateway). Idempotent: deactivating an alarm that is
    gone is no error.
    """
    wanted_id = None if member_id is None else check_member_id(member_id)
    wanted = _check_alarm(alarm)
    active = alarm_list(core, timeout=timeout, retry=retry)
    chosen = tuple(
        a
        for a in active
        if (wanted_id is None or a.member_id == wanted_id) and (wanted is None or a.alarm == wanted)
    )
    for a in chosen:
        unary(
            core,
            proto.ALARM,
            proto.alarm_body("DEACTIVATE", a.member_id, a.alarm),
            proto.parse_alarms,
            idempotent=True,
            timeout=timeout,
            retry=retry,
        )
        log.info("disarmed alarm %s of member %x", a.alarm, a.member_id)
    return chosen


def _leader_url(core: Core, timeout: float | None) -> tuple[int, str]:
    """The current leader's id and the client URL of the member the client knows for it."""
    current = status(core, timeout=timeout)
    if current.leader is None:
        raise InvalidArgument(
            f"member {current.header.member_id:x} knows no leader: cannot move leadership"
        )
    for attempt in range(2):
        for member in core.cluster.members:
            if member.id == current.leader:
                return current.leader, member.url
        if attempt == 0:
            core.cluster.sync()  # learn the ids (and URLs) of the members
    raise InvalidArgument(f"the leader {current.leader:x} is not a member this client knows")


def move_leader(
    core: Core,
    member_id: int,
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> None:
    """Transfer leadership to ``member_id`` (a voting member); returns once the old leader
    answered that the transfer is done. Sent to the current leader only (found with a
    status call, then pinned with ``endpoint=``). Not idempotent: a lost answer raises
    OutcomeUnknown (read ``status().leader`` to find out)."""
    target = check_member_id(member_id)
    _, url = _leader_url(core, timeout)
    unary(
        core,
        proto.MOVE_LEADER,
        {"targetID": str(target)},
        lambda obj: parse_header(obj.get("header")),
        idempotent=False,
        timeout=timeout,
        retry=retry,
        endpoint=url,
    )


# ---------------------------------------------------------------------- snapshot
class SnapshotInfo:
    """What :func:`snapshot` saved: ``size`` bytes of database plus the 32-byte sha256
    trailer (``sha256`` hex, checked), from ``member`` (a URL), in ``seconds``."""

    __slots__ = ("member", "path", "seconds", "sha256", "size")

    def __init__(
        self, *, size: int, sha256: str, member: str, seconds: float, path: str | None
    ) -> None:
        self.size = size
        self.sha256 = sha256
        self.member = member
        self.seconds = seconds
        self.path = path

    @property
    def rate(self) -> float:
        """Bytes per second of the save."""
        return self.size / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"<SnapshotInfo {self.size} bytes sha256={self.sha256[:12]}... from {self.member} "
            f"in {self.seconds:.2f}s>"
        )


def _fsync_dir(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of %s failed", directory, exc_info=True)
    finally:
        os.close(fd)


def snapshot(
    core: Core,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    endpoint: str | None = None,
    progress: Callable[[int, int], object] | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    via: str = "grpc",
) -> SnapshotInfo:
    """Stream a snapshot of one member's database into ``path_or_file``, as etcdctl's
    ``snapshot save`` does: the database bytes followed by etcd's sha256 trailer, which is
    checked and kept (``etcdutl snapshot restore`` refuses a file without it).

    A path is written to ``path + ".part"``, fsynced, then renamed onto ``path`` (and the
    directory fsynced): ``path`` is either absent/untouched or a whole, verified snapshot.
    The ``.part`` file is removed on failure. A binary file object is written from its
    current position (rewound and truncated if a retry is needed and it is seekable; else
    the first failure is raised); it is flushed, not closed.

    ``via="grpc"`` (default): the bytes come over gRPC (HTTP/2 through h2, raw blobs), or
    through the JSON gateway when an https member offers no HTTP/2; ``via="gateway"``:
    always through the JSON gateway (base64 blobs, about a third of the rate), for members
    reachable only through an HTTP/1.1 proxy.

    ``endpoint``: the member to save from (only that one); None: whichever member the client
    picks, and another one after a failure. ``progress(received, total)`` is called after
    every blob, ``total`` being the size etcd announced. Memory stays flat: one blob
    (~32 KiB) and one socket read (256 KiB) at a time. ``timeout`` bounds the whole save (default
    :data:`SNAPSHOT_TIMEOUT`); ``idle_timeout`` (default max(5 s, the client's attempt
    timeout)) bounds each wait for bytes. A trailer that does not match raises
    MalformedResponse; a stream that ends early raises ConnectionLost.
    """
    if progress is not None and not callable(progress):
        raise InvalidType("progress must be callable(received, total)")
    if via not in ("grpc", "gateway"):
        raise InvalidArgument(f"via must be 'grpc' or 'gateway', got {via!r}")
    save = _save if via == "grpc" else _stream_into
    path: str | None
    fileobj: IO[bytes] | None
    if isinstance(path_or_file, (str, os.PathLike)):
        path = os.fspath(path_or_file)
        if not path:
            raise InvalidArgument("snapshot path must not be empty")
        fileobj = None
    elif callable(getattr(path_or_file, "write", None)):
        path, fileobj = None, path_or_file
    else:
        raise InvalidType(
            f"snapshot needs a path or a binary file, got {type(path_or_file).__name__}"
        )
    core.start()
    executor = core.executor
    seconds = SNAPSHOT_TIMEOUT if timeout is None else timeout
    deadline = executor.deadline(seconds)
    idle = max(5.0, executor.attempt_timeout) if idle_timeout is None else idle_timeout
    idle = executor.deadline(idle) - _monotonic()  # validated like a timeout
    started = _monotonic()
    part = None if path is None else path + ".part"
    start_pos: int | None = None
    if fileobj is not None and fileobj.seekable():
        start_pos = fileobj.tell()
    attempts = 0

    def do(attempt: Attempt) -> tuple[SnapshotDecoder, str]:
        nonlocal attempts
        attempts += 1
        if fileobj is not None:
            if attempts > 1:
                if start_pos is None:
                    raise InvalidArgument(
                        "snapshot into an unseekable file cannot be retried after a failure"
                    )
                fileobj.seek(start_pos)
                fileobj.truncate()
            return save(core, attempt, fileobj, idle, progress), attempt.member.url
        assert part is not None
        with open(part, "wb") as out:
            decoder = save(core, attempt, out, idle, progress)
            out.flush()
            os.fsync(out.fileno())
        return decoder, attempt.member.url

    saved = False
    try:
        decoder, url = executor.run(
            do,
            what=proto.SNAPSHOT,
            idempotent=True,
            deadline=deadline,
            endpoint=endpoint,
            attempt_timeout=max(0.001, deadline - _monotonic()),
            gateway=True,
        )
        if path is not None and part is not None:
            os.replace(part, path)
            _fsync_dir(path)
        elif fileobj is not None:
            fileobj.flush()
        saved = True
    finally:
        if not saved and part is not None:
            with contextlib.suppress(OSError):
                os.unlink(part)
    info = SnapshotInfo(
        size=decoder.size,
        sha256=decoder.trailer_hex(),
        member=url,
        seconds=_monotonic() - started,
        path=path,
    )
    log.info("snapshot saved: %r", info)
    return info


def _save(
    core: Core,
    attempt: Attempt,
    out: IO[bytes],
    idle: float,
    progress: Callable[[int, int], object] | None,
) -> SnapshotDecoder:
    """One attempt: the snapshot over gRPC (raw bytes, ~3x the gateway's rate), or through
    the JSON gateway when the member offers no HTTP/2 (an https front without ALPN h2)."""
    try:
        return _grpc_stream_into(core, attempt, out, idle, progress)
    except UnsupportedServer:
        log.info("%s offers no HTTP/2: snapshot through the JSON gateway", attempt.member.url)
        return _stream_into(core, attempt, out, idle, progress)


def _grpc_stream_into(
    core: Core,
    attempt: Attempt,
    out: IO[bytes],
    idle: float,
    progress: Callable[[int, int], object] | None,
) -> SnapshotDecoder:
    member = attempt.member
    decoder = SnapshotDecoder(member.url)
    messages = stream_call(
        member.url,
        proto.SNAPSHOT_GRPC,
        proto.SNAPSHOT_REQUEST,
        tls=core.transport.tls,
        token=(attempt.headers or {}).get("Authorization"),
        connect_timeout=attempt.connect_timeout,
        read_timeout=idle,
        deadline=attempt.deadline,
    )
    try:
        for message in messages:
            blob, remaining = proto.parse_snapshot_message(message)
            decoder.add_blob(blob, remaining)
            out.write(blob)
            if progress is not None:
                progress(decoder.received, decoder.total)
    finally:
        messages.close()
    _check_trailer(decoder, member.url)
    return decoder


def _check_trailer(decoder: SnapshotDecoder, url: str) -> None:
    if decoder.verified():
        return
    if decoder.received < decoder.total + 32:
        raise ConnectionLost(
            f"snapshot stream from {url} ended after {decoder.received} of "
            f"{decoder.total + 32} bytes",
            member=url,
        )
    raise MalformedResponse(
        f"snapshot from {url}: the sha256 trailer does not match the data", member=url
    )


def _stream_into(
    core: Core,
    attempt: Attempt,
    out: IO[bytes],
    idle: float,
    progress: Callable[[int, int], object] | None,
) -> SnapshotDecoder:
    """One attempt: open the snapshot stream on ``attempt.member`` and copy its blobs into
    ``out``; returns the decoder once the trailer checked out."""
    member = attempt.member
    stream = core.transport.open_stream(
        member.url,
        core.executor.api_prefix + proto.SNAPSHOT,
        b"{}",
        connect_timeout=attempt.connect_timeout,
        first_byte_timeout=min(idle, max(0.001, attempt.deadline - _monotonic())),
        headers=attempt.headers,
    )
    try:
        if stream.status != 200:
            raise error_from_body(stream.status, stream.read_all(), member.url)
        decoder = SnapshotDecoder(member.url)
        while True:
            left = attempt.deadline - _monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"snapshot from {member.url}: deadline passed")
            wait = min(idle, left)
            timer = gevent.Timeout(wait)
            timer.start()
            try:
                chunk = stream.read_chunk(256 * 1024)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                stream.abort()
                if wait < idle:
                    raise DeadlineExceeded(f"snapshot from {member.url}: deadline passed") from None
                raise ResponseTimeout(
                    f"snapshot from {member.url}: no bytes for {idle:.1f} s", member=member.url
                ) from None
            finally:
                timer.close()
            if not chunk:
                break
            for blob in decoder.feed(chunk):
                out.write(blob)
                if progress is not None:
                    progress(decoder.received, decoder.total)
        _check_trailer(decoder, member.url)
        return decoder
    finally:
        stream.close()


class Maintenance(Feature):
    """The maintenance API on a core (Go's ``clientv3.NewMaintenance``): :meth:`status`,
    :meth:`defragment`, :meth:`hash_kv`, :meth:`alarm_list`, :meth:`alarm_disarm`,
    :meth:`move_leader`, :meth:`snapshot`. :class:`geetcd.Client` is a Maintenance;
    ``Maintenance(core)`` works on its own. Building it does no I/O."""

    def status(
        self,
        endpoint: str | None = None,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Status:
        """The status of the member at ``endpoint`` (a URL of a known member: only that one
        is asked, no failover), or of whichever member the client picks when None (its id is
        ``header.member_id``)."""
        return status(self._core, endpoint, timeout=timeout, retry=retry)

    def defragment(self, endpoint: str, *, timeout: float | None = None) -> None:
        """Defragment the member at ``endpoint`` only (see geetcd.maintenance.defragment)."""
        defragment(self._core, endpoint, timeout=timeout)

    def hash_kv(
        self,
        endpoint: str,
        revision: int = 0,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> HashKV:
        """The HashKV of the member at ``endpoint`` only, at ``revision`` (0: current):
        ``.hash`` and ``.compact_revision`` (see geetcd.maintenance.hash_kv)."""
        return hash_kv(self._core, endpoint, revision, timeout=timeout, retry=retry)

    def alarm_list(
        self, *, timeout: float | None = None, retry: Retry | None = None
    ) -> tuple[Alarm, ...]:
        """The active alarms (``Alarm(member_id, alarm)``), empty when none."""
        return alarm_list(self._core, timeout=timeout, retry=retry)

    def alarm_disarm(
        self,
        member_id: int | None = None,
        alarm: str | None = None,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> tuple[Alarm, ...]:
        """Deactivate the matching active alarms (all of them with no arguments); returns
        those deactivated (see geetcd.maintenance.alarm_disarm)."""
        return alarm_disarm(self._core, member_id, alarm, timeout=timeout, retry=retry)

    def move_leader(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> None:
        """Make ``member_id`` the leader; sent to the current leader only. Not idempotent."""
        move_leader(self._core, member_id, timeout=timeout, retry=retry)

    def snapshot(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes],
        *,
        endpoint: str | None = None,
        progress: Callable[[int, int], object] | None = None,
        timeout: float | None = None,
    ) -> SnapshotInfo:
        """Stream a verified snapshot (sha256 trailer kept) into a path (via ``.part``,
        fsync, rename) or a binary file; see geetcd.maintenance.snapshot."""
        return snapshot(
            self._core, path_or_file, endpoint=endpoint, progress=progress, timeout=timeout
        )
