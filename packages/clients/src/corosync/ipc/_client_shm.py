"""The client side of libqb's SHM transport (reference/libqb-ipc.md section 3).

The server's answer names three rings (request, response, event) that it has created
in ``/dev/shm``; we map them (:meth:`ShmRing.open`). As libqb's client does:

* a request is one chunk in the request ring (which posts its semaphore) plus one byte
  on the setup socket, so the server's poll wakes; before each, the request ring's
  ref count must be 2 (the server drops it when it closes) and its flow-control flag
  must let us through;
* a response is one chunk in the response ring: we sleep on its semaphore
  (``sem_clockwait``, GIL released) in short slices and look at the setup socket
  between slices, so a server that dies is noticed within a slice, never a hang;
* an event is one chunk in the event ring announced by one byte on the setup socket,
  which is therefore the descriptor an application polls (``cmap_fd_get``); each
  event read takes its chunk and exactly one byte.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket

from corosync._errors import CsError, CsErrorCode
from corosync.ipc._client_link import Link, remaining_ms, remaining_s
from corosync.ipc._headers import Credentials, IpcType
from corosync.ipc._shm import SHM_RING_HEADER_SIZE, ShmRing, ShmRingError

__all__ = ["LIVENESS_SLICE", "ShmTransport"]

LIVENESS_SLICE = 0.5
"""Seconds a response wait sleeps before it checks that the server is alive (libqb: 2)."""


class ShmTransport:
    """Requests, responses and events of one SHM-transport connection."""

    kind = IpcType.SHM

    def __init__(
        self,
        link: Link,
        names: tuple[str, str, str],
        max_msg_size: int,
        server: Credentials | None,
    ) -> None:
        """Map the three rings named in the answer. Raises OSError or ShmRingError."""
        self._link = link
        self._server = server
        rings: list[ShmRing] = []
        try:
            request_name, response_name, event_name = names
            rings.append(ShmRing.open(request_name, max_msg_size, header_size=SHM_RING_HEADER_SIZE))
            rings.append(ShmRing.open(response_name, max_msg_size))
            rings.append(ShmRing.open(event_name, max_msg_size))
        except BaseException:
            for ring in rings:
                ring.close()
            raise
        self._request, self._response, self._event = rings
        self._owed_bytes = 0  # request notifications not yet sent (setup socket full)

    def fileno(self) -> int:
        """The setup socket: one byte arrives on it per event."""
        return self._link.setup.fileno()

    # -------------------------------------------------------------- requests

    def send(self, message: bytes, deadline: float | None, fc_enable_max: int) -> None:
        link = self._link
        link.check_usable()
        try:
            if self._request.ref_count != 2:
                # libqb's ENOTCONN: the server has closed its side of the ring.
                raise link.gone_error()
            flow = self._request.flow_control
            if 0 < flow <= fc_enable_max:
                raise CsError(
                    CsErrorCode.TRY_AGAIN, f"IPC service {link.service!r} applies flow control"
                )
            if not self._request.write(message):
                raise CsError(
                    CsErrorCode.TRY_AGAIN,
                    f"IPC service {link.service!r} has not taken earlier requests "
                    "(request ring full)",
                )
        except ShmRingError as exc:
            raise link.gone_error(f"IPC service {link.service!r}: {exc}") from None
        self._owed_bytes += 1
        self._flush_notifications(deadline)

    def _flush_notifications(self, deadline: float | None) -> None:
        """Send the bytes that wake the server, one per committed request. Past the
        deadline the rest stay owed: the request counts as sent (its response, if it
        comes, is skipped as late), and the next send delivers them."""
        link = self._link
        while self._owed_bytes:
            try:
                sent = link.setup.send(b"\0" * self._owed_bytes, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if link.closed:
                    raise link.closed_error() from None
                raise link.gone_error(
                    f"cannot notify IPC service {link.service!r}: {exc.strerror}"
                ) from None
            self._owed_bytes -= sent
            if self._owed_bytes and not self._wait_writable(deadline):
                return

    def _wait_writable(self, deadline: float | None) -> bool:
        link = self._link
        poller = select.poll()
        poller.register(link.setup, select.POLLOUT | select.POLLRDHUP)
        while True:
            events = dict(poller.poll(remaining_ms(deadline))).get(link.setup.fileno(), 0)
            if link.closed:
                raise link.closed_error()
            if events & (select.POLLHUP | select.POLLERR | select.POLLRDHUP | select.POLLNVAL):
                raise link.gone_error()
            if events & select.POLLOUT:
                return True
            if remaining_ms(deadline) == 0:
                return False

    def receive_response(self, deadline: float | None) -> bytes | None:
        link = self._link
        while True:
            link.check_usable()
            try:
                if self._response.wait(remaining_s(deadline, LIVENESS_SLICE)):
                    if link.closed:
                        raise link.closed_error()  # close() posted to wake us
                    data = self._response.read_waited()
                    if data is not None:
                        return data
                    continue
            except ShmRingError as exc:
                if link.closed:
                    raise link.closed_error() from None
                raise link.gone_error(
                    f"IPC service {link.service!r} broke the response ring: {exc}"
                ) from None
            if link.closed:
                raise link.closed_error()
            if link.hung_up():
                raise link.gone_error()
            if deadline is not None and remaining_ms(deadline) == 0:
                return None

    # ---------------------------------------------------------------- events

    def receive_event(self, deadline: float | None) -> bytes | None:
        link = self._link
        link.check_usable()
        poller = select.poll()
        poller.register(link.setup, select.POLLIN)
        while True:
            ready = poller.poll(remaining_ms(deadline))
            if link.closed:
                raise link.closed_error()
            if not ready:
                if remaining_ms(deadline) == 0:
                    return None
                continue
            try:
                byte = link.setup.recv(1)
            except BlockingIOError:
                continue
            except OSError:
                byte = b""
            if not byte:
                raise link.gone_error()
            try:
                data = self._event.read()
            except ShmRingError as exc:
                raise link.gone_error(
                    f"IPC service {link.service!r} broke the event ring: {exc}"
                ) from None
            if data is not None:
                return data
            # A byte with no event behind it: not libqb's protocol; keep waiting.

    # ------------------------------------------------------------- lifecycle

    def wake(self) -> None:
        """Wake a thread sleeping on the response semaphore (it then sees the
        connection closed); pollers of the setup socket wake by its shutdown."""
        self._response.post()

    def close(self, *, unmap: bool) -> None:
        """Unmap the rings (only when no thread can be inside them: ``unmap``). Like
        libqb's client, remove the files when the server has died and cannot."""
        if not unmap:
            return  # a thread may still touch the mappings; leak them instead
        server_dead = False
        if self._server is not None and self._server.pid > 0:
            try:
                os.kill(self._server.pid, 0)
            except ProcessLookupError:
                server_dead = True
            except PermissionError:
                pass
        for ring in (self._request, self._response, self._event):
            ring.close(unlink=server_dead)
        if server_dead:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self._request.name))
