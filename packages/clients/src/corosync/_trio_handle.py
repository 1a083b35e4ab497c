"""The machinery of the trio handles (:class:`corosync.cmap.AsyncCmapHandle`,
:class:`corosync.cfg.AsyncCfgHandle`): one blocking handle underneath, its requests in
worker threads, its events pumped in the trio thread, and closing.

Requests run in a worker thread (``trio.to_thread.run_sync``), one at a time per
handle, so the event loop never blocks on the daemon; a cancelled call returns at once
(its thread finishes on its own, or is woken when the handle closes). Events are read
in the trio thread itself: ``trio.lowlevel.wait_readable`` on the handle's descriptors,
then a non-blocking dispatch, so callbacks run in trio context and nothing polls.

Closing races with the pump: :meth:`AsyncHandleBase.aclose` wakes a waiting pump
(``notify_closing``), a pump that has not reached its wait yet sees ``closed`` right
before it (no checkpoint between), and the descriptors are closed only under the
dispatch lock, i.e. never while a pump may still wait on them.
"""

from __future__ import annotations

import abc
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import trio

from corosync._errors import CsError, CsErrorCode
from corosync.ipc._headers import IpcType

__all__ = ["AsyncHandleBase", "BlockingHandle", "QueueReader"]

_T = TypeVar("_T")


class BlockingHandle(Protocol):
    """What the trio machinery uses of a blocking handle (CmapHandle, CfgHandle)."""

    @property
    def transport(self) -> IpcType: ...

    def dispatch_filenos(self) -> tuple[int, ...]: ...

    def finalize(self) -> None: ...


_H = TypeVar("_H", bound=BlockingHandle)


class AsyncHandleBase(abc.ABC, Generic[_H]):
    """A blocking handle of one service, for trio code. Subclasses add the service's
    requests (through :meth:`_run`) and its way of delivering events."""

    _service: ClassVar[str]
    """The service's name, for errors: ``cmap``, ``cfg``."""

    def __init__(self, handle: _H) -> None:
        self._handle = handle
        self._call_lock = trio.Lock()
        self._dispatch_lock = trio.Lock()
        self._dispatch_rounds = 0
        self._closed = False

    @property
    def transport(self) -> IpcType:
        """The IPC transport the server chose (SHM or SOCKET)."""
        return self._handle.transport

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose` (or the end of the ``async with`` block)."""
        return self._closed

    @property
    def blocking_handle(self) -> _H:
        """The blocking handle underneath (do not finalize it yourself)."""
        return self._handle

    # -------------------------------------------------------------- requests

    async def _run(self, call: Callable[[], _T]) -> _T:
        """``call`` in a worker thread, one per handle at a time."""
        if self._closed:
            raise CsError(CsErrorCode.BAD_HANDLE, f"{self._service} handle is closed")
        async with self._call_lock:
            return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

    # ---------------------------------------------------------------- events

    @abc.abstractmethod
    def _dispatch_waiting(self) -> None:
        """Process the events already waiting, without blocking; raise
        CsError(LIBRARY) when the server has gone."""

    async def _pump(self) -> None:
        """Wait until the connection has events (or the server has gone), then process
        them. A task that had to wait for another task's round returns at once."""
        seen = self._dispatch_rounds
        async with self._dispatch_lock:
            if self._dispatch_rounds != seen or self._closed:
                return
            await _wait_any_readable(self._handle.dispatch_filenos(), lambda: self._closed)
            if self.closed:  # (the property: mypy would narrow the attribute)
                return  # aclose() in another task woke us
            self._dispatch_rounds += 1
            self._dispatch_waiting()

    # -------------------------------------------------------------- lifecycle

    async def aclose(self) -> None:
        """Close the connection; waiting tasks return, later calls raise BAD_HANDLE."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(CsError):
            for fd in self._handle.dispatch_filenos():
                trio.lowlevel.notify_closing(fd)
        with trio.CancelScope(shield=True):
            # A pump still waiting on the descriptors leaves now; they must not be
            # closed under it.
            async with self._dispatch_lock:
                await trio.to_thread.run_sync(self._handle.finalize)


class QueueReader(Generic[_T]):
    """An async iterator over ``queue``, which ``owner``'s dispatch fills: it pumps
    while the queue is empty and ends when ``owner`` closes."""

    def __init__(self, queue: deque[_T], owner: AsyncHandleBase[Any]) -> None:
        self._queue = queue
        self._owner = owner

    def __aiter__(self) -> QueueReader[_T]:
        return self

    async def __anext__(self) -> _T:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._owner.closed:
                raise StopAsyncIteration
            await self._owner._pump()


async def _wait_readable(fd: int, closed: Callable[[], bool]) -> None:
    """Return when ``fd`` is readable or is being closed. ``closed()`` is checked
    right before waiting (no checkpoint between), so a close that happened before this
    task ran is seen, and one that happens later wakes it by notify_closing."""
    if closed():
        return
    with contextlib.suppress(trio.ClosedResourceError):
        await trio.lowlevel.wait_readable(fd)


async def _wait_any_readable(filenos: tuple[int, ...], closed: Callable[[], bool]) -> None:
    """Return when one of ``filenos`` is readable (or they are being closed)."""
    if len(filenos) == 1:
        await _wait_readable(filenos[0], closed)
        return
    async with trio.open_nursery() as nursery:

        async def wait_one(fd: int) -> None:
            await _wait_readable(fd, closed)
            nursery.cancel_scope.cancel()

        for fd in filenos:
            nursery.start_soon(wait_one, fd)
