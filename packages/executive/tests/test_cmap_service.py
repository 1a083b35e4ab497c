"""Tests of the cmap service: our IpcClient against an in-process IpcServer + CmapService.

Each test runs the service under a unique IPC name prefix and a private runtime
directory, and drives it from :class:`corosync.ipc.IpcClient` in a worker thread.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync import CsErrorCode, MalformedMessage
from corosync.ipc import (
    CmapAdjustIntRequest,
    CmapAdjustIntResponse,
    CmapDeleteRequest,
    CmapDeleteResponse,
    CmapGetRequest,
    CmapGetResponse,
    CmapIterFinalizeRequest,
    CmapIterFinalizeResponse,
    CmapIterInitRequest,
    CmapIterInitResponse,
    CmapIterNextRequest,
    CmapIterNextResponse,
    CmapMap,
    CmapNotifyEvent,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapSetRequest,
    CmapSetResponse,
    CmapTrackAddRequest,
    CmapTrackAddResponse,
    CmapTrackDeleteRequest,
    CmapTrackDeleteResponse,
    CmapTrackType,
    CmapValueType,
    IpcClient,
    RequestHeader,
    decode_cmap_notify_event_untrusted,
    decode_cmap_response_untrusted,
    decode_response_header_untrusted,
    encode_cmap_value,
)
from corosync_executive import (
    BLACKBOX_KEYS,
    CmapService,
    load_config,
    load_config_into_cmap,
    validate_config,
)
from corosync_executive._cmap_store import CmapStore, Notification, TrackEvent, TypedValue
from corosync_executive._ipc_server import AccessPolicy

ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
DATA = Path(__file__).parent / "data"
U32 = CmapValueType.UINT32


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pcs-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Harness:
    """A running cmap service plus helpers to call it from a thread."""

    def __init__(self, service: CmapService, prefix: str) -> None:
        self.service = service
        self.prefix = prefix

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(fn)

    def connect(self) -> IpcClient:
        return IpcClient.connect("cmap", prefix=self.prefix, timeout=5)


@pytest.fixture
async def harness(runtime_dir: str) -> AsyncIterator[Harness]:
    store = CmapStore()
    store.set("totem.token", U32, 3000, writer=True)
    store.set("totem.cluster_name", CmapValueType.STRING, "pytest", writer=True)
    store.set("nodelist.node.0.nodeid", U32, 1, writer=True)
    store.set("test.bin", CmapValueType.BINARY, b"ab\n", writer=True)
    service = CmapService(store)
    prefix = f"c{os.getpid()}{uuid.uuid4().hex[:6]}-"
    server = service.make_server(
        prefix=prefix, authorize=ME, runtime_dir=runtime_dir, transport="socket"
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield Harness(service, prefix)
        nursery.cancel_scope.cancel()


def req(client: IpcClient, request: Any, expected: type[Any]) -> Any:
    """Send one request and decode its response as ``expected``."""
    raw = client.request(request.encode(), timeout=5)
    return decode_cmap_response_untrusted(raw, expected)


def get(client: IpcClient, key: str, value_len: int = 0) -> CmapGetResponse:
    result: CmapGetResponse = req(client, CmapGetRequest(key, value_len), CmapGetResponse)
    return result


def set_u32(client: IpcClient, key: str, value: int) -> CsErrorCode:
    request = CmapSetRequest(key, U32, encode_cmap_value(U32, value))
    result: CsErrorCode = req(client, request, CmapSetResponse).error
    return result


def iterate(client: IpcClient, prefix: str) -> list[tuple[str, int, CmapValueType | None]]:
    """ITER_INIT/NEXT until NO_SECTIONS, then ITER_FINALIZE."""
    init = req(client, CmapIterInitRequest(prefix), CmapIterInitResponse)
    assert init.error is CsErrorCode.OK
    keys = []
    while True:
        step = req(client, CmapIterNextRequest(init.iter_handle), CmapIterNextResponse)
        if step.error is CsErrorCode.NO_SECTIONS:
            break
        assert step.error is CsErrorCode.OK
        keys.append((step.key, step.value_len, step.value_type))
    done = req(client, CmapIterFinalizeRequest(init.iter_handle), CmapIterFinalizeResponse)
    assert done.error is CsErrorCode.OK
    return keys


def event(client: IpcClient) -> CmapNotifyEvent:
    raw = client.receive_event(timeout=5)
    assert raw is not None, "no event came"
    return decode_cmap_notify_event_untrusted(raw)


# ---------------------------------------------------------------- get / set / delete


async def test_get_length_query_and_value(harness: Harness) -> None:
    """value_len 0 gives length and type in a 40-byte reply; a buffer gets the value."""

    def flow() -> tuple[bytes, bytes, CmapGetResponse, CmapGetResponse]:
        with harness.connect() as client:
            short = client.request(CmapGetRequest("totem.token", 0).encode(), timeout=5)
            full = client.request(CmapGetRequest("totem.token", 16).encode(), timeout=5)
            name = get(client, "totem.cluster_name", 7)
            small = get(client, "totem.cluster_name", 3)
            return short, full, name, small

    short, full, name, small = await harness.call(flow)
    assert len(short) == 40
    assert decode_cmap_response_untrusted(short, CmapGetResponse).value_len == 4
    assert len(full) == 40 + 16  # sized by the request, as corosync
    decoded = decode_cmap_response_untrusted(full, CmapGetResponse)
    assert (decoded.value_type, decoded.value) == (U32, struct.pack("=I", 3000))
    assert (name.value_type, name.value) == (CmapValueType.STRING, b"pytest\0")
    assert small.error is CsErrorCode.INVALID_PARAM  # the buffer must hold the value


async def test_get_missing_key_is_not_exist(harness: Harness) -> None:
    """A missing key answers a 40-byte GET reply with CS_ERR_NOT_EXIST."""

    def flow() -> bytes:
        with harness.connect() as client:
            return client.request(CmapGetRequest("no.such.key", 16).encode(), timeout=5)

    raw = await harness.call(flow)
    header = decode_response_header_untrusted(raw)
    assert (header.id, header.size, header.error) == (2, 40, CsErrorCode.NOT_EXIST)


async def test_set_creates_and_replaces_with_type(harness: Harness) -> None:
    """SET creates a key, replaces value and type, and the store sees it."""

    def flow() -> tuple[CsErrorCode, CsErrorCode, CmapGetResponse]:
        with harness.connect() as client:
            first = set_u32(client, "test.key", 5)
            request = CmapSetRequest("test.key", CmapValueType.STRING, b"five\0")
            second = req(client, request, CmapSetResponse).error
            return first, second, get(client, "test.key", 64)

    first, second, value = await harness.call(flow)
    assert (first, second) == (CsErrorCode.OK, CsErrorCode.OK)
    assert value.value == b"five\0"
    assert harness.service.store.get("test.key") == (CmapValueType.STRING, "five")


async def test_set_errors(harness: Harness) -> None:
    """Read-only keys: ACCESS; a bad name: NAME_TOO_LONG; a bad value: INVALID_PARAM."""

    def flow() -> list[CsErrorCode]:
        with harness.connect() as client:
            bad_value = CmapSetRequest("test.key", U32, b"\1\2")
            return [
                set_u32(client, "nodelist.node.0.nodeid", 9),
                set_u32(client, "totem.cluster_name", 9),
                set_u32(client, "a$b.c", 1),
                set_u32(client, "ab", 1),
                req(client, bad_value, CmapSetResponse).error,
            ]

    assert await harness.call(flow) == [
        CsErrorCode.ACCESS,
        CsErrorCode.ACCESS,
        CsErrorCode.NAME_TOO_LONG,
        CsErrorCode.NAME_TOO_LONG,
        CsErrorCode.INVALID_PARAM,
    ]
    assert harness.service.store.get("nodelist.node.0.nodeid") == (U32, 1)


async def test_delete(harness: Harness) -> None:
    """DELETE removes a key; again NOT_EXIST; a read-only key ACCESS."""

    def flow() -> list[CsErrorCode]:
        with harness.connect() as client:
            set_u32(client, "test.gone", 1)
            return [
                req(client, CmapDeleteRequest(key), CmapDeleteResponse).error
                for key in ("test.gone", "test.gone", "nodelist.node.0.nodeid")
            ]

    assert await harness.call(flow) == [
        CsErrorCode.OK,
        CsErrorCode.NOT_EXIST,
        CsErrorCode.ACCESS,
    ]
    assert "test.gone" not in harness.service.store


async def test_inc_dec_wrap_and_errors(harness: Harness) -> None:
    """ADJUST_INT adds the step with wrap-around; strings INVALID_PARAM; RO ACCESS."""
    store = harness.service.store
    store.set("test.u8", CmapValueType.UINT8, 255, writer=True)

    def flow() -> list[CsErrorCode]:
        with harness.connect() as client:
            return [
                req(client, CmapAdjustIntRequest(key, step), CmapAdjustIntResponse).error
                for key, step in (
                    ("test.u8", 1),
                    ("totem.token", -1),
                    ("totem.cluster_name", 1),
                    ("no.such.key", 1),
                    ("nodelist.node.0.nodeid", 1),
                )
            ]

    assert await harness.call(flow) == [
        CsErrorCode.OK,
        CsErrorCode.OK,
        CsErrorCode.ACCESS,  # totem.cluster_name is read-only
        CsErrorCode.NOT_EXIST,
        CsErrorCode.ACCESS,
    ]
    assert store.get("test.u8") == (CmapValueType.UINT8, 0)
    assert store.get("totem.token") == (U32, 2999)


# ---------------------------------------------------------------- iteration


async def test_iteration_sorted_by_prefix(harness: Harness) -> None:
    """Iteration gives every key with the prefix in sorted order, with length and type."""

    def flow() -> tuple[list[Any], list[Any], list[Any]]:
        with harness.connect() as client:
            return iterate(client, "totem."), iterate(client, ""), iterate(client, "zzz")

    totem, everything, nothing = await harness.call(flow)
    assert totem == [
        ("totem.cluster_name", 7, CmapValueType.STRING),
        ("totem.token", 4, U32),
    ]
    assert [key for key, _, _ in everything] == sorted(
        key for key, _ in harness.service.store.iterate()
    )
    assert nothing == []


async def test_iteration_handles_and_errors(harness: Harness) -> None:
    """Two iterators run independently; a finalized or unknown handle is BAD_HANDLE;
    a key deleted during the iteration is skipped."""

    def flow() -> list[Any]:
        with harness.connect() as client:
            a = req(client, CmapIterInitRequest("totem."), CmapIterInitResponse).iter_handle
            b = req(client, CmapIterInitRequest("totem."), CmapIterInitResponse).iter_handle
            first_a = req(client, CmapIterNextRequest(a), CmapIterNextResponse).key
            trio.from_thread.run_sync(
                lambda: harness.service.store.delete("totem.token", writer=True)
            )
            second_a = req(client, CmapIterNextRequest(a), CmapIterNextResponse).error
            first_b = req(client, CmapIterNextRequest(b), CmapIterNextResponse).key
            req(client, CmapIterFinalizeRequest(a), CmapIterFinalizeResponse)
            return [
                a != b,
                first_a,
                second_a,
                first_b,
                req(client, CmapIterNextRequest(a), CmapIterNextResponse).error,
                req(client, CmapIterFinalizeRequest(a), CmapIterFinalizeResponse).error,
                req(client, CmapIterNextRequest(999), CmapIterNextResponse).error,
            ]

    assert await harness.call(flow) == [
        True,
        "totem.cluster_name",
        CsErrorCode.NO_SECTIONS,
        "totem.cluster_name",
        CsErrorCode.BAD_HANDLE,
        CsErrorCode.BAD_HANDLE,
        CsErrorCode.BAD_HANDLE,
    ]


async def test_iterators_are_per_connection(harness: Harness) -> None:
    """A handle of one connection means nothing on another."""

    def flow() -> CsErrorCode:
        with harness.connect() as one, harness.connect() as two:
            handle = req(one, CmapIterInitRequest(""), CmapIterInitResponse).iter_handle
            result: CsErrorCode = req(two, CmapIterNextRequest(handle), CmapIterNextResponse).error
            return result

    assert await harness.call(flow) is CsErrorCode.BAD_HANDLE


# ---------------------------------------------------------------- tracking


async def test_track_key_events_with_old_and_new_values(harness: Harness) -> None:
    """An exact-key track gets create/modify/delete events with both values and the
    client's track_inst_handle; TRACK_DELETE returns that handle and stops events."""
    kinds = CmapTrackType.ADD | CmapTrackType.MODIFY | CmapTrackType.DELETE

    def flow() -> list[Any]:
        with harness.connect() as client:
            added = req(client, CmapTrackAddRequest("test.foo", kinds, 4242), CmapTrackAddResponse)
            set_u32(client, "test.foo", 7)
            set_u32(client, "test.foo", 7)  # unchanged: no event
            set_u32(client, "test.foo", 8)
            set_u32(client, "test.other", 1)  # not tracked
            req(client, CmapDeleteRequest("test.foo"), CmapDeleteResponse)
            events = [event(client) for _ in range(3)]
            deleted = req(
                client, CmapTrackDeleteRequest(added.track_handle), CmapTrackDeleteResponse
            )
            set_u32(client, "test.foo", 9)
            late = client.receive_event(timeout=0.3)
            again = req(client, CmapTrackDeleteRequest(added.track_handle), CmapTrackDeleteResponse)
            return [added, events, deleted, late, again.error]

    added, events, deleted, late, again = await harness.call(flow)
    assert added.error is CsErrorCode.OK
    assert added.track_handle != 0
    seven, eight = encode_cmap_value(U32, 7), encode_cmap_value(U32, 8)
    assert events == [
        CmapNotifyEvent(4242, "test.foo", CmapTrackType.ADD, U32, seven, None, b""),
        CmapNotifyEvent(4242, "test.foo", CmapTrackType.MODIFY, U32, eight, U32, seven),
        CmapNotifyEvent(4242, "test.foo", CmapTrackType.DELETE, None, b"", U32, eight),
    ]
    assert deleted.track_inst_handle == 4242
    assert late is None
    assert again is CsErrorCode.BAD_HANDLE


