"""The trio API of corosync.cmap (open_cmap, AsyncCmapHandle) against the executive's
cmap service in the same trio loop (the ``cmap_server`` fixture, conftest.py), over
both transports: the operations, notifications by callback and by async iteration,
serialised concurrent calls, cancellation, closing, and a server that goes away."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import corosync
from corosync import CmapTrackType, CmapValueType, CsError, CsErrorCode
from corosync.cmap import (
    AsyncCmapHandle,
    CmapIterEntry,
    CmapMap,
    CmapNotification,
    CmapTypedValue,
    open_cmap,
)
from corosync.ipc import IpcType

ALL_EVENTS = CmapTrackType.ADD | CmapTrackType.MODIFY | CmapTrackType.DELETE


@pytest.fixture(params=["shm", "socket"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_operations(cmap_server: Any, transport: str) -> None:
    """get/get_typed/set/delete/inc/dec/iterate work as the blocking ones do."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        assert isinstance(cmap, AsyncCmapHandle)
        assert cmap.transport is IpcType(1 if transport == "shm" else 0)
        assert cmap.map is CmapMap.DEFAULT
        assert await cmap.get("totem.token") == 3000
        assert await cmap.get_typed("totem.cluster_name") == CmapTypedValue(
            CmapValueType.STRING, "pytest"
        )
        await cmap.set("t.n", 41, CmapValueType.UINT16)
        await cmap.inc("t.n")
        assert await cmap.get("t.n") == 42
        await cmap.dec("t.n")
        await cmap.set("t.s", "abc", CmapValueType.STRING)
        assert await cmap.iterate("t.") == [
            CmapIterEntry("t.n", CmapValueType.UINT16, 2),
            CmapIterEntry("t.s", CmapValueType.STRING, 4),
        ]
        await cmap.delete("t.s")
        with pytest.raises(CsError) as info:
            await cmap.get("t.s")
        assert info.value.code is CsErrorCode.NOT_EXIST
        assert await cmap.get("t.n") == 41
    assert cmap.closed
    with pytest.raises(CsError) as info:
        await cmap.get("t.n")
    assert info.value.code is CsErrorCode.BAD_HANDLE


async def test_stats_map(cmap_server: Any, transport: str) -> None:
    """open_cmap(CmapMap.STATS) selects the stats map (read-only for clients)."""
    async with open_cmap(CmapMap.STATS, prefix=cmap_server.prefix) as stats:
        assert stats.map is CmapMap.STATS
        with pytest.raises(CsError) as info:
            await stats.set("stats.x", 1, CmapValueType.UINT8)
        assert info.value.code is CsErrorCode.ACCESS


async def test_notifications_iterator(cmap_server: Any, transport: str) -> None:
    """Tracks without a callback feed notifications(); track_delete stops them, and
    the iteration ends when the handle closes."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        track = await cmap.track_add("n.", ALL_EVENTS | CmapTrackType.PREFIX)
        await cmap.set("n.a", 1, CmapValueType.UINT8)
        await cmap.set("n.a", 2, CmapValueType.UINT8)
        await cmap.delete("n.a")
        got: list[CmapNotification] = []
        async for note in cmap.notifications():
            got.append(note)
            if len(got) == 3:
                break
        assert [(n.event, n.key, n.track_handle) for n in got] == [
            (CmapTrackType.ADD, "n.a", track),
            (CmapTrackType.MODIFY, "n.a", track),
            (CmapTrackType.DELETE, "n.a", track),
        ]
        assert got[1].old_value == CmapTypedValue(CmapValueType.UINT8, 1)
        await cmap.track_delete(track)
        with pytest.raises(CsError) as info:
            await cmap.track_delete(track)
        assert info.value.code is CsErrorCode.BAD_HANDLE

        ended = trio.Event()

        async def iterate_until_closed() -> None:
            async for _ in cmap.notifications():
                raise AssertionError("no notification expected")
            ended.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(iterate_until_closed)
            await cmap.set("n.b", 1, CmapValueType.UINT8)  # untracked now
            await trio.testing.wait_all_tasks_blocked()
            await cmap.aclose()
        assert ended.is_set()


async def test_dispatch_forever_runs_callbacks(cmap_server: Any, transport: str) -> None:
    """dispatch_forever delivers to track callbacks in the trio thread, alongside an
    iterator of the callback-less tracks, and returns when the handle closes."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        by_callback: list[str] = []
        got_three = trio.Event()

        def callback(note: CmapNotification) -> None:
            by_callback.append(note.key)
            if len(by_callback) == 3:
                got_three.set()

        await cmap.track_add("cb.", CmapTrackType.ADD | CmapTrackType.PREFIX, callback)
        await cmap.track_add("it.", CmapTrackType.ADD | CmapTrackType.PREFIX)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cmap.dispatch_forever)
            for index in range(3):
                await cmap.set(f"cb.{index}", index, CmapValueType.UINT8)
                await cmap.set(f"it.{index}", index, CmapValueType.UINT8)
            keys = []
            async for note in cmap.notifications():
                keys.append(note.key)
                if len(keys) == 3:
                    break
            await got_three.wait()
            assert keys == ["it.0", "it.1", "it.2"]
            assert by_callback == ["cb.0", "cb.1", "cb.2"]
            await cmap.aclose()  # dispatch_forever returns


