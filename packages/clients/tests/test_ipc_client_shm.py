"""IpcClient over the SHM transport (reference/libqb-ipc.md section 3) against the
executive's IpcServer + CmapService (the ``cmap_server`` fixture, conftest.py): requests
and responses, many of them, events with their notification byte, messages near
max_msg_size, flow control, timeouts, a server that goes away in the middle of a call,
closing from another thread; and the ring code with hostile headers and chunks.

Blocking client calls run in worker threads; the server runs in the test's trio loop.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync import CmapTrackType, CmapValueType, CsError, CsErrorCode, MalformedMessage
from corosync.cmap import CmapDispatchFlags, CmapNotification, CmapTypedValue, initialize
from corosync.ipc import (
    SHM_RING_HEADER_SIZE,
    CmapGetRequest,
    CmapGetResponse,
    CmapSetRequest,
    CmapSetResponse,
    IpcClient,
    IpcType,
    ShmRing,
    ShmRingError,
    decode_cmap_response_untrusted,
    decode_ring_header_untrusted,
    encode_cmap_value,
    shm_data_file_size,
)

COMMITTED = 0xA1A1A1A1
TOKEN = CmapGetRequest("totem.token", 4).encode()


async def call(fn: Any) -> Any:
    return await trio.to_thread.run_sync(fn)


def token(client: IpcClient, timeout: float | None = 5) -> int:
    raw = client.request(TOKEN, timeout=timeout)
    response = decode_cmap_response_untrusted(raw, CmapGetResponse)
    assert response.error is CsErrorCode.OK
    return int.from_bytes(response.value, "little")


async def test_shm_is_followed_and_requests_are_answered(cmap_server: Any) -> None:
    """The server answers SHM; the client maps its rings and gets responses, and the
    handshake reports the server's credentials and the agreed message size."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        assert client.transport is IpcType.SHM
        assert client.max_msg_size == 1048576
        creds = client.server_credentials
        assert creds is not None
        assert (creds.pid, creds.uid) == (os.getpid(), os.getuid())
        assert await call(lambda: token(client)) == 3000
        assert len(cmap_server.files()) == 6  # three rings, two files each
        # The request ring has both sides' references, as libqb's server expects.
        assert client._transport._request.ref_count == 2
        (conn,) = cmap_server.server.connections
        assert conn.requests == 1
    finally:
        await call(client.close)
    assert client.closed
    with pytest.raises(CsError) as info:
        client.request(TOKEN)
    assert info.value.code is CsErrorCode.BAD_HANDLE
    await trio.testing.wait_all_tasks_blocked()
    assert cmap_server.server.connections == ()
    assert cmap_server.files() == []