async def test_prefix_track_and_executive_writes(harness: Harness) -> None:
    """A prefix track sees keys under it, also when the executive writes the store and
    dispatches; another connection's writes reach this connection's track."""
    kinds = CmapTrackType.ADD | CmapTrackType.MODIFY | CmapTrackType.PREFIX

    def track(client: IpcClient) -> None:
        req(client, CmapTrackAddRequest("test.", kinds, 1), CmapTrackAddResponse)

    client = await harness.call(harness.connect)
    other = await harness.call(harness.connect)
    try:
        await harness.call(lambda: track(client))
        await harness.call(lambda: set_u32(other, "test.a", 1))
        harness.service.store.set("test.b", U32, 2, writer=True)
        harness.service.store.set("totem.x", U32, 2, writer=True)  # outside the prefix
        assert harness.service.dispatch_notifications() == 1
        events = await harness.call(lambda: [event(client) for _ in range(2)])
        assert [(e.key, e.event) for e in events] == [
            ("test.a", CmapTrackType.ADD),
            ("test.b", CmapTrackType.ADD),
        ]
        assert await harness.call(lambda: other.receive_event(timeout=0.2)) is None
    finally:
        client.close()
        other.close()


async def test_foreign_notifications_are_handed_over() -> None:
    """Tracks of the executive itself are passed to on_foreign_notification."""
    store = CmapStore()
    seen: list[Notification] = []
    service = CmapService(store, on_foreign_notification=seen.append)
    store.track_add("test.k", int(CmapTrackType.ADD), owner="executive")
    store.set("test.k", U32, 1, writer=True)
    assert service.dispatch_notifications() == 0
    assert [(n.owner, n.event, n.key) for n in seen] == [("executive", TrackEvent.ADD, "test.k")]