async def test_concurrent_calls_are_serialised(cmap_server: Any, transport: str) -> None:
    """Many tasks calling one handle at once each get their own answer."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        results: dict[int, object] = {}

        async def one(index: int) -> None:
            await cmap.set(f"c.{index}", index, CmapValueType.UINT32)
            results[index] = await cmap.get(f"c.{index}")

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(one, index)
        assert results == {index: index for index in range(20)}


async def test_cancelled_call_returns_and_handle_stays_usable(
    cmap_server: Any, transport: str
) -> None:
    """A call waiting on a slow server is cancelled at once; later calls work once the
    server answers (the late response is consumed by the abandoned call)."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        with trio.move_on_after(0.05) as scope:
            await cmap.get("stall.k")
        assert scope.cancelled_caught
        cmap_server.release.set()
        assert await cmap.get("totem.token") == 3000


async def test_server_gone_ends_dispatch_with_library_error(
    cmap_server: Any, transport: str
) -> None:
    """dispatch_forever raises CS_ERR_LIBRARY when the server goes away, and calls
    fail the same way."""
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        await cmap.track_add("g.", CmapTrackType.ADD | CmapTrackType.PREFIX)
        cmap_server.stop()
        with pytest.raises(CsError) as info:
            await cmap.dispatch_forever()
        assert info.value.code is CsErrorCode.LIBRARY
        with pytest.raises(CsError) as info:
            await cmap.get("totem.token")
        assert info.value.code is CsErrorCode.LIBRARY


async def test_nothing_listening_is_library_error() -> None:
    """open_cmap fails like initialize when no daemon listens."""
    with pytest.raises(CsError) as info:
        async with open_cmap(prefix="nothing-listens-here-"):
            raise AssertionError("connected to nothing")
    assert info.value.code is CsErrorCode.LIBRARY


def test_public_names() -> None:
    """The trio API is exported from corosync and corosync.cmap."""
    assert corosync.open_cmap is open_cmap
    assert corosync.AsyncCmapHandle is AsyncCmapHandle
    assert {"open_cmap", "AsyncCmapHandle"} <= set(corosync.cmap.__all__)


async def test_get_takes_one_round_trip_for_small_values_and_falls_back_for_big(
    cmap_server: Any, transport: str
) -> None:
    """A value up to GET_GUESS bytes comes in one GET; a bigger one costs a failed
    guess, a size probe and the fetch, and still arrives whole."""
    del transport
    from corosync.cmap import GET_GUESS

    stats = cmap_server.service.stats
    async with open_cmap(prefix=cmap_server.prefix) as cmap:
        edge = b"x" * GET_GUESS
        big = bytes(range(256)) * 40
        await cmap.set("test.edge", edge, CmapValueType.BINARY)
        await cmap.set("test.big", big, CmapValueType.BINARY)
        before = stats.requests
        assert await cmap.get("test.edge") == edge
        assert stats.requests - before == 1
        before = stats.requests
        assert await cmap.get("test.big") == big
        assert stats.requests - before == 3
        with pytest.raises(CsError) as info:
            await cmap.get("test.none")
        assert info.value.code is CsErrorCode.NOT_EXIST
