"""The libqb IPC server, SHM and SOCKET transports, on trio (reference/libqb-ipc.md 1-4).

One :class:`IpcServer` per service socket (``cmap``, ``cfg``, ...). It listens on the
abstract stream socket ``prefix + service`` and, per client:

1. reads the 24-byte connection request with the client's ``SCM_CREDENTIALS`` and asks
   the ``authorize`` callback (default :class:`AccessPolicy`: root, or a configured uid
   or gid; corosync's rule) -- a refusal is answered with a negative errno and closed;
2. creates what the chosen transport names in its answer, *before* answering, since the
   client opens it at once, in a per-connection directory under ``/dev/shm``: for SHM
   (``transport="shm"``, the default, as corosync's ``qb_ipc_type: native``) the
   request, response and event rings of :mod:`._ipc_shm`; for SOCKET the 24-byte
   control file (flow control) and two datagram sockets bound to ``B-request`` and
   ``B-event-tx``;
3. serves requests one at a time, in order: each datagram (SOCKET) or ring chunk
   announced by a byte on the setup socket (SHM) is one message, handed whole
   (header included) to ``handler(conn, request_id, message)``, whose return value is
   the whole response message, sent back from ``B-request`` (None sends nothing, as for
   cpg mcast). A request that cannot be framed, or that the handler rejects with
   :class:`corosync.MalformedMessage`, gets corosync's bare error reply (id 0,
   CS_ERR_INVALID_PARAM); a handler raising :class:`corosync.CsError` gets a bare reply
   with its code; any other handler exception is logged and answered CS_ERR_LIBRARY.
   The daemon never crashes on a client's bytes;
4. sends events queued with :meth:`IpcConnection.send_event` from ``B-event-tx``,
   waiting while the client has not bound its event socket yet or its buffer is full
   (SOCKET), or into the event ring plus one byte on the setup socket, waiting while
   the ring is full (SHM);
5. notices the client leaving by EOF/HUP on the stream socket (libqb clients send no
   goodbye) or a DISCONNECT request, cancels its pending work and removes its files.

Not done here: the ``sent`` statistics counters of the SOCKET control file (libqb keeps
them only for ``q_len`` statistics; clients ignore them).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import itertools
import mmap
import os
import shutil
import socket
import struct
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Final, Literal

import attrs
import structlog
import trio

from corosync import CsError, CsErrorCode, MalformedMessage
from corosync.ipc import (
    CONNECTION_REQUEST_SIZE,
    DEFAULT_MAX_MSG_SIZE,
    QB_IPC_MSG_DISCONNECT,
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    ConnectionResponse,
    Credentials,
    IpcType,
    abstract_socket_address,
    decode_connection_request_untrusted,
    decode_credentials_untrusted,
    decode_request_header_untrusted,
    decode_response_header_untrusted,
    encode_error_response,
)
from corosync_executive._ipc_shm import FLOW_CONTROL_OFFSET, ShmRing, ShmRingError

__all__ = [
    "MAX_MSG_SIZE_CAP",
    "AccessPolicy",
    "Authorizer",
    "IpcConnection",
    "IpcServer",
    "IpcServerError",
    "IpcServerStats",
    "RequestHandler",
    "Transport",
    "check_credentials",
]

RequestHandler = Callable[["IpcConnection", int, bytes], Awaitable[bytes | None]]
"""``async def handle(conn, request_id, message) -> response message | None``."""

Transport = Literal["shm", "socket"]
"""The transport the server answers with: libqb's SHM rings or SOCKET datagrams."""

Authorizer = Callable[[Credentials | None], int]
"""Decides on a connecting client: 0 accepts, a negative errno refuses (sent to it)."""

CONTROL_FILE_SIZE: Final = 24
_FLOW_CONTROL = struct.Struct("=i")
# Request and response headers, read inline on the request path (the decoders in
# corosync.ipc check the same and word the errors).
_REQUEST_ID_SIZE = struct.Struct("=i4xi")
_RESPONSE_HEADER = struct.Struct("=i4xi4xi4x")
_REQUEST_FLOW_CONTROL_OFFSET = 4
_LISTEN_BACKLOG = 128
_CREDS_SPACE = socket.CMSG_SPACE(12)
_BATCH = 64  # datagrams drained per wake-up, so one busy client cannot starve others
# The answer's max_msg_size is max(client's wish, ours), capped: a datagram cannot exceed
# the kernel's wmem_max anyway, and a wish of 4 GiB must not make us allocate it.
MAX_MSG_SIZE_CAP: Final = 16 * 1024 * 1024
_EVENT_CONNECT_RETRY = 0.1  # seconds between tries while the client's event socket is unbound
_RING_FULL_RETRY = 0.01  # seconds between tries while a client's ring has no room


