"""A blocking libqb IPC client, SOCKET transport (reference/libqb-ipc.md sections 1 and 2).

:meth:`IpcClient.connect` performs the handshake on the service's abstract stream
socket, then opens what the server's answer names: the 24-byte control file (flow
control) and two connected datagram sockets, ``B-response`` (requests out, responses in)
and ``B-event`` (dispatch events in). One IPC message is one datagram. Responses carry
no request id: they are matched purely by order, so a request that timed out leaves a
late response behind, which the next request skips.

The stream socket stays open only to tell whether the server is alive: it reads EOF or
HUP when the server goes away, and every call then fails with ``CS_ERR_LIBRARY``.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import socket
import struct
import threading
import time
from types import TracebackType

from corosync._errors import CsError, CsErrorCode, MalformedMessage, cs_error_from_errno
from corosync.ipc._headers import (
    CONNECTION_RESPONSE_SIZE,
    DEFAULT_MAX_MSG_SIZE,
    ConnectionRequest,
    Credentials,
    IpcType,
    abstract_socket_address,
    decode_connection_response_untrusted,
    decode_credentials_untrusted,
    decode_dispatch_header_untrusted,
    decode_response_header_untrusted,
)

__all__ = ["IpcClient"]

_CONTROL_SIZE = 24
_REQUEST_FLOW_CONTROL = struct.Struct("=i")
_REQUEST_FLOW_CONTROL_OFFSET = 4  # {int32 sent; int32 flow_control} of the request channel
_CREDS_SPACE = socket.CMSG_SPACE(12)
_POLL_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def _remaining_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def _dgram_socket(local: str, remote: str, buffer_size: int) -> socket.socket:
    """A datagram socket bound to the abstract ``local`` and connected to ``remote``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, buffer_size)
        sock.bind(abstract_socket_address(local))
        sock.connect(abstract_socket_address(remote))
    except BaseException:
        sock.close()
        raise
    return sock


