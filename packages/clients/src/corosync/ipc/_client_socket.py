"""The client side of libqb's SOCKET transport (reference/libqb-ipc.md section 2).

The server's answer names a 24-byte control file (flow control) and the base ``B`` of
two datagram socket pairs: ``B-response`` (ours; requests out, responses in, connected
to the server's ``B-request``) and ``B-event`` (ours; events in, connected to
``B-event-tx``). One IPC message is one datagram. The setup socket carries nothing in
this mode; it only tells whether the server is alive.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import socket
import struct

from corosync._errors import CsError, CsErrorCode
from corosync.ipc._client_link import Link, remaining_ms
from corosync.ipc._headers import IpcType, abstract_socket_address

__all__ = ["SocketTransport"]

_CONTROL_SIZE = 24
_REQUEST_FLOW_CONTROL = struct.Struct("=i")
_REQUEST_FLOW_CONTROL_OFFSET = 4  # {int32 sent; int32 flow_control} of the request channel
_POLL_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


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


class SocketTransport:
    """Requests, responses and events of one SOCKET-transport connection."""

    kind = IpcType.SOCKET

    def __init__(self, link: Link, control_path: str, base: str, max_msg_size: int) -> None:
        """Open what the answer names. Raises OSError or ValueError."""
        self._link = link
        self._control = _map_control(control_path)
        opened: list[socket.socket] = []
        try:
            opened.append(_dgram_socket(f"{base}-response", f"{base}-request", max_msg_size))
            opened.append(_dgram_socket(f"{base}-event", f"{base}-event-tx", max_msg_size))
        except BaseException:
            for sock in opened:
                sock.close()
            self._control.close()
            raise
        self._request_sock, self._event_sock = opened
        # Receive buffers reused under the caller's lock: allocating max_msg_size per
        # call is slow.
        self._response_buffer = bytearray(max_msg_size)
        self._event_buffer = bytearray(max_msg_size)

    def fileno(self) -> int:
        """The event socket: readable when an event waits."""
        return self._event_sock.fileno()

    def send(self, message: bytes, deadline: float | None, fc_enable_max: int) -> None:
        link = self._link
        link.check_usable()
        (flow,) = _REQUEST_FLOW_CONTROL.unpack_from(self._control, _REQUEST_FLOW_CONTROL_OFFSET)
        if 0 < flow <= fc_enable_max:
            raise CsError(
                CsErrorCode.TRY_AGAIN, f"IPC service {link.service!r} applies flow control"
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
                    CsErrorCode.TRY_AGAIN, f"IPC service {link.service!r} is not taking requests"
                )

    def receive_response(self, deadline: float | None) -> bytes | None:
        return self._receive(self._request_sock, self._response_buffer, deadline)

    def receive_event(self, deadline: float | None) -> bytes | None:
        return self._receive(self._event_sock, self._event_buffer, deadline)

    def wake(self) -> None:
        """Nothing beyond the setup socket's shutdown: every wait polls it."""

    def close(self, *, unmap: bool) -> None:
        for sock in (self._event_sock, self._request_sock):
            sock.close()
        if unmap:
            with contextlib.suppress(BufferError):
                self._control.close()

    # ---------------------------------------------------------------- internals

    def _receive(
        self, sock: socket.socket, buffer: bytearray, deadline: float | None
    ) -> bytes | None:
        """One datagram from ``sock`` (through ``buffer``), or None at the deadline."""
        self._link.check_usable()
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
                        f"IPC service {self._link.service!r} sent a message over the size limit",
                    )
                return bytes(memoryview(buffer)[:nbytes])
            if not self._wait(sock, select.POLLIN, deadline):
                return None

    def _lost(self, action: str, exc: OSError) -> CsError:
        """The error for a failed datagram call: the connection is unusable from now."""
        link = self._link
        if link.closed:
            return link.closed_error()
        ready = select.poll()
        ready.register(link.setup, select.POLLIN)
        events = dict(ready.poll(0)).get(link.setup.fileno(), 0)
        if events and self._server_gone(events):
            return link.gone_error()
        return link.gone_error(f"cannot {action} IPC service {link.service!r}: {exc.strerror}")

    def _wait(self, sock: socket.socket, events: int, deadline: float | None) -> bool:
        """Wait until ``sock`` is ready for ``events``; False at the deadline. Raises
        CsError(LIBRARY) as soon as the server closes the setup socket."""
        link = self._link
        poller = select.poll()
        poller.register(sock, events)
        poller.register(link.setup, select.POLLIN)
        while True:
            ready = dict(poller.poll(remaining_ms(deadline)))
            if link.closed:
                raise link.closed_error()
            setup_events = ready.get(link.setup.fileno(), 0)
            if setup_events and self._server_gone(setup_events):
                raise link.gone_error()
            if ready.get(sock.fileno(), 0):
                return True
            if remaining_ms(deadline) == 0:
                return False

    def _server_gone(self, events: int) -> bool:
        if events & _POLL_ERR:
            return True
        try:
            # The server never writes here in SOCKET mode: drop anything it sends.
            return self._link.setup.recv(4096) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