async def test_many_requests_from_several_threads(cmap_server: Any) -> None:
    """Thousands of requests, four threads sharing one connection: each response
    belongs to its own request (responses are matched by order)."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))

    def worker(index: int) -> None:
        key = f"many.k{index}"
        for value in range(300):
            raw = client.request(
                CmapSetRequest(
                    key, CmapValueType.UINT32, encode_cmap_value(CmapValueType.UINT32, value)
                ).encode()
            )
            assert decode_cmap_response_untrusted(raw, CmapSetResponse).error is CsErrorCode.OK
            got = decode_cmap_response_untrusted(
                client.request(CmapGetRequest(key, 4).encode()), CmapGetResponse
            )
            assert int.from_bytes(got.value, "little") == value

    try:
        async with trio.open_nursery() as nursery:
            for index in range(4):
                nursery.start_soon(trio.to_thread.run_sync, worker, index)
    finally:
        await call(client.close)
    store = cmap_server.service.store
    assert [store.get(f"many.k{i}")[1] for i in range(4)] == [299] * 4


async def test_track_events_wake_the_fileno(cmap_server: Any) -> None:
    """A tracked change arrives as an event: the fileno (the setup socket) polls
    readable, dispatch delivers it, and nothing is left afterwards."""

    def scenario() -> list[CmapNotification]:
        seen: list[CmapNotification] = []
        with initialize(prefix=cmap_server.prefix) as handle:
            assert handle.transport is IpcType.SHM
            assert handle.dispatch_filenos() == (handle.fileno(),)
            track = handle.track_add(
                "ev.", CmapTrackType.ADD | CmapTrackType.MODIFY | CmapTrackType.PREFIX, seen.append
            )
            assert handle.dispatch(CmapDispatchFlags.ALL) == 0
            assert not select.select([handle.fileno()], [], [], 0)[0]
            for value in range(50):
                handle.set("ev.n", value, CmapValueType.UINT8)
            assert select.select([handle.fileno()], [], [], 5)[0]
            count = 0
            while count < 50:
                count += handle.dispatch(CmapDispatchFlags.ONE)
            assert handle.dispatch(CmapDispatchFlags.ALL) == 0
            assert not select.select([handle.fileno()], [], [], 0)[0]
            assert all(n.track_handle == track for n in seen)
        return seen

    seen = await call(scenario)
    assert [n.event for n in seen] == [CmapTrackType.ADD] + [CmapTrackType.MODIFY] * 49
    assert [n.new_value for n in seen] == [
        CmapTypedValue(CmapValueType.UINT8, v) for v in range(50)
    ]


async def test_messages_near_max_msg_size_wrap_the_rings(cmap_server: Any) -> None:
    """Requests and responses of nearly max_msg_size bytes go through intact, several
    times, so the chunks after the first wrap at the rings' end. (cmap keeps values of
    at most 16 KiB: a huge SET is answered INVALID_PARAM after the whole request was
    read; a GET with a huge buffer is answered with a response of that size.)"""

    def scenario() -> None:
        with IpcClient.connect("cmap", prefix=cmap_server.prefix) as client:
            limit = client.max_msg_size
            for shortfall in (0, 1000, 3, 4095):
                value = bytes([shortfall % 251]) * (limit - 296 - shortfall)
                request = CmapSetRequest("big.v", CmapValueType.BINARY, value).encode()
                assert len(request) == limit - shortfall
                answer = decode_cmap_response_untrusted(client.request(request), CmapSetResponse)
                assert answer.error is CsErrorCode.INVALID_PARAM
                raw = client.request(CmapGetRequest("totem.token", limit - 40 - shortfall).encode())
                assert len(raw) == limit - shortfall
                got = decode_cmap_response_untrusted(raw, CmapGetResponse)
                assert int.from_bytes(got.value[:4], "little") == 3000
            with pytest.raises(CsError) as info:
                client.request(b"\0" * (limit + 1))
            assert info.value.code is CsErrorCode.TOO_BIG
        with initialize(prefix=cmap_server.prefix) as handle:
            value = bytes(range(256)) * 64  # 16 KiB, cmap's largest value
            handle.set("big.v", value, CmapValueType.BINARY)
            assert handle.get("big.v") == value

    await call(scenario)


async def test_flow_control_gives_try_again(cmap_server: Any) -> None:
    """The flow-control flag of the request ring stops requests (TRY_AGAIN); level 2
    stops only cpg mcasts (fc_enable_max 2)."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        cmap_server.server.set_flow_control(1)
        with pytest.raises(CsError) as info:
            await call(lambda: token(client))
        assert info.value.code is CsErrorCode.TRY_AGAIN
        cmap_server.server.set_flow_control(2)
        assert await call(lambda: token(client)) == 3000
        with pytest.raises(CsError) as info:
            await call(lambda: client.request(TOKEN, fc_enable_max=2))
        assert info.value.code is CsErrorCode.TRY_AGAIN
        cmap_server.server.set_flow_control(0)
        assert await call(lambda: token(client)) == 3000
    finally:
        await call(client.close)


async def test_timeout_then_the_late_response_is_skipped(cmap_server: Any) -> None:
    """A request with no response in time fails with TIMEOUT; its late response is
    skipped, so the next request gets its own."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        stall = CmapGetRequest("stall.k", 4).encode()
        with pytest.raises(CsError) as info:
            await call(lambda: client.request(stall, timeout=0.05))
        assert info.value.code is CsErrorCode.TIMEOUT
        cmap_server.release.set()
        assert await call(lambda: token(client)) == 3000
        assert await call(lambda: token(client)) == 3000
    finally:
        await call(client.close)


async def test_server_gone_mid_call_is_library_error(cmap_server: Any) -> None:
    """A server that goes away while a call waits for its response makes the call
    fail with CS_ERR_LIBRARY (no hang), and so does every later call."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        stall = CmapGetRequest("stall.k", 4).encode()
        async with trio.open_nursery() as nursery:
            errors: list[CsError] = []

            async def blocked() -> None:
                try:
                    await call(lambda: client.request(stall))
                except CsError as exc:
                    errors.append(exc)

            nursery.start_soon(blocked)
            await cmap_server.stalled.wait()
            cmap_server.stop()
        assert [e.code for e in errors] == [CsErrorCode.LIBRARY]
        assert "closed the connection" in str(errors[0])
        for later in (lambda: token(client), lambda: client.receive_event(0)):
            with pytest.raises(CsError) as info:
                await call(later)
            assert info.value.code is CsErrorCode.LIBRARY
    finally:
        await call(client.close)