def _always() -> bool:
    """The SOCKET control file's guard: nothing to check (see ShmRing.files_intact)."""
    return True


class IpcServerError(Exception):
    """The server cannot start (its socket name is taken, bad parameters)."""


def check_credentials(
    creds: Credentials | None,
    *,
    allowed_uids: Collection[int] = (),
    allowed_gids: Collection[int] = (),
    ready: bool = True,
) -> int:
    """corosync's accept rule (exec/ipc_glue.c): -EAGAIN while not ready; otherwise
    root (uid 0 or gid 0) and the listed uids and gids are accepted (0), anyone else,
    and a client whose credentials are unknown, is refused with -EACCES."""
    if not ready:
        return -errno.EAGAIN
    if creds is None:
        return -errno.EACCES
    if creds.uid == 0 or creds.gid == 0:
        return 0
    if creds.uid in allowed_uids or creds.gid in allowed_gids:
        return 0
    return -errno.EACCES


@attrs.frozen
class AccessPolicy:
    """A fixed :func:`check_credentials` rule, usable as the ``authorize`` callback. The
    executive passes its own callable that reads ``uidgid.*`` from cmap instead."""

    allowed_uids: frozenset[int] = frozenset()
    allowed_gids: frozenset[int] = frozenset()
    ready: bool = True

    def __call__(self, creds: Credentials | None) -> int:
        return check_credentials(
            creds, allowed_uids=self.allowed_uids, allowed_gids=self.allowed_gids, ready=self.ready
        )


@attrs.define
class IpcServerStats:
    """Counters of one server (for ``stats.ipcs.*`` later)."""

    accepted: int = 0
    refused: int = 0
    failed_handshakes: int = 0
    requests: int = 0
    malformed_requests: int = 0
    foreign_datagrams: int = 0
    handler_errors: int = 0
    events_sent: int = 0
    events_dropped: int = 0


class IpcConnection:
    """One client connection, as a service handler sees it."""

    def __init__(
        self,
        *,
        conn_id: int,
        service: str,
        credentials: Credentials,
        max_msg_size: int,
        control: mmap.mmap,
        max_event_backlog: int,
        flow_control_offset: int = _REQUEST_FLOW_CONTROL_OFFSET,
        control_intact: Callable[[], bool] = _always,
    ) -> None:
        self.id = conn_id
        self.service = service
        self.credentials = credentials
        self.max_msg_size = max_msg_size
        self._control = control
        self._flow_control_offset = flow_control_offset
        self._control_intact = control_intact
        self._events: deque[bytes] = deque()
        self._event_bytes = 0
        self._max_event_backlog = max_event_backlog
        self._event_wakeup = trio.Event()
        self._cancel_scope = trio.CancelScope()
        self._announced = False  # on_connect ran, so on_disconnect must run too
        self.closed = False
        self.requests = 0
        # Per-connection counters behind stats.ipcs.service<S>.<pid>.<id>.* (_stats_map).
        self.responses = 0  # responses sent
        self.events_sent = 0  # events handed to the client ("dispatched")
        self.invalid_requests = 0  # requests answered with a bare error reply
        self.overloads = 0  # requests answered CS_ERR_TRY_AGAIN
        self.send_retries = 0  # waits for room in the client's ring or socket buffer
        self.delayed_events = 0  # events sent only after such a wait (corosync's "sent")
        self.flow_control_count = 0  # times flow control was switched on
        self._flow_level = 0

    def __repr__(self) -> str:
        c = self.credentials
        return f"<IpcConnection {self.id} {self.service} pid={c.pid} uid={c.uid} gid={c.gid}>"

    @property
    def pending_events(self) -> int:
        """Events queued and not yet handed to the kernel."""
        return len(self._events)

    def send_event(self, message: bytes) -> bool:
        """Queue one whole event message (response header first) for this client.
        Returns False, queueing nothing, when the connection is closed, the message is
        larger than the client's buffer, or the backlog is over its limit (a client that
        does not read its events); the caller decides what that means for it."""
        if self.closed or len(message) > self.max_msg_size:
            return False
        if self._event_bytes + len(message) > self._max_event_backlog:
            return False
        self._events.append(message)
        self._event_bytes += len(message)
        self._event_wakeup.set()
        return True

    def set_flow_control(self, level: int) -> None:
        """Write the request channel's flow-control flag: 0 lets every request through,
        1 stops all (the client gets CS_ERR_TRY_AGAIN), 2 only cpg mcasts."""
        if not 0 <= level <= 2:
            raise ValueError("flow control level is 0, 1 or 2")
        if level and not self._flow_level:
            self.flow_control_count += 1
        self._flow_level = level
        if not self.closed and self._control_intact():
            _FLOW_CONTROL.pack_into(self._control, self._flow_control_offset, level)

    @property
    def flow_control(self) -> int:
        """The flag as it is now in the control file."""
        if self.closed or not self._control_intact():
            return 0
        value: int = _FLOW_CONTROL.unpack_from(self._control, self._flow_control_offset)[0]
        return value

    def close(self) -> None:
        """Disconnect the client (server side): its pending work is cancelled, its
        sockets closed; the client sees HUP and its calls fail with CS_ERR_LIBRARY."""
        self._cancel_scope.cancel()