async def test_disconnect_cleans_up_tracks_and_iterators(harness: Harness) -> None:
    """A client that goes away leaves no session, iterator or track behind."""
    store = harness.service.store

    def flow() -> tuple[int, int]:
        client = harness.connect()
        req(client, CmapIterInitRequest(""), CmapIterInitResponse)
        req(client, CmapTrackAddRequest("test.", CmapTrackType.ADD | 8, 1), CmapTrackAddResponse)
        counts = (harness.service.session_count, len(store._tracks))
        client.close()
        return counts

    assert await harness.call(flow) == (1, 1)
    with trio.fail_after(5):
        while harness.service.session_count:
            await trio.sleep(0.01)
    assert store._tracks == {}
    store.set("test.after", U32, 1, writer=True)
    assert harness.service.dispatch_notifications() == 0


# ---------------------------------------------------------------- maps


async def test_stats_map_is_separate_and_read_only(harness: Harness) -> None:
    """SET_CURRENT_MAP(stats) switches to the stats store: its keys, read-only for
    clients; tracks there see the executive's writes; map 0 switches back."""
    stats = harness.service.stats_store
    stats.set("stats.srp.orf_token_rx", CmapValueType.UINT64, 5, writer=True)

    def bump() -> None:
        stats.set("stats.srp.orf_token_rx", CmapValueType.UINT64, 6, writer=True)
        harness.service.dispatch_notifications()

    def flow(step: int) -> Any:
        with harness.connect() as client:
            res = req(client, CmapSetCurrentMapRequest(CmapMap.STATS), CmapSetCurrentMapResponse)
            assert res.error is CsErrorCode.OK
            if step == 0:
                return [
                    iterate(client, ""),
                    set_u32(client, "stats.srp.orf_token_rx", 1),
                    req(
                        client, CmapDeleteRequest("stats.srp.orf_token_rx"), CmapDeleteResponse
                    ).error,
                    set_u32(client, "test.new", 1),
                    get(client, "totem.token").error,
                ]
            kinds = CmapTrackType.MODIFY | CmapTrackType.PREFIX
            req(client, CmapTrackAddRequest("stats.", kinds, 77), CmapTrackAddResponse)
            trio.from_thread.run_sync(bump)  # the executive writes in its own thread
            seen = event(client)
            req(client, CmapSetCurrentMapRequest(CmapMap.DEFAULT), CmapSetCurrentMapResponse)
            return seen, get(client, "totem.token").value_len

    listing, *codes = await harness.call(lambda: flow(0))
    assert listing == [("stats.srp.orf_token_rx", 8, CmapValueType.UINT64)]
    assert codes == [
        CsErrorCode.ACCESS,
        CsErrorCode.ACCESS,
        CsErrorCode.ACCESS,
        CsErrorCode.NOT_EXIST,
    ]
    seen, length = await harness.call(lambda: flow(1))
    assert (seen.track_inst_handle, seen.key, seen.new_value) == (
        77,
        "stats.srp.orf_token_rx",
        struct.pack("=Q", 6),
    )
    assert length == 4


