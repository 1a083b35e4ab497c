"""cfg for trio: :func:`open_cfg` and :class:`AsyncCfgHandle`.

The blocking :class:`corosync.cfg.CfgHandle` does the work: requests in worker threads
(TRYSHUTDOWN may take seconds while the tracking clients are asked; a cancelled call
returns at once), shutdown requests read and dispatched in the trio thread (the
machinery, shared with cmap, is in ``corosync/_trio_handle.py``). They go to the async
``shutdown_callback`` given to :func:`open_cfg`, awaited by
:meth:`AsyncCfgHandle.dispatch_forever`, or, without one, to
``async for flags in handle.shutdown_requests()``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from corosync._trio_handle import AsyncHandleBase, QueueReader

# corosync.cfg imports this module at its end, when all of these exist.
from corosync.cfg import (
    CfgDispatchFlags,
    CfgHandle,
    CfgNodeAddrs,
    CfgNodeStatus,
    CfgShutdownFlags,
    CfgShutdownReply,
    initialize,
)

__all__ = ["AsyncCfgHandle", "AsyncCfgShutdownCallback", "open_cfg"]

AsyncCfgShutdownCallback = Callable[["AsyncCfgHandle", int], Awaitable[None]]
"""``await callback(handle, flags)`` for each shutdown request (after
:meth:`AsyncCfgHandle.trackstart`); it answers with
:meth:`AsyncCfgHandle.reply_to_shutdown`."""


class AsyncCfgHandle(AsyncHandleBase[CfgHandle]):
    """One cfg connection for trio code; get it from :func:`open_cfg`.

    Somebody must pump shutdown requests: :meth:`dispatch_forever` (run it in a
    nursery; it awaits the callback) or :meth:`shutdown_requests` while iterated.
    """

    _service = "cfg"

    def __init__(
        self, handle: CfgHandle, queue: deque[int], callback: AsyncCfgShutdownCallback | None
    ) -> None:
        super().__init__(handle)
        self._queue = queue  # filled by the blocking handle's callback during _pump
        self._callback = callback

    def fileno(self) -> int:
        """The descriptor that polls readable when a shutdown request waits."""
        return self._handle.fileno()

    # -------------------------------------------------------------- requests

    async def local_get(self) -> int:
        """The local node id."""
        return await self._run(self._handle.local_get)

    async def node_status_get(self, nodeid: int) -> CfgNodeStatus:
        """The knet view of ``nodeid`` from this node (see :meth:`CfgHandle.node_status_get`)."""
        return await self._run(lambda: self._handle.node_status_get(nodeid))

    async def ring_status_get(self) -> tuple[tuple[str, str], ...]:
        """The legacy (name, status) string of each link."""
        return await self._run(self._handle.ring_status_get)

    async def get_node_addrs(self, nodeid: int) -> CfgNodeAddrs:
        """The addresses of ``nodeid`` (0: this node), in link order."""
        return await self._run(lambda: self._handle.get_node_addrs(nodeid))

    async def kill_node(self, nodeid: int, reason: str) -> None:
        """Make ``nodeid`` log ``reason`` and exit."""
        await self._run(lambda: self._handle.kill_node(nodeid, reason))

    async def try_shutdown(self, flags: CfgShutdownFlags = CfgShutdownFlags.REQUEST) -> None:
        """Shut this node's daemon down cleanly (see :meth:`CfgHandle.try_shutdown`)."""
        await self._run(lambda: self._handle.try_shutdown(flags))

    async def reply_to_shutdown(self, reply: CfgShutdownReply) -> None:
        """Answer a shutdown request."""
        await self._run(lambda: self._handle.reply_to_shutdown(reply))

    async def trackstart(self) -> None:
        """Be asked before this node shuts down."""
        await self._run(self._handle.trackstart)

    async def trackstop(self) -> None:
        """Stop being asked."""
        await self._run(self._handle.trackstop)

    async def reload_config(self) -> None:
        """Make every node re-read its corosync.conf; returns when this node has."""
        await self._run(self._handle.reload_config)

    async def reopen_log_files(self) -> None:
        """Make this node's daemon reopen its log files."""
        await self._run(self._handle.reopen_log_files)

    # ---------------------------------------------------------------- events

    def _dispatch_waiting(self) -> None:
        # Non-blocking; raises CsError(LIBRARY) when the server has gone.
        self._handle.dispatch(CfgDispatchFlags.ALL)

    async def dispatch_forever(self) -> None:
        """Await the shutdown callback for each request until the handle closes (then
        return). Raises CsError(LIBRARY) when the server goes away."""
        while not self._closed:
            while self._queue and self._callback is not None:
                await self._callback(self, self._queue.popleft())
            await self._pump()

    def shutdown_requests(self) -> AsyncIterator[int]:
        """The flags of each shutdown request, in order (for a handle opened without a
        callback); the iteration ends when the handle closes."""
        return QueueReader(self._queue, self)


@contextlib.asynccontextmanager
async def open_cfg(
    *,
    prefix: str = "",
    timeout: float | None = 10.0,
    shutdown_callback: AsyncCfgShutdownCallback | None = None,
) -> AsyncIterator[AsyncCfgHandle]:
    """Connect to the cfg service; the handle closes at the end of the block.
    ``prefix`` and ``timeout`` (of the handshake) as in :func:`corosync.cfg.initialize`;
    ``shutdown_callback`` is awaited by :meth:`AsyncCfgHandle.dispatch_forever`."""
    queue: deque[int] = deque()
    handle = await trio.to_thread.run_sync(
        lambda: initialize(
            prefix=prefix, timeout=timeout, shutdown_callback=lambda _h, f: queue.append(f)
        )
    )
    async_handle = AsyncCfgHandle(handle, queue, shutdown_callback)
    try:
        yield async_handle
    finally:
        await async_handle.aclose()