@attrs.frozen
class _Resources:
    """What one SOCKET-transport connection owns on this host."""

    directory: str
    control_path: str
    base: str
    control: mmap.mmap
    control_fd: int
    request_sock: socket.socket
    event_sock: socket.socket

    def control_intact(self) -> bool:
        """The client owns the control file and could truncate it: touching the mapping
        then would kill the daemon with SIGBUS. Check its size before every access."""
        try:
            return os.fstat(self.control_fd).st_size >= CONTROL_FILE_SIZE
        except OSError:
            return False

    def close(self) -> None:
        self.request_sock.close()
        self.event_sock.close()
        with contextlib.suppress(BufferError):
            self.control.close()
        with contextlib.suppress(OSError):
            os.close(self.control_fd)
        shutil.rmtree(self.directory, ignore_errors=True)


@attrs.frozen
class _ShmResources:
    """What one SHM-transport connection owns: three rings in one directory."""

    directory: str
    request: ShmRing
    response: ShmRing
    event: ShmRing

    def close(self) -> None:
        for ring in (self.request, self.response, self.event):
            ring.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class IpcServer:
    """The libqb IPC server of one service (SHM or SOCKET transport). Run :meth:`serve`."""

    def __init__(
        self,
        service_name: str,
        handler: RequestHandler,
        *,
        prefix: str = "",
        authorize: Authorizer | None = None,
        max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
        runtime_dir: str = "/dev/shm",  # noqa: S108 - where libqb puts them; mkdtemp below
        on_connect: Callable[[IpcConnection], None] | None = None,
        on_disconnect: Callable[[IpcConnection], None] | None = None,
        handshake_timeout: float = 10.0,
        max_event_backlog: int = 16 * 1024 * 1024,
        transport: Transport = "shm",
    ) -> None:
        name = prefix + service_name
        if transport not in ("shm", "socket"):
            raise IpcServerError(f"IPC transport {transport!r} is not 'shm' or 'socket'")
        if not service_name or "/" in name:
            raise IpcServerError(f"IPC service name {name!r} must be non-empty, without '/'")
        try:
            abstract_socket_address(name)
        except ValueError as exc:
            raise IpcServerError(str(exc)) from None
        if not 0 < max_msg_size <= MAX_MSG_SIZE_CAP:
            raise IpcServerError(f"max_msg_size {max_msg_size} is not in 1..{MAX_MSG_SIZE_CAP}")
        self.name = name
        self.transport: Transport = transport
        self.service_name = service_name
        self._handler = handler
        self._authorize: Authorizer = authorize if authorize is not None else AccessPolicy()
        self.max_msg_size = max_msg_size
        self._runtime_dir = runtime_dir
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._handshake_timeout = handshake_timeout
        self._max_event_backlog = max_event_backlog
        self._connections: dict[int, IpcConnection] = {}
        # One receive buffer for all connections: each datagram is copied out before the
        # next await, so they never share it in time.
        self._recv_buffer = bytearray(max_msg_size)
        self._ids = itertools.count(1)
        self._flow_control = 0
        self.stats = IpcServerStats()
        self._log = structlog.get_logger("ipc").bind(subsystem="IPC", service=name)

    @property
    def connections(self) -> tuple[IpcConnection, ...]:
        """The clients connected now, oldest first."""
        return tuple(self._connections.values())

    def set_flow_control(self, level: int) -> None:
        """Set the flow-control flag of every connection, present and future."""
        if not 0 <= level <= 2:
            raise ValueError("flow control level is 0, 1 or 2")
        self._flow_control = level
        for conn in self._connections.values():
            conn.set_flow_control(level)

    # ---------------------------------------------------------------- listening

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started()`` once clients can
        connect. On cancellation every connection is closed and its files removed."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.setblocking(False)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                listener.bind(abstract_socket_address(self.name))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise IpcServerError(
                        f"IPC socket {self.name!r} is already in use: another corosync "
                        "daemon runs in this network namespace"
                    ) from None
                raise IpcServerError(f"cannot bind IPC socket {self.name!r}: {exc}") from None
            listener.listen(_LISTEN_BACKLOG)
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    await trio.lowlevel.wait_readable(listener)
                    try:
                        conn_sock, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        # Out of fds and the like: keep serving the clients we have.
                        self._log.warning("ipc_accept_failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(self._run_client, conn_sock)
        finally:
            trio.lowlevel.notify_closing(listener)
            listener.close()

    # ---------------------------------------------------------------- handshake

    async def _run_client(self, setup: socket.socket) -> None:
        try:
            setup.setblocking(False)
            accepted: tuple[IpcConnection, _Resources | _ShmResources] | None = None
            with trio.move_on_after(self._handshake_timeout) as scope:
                accepted = await self._handshake(setup)
            if scope.cancelled_caught:
                self.stats.failed_handshakes += 1
                self._log.info("ipc_handshake_timeout")
            if accepted is None:
                return
            conn, resources = accepted
            try:
                await self._serve_connection(conn, setup, resources)
            finally:
                conn.closed = True
                self._connections.pop(conn.id, None)
                # Hang up first, so the client learns "closed" before its sends fail.
                with contextlib.suppress(OSError):
                    setup.shutdown(socket.SHUT_RDWR)
                resources.close()
                if conn._announced:
                    self._call_hook(self._on_disconnect, conn)
                self._log.debug("ipc_disconnected", conn=conn.id)
        finally:
            trio.lowlevel.notify_closing(setup)
            setup.close()

    async def _handshake(
        self, setup: socket.socket
    ) -> tuple[IpcConnection, _Resources | _ShmResources] | None:
        """Read the request, decide, create the transport, answer. None: refused or failed
        (the client has had its answer when one could be sent)."""
        setup.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        received = await _recv_connection_request(setup)
        if received is None:
            self.stats.failed_handshakes += 1
            return None
        data, creds = received
        try:
            request = decode_connection_request_untrusted(data)
        except MalformedMessage as exc:
            self.stats.failed_handshakes += 1
            self._log.warning("ipc_bad_connection_request", error=str(exc))
            await self._refuse(setup, -errno.EINVAL)
            return None
        verdict = self._authorize_safely(creds)
        if verdict != 0 or creds is None:
            self.stats.refused += 1
            self._log.info(
                "ipc_connection_refused",
                pid=creds.pid if creds else None,
                uid=creds.uid if creds else None,
                gid=creds.gid if creds else None,
                reason=os.strerror(-verdict) if verdict else "no credentials",
            )
            await self._refuse(setup, verdict or -errno.EACCES)
            return None
        conn_id = next(self._ids)
        max_msg_size = min(max(request.max_msg_size, self.max_msg_size), MAX_MSG_SIZE_CAP)
        resources: _Resources | _ShmResources
        try:
            if self.transport == "shm":
                resources = self._create_shm_resources(setup, creds, max_msg_size)
            else:
                resources = self._create_resources(setup, creds, conn_id, max_msg_size)
        except (OSError, ValueError, ShmRingError) as exc:
            self.stats.failed_handshakes += 1
            self._log.warning("ipc_connection_setup_failed", error=str(exc))
            code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.ENAMETOOLONG
            await self._refuse(setup, -code)
            return None
        try:
            if isinstance(resources, _ShmResources):
                answer = ConnectionResponse(
                    error=0,
                    connection_type=IpcType.SHM,
                    max_msg_size=max_msg_size,
                    connection=conn_id,
                    request=resources.request.name,
                    response=resources.response.name,
                    event=resources.event.name,
                )
                control, flow_offset = resources.request.flow_control_view, FLOW_CONTROL_OFFSET
                intact = resources.request.files_intact
            else:
                answer = ConnectionResponse(
                    error=0,
                    connection_type=IpcType.SOCKET,
                    max_msg_size=max_msg_size,
                    connection=conn_id,
                    request=resources.control_path,
                    response=resources.base,
                )
                control, flow_offset = resources.control, _REQUEST_FLOW_CONTROL_OFFSET
                intact = resources.control_intact
            if not await _send_all(setup, answer.encode()):
                self.stats.failed_handshakes += 1
                resources.close()
                return None
            setup.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        except BaseException:
            resources.close()
            raise
        conn = IpcConnection(
            conn_id=conn_id,
            service=self.name,
            credentials=creds,
            max_msg_size=max_msg_size,
            control=control,
            max_event_backlog=self._max_event_backlog,
            flow_control_offset=flow_offset,
            control_intact=intact,
        )
        conn.set_flow_control(self._flow_control)
        self.stats.accepted += 1
        self._connections[conn_id] = conn
        self._log.debug("ipc_connected", conn=conn_id, pid=creds.pid, uid=creds.uid)
        return conn, resources

    def _authorize_safely(self, creds: Credentials | None) -> int:
        try:
            verdict = int(self._authorize(creds))
        except Exception:
            self._log.exception("ipc_authorize_failed")
            return -errno.EACCES
        if verdict > 0:
            verdict = -verdict
        return verdict

    async def _refuse(self, setup: socket.socket, error: int) -> None:
        """libqb's refusal: the response with only its header filled in, then close."""
        await _send_all(setup, ConnectionResponse(error=error, max_msg_size=0).encode())

    def _make_directory(self, setup: socket.socket, creds: Credentials) -> str:
        """libqb's per-connection directory, mode 0770, owned by the client if we can."""
        directory = tempfile.mkdtemp(
            prefix=f"qb-{os.getpid()}-{creds.pid}-{setup.fileno()}-", dir=self._runtime_dir
        )
        try:
            os.chmod(directory, 0o770)  # noqa: S103 - libqb's mode; owned by the client
            with contextlib.suppress(OSError):
                os.chown(directory, creds.uid, creds.gid)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return directory

    def _create_shm_resources(
        self, setup: socket.socket, creds: Credentials, max_msg_size: int
    ) -> _ShmResources:
        """The directory and the three rings (six files) of one SHM connection, named
        as libqb names them (``D-request-<svc>`` ...). Raises OSError or ShmRingError."""
        directory = self._make_directory(setup, creds)
        rings: list[ShmRing] = []
        try:
            # One at a time: the rings made so far are closed if a later one fails.
            for kind in ("request", "response", "event"):
                name = f"{directory}/qb-{kind}-{self.name}"
                rings.append(ShmRing(name, max_msg_size, uid=creds.uid, gid=creds.gid))
        except BaseException:
            for ring in rings:
                ring.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return _ShmResources(directory, *rings)

    def _create_resources(
        self, setup: socket.socket, creds: Credentials, conn_id: int, max_msg_size: int
    ) -> _Resources:
        """The directory, control file and datagram sockets of one connection, owned by
        the client where files are concerned (best effort when we are not root).
        Raises OSError, or ValueError when a socket name would not fit sun_path."""
        directory = self._make_directory(setup, creds)
        opened: list[socket.socket | mmap.mmap] = []
        try:
            prefix = f"{directory}/qb"
            control_path = f"{prefix}-control-{self.name}"
            base = f"{prefix}-{self.name}"
            # Both socket names must fit sun_path: check before creating anything more.
            request_addr = abstract_socket_address(f"{base}-request")
            event_addr = abstract_socket_address(f"{base}-event-tx")
            abstract_socket_address(f"{base}-response")
            fd = os.open(control_path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, CONTROL_FILE_SIZE)
                with contextlib.suppress(OSError):
                    os.fchown(fd, creds.uid, creds.gid)
                os.fchmod(fd, 0o600)
                control = mmap.mmap(
                    fd, CONTROL_FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
                )
            except BaseException:
                os.close(fd)
                raise
            control_fd = fd  # kept open: control_intact() checks the size through it
            opened.append(control)
            request_sock = _bound_dgram(request_addr, max_msg_size)
            opened.append(request_sock)
            event_sock = _bound_dgram(event_addr, max_msg_size)
        except BaseException:
            for item in opened:
                item.close()
            if opened:
                os.close(control_fd)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return _Resources(
            directory, control_path, base, control, control_fd, request_sock, event_sock
        )

    # ------------------------------------------------------------------ serving

    async def _serve_connection(
        self, conn: IpcConnection, setup: socket.socket, res: _Resources | _ShmResources
    ) -> None:
        if isinstance(res, _ShmResources):
            await self._serve_shm_connection(conn, setup, res)
            return
        response_addr = abstract_socket_address(f"{res.base}-response")
        event_addr = abstract_socket_address(f"{res.base}-event")
        try:
            with conn._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_setup, setup, nursery.cancel_scope)
                    nursery.start_soon(
                        self._serve_requests, conn, res.request_sock, response_addr, nursery
                    )
                    nursery.start_soon(self._send_events, conn, res.event_sock, event_addr)
                    conn._announced = True
                    self._call_hook(self._on_connect, conn)
        finally:
            for sock in (res.request_sock, res.event_sock):
                trio.lowlevel.notify_closing(sock)

    async def _serve_shm_connection(
        self, conn: IpcConnection, setup: socket.socket, res: _ShmResources
    ) -> None:
        with conn._cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_shm_requests, conn, setup, res, nursery)
                nursery.start_soon(self._send_shm_events, conn, setup, res.event)
                conn._announced = True
                self._call_hook(self._on_connect, conn)

    async def _serve_shm_requests(
        self, conn: IpcConnection, setup: socket.socket, res: _ShmResources, nursery: trio.Nursery
    ) -> None:
        """The client commits a chunk, posts, then sends one byte on the setup socket;
        EOF there means it has gone. The bytes are only wake-ups: after each read of
        them (any number at once) the request ring is drained until it is empty, so no
        committed chunk waits for a byte that was already read.

        The fast path never enters trio's scheduler: when the next byte is already
        there (the client runs while we answer) it is read at once. The loop yields
        when it has to wait, and after every ``_BATCH`` messages or reads in a row, so
        one busy client cannot starve the others."""
        ring = res.request
        busy = 0
        while True:
            while True:
                try:
                    message = ring.read()
                except ShmRingError as exc:
                    self._log.warning("ipc_bad_shm_chunk", conn=conn.id, error=str(exc))
                    nursery.cancel_scope.cancel()
                    return
                if message is None:
                    break
                # read() refuses chunks over max_msg_size, so none is truncated.
                reply = await self._process(conn, message, truncated=False)
                if reply is _Action.DISCONNECT:
                    nursery.cancel_scope.cancel()
                    return
                if reply is not None and not await self._write_response(conn, res.response, reply):
                    nursery.cancel_scope.cancel()
                    return
                busy += 1
                if busy >= _BATCH:
                    busy = 0
                    await trio.lowlevel.checkpoint()
            while True:
                try:
                    data = setup.recv(4096)
                except BlockingIOError:
                    busy = 0
                    await trio.lowlevel.wait_readable(setup)
                    continue
                except OSError:
                    data = b""
                break
            if not data:
                nursery.cancel_scope.cancel()
                return
            busy += 1
            if busy >= _BATCH:
                busy = 0
                await trio.lowlevel.checkpoint()

    async def _write_response(self, conn: IpcConnection, ring: ShmRing, reply: bytes) -> bool:
        """Put one response in the ring; False when the client must be dropped: its
        files were shrunk, or it has not made room in time (a libqb client reads each
        response before its next request, so only a broken client fills the ring)."""
        # The first try needs no timeout scope (entering one costs more than the write).
        written = self._try_write_response(conn, ring, reply)
        if written is not None:
            return written
        with trio.move_on_after(self._handshake_timeout):
            while written is None:
                conn.send_retries += 1
                await trio.sleep(_RING_FULL_RETRY)
                written = self._try_write_response(conn, ring, reply)
            return written
        self._log.warning("ipc_response_ring_full", conn=conn.id)
        return False

    def _try_write_response(self, conn: IpcConnection, ring: ShmRing, reply: bytes) -> bool | None:
        """True: written; None: no room yet; False: the ring is broken (logged)."""
        try:
            if not ring.write(reply):
                return None
        except ShmRingError as exc:
            self._log.warning("ipc_bad_shm_ring", conn=conn.id, error=str(exc))
            return False
        conn.responses += 1
        return True

    async def _send_shm_events(
        self, conn: IpcConnection, setup: socket.socket, ring: ShmRing
    ) -> None:
        """Each event goes into the event ring, then one byte per event on the setup
        socket wakes the client's poll (its dispatch reads one chunk and one byte). The
        events queued together are written first and announced with one send: the
        bytes only ever follow their chunks, and a burst costs one system call."""
        delayed = False
        while True:
            if not conn._events:
                conn._event_wakeup = trio.Event()
                await conn._event_wakeup.wait()
                continue
            written = 0
            while conn._events:
                message = conn._events[0]
                try:
                    if not ring.write(message):
                        break
                except ShmRingError as exc:
                    self._log.warning("ipc_bad_shm_ring", conn=conn.id, error=str(exc))
                    self.stats.events_dropped += len(conn._events)
                    conn.close()
                    return
                conn._events.popleft()
                conn._event_bytes -= len(message)
                self.stats.events_sent += 1
                conn.events_sent += 1
                conn.delayed_events += delayed
                delayed = False
                written += 1
            if written:
                if not await _send_all(setup, b"\0" * written):
                    conn.close()
                    return
                continue
            conn.send_retries += 1
            delayed = True
            await trio.sleep(_RING_FULL_RETRY)  # the client has not dispatched yet

    async def _watch_setup(self, setup: socket.socket, scope: trio.CancelScope) -> None:
        """The client is gone when its stream socket reads EOF (or fails)."""
        while True:
            await trio.lowlevel.wait_readable(setup)
            try:
                data = setup.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                break
            if not data:
                break
            # SOCKET mode carries nothing here; a stray byte is dropped.
        scope.cancel()

    async def _serve_requests(
        self,
        conn: IpcConnection,
        sock: socket.socket,
        response_addr: bytes,
        nursery: trio.Nursery,
    ) -> None:
        connected = False
        if len(self._recv_buffer) < conn.max_msg_size:
            self._recv_buffer = bytearray(conn.max_msg_size)
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(_BATCH):
                buffer = self._recv_buffer
                try:
                    nbytes, _, flags, sender = sock.recvmsg_into([buffer], 0, 0)
                except BlockingIOError:
                    break
                if nbytes > conn.max_msg_size:
                    flags |= socket.MSG_TRUNC  # larger than this client may send
                data = bytes(memoryview(buffer)[: min(nbytes, conn.max_msg_size)])
                if sender != response_addr:
                    # Only the client's own response socket may talk to this connection.
                    self.stats.foreign_datagrams += 1
                    continue
                if not connected:
                    # libqb connects on first use; after that no other peer can send here.
                    sock.connect(response_addr)
                    connected = True
                reply = await self._process(conn, data, truncated=bool(flags & socket.MSG_TRUNC))
                if reply is _Action.DISCONNECT:
                    nursery.cancel_scope.cancel()
                    return
                if reply is not None:
                    if not await _send_datagram(sock, reply, conn):
                        nursery.cancel_scope.cancel()
                        return
                    conn.responses += 1
            await trio.lowlevel.checkpoint()

    async def _process(
        self, conn: IpcConnection, data: bytes, *, truncated: bool
    ) -> bytes | _Action | None:
        """The response to one request datagram (None: none is due)."""
        if not data:
            return _Action.DISCONNECT
        size = -1
        if len(data) >= REQUEST_HEADER_SIZE:
            request_id, size = _REQUEST_ID_SIZE.unpack_from(data)
            if request_id == QB_IPC_MSG_DISCONNECT or size == 0:
                return _Action.DISCONNECT
        if truncated:
            return self._malformed(conn, CsErrorCode.TOO_BIG, "request over the size limit")
        if size != len(data):
            # The decoder words the reason (the header checks above are its own, inlined
            # for every request's sake).
            try:
                request_id = decode_request_header_untrusted(data).id
            except MalformedMessage as exc:
                return self._malformed(conn, CsErrorCode.INVALID_PARAM, str(exc))
        self.stats.requests += 1
        conn.requests += 1
        try:
            reply = await self._handler(conn, request_id, data)
        except MalformedMessage as exc:
            return self._malformed(conn, CsErrorCode.INVALID_PARAM, str(exc))
        except CsError as exc:
            conn.overloads += exc.code is CsErrorCode.TRY_AGAIN
            return encode_error_response(exc.code)
        except Exception:
            self.stats.handler_errors += 1
            self._log.exception("ipc_handler_failed", conn=conn.id, request_id=request_id)
            return encode_error_response(CsErrorCode.LIBRARY)
        if reply is None:
            return None
        try:
            error = _response_error(reply)
        except MalformedMessage as exc:
            self.stats.handler_errors += 1
            self._log.error("ipc_handler_bad_response", request_id=request_id, error=str(exc))
            return encode_error_response(CsErrorCode.LIBRARY)
        if len(reply) > conn.max_msg_size:
            self.stats.handler_errors += 1
            self._log.error("ipc_handler_response_too_big", request_id=request_id, size=len(reply))
            return encode_error_response(CsErrorCode.TOO_BIG)
        conn.overloads += error == CsErrorCode.TRY_AGAIN
        return bytes(reply)

    def _malformed(self, conn: IpcConnection, code: CsErrorCode, why: str) -> bytes:
        self.stats.malformed_requests += 1
        conn.invalid_requests += 1
        # One warning per connection; a misbehaving client must not flood the log.
        log = self._log.warning if conn.requests == 0 else self._log.debug
        log("ipc_malformed_request", conn=conn.id, pid=conn.credentials.pid, error=why)
        conn.requests += 1
        return encode_error_response(code)

    async def _send_events(
        self, conn: IpcConnection, sock: socket.socket, event_addr: bytes
    ) -> None:
        connected = False
        while True:
            if not conn._events:
                conn._event_wakeup = trio.Event()
                await conn._event_wakeup.wait()
                continue
            if not connected:
                try:
                    sock.connect(event_addr)
                    connected = True
                except (ConnectionRefusedError, FileNotFoundError):
                    # The client binds its event socket only after the handshake.
                    await trio.sleep(_EVENT_CONNECT_RETRY)
                    continue
            message = conn._events[0]
            retries = conn.send_retries
            if not await _send_datagram(sock, message, conn):
                self.stats.events_dropped += len(conn._events)
                conn.close()
                return
            conn._events.popleft()
            conn._event_bytes -= len(message)
            self.stats.events_sent += 1
            conn.events_sent += 1
            conn.delayed_events += conn.send_retries != retries

    def _call_hook(self, hook: Callable[[IpcConnection], None] | None, conn: IpcConnection) -> None:
        if hook is None:
            return
        try:
            hook(conn)
        except Exception:
            self._log.exception("ipc_hook_failed", conn=conn.id)