# ---------------------------------------------------------------- malformed


async def test_malformed_requests_get_bare_invalid_param(harness: Harness) -> None:
    """Unknown ids, wrong sizes, a key without NUL, unknown maps and track bits each get
    the bare id-0 INVALID_PARAM reply; the connection keeps working."""
    bad = [
        RequestHeader(42, 16).encode(),
        RequestHeader(2, 40).encode() + bytes(24),
        RequestHeader(1, 280).encode() + b"\x05\0" + bytes(6) + b"x" * 256,
        RequestHeader(9, 24).encode() + struct.pack("=i4x", 7),
        CmapTrackAddRequest("test.", CmapTrackType.ADD, 1).encode()[:280]
        + struct.pack("=i4xQ", 0x40, 1),
        CmapSetRequest("test.k", U32, b"\0\0\0\0").encode()[:288] + b"\x63" + bytes(7) + bytes(4),
    ]

    def flow() -> tuple[list[tuple[int, int, int]], int]:
        with harness.connect() as client:
            replies = []
            for message in bad:
                header = decode_response_header_untrusted(client.request(message, timeout=5))
                replies.append((header.id, header.size, header.error))
            return replies, get(client, "totem.token").value_len

    replies, length = await harness.call(flow)
    assert replies == [(0, 24, CsErrorCode.INVALID_PARAM)] * len(bad)
    assert length == 4


