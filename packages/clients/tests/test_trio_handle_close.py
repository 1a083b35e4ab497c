"""Closing a trio handle (AsyncCmapHandle, AsyncCfgHandle) while its event pump runs.

Both handles share one pump (corosync/_trio_handle.py). Regression tests of a race an
early copy of it had: ``aclose()`` could close the descriptors after a pump task had
started but before it waited on them, and that task then failed with EBADF (or waited
on a closed descriptor forever). Run against the executive's cmap and cfg services in
the test's trio loop (conftest.py), over both transports: SOCKET has two descriptors
to wait on, SHM one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from corosync import CmapTrackType, CsError, CsErrorCode
from corosync.cfg import AsyncCfgHandle, open_cfg
from corosync.cmap import AsyncCmapHandle, open_cmap

ROUNDS = 400


@pytest.fixture(params=["shm", "socket"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["cmap", "cfg"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Servers:
    """Opens a handle of the kind under test and gives its pumps."""

    def __init__(self, kind: str, cmap_prefix: str, cfg_prefix: str) -> None:
        self.kind = kind
        self.cmap_prefix = cmap_prefix
        self.cfg_prefix = cfg_prefix

    def open(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.kind == "cmap":
            return open_cmap(prefix=self.cmap_prefix)
        return open_cfg(prefix=self.cfg_prefix)

    async def track(self, handle: Any) -> None:
        """Ask for events (the pumps then wait for real ones)."""
        if isinstance(handle, AsyncCmapHandle):
            await handle.track_add("race.", CmapTrackType.ADD | CmapTrackType.PREFIX)
        else:
            assert isinstance(handle, AsyncCfgHandle)
            await handle.trackstart()

    @staticmethod
    def events(handle: Any) -> AsyncIterator[Any]:
        if isinstance(handle, AsyncCmapHandle):
            return handle.notifications()
        return handle.shutdown_requests()  # type: ignore[no-any-return]


@pytest.fixture
def servers(kind: str, cmap_server: Any, cfg_server: str) -> Servers:
    return Servers(kind, cmap_server.prefix, cfg_server)


async def _drain(events: AsyncIterator[Any]) -> None:
    async for event in events:
        raise AssertionError(f"no event expected, got {event!r}")


async def test_close_right_after_the_pump_starts(servers: Servers) -> None:
    """Open, start dispatch_forever and an event iterator, close after 0..5 scheduling
    rounds, many times: every pump returns quietly, whatever point it had reached
    (not started, waiting for the lock, starting its per-descriptor waiters,
    waiting)."""
    for round_ in range(ROUNDS):
        async with trio.open_nursery() as nursery, servers.open() as handle:
            nursery.start_soon(handle.dispatch_forever)
            nursery.start_soon(_drain, servers.events(handle))
            for _ in range(round_ % 6):
                await trio.lowlevel.checkpoint()
        assert handle.closed


async def test_close_while_the_pumps_wait(servers: Servers) -> None:
    """With a track on and both pumps waiting on the descriptors, aclose (from two
    tasks at once) wakes them; they return and later calls raise BAD_HANDLE."""
    async with servers.open() as handle:
        await servers.track(handle)
        returned: list[str] = []

        async def pump() -> None:
            await handle.dispatch_forever()
            returned.append("dispatch_forever")

        async def iterate() -> None:
            await _drain(servers.events(handle))
            returned.append("iterator")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            nursery.start_soon(iterate)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []
            nursery.start_soon(handle.aclose)
            await handle.aclose()
        assert sorted(returned) == ["dispatch_forever", "iterator"]
        assert handle.closed
        with pytest.raises(CsError) as info:
            await servers.track(handle)
        assert info.value.code is CsErrorCode.BAD_HANDLE
    # A pump started after the close returns at once.
    await handle.dispatch_forever()
    await _drain(servers.events(handle))
