"""What both client transports share: the setup socket, the connection's state, the
errors it turns into, and deadline arithmetic (reference/libqb-ipc.md 1.2, 2.5, 3.5).

The setup (stream) socket outlives the handshake in both transports: EOF or HUP on it
means the server has gone, and every call then fails with ``CS_ERR_LIBRARY``.
"""

from __future__ import annotations

import contextlib
import enum
import select
import socket
import time

from corosync._errors import CsError, CsErrorCode

__all__ = ["Link", "LinkState", "deadline_after", "remaining_ms", "remaining_s"]

_POLL_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL | select.POLLRDHUP


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic deadline ``timeout`` seconds from now (None: no deadline)."""
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def remaining_ms(deadline: float | None) -> int | None:
    """Milliseconds to ``deadline`` for poll(), rounded up (None: wait for ever)."""
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def remaining_s(deadline: float | None, cap: float) -> float:
    """Seconds to ``deadline``, at most ``cap`` (and ``cap`` when there is none)."""
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


class LinkState(enum.Enum):
    """Where a connection is in its life."""

    OPEN = "open"
    DISCONNECTED = "disconnected"  # the server has gone or the transport broke
    CLOSED = "closed"  # we closed it


class Link:
    """The setup socket of one connection and the connection's state."""

    def __init__(self, service: str, setup: socket.socket) -> None:
        self.service = service
        self.setup = setup
        self.state = LinkState.OPEN

    @property
    def closed(self) -> bool:
        return self.state is LinkState.CLOSED

    def closed_error(self) -> CsError:
        return CsError(CsErrorCode.BAD_HANDLE, f"IPC connection to {self.service!r} is closed")

    def gone_error(self, detail: str | None = None) -> CsError:
        """Mark the connection broken and return the error every call gives now."""
        if self.state is LinkState.OPEN:
            self.state = LinkState.DISCONNECTED
        return CsError(
            CsErrorCode.LIBRARY, detail or f"IPC service {self.service!r} closed the connection"
        )

    def check_usable(self) -> None:
        """Raise unless the connection is open."""
        if self.state is LinkState.CLOSED:
            raise self.closed_error()
        if self.state is LinkState.DISCONNECTED:
            raise self.gone_error()

    def hung_up(self) -> bool:
        """Whether the server has closed the setup socket, without reading from it (in
        SHM mode its bytes are event notifications that belong to the event reader)."""
        poller = select.poll()
        poller.register(self.setup, select.POLLRDHUP)
        events = dict(poller.poll(0)).get(self.setup.fileno(), 0)
        return bool(events & _POLL_GONE)

    def wake(self) -> None:
        """Shut the setup socket down: threads polling it wake up at once (and see the
        connection closed), and the server sees us leave."""
        with contextlib.suppress(OSError):
            self.setup.shutdown(socket.SHUT_RDWR)