async def test_server_gone_wakes_the_event_poll(cmap_server: Any) -> None:
    """The fileno polls readable when the server goes away, and receive_event then
    says so (CS_ERR_LIBRARY) instead of waiting."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        assert client.receive_event(0) is None
        cmap_server.stop()
        await trio.lowlevel.wait_readable(client.fileno())
        with pytest.raises(CsError) as info:
            await call(lambda: client.receive_event(None))
        assert info.value.code is CsErrorCode.LIBRARY
    finally:
        await call(client.close)


async def test_close_from_another_thread_wakes_blocked_calls(cmap_server: Any) -> None:
    """close() in one thread ends a request waiting for its response and an event wait
    in others at once (BAD_HANDLE), then unmaps the rings."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    codes: list[CsErrorCode] = []
    started = threading.Event()

    def wait_event() -> None:
        started.set()
        try:
            client.receive_event(None)
        except CsError as exc:
            codes.append(exc.code)

    def wait_response() -> None:
        try:
            client.request(CmapGetRequest("stall.k", 4).encode())
        except CsError as exc:
            codes.append(exc.code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, wait_event)
        nursery.start_soon(trio.to_thread.run_sync, wait_response)
        await cmap_server.stalled.wait()
        await call(started.wait)
        await call(client.close)
    assert codes == [CsErrorCode.BAD_HANDLE] * 2
    assert client.closed


async def test_request_ring_without_server_reference_is_disconnected(cmap_server: Any) -> None:
    """As libqb's client: a request ring whose ref count is not 2 (the server has
    closed its side) means the connection is gone (CS_ERR_LIBRARY)."""
    client = await call(lambda: IpcClient.connect("cmap", prefix=cmap_server.prefix))
    try:
        ring = client._transport._request
        assert ring.ref_count == 2
        ring.ref_count = 1
        with pytest.raises(CsError) as info:
            await call(lambda: token(client))
        assert info.value.code is CsErrorCode.LIBRARY
    finally:
        await call(client.close)


@pytest.mark.parametrize("transport", ["socket"])
async def test_socket_transport_is_still_followed(cmap_server: Any) -> None:
    """A server answering SOCKET gets the SOCKET transport, same API."""

    def scenario() -> None:
        with initialize(prefix=cmap_server.prefix) as handle:
            assert handle.transport is IpcType.SOCKET
            assert len(handle.dispatch_filenos()) == 2
            assert handle.get("totem.token") == 3000
            seen: list[CmapNotification] = []
            handle.track_add("s.k", CmapTrackType.ADD, seen.append)
            handle.set("s.k", "v", CmapValueType.STRING)
            assert select.select([handle.fileno()], [], [], 5)[0]
            assert handle.dispatch(CmapDispatchFlags.ONE) == 1
            assert seen[0].key == "s.k"

    await call(scenario)


# ------------------------------------------------------------------ ring code


def _make_ring(directory: str, max_msg_size: int = 5000) -> ShmRing:
    return ShmRing.create(f"{directory}/r", max_msg_size, uid=os.getuid(), gid=os.getgid())


def test_client_opened_ring_talks_to_the_created_one() -> None:
    """A ring opened by name shares the creator's chunks, semaphore and pointers,
    in both directions, and takes a reference (ref count 2) that close() drops."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        server = _make_ring(directory)
        client = ShmRing.open(server.name, 5000, header_size=SHM_RING_HEADER_SIZE)
        try:
            assert server.ref_count == client.ref_count == 2
            assert client.data_path == server.data_path
            assert not client.wait(0)
            for index in range(10):
                payload = bytes([index]) * (1500 + index)
                assert server.write(payload)
                assert client.wait(1)
                assert client.read_waited() == payload
                assert client.write(payload[::-1])
                assert server.read() == payload[::-1]
            assert client.semaphore_value() == server.semaphore_value() == 0
        finally:
            client.close()
            assert server.ref_count == 1
            assert os.path.exists(server.header_path)  # the client does not unlink
            server.close()
        assert os.listdir(directory) == []


def test_open_refuses_rings_that_do_not_fit() -> None:
    """A ring created for another max_msg_size, a relative name, or missing files
    give ShmRingError or OSError, never a mapping of the wrong size."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        server = _make_ring(directory, 5000)
        try:
            with pytest.raises(ShmRingError, match="words"):
                ShmRing.open(server.name, 100000)
            with pytest.raises(ShmRingError, match="absolute"):
                ShmRing.open("relative", 5000)
            with pytest.raises(FileNotFoundError):
                ShmRing.open(f"{directory}/missing", 5000)
        finally:
            server.close()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=8300))