class _Action(enum.Enum):
    DISCONNECT = "disconnect"  # the client said goodbye (DISCONNECT id or size 0)


def _response_error(reply: bytes) -> int:
    """The error field of a whole response message; MalformedMessage unless its header
    gives its length (decode_response_header_untrusted's checks, inlined for the common
    case: every response passes here)."""
    if len(reply) >= RESPONSE_HEADER_SIZE:
        _, size, error = _RESPONSE_HEADER.unpack_from(reply)
        if size == len(reply):
            result: int = error
            return result
    return decode_response_header_untrusted(reply).error


async def _recv_connection_request(
    setup: socket.socket,
) -> tuple[bytes, Credentials | None] | None:
    """The 24-byte request and the kernel's credentials of its sender; None on EOF."""
    chunks: list[bytes] = []
    received = 0
    creds: Credentials | None = None
    while received < CONNECTION_REQUEST_SIZE:
        await trio.lowlevel.wait_readable(setup)
        try:
            data, ancillary, _, _ = setup.recvmsg(CONNECTION_REQUEST_SIZE - received, _CREDS_SPACE)
        except BlockingIOError:
            continue
        except OSError:
            return None
        if not data:
            return None
        for level, kind, payload in ancillary:
            if creds is None and level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                with contextlib.suppress(MalformedMessage):
                    creds = decode_credentials_untrusted(payload)
        chunks.append(data)
        received += len(data)
    return b"".join(chunks), creds


async def _send_all(sock: socket.socket, data: bytes) -> bool:
    """Write all of ``data`` to a stream socket; False if the peer has gone."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        except OSError:
            return False
        view = view[sent:]
    return True


async def _send_datagram(
    sock: socket.socket, message: bytes, conn: IpcConnection | None = None
) -> bool:
    """Send one datagram on a connected socket, waiting while its buffer is full
    (counted in ``conn.send_retries``); False if the peer has gone."""
    while True:
        try:
            sock.send(message)
            return True
        except BlockingIOError:
            if conn is not None:
                conn.send_retries += 1
            await trio.lowlevel.wait_writable(sock)
        except OSError:
            return False


def _bound_dgram(address: bytes, buffer_size: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, buffer_size)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