class IpcClient:
    """One connection to one service (``cmap``, ``cfg``, ...) over the SOCKET transport.

    Use :meth:`connect`; close with :meth:`close` or a ``with`` block. :meth:`request`
    may be called from several threads (calls are serialised); :meth:`receive_event`
    may run in another thread at the same time.
    """

    def __init__(
        self,
        *,
        service: str,
        setup: socket.socket,
        request_sock: socket.socket,
        event_sock: socket.socket,
        control: mmap.mmap,
        max_msg_size: int,
        server: Credentials | None,
    ) -> None:
        self._service = service
        self._setup = setup
        self._request_sock = request_sock
        self._event_sock = event_sock
        self._control = control
        self._max_msg_size = max_msg_size
        self._server = server
        self._request_lock = threading.Lock()
        self._event_lock = threading.Lock()
        # Receive buffers reused under their lock: allocating max_msg_size per call is slow.
        self._response_buffer = bytearray(max_msg_size)
        self._event_buffer = bytearray(max_msg_size)
        self._stale_responses = 0  # responses still owed to requests that timed out
        self._disconnected = False
        self._closed = False

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
        ``timeout`` bounds the handshake. Failures raise :class:`CsError`: LIBRARY when
        nothing listens, ACCESS when the server refuses our credentials, TRY_AGAIN when
        it is not ready, NOT_SUPPORTED when it wants a transport we do not speak.
        """
        name = prefix + service_name
        try:
            address = abstract_socket_address(name)
        except ValueError as exc:
            raise CsError(CsErrorCode.INVALID_PARAM, str(exc)) from None
        deadline = _deadline(timeout)
        setup = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        opened: list[socket.socket | mmap.mmap] = [setup]
        try:
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
            if answer.connection_type != IpcType.SOCKET:
                known = answer.connection_type in set(IpcType)
                raise CsError(
                    CsErrorCode.NOT_SUPPORTED if known else CsErrorCode.INVALID_PARAM,
                    f"IPC service {name!r} chose transport {answer.connection_type} "
                    f"({IpcType(answer.connection_type).name if known else 'unknown'}); "
                    "this client speaks only SOCKET",
                )
            try:
                control = _map_control(answer.request)
                opened.append(control)
                base = answer.response
                buffer_size = answer.max_msg_size
                request_sock = _dgram_socket(f"{base}-response", f"{base}-request", buffer_size)
                opened.append(request_sock)
                event_sock = _dgram_socket(f"{base}-event", f"{base}-event-tx", buffer_size)
                opened.append(event_sock)
            except (OSError, ValueError) as exc:
                raise CsError(
                    CsErrorCode.LIBRARY,
                    f"cannot open the transport of IPC service {name!r}: {exc}",
                ) from None
        except BaseException:
            for item in reversed(opened):
                item.close()
            raise
        return cls(
            service=name,
            setup=setup,
            request_sock=request_sock,
            event_sock=event_sock,
            control=control,
            max_msg_size=answer.max_msg_size,
            server=server,
        )

    # --------------------------------------------------------------- properties

    @property
    def service(self) -> str:
        """The socket name connected to (prefix included)."""
        return self._service

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
        return self._closed

    def fileno(self) -> int:
        """The event socket: readable when an event waits (``cmap_fd_get`` and friends)."""
        self._check_usable()
        return self._event_sock.fileno()

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
        deadline = _deadline(timeout)
        with self._request_lock:
            self._send(message, deadline, fc_enable_max)
            return self._receive_response(deadline, timeout)

    def send(self, message: bytes, *, timeout: float | None = None, fc_enable_max: int = 1) -> None:
        """Send a request that gets no response (cpg mcast)."""
        with self._request_lock:
            self._send(message, _deadline(timeout), fc_enable_max)

    def receive_event(self, timeout: float | None = None) -> bytes | None:
        """The next dispatch event as a whole message, or None if none came within
        ``timeout`` seconds (0 polls without waiting; None waits for ever)."""
        deadline = _deadline(timeout)
        with self._event_lock:
            data = self._receive(self._event_sock, self._event_buffer, deadline)
        if data is None:
            return None
        try:
            decode_dispatch_header_untrusted(data)
        except MalformedMessage as exc:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"bad event from the server: {exc}") from None
        return data

    def close(self) -> None:
        """Leave: close the sockets and unmap the control file. libqb sends no message;
        the server sees the stream socket close. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        for sock in (self._event_sock, self._request_sock, self._setup):
            sock.close()
        with contextlib.suppress(BufferError):
            self._control.close()

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

    def _check_usable(self) -> None:
        if self._closed:
            raise CsError(CsErrorCode.BAD_HANDLE, f"IPC connection to {self._service!r} is closed")
        if self._disconnected:
            raise CsError(
                CsErrorCode.LIBRARY, f"IPC service {self._service!r} closed the connection"
            )

    def _send(self, message: bytes, deadline: float | None, fc_enable_max: int) -> None:
        self._check_usable()
        if len(message) > self._max_msg_size:
            raise CsError(
                CsErrorCode.TOO_BIG,
                f"message of {len(message)} bytes exceeds the IPC limit of {self._max_msg_size}",
            )
        (flow,) = _REQUEST_FLOW_CONTROL.unpack_from(self._control, _REQUEST_FLOW_CONTROL_OFFSET)
        if 0 < flow <= fc_enable_max:
            raise CsError(
                CsErrorCode.TRY_AGAIN, f"IPC service {self._service!r} applies flow control"
            )
        while True:
            try:
                self._request_sock.send(message)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._lost("send to", exc) from None
            if not self._wait(self._request_sock, select.POLLOUT, deadline):
                raise CsError(
                    CsErrorCode.TRY_AGAIN, f"IPC service {self._service!r} is not taking requests"
                )

    def _receive_response(self, deadline: float | None, timeout: float | None) -> bytes:
        while True:
            data = self._receive(self._request_sock, self._response_buffer, deadline)
            if data is None:
                # The response may still come: skip it before the next one.
                self._stale_responses += 1
                raise CsError(
                    CsErrorCode.TIMEOUT,
                    f"no response from IPC service {self._service!r} within {timeout} s",
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

    def _receive(
        self, sock: socket.socket, buffer: bytearray, deadline: float | None
    ) -> bytes | None:
        """One datagram from ``sock`` (through ``buffer``), or None at the deadline."""
        self._check_usable()
        while True:
            try:
                nbytes, _, flags, _ = sock.recvmsg_into([buffer])
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._lost("receive from", exc) from None
            else:
                if flags & socket.MSG_TRUNC:
                    raise CsError(
                        CsErrorCode.MESSAGE_ERROR,
                        f"IPC service {self._service!r} sent a message over the size limit",
                    )
                return bytes(memoryview(buffer)[:nbytes])
            if not self._wait(sock, select.POLLIN, deadline):
                return None

    def _lost(self, action: str, exc: OSError) -> CsError:
        """The error for a failed datagram call: the connection is unusable from now."""
        self._disconnected = True
        ready = select.poll()
        ready.register(self._setup, select.POLLIN)
        events = dict(ready.poll(0)).get(self._setup.fileno(), 0)
        if events and self._server_gone(events):
            detail = f"IPC service {self._service!r} closed the connection"
        else:
            detail = f"cannot {action} IPC service {self._service!r}: {exc.strerror}"
        return CsError(CsErrorCode.LIBRARY, detail)

    def _wait(self, sock: socket.socket, events: int, deadline: float | None) -> bool:
        """Wait until ``sock`` is ready for ``events``; False at the deadline. Raises
        CsError(LIBRARY) as soon as the server closes the setup socket."""
        poller = select.poll()
        poller.register(sock, events)
        poller.register(self._setup, select.POLLIN)
        while True:
            ready = dict(poller.poll(_remaining_ms(deadline)))
            if self._closed:
                raise CsError(
                    CsErrorCode.BAD_HANDLE, f"IPC connection to {self._service!r} is closed"
                )
            setup_events = ready.get(self._setup.fileno(), 0)
            if setup_events and self._server_gone(setup_events):
                self._disconnected = True
                raise CsError(
                    CsErrorCode.LIBRARY, f"IPC service {self._service!r} closed the connection"
                )
            if ready.get(sock.fileno(), 0):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _server_gone(self, events: int) -> bool:
        if events & _POLL_ERR:
            return True
        try:
            # The server never writes here in SOCKET mode: drop anything it sends.
            return self._setup.recv(4096) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


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
            if not poller.poll(_remaining_ms(deadline)):
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


def _map_control(path: str) -> mmap.mmap:
    """Map the 24-byte control file the server created for this connection."""
    if not path.startswith("/"):
        raise ValueError(f"control file path {path!r} is not absolute")
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size < _CONTROL_SIZE:
            os.ftruncate(fd, _CONTROL_SIZE)
        return mmap.mmap(fd, _CONTROL_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
