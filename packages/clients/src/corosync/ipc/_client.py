"""A blocking libqb IPC client of both transports (reference/libqb-ipc.md 1-3).

:meth:`IpcClient.connect` performs the handshake on the service's abstract stream
socket and then follows the server's choice of transport (libqb's handshake lets the
client express no preference, section 1.4): SHM (real corosync's default and ours) maps
the three rings the answer names (:mod:`._client_shm`); SOCKET opens the control file
and the two datagram sockets (:mod:`._client_socket`). Either way the public methods
are the same. Responses carry no request id: they are matched purely by order, so a
request that timed out leaves a late response behind, which the next request skips.

The stream socket stays open for the life of the connection: EOF or HUP on it means the
server has gone, and every call then fails with ``CS_ERR_LIBRARY``, never a hang.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
from types import TracebackType

from corosync._errors import CsError, CsErrorCode, MalformedMessage, cs_error_from_errno
from corosync.ipc._client_link import Link, LinkState, deadline_after, remaining_ms
from corosync.ipc._client_shm import ShmTransport
from corosync.ipc._client_socket import SocketTransport
from corosync.ipc._headers import (
    CONNECTION_RESPONSE_SIZE,
    DEFAULT_MAX_MSG_SIZE,
    ConnectionRequest,
    ConnectionResponse,
    Credentials,
    IpcType,
    abstract_socket_address,
    decode_connection_response_untrusted,
    decode_credentials_untrusted,
    decode_dispatch_header_untrusted,
    decode_response_header_untrusted,
)
from corosync.ipc._shm import ShmRingError

__all__ = ["IpcClient"]

_CREDS_SPACE = socket.CMSG_SPACE(12)
# close() waits this long for a call in another thread to leave the transport (it has
# been woken) before it unmaps; past it the mappings are leaked rather than risk SIGSEGV.
_CLOSE_GRACE = 5.0


class IpcClient:
    """One connection to one service (``cmap``, ``cfg``, ...) over SHM or SOCKET,
    whichever the server chose (:attr:`transport`).

    Use :meth:`connect`; close with :meth:`close` or a ``with`` block. :meth:`request`
    may be called from several threads (calls are serialised); :meth:`receive_event`
    may run in another thread at the same time, and :meth:`close` from any thread
    wakes both.
    """

    def __init__(
        self,
        *,
        link: Link,
        transport: SocketTransport | ShmTransport,
        max_msg_size: int,
        server: Credentials | None,
    ) -> None:
        self._link = link
        self._transport = transport
        self._max_msg_size = max_msg_size
        self._server = server
        self._request_lock = threading.Lock()
        self._event_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._stale_responses = 0  # responses still owed to requests that timed out

    # ------------------------------------------------------------------ connect

    @classmethod
    def connect(
        cls,
        service_name: str,
        *,
        prefix: str = "",
        max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
        timeout: float | None = 10.0,
    ) -> IpcClient:
        """Connect to the service socket ``prefix + service_name``.

        ``prefix`` lets several of our daemons share one host (and network namespace).
        ``timeout`` bounds the handshake. The transport is the server's choice (libqb
        clients cannot ask for one). Failures raise :class:`CsError`: LIBRARY when
        nothing listens, ACCESS when the server refuses our credentials, TRY_AGAIN when
        it is not ready, NOT_SUPPORTED when it wants a transport we do not speak.
        """
        name = prefix + service_name
        try:
            address = abstract_socket_address(name)
        except ValueError as exc:
            raise CsError(CsErrorCode.INVALID_PARAM, str(exc)) from None
        deadline = deadline_after(timeout)
        setup = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            answer, server = _handshake(setup, name, address, timeout, deadline, max_msg_size)
            link = Link(name, setup)
            transport = _open_transport(link, answer, server)
        except BaseException:
            setup.close()
            raise
        return cls(link=link, transport=transport, max_msg_size=answer.max_msg_size, server=server)

    # --------------------------------------------------------------- properties

    @property
    def service(self) -> str:
        """The socket name connected to (prefix included)."""
        return self._link.service

    @property
    def transport(self) -> IpcType:
        """The transport the server chose: :attr:`IpcType.SHM` or :attr:`IpcType.SOCKET`."""
        return self._transport.kind

    @property
    def max_msg_size(self) -> int:
        """The largest message either side may send, as agreed in the handshake."""
        return self._max_msg_size

    @property
    def server_credentials(self) -> Credentials | None:
        """The server process's pid, uid and gid from the handshake (None if the
        kernel gave none)."""
        return self._server

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._link.closed

    def fileno(self) -> int:
        """The descriptor that polls readable when an event waits (``cmap_fd_get`` and
        friends): the setup socket over SHM, the event socket over SOCKET. It also
        polls readable when the server has gone (the next call then fails)."""
        if self._link.closed:
            raise self._link.closed_error()
        return self._transport.fileno()

    def dispatch_filenos(self) -> tuple[int, ...]:
        """Every descriptor whose readability means :meth:`receive_event` has work: an
        event, or the server gone. Over SHM that is :meth:`fileno` alone; over SOCKET
        the event socket does not report a dead server, so the setup socket is added."""
        if self._link.closed:
            raise self._link.closed_error()
        if self._transport.kind is IpcType.SHM:
            return (self._transport.fileno(),)
        return (self._transport.fileno(), self._link.setup.fileno())

    # --------------------------------------------------------------- messaging

    def request(
        self, message: bytes, *, timeout: float | None = None, fc_enable_max: int = 1
    ) -> bytes:
        """Send one whole request message and return the whole response message.

        ``timeout`` None waits as long as the server is alive, as corosync's libraries
        do. Raises CsError: TRY_AGAIN under the server's flow control, TIMEOUT when no
        response came in time, TOO_BIG for an oversized message, LIBRARY when the server
        has gone, MESSAGE_ERROR for a response that is not a valid message.
        """
        deadline = deadline_after(timeout)
        with self._request_lock:
            self._send(message, deadline, fc_enable_max)
            return self._receive_response(deadline, timeout)

    def send(self, message: bytes, *, timeout: float | None = None, fc_enable_max: int = 1) -> None:
        """Send a request that gets no response (cpg mcast)."""
        with self._request_lock:
            self._send(message, deadline_after(timeout), fc_enable_max)

    def receive_event(self, timeout: float | None = None) -> bytes | None:
        """The next dispatch event as a whole message, or None if none came within
        ``timeout`` seconds (0 polls without waiting; None waits for ever)."""
        deadline = deadline_after(timeout)
        with self._event_lock:
            data = self._transport.receive_event(deadline)
        if data is None:
            return None
        try:
            decode_dispatch_header_untrusted(data)
        except MalformedMessage as exc:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"bad event from the server: {exc}") from None
        return data

    def close(self) -> None:
        """Leave: shut the setup socket down (libqb sends no message; the server sees
        it close), wake calls blocked in other threads (they raise BAD_HANDLE), then
        release the transport. Closing twice is harmless."""
        with self._close_lock:
            if self._link.closed:
                return
            self._link.state = LinkState.CLOSED
        self._link.wake()
        self._transport.wake()
        # Unmap only when no call is inside the transport (they were just woken).
        request_free = self._request_lock.acquire(timeout=_CLOSE_GRACE)
        event_free = self._event_lock.acquire(timeout=_CLOSE_GRACE)
        try:
            self._transport.close(unmap=request_free and event_free)
            self._link.setup.close()
        finally:
            if event_free:
                self._event_lock.release()
            if request_free:
                self._request_lock.release()

    def __enter__(self) -> IpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _send(self, message: bytes, deadline: float | None, fc_enable_max: int) -> None:
        self._link.check_usable()
        if len(message) > self._max_msg_size:
            raise CsError(
                CsErrorCode.TOO_BIG,
                f"message of {len(message)} bytes exceeds the IPC limit of {self._max_msg_size}",
            )
        self._transport.send(message, deadline, fc_enable_max)

    def _receive_response(self, deadline: float | None, timeout: float | None) -> bytes:
        while True:
            data = self._transport.receive_response(deadline)
            if data is None:
                # The response may still come: skip it before the next one.
                self._stale_responses += 1
                raise CsError(
                    CsErrorCode.TIMEOUT,
                    f"no response from IPC service {self.service!r} within {timeout} s",
                )
            if self._stale_responses:
                self._stale_responses -= 1
                continue
            try:
                decode_response_header_untrusted(data)
            except MalformedMessage as exc:
                raise CsError(
                    CsErrorCode.MESSAGE_ERROR, f"bad response from the server: {exc}"
                ) from None
            return data


def _handshake(
    setup: socket.socket,
    name: str,
    address: bytes,
    timeout: float | None,
    deadline: float | None,
    max_msg_size: int,
) -> tuple[ConnectionResponse, Credentials | None]:
    """Connect, send the 24-byte request, read and check the answer."""
    try:
        setup.settimeout(timeout)
        setup.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        raise CsError(
            CsErrorCode.LIBRARY,
            f"cannot connect to IPC service {name!r}: nothing is listening "
            "(is the corosync daemon running in this network namespace?)",
        ) from None
    except TimeoutError:
        raise CsError(
            CsErrorCode.TIMEOUT, f"IPC service {name!r} did not accept the connection"
        ) from None
    except OSError as exc:
        raise CsError(
            cs_error_from_errno(exc.errno or errno.EIO),
            f"cannot connect to IPC service {name!r}: {exc.strerror}",
        ) from None
    setup.setblocking(False)
    setup.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        setup.sendall(ConnectionRequest(max_msg_size).encode())
    except OSError as exc:
        raise CsError(
            CsErrorCode.LIBRARY, f"IPC service {name!r} handshake failed: {exc}"
        ) from None
    data, server = _recv_handshake(setup, name, deadline)
    setup.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
    try:
        answer = decode_connection_response_untrusted(data)
    except MalformedMessage as exc:
        raise CsError(
            CsErrorCode.LIBRARY, f"IPC service {name!r} sent a bad handshake: {exc}"
        ) from None
    if answer.error != 0:
        raise CsError(
            cs_error_from_errno(answer.error),
            f"IPC service {name!r} refused the connection: {os.strerror(-answer.error)}",
        )
    if answer.connection_type not in (IpcType.SOCKET, IpcType.SHM):
        known = answer.connection_type in set(IpcType)
        raise CsError(
            CsErrorCode.NOT_SUPPORTED if known else CsErrorCode.INVALID_PARAM,
            f"IPC service {name!r} chose transport {answer.connection_type} "
            f"({IpcType(answer.connection_type).name if known else 'unknown'}); "
            "this client speaks SHM and SOCKET",
        )
    if answer.max_msg_size <= 0:
        raise CsError(
            CsErrorCode.LIBRARY, f"IPC service {name!r} answered max_msg_size 0 in the handshake"
        )
    return answer, server


def _open_transport(
    link: Link, answer: ConnectionResponse, server: Credentials | None
) -> SocketTransport | ShmTransport:
    """Open what the server's answer names, for the transport it chose."""
    try:
        if answer.connection_type == IpcType.SHM:
            names = (answer.request, answer.response, answer.event)
            return ShmTransport(link, names, answer.max_msg_size, server)
        return SocketTransport(link, answer.request, answer.response, answer.max_msg_size)
    except (OSError, ValueError, ShmRingError) as exc:
        raise CsError(
            CsErrorCode.LIBRARY,
            f"cannot open the transport of IPC service {link.service!r}: {exc}",
        ) from None