async def test_huge_get_buffer_is_capped(harness: Harness) -> None:
    """A GET asking for a buffer beyond the message size gets a reply that fits."""

    def flow() -> bytes:
        with harness.connect() as client:
            return client.request(CmapGetRequest("totem.token", 1 << 40).encode(), timeout=5)

    raw = await harness.call(flow)
    assert len(raw) <= 1048576
    decoded = decode_cmap_response_untrusted(raw, CmapGetResponse)
    assert decoded.value == struct.pack("=I", 3000)


# ---------------------------------------------------------------- config loading


def test_load_config_into_cmap() -> None:
    """Every config key and runtime.config.* key lands in the store, typed, read-only
    where corosync says, plus the blackbox trigger keys."""
    config = validate_config(load_config(DATA / "debian-3-nodes.conf"), hostname="node1")
    store = CmapStore()
    written = load_config_into_cmap(store, config)
    assert written == len(config.cmap_keys()) + len(BLACKBOX_KEYS)
    assert store.get("totem.token") == (U32, 3000)
    assert store.get("runtime.config.totem.token") == (U32, 3650)
    assert store.get("nodelist.local_node_pos") == (U32, 0)
    assert store.get("runtime.blackbox.dump_state") == (CmapValueType.STRING, "no")
    assert store.is_read_only("nodelist.node.0.nodeid")
    assert store.get_typed("totem.cluster_name") == TypedValue(CmapValueType.STRING, b"debian\0")