def test_decode_ring_header_untrusted_fuzz(data: bytes) -> None:
    """Any bytes decode to a header or raise MalformedMessage."""
    try:
        header = decode_ring_header_untrusted(data)
    except MalformedMessage:
        return
    assert len(data) >= 8208
    assert "\0" not in header.data_path
    assert 0 <= header.word_size < 2**32


@settings(max_examples=100, deadline=None)
@given(
    word_size=st.integers(0, 2**32 - 1),
    data_path=st.binary(max_size=40),
    terminated=st.booleans(),
)
def test_open_hostile_headers_fuzz(word_size: int, data_path: bytes, terminated: bool) -> None:
    """Whatever a server writes in a ring header, open() maps the ring or raises
    ShmRingError or OSError."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        server = _make_ring(directory)
        try:
            with open(server.header_path, "r+b") as header_file:
                header = mmap.mmap(header_file.fileno(), 0)
                struct.pack_into("=I", header, 8, word_size)
                field = data_path if not terminated else data_path + b"\0"
                header[4108 : 4108 + 4096] = field[:4096].ljust(4096, b"x")
                header.close()
            try:
                ring = ShmRing.open(server.name, 5000)
            except (ShmRingError, OSError):
                return
            ring.close()
            assert word_size == shm_data_file_size(5000) // 4
        finally:
            server.close()


@settings(max_examples=200, deadline=None)
@given(
    read_pt=st.integers(0, 2**32 - 1),
    length=st.integers(0, 2**32 - 1),
    magic=st.sampled_from([COMMITTED, 0, 0xD0D0D0D0, 0xFFFFFFFF]),
)
def test_client_reads_hostile_chunks_safely(read_pt: int, length: int, magic: int) -> None:
    """Whatever the server leaves in a response ring, the client's read returns a
    chunk of at most max_msg_size, None, or raises ShmRingError."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        server = _make_ring(directory)
        client = ShmRing.open(server.name, 5000)
        try:
            server._hwords[1] = read_pt
            slot = read_pt % server.words
            server._dwords[slot] = length
            server._dwords[(slot + 1) % server.words] = magic
            try:
                got = client.read_waited()
            except ShmRingError:
                return
            if got is not None:
                assert read_pt < server.words
                assert len(got) == length <= 5000
        finally:
            client.close()
            server.close()


DEAD_SERVER = """
import os, socket, sys, tempfile
from corosync.ipc import ConnectionResponse, IpcType, ShmRing, abstract_socket_address

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(abstract_socket_address(sys.argv[1]))
listener.listen(1)
print("LISTENING", flush=True)
conn, _ = listener.accept()
conn.recv(24)
directory = tempfile.mkdtemp(prefix="pcdead-", dir="/dev/shm")
names = [f"{directory}/qb-{kind}-cmap" for kind in ("request", "response", "event")]
rings = [ShmRing(name, 4096, uid=os.getuid(), gid=os.getgid()) for name in names]
answer = ConnectionResponse(
    connection_type=IpcType.SHM, max_msg_size=4096,
    request=names[0], response=names[1], event=names[2],
)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
conn.sendall(answer.encode())
print(directory, flush=True)
sys.stdin.readline()
os._exit(0)  # dies without cleaning up, as a killed daemon would
"""


def test_rings_of_a_dead_server_are_removed_on_close() -> None:
    """As libqb's client: when the server process has died, close() removes the ring
    files it left behind (a live server removes its own)."""
    name = f"pytest-dead-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    with subprocess.Popen(
        [sys.executable, "-c", DEAD_SERVER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as server:
        assert server.stdout is not None
        assert server.stdin is not None
        assert server.stdout.readline() == "LISTENING\n"
        client = IpcClient.connect(name, timeout=10)
        directory = server.stdout.readline().strip()
        try:
            assert client.transport is IpcType.SHM
            creds = client.server_credentials
            assert creds is not None
            assert creds.pid == server.pid
            assert len(os.listdir(directory)) == 6
            server.stdin.write("die\n")
            server.stdin.flush()
            assert server.wait(10) == 0
            with pytest.raises(CsError) as info:
                client.request(TOKEN, timeout=5)
            assert info.value.code is CsErrorCode.LIBRARY
        finally:
            client.close()
    assert not os.path.exists(directory)
