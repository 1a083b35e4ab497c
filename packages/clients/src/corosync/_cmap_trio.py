"""cmap for trio: :func:`open_cmap` and :class:`AsyncCmapHandle`.

The blocking :class:`corosync.cmap.CmapHandle` does the work: requests in worker
threads, notifications read and dispatched in the trio thread, so track callbacks run in
trio context (the machinery, shared with cfg, is in ``corosync/_trio_handle.py``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator

import trio

from corosync._trio_handle import AsyncHandleBase, QueueReader

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

__all__ = ["AsyncCmapHandle", "open_cmap"]


class AsyncCmapHandle(AsyncHandleBase[CmapHandle]):
    """One cmap connection for trio code; get it from :func:`open_cmap`.

    Notifications of a track go to the callback given to :meth:`track_add`, or, without
    one, to the queue that ``async for n in handle.notifications()`` reads. Either way
    somebody must pump them: :meth:`notifications` does while iterated, and
    :meth:`dispatch_forever` does for callbacks (run it in a nursery). Both may run at
    once; one of them waits on the descriptor at a time.
    """

    _service = "cmap"

    def __init__(self, handle: CmapHandle) -> None:
        super().__init__(handle)
        self._queue: deque[CmapNotification] = deque()

    @property
    def map(self) -> CmapMap:
        """The map this handle works on."""
        return self._handle.map

    # -------------------------------------------------------------- requests

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

    def _dispatch_waiting(self) -> None:
        # Non-blocking: it takes only what is there. Raises CsError(LIBRARY) when the
        # server has gone.
        self._handle.dispatch(CmapDispatchFlags.ALL)

    async def dispatch_forever(self) -> None:
        """Deliver notifications until the handle closes (then return). Raises
        CsError(LIBRARY) when the server goes away."""
        while not self._closed:
            await self._pump()

    def notifications(self) -> AsyncIterator[CmapNotification]:
        """The notifications of tracks added without a callback, in order; the
        iteration ends when the handle closes."""
        return QueueReader(self._queue, self)


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