# ---------------------------------------------------------------- fuzzing


class StubConnection:
    """Enough of an IpcConnection for the service outside a server: events are kept."""

    def __init__(self, conn_id: int) -> None:
        self.id = conn_id
        self.max_msg_size = 1048576
        self.events: list[bytes] = []

    def send_event(self, message: bytes) -> bool:
        self.events.append(message)
        return True


_KEYS = st.sampled_from(["totem.token", "test.a", "test.", "", "ab", "a$b", "x" * 255])
_REQUESTS = st.one_of(
    st.builds(
        lambda k, t, v: CmapSetRequest(k, U32, v).encode()[:288] + bytes([t]) + bytes(7) + v,
        _KEYS,
        st.integers(0, 13),
        st.binary(max_size=20),
    ),
    st.builds(lambda k: CmapDeleteRequest(k).encode(), _KEYS),
    st.builds(lambda k, n: CmapGetRequest(k, n).encode(), _KEYS, st.integers(0, 2**64 - 1)),
    st.builds(
        lambda k, n: CmapAdjustIntRequest(k, n).encode(), _KEYS, st.integers(-(2**31), 2**31 - 1)
    ),
    st.builds(lambda k: CmapIterInitRequest(k).encode(), _KEYS),
    st.builds(lambda h: CmapIterNextRequest(h).encode(), st.integers(0, 4)),
    st.builds(lambda h: CmapIterFinalizeRequest(h).encode(), st.integers(0, 4)),
    st.builds(
        lambda k, t, h: CmapTrackAddRequest(k, CmapTrackType(t), h).encode(),
        _KEYS,
        st.integers(0, 15),
        st.integers(0, 2**64 - 1),
    ),
    st.builds(lambda h: CmapTrackDeleteRequest(h).encode(), st.integers(0, 4)),
    st.builds(lambda m: CmapSetCurrentMapRequest(CmapMap(m)).encode(), st.integers(0, 1)),
    st.binary(max_size=400),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_REQUESTS, max_size=20))
def test_fuzz_requests_never_crash(messages: list[bytes]) -> None:
    """Any sequence of requests gets a well-formed response or MalformedMessage, and
    every event the service sends decodes."""
    store = CmapStore()
    store.set("totem.token", U32, 3000, writer=True)
    service = CmapService(store)
    conn = StubConnection(1)
    service.on_connect(conn)  # type: ignore[arg-type]
    for message in messages:
        try:
            reply = service.respond(conn, message)  # type: ignore[arg-type]
        except MalformedMessage:
            continue
        header = decode_response_header_untrusted(reply)
        assert header.size == len(reply) <= conn.max_msg_size
        assert header.error in set(CsErrorCode)
    for raw in conn.events:
        decode_cmap_notify_event_untrusted(raw)
    service.on_disconnect(conn)  # type: ignore[arg-type]
    assert store._tracks == {}
    assert service.session_count == 0
