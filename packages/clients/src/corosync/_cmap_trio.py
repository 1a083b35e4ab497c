"""cmap for trio: :func:`open_cmap` and :class:`AsyncCmapHandle`.

The blocking :class:`corosync.cmap.CmapHandle` does the work. Requests run in a worker
thread (``trio.to_thread.run_sync``), one at a time per handle, so the event loop never
blocks on the daemon; a cancelled call returns at once (its thread finishes on its own,
or is woken when the handle closes). Notifications are read in the trio thread itself:
``trio.lowlevel.wait_readable`` on the handle's descriptors, then a non-blocking
dispatch, so callbacks run in trio context and nothing polls in a loop.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import trio

from corosync._errors import CsError, CsErrorCode

# corosync.cmap imports this module at its end, when all of these exist.
from corosync.cmap import (
    CmapDispatchFlags,
    CmapHandle,
    CmapIterEntry,
    CmapMap,
    CmapNotification,
    CmapTrackCallback,
    CmapTrackType,
    CmapTypedValue,
    CmapValue,
    CmapValueType,
    initialize,
)
from corosync.ipc._headers import IpcType

__all__ = ["AsyncCmapHandle", "open_cmap"]

_T = TypeVar("_T")


class AsyncCmapHandle:
    """One cmap connection for trio code; get it from :func:`open_cmap`.

    Notifications of a track go to the callback given to :meth:`track_add`, or, without
    one, to the queue that ``async for n in handle.notifications()`` reads. Either way
    somebody must pump them: :meth:`notifications` does while iterated, and
    :meth:`dispatch_forever` does for callbacks (run it in a nursery). Both may run at
    once; one of them waits on the descriptor at a time.
    """

    def __init__(self, handle: CmapHandle) -> None:
        self._handle = handle
        self._call_lock = trio.Lock()
        self._dispatch_lock = trio.Lock()
        self._dispatch_rounds = 0
        self._queue: deque[CmapNotification] = deque()
        self._closed = False

    @property
    def map(self) -> CmapMap:
        """The map this handle works on."""
        return self._handle.map

    @property
    def transport(self) -> IpcType:
        """The IPC transport the server chose (SHM or SOCKET)."""
        return self._handle.transport

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose` (or the end of the ``async with`` block)."""
        return self._closed

    @property
    def blocking_handle(self) -> CmapHandle:
        """The blocking handle underneath (do not finalize it yourself)."""
        return self._handle

    # -------------------------------------------------------------- requests

    async def _run(self, call: Callable[[], _T]) -> _T:
        """``call`` in a worker thread, one per handle at a time."""
        if self._closed:
            raise CsError(CsErrorCode.BAD_HANDLE, "cmap handle is closed")
        async with self._call_lock:
            return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

    async def get_typed(self, key: str) -> CmapTypedValue:
        """The value of ``key`` with its type. NOT_EXIST when there is no such key."""
        return await self._run(lambda: self._handle.get_typed(key))

    async def get(self, key: str) -> CmapValue:
        """The value of ``key`` (int, float, str or bytes)."""
        return await self._run(lambda: self._handle.get(key))

    async def set(self, key: str, value: CmapValue, value_type: CmapValueType) -> None:
        """Store ``value`` as ``value_type`` (see :meth:`CmapHandle.set`)."""
        await self._run(lambda: self._handle.set(key, value, value_type))

    async def delete(self, key: str) -> None:
        """Remove ``key``. NOT_EXIST when there is no such key."""
        await self._run(lambda: self._handle.delete(key))

    async def inc(self, key: str) -> None:
        """Add one to an integer key."""
        await self._run(lambda: self._handle.inc(key))

    async def dec(self, key: str) -> None:
        """Subtract one from an integer key."""
        await self._run(lambda: self._handle.dec(key))

    async def iterate(self, prefix: str = "") -> list[CmapIterEntry]:
        """Every key starting with ``prefix``, sorted, with type and length."""
        return await self._run(lambda: list(self._handle.iterate(prefix)))

    async def track_add(
        self,
        key: str,
        track_type: CmapTrackType,
        callback: CmapTrackCallback | None = None,
    ) -> int:
        """Track changes of ``key`` (of every key under it with PREFIX); returns the
        track handle. ``callback`` runs in the trio thread from the pump; without
        one the notifications queue up for :meth:`notifications`."""
        deliver = callback if callback is not None else self._queue.append
        return await self._run(lambda: self._handle.track_add(key, track_type, deliver))

    async def track_delete(self, track_handle: int) -> None:
        """Stop a track; BAD_HANDLE for one this handle does not have."""
        await self._run(lambda: self._handle.track_delete(track_handle))

    # ---------------------------------------------------------- notifications

    async def _pump(self) -> None:
        """Wait until the connection has events (or the server has gone), then run
        them. A task that had to wait for another task's round returns at once."""
        seen = self._dispatch_rounds
        async with self._dispatch_lock:
            if self._dispatch_rounds != seen or self._closed:
                return
            await _wait_any_readable(self._handle.dispatch_filenos(), lambda: self.closed)
            if self.closed:
                return  # aclose() in another task woke us
            self._dispatch_rounds += 1
            # Non-blocking: it takes only what is there. Raises CsError(LIBRARY) when
            # the server has gone.
            self._handle.dispatch(CmapDispatchFlags.ALL)

    async def dispatch_forever(self) -> None:
        """Deliver notifications until the handle closes (then return). Raises
        CsError(LIBRARY) when the server goes away."""
        while not self._closed:
            await self._pump()

    def notifications(self) -> AsyncIterator[CmapNotification]:
        """The notifications of tracks added without a callback, in order; the
        iteration ends when the handle closes."""
        return _Notifications(self)

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


class _Notifications:
    """The async iterator of :meth:`AsyncCmapHandle.notifications`."""

    def __init__(self, owner: AsyncCmapHandle) -> None:
        self._owner = owner

    def __aiter__(self) -> _Notifications:
        return self

    async def __anext__(self) -> CmapNotification:
        owner = self._owner
        while True:
            if owner._queue:
                return owner._queue.popleft()
            if owner._closed:
                raise StopAsyncIteration
            await owner._pump()


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


@contextlib.asynccontextmanager
async def open_cmap(
    map: CmapMap = CmapMap.DEFAULT,  # cmap_initialize_map's name
    *,
    prefix: str = "",
    timeout: float | None = 10.0,
) -> AsyncIterator[AsyncCmapHandle]:
    """Connect to the cmap service and select ``map``; the handle closes at the end of
    the block. ``prefix`` and ``timeout`` (of the handshake) as in
    :func:`corosync.cmap.initialize`."""
    handle = await trio.to_thread.run_sync(lambda: initialize(map, prefix=prefix, timeout=timeout))
    async_handle = AsyncCmapHandle(handle)
    try:
        yield async_handle
    finally:
        await async_handle.aclose()