def _recv_handshake(
    setup: socket.socket, name: str, deadline: float | None
) -> tuple[bytes, Credentials | None]:
    """Read the whole connection response and the server's credentials."""
    chunks: list[bytes] = []
    received = 0
    server: Credentials | None = None
    poller = select.poll()
    poller.register(setup, select.POLLIN)
    while received < CONNECTION_RESPONSE_SIZE:
        try:
            data, ancillary, _, _ = setup.recvmsg(CONNECTION_RESPONSE_SIZE - received, _CREDS_SPACE)
        except BlockingIOError:
            if not poller.poll(remaining_ms(deadline)):
                raise CsError(
                    CsErrorCode.TIMEOUT, f"IPC service {name!r} did not answer the handshake"
                ) from None
            continue
        except OSError as exc:
            raise CsError(
                CsErrorCode.LIBRARY, f"IPC service {name!r} handshake failed: {exc.strerror}"
            ) from None
        if not data:
            raise CsError(
                CsErrorCode.LIBRARY, f"IPC service {name!r} closed the connection in the handshake"
            )
        for level, kind, payload in ancillary:
            if server is None and level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                with contextlib.suppress(MalformedMessage):
                    server = decode_credentials_untrusted(payload)
        chunks.append(data)
        received += len(data)
    return b"".join(chunks), server
