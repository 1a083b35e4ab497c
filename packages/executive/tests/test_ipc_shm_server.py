"""IpcServer over the SHM transport, driven by a minimal libqb-like client written here
(reference/libqb-ipc.md section 3.5): request/response, events with their wake-up byte,
flow control in the request ring, cleanup, and clients that write nonsense or shrink
their files. The real libqb client is tested in test_ipc_real_tool.py."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trio

from corosync.ipc import (
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    ConnectionRequest,
    IpcType,
    RequestHeader,
    ResponseHeader,
    abstract_socket_address,
    decode_connection_response_untrusted,
)
from corosync_executive._ipc_server import AccessPolicy, IpcConnection, IpcServer

ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
COMMITTED = 0xA1A1A1A1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.sem_post.argtypes = (ctypes.c_void_p,)
_libc.sem_trywait.argtypes = (ctypes.c_void_p,)


def reply(response_id: int, payload: bytes) -> bytes:
    """A whole response message: header (24 bytes) and payload."""
    return ResponseHeader(response_id, RESPONSE_HEADER_SIZE + len(payload), 1).encode() + payload


async def echo(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
    """Answers with the request's payload; request id 7 also queues it as an event."""
    payload = message[REQUEST_HEADER_SIZE:]
    if request_id == 7:
        conn.send_event(reply(70, payload))
    if request_id == 8:  # a burst: one event per payload byte, queued together
        for i, value in enumerate(payload):
            conn.send_event(reply(80 + i, bytes([value])))
    return reply(request_id, payload)


class Ring:
    """The client's view of one ring: header and data mapped shared."""

    def __init__(self, name: str) -> None:
        self.maps = []
        for part in ("header", "data"):
            fd = os.open(f"{name}-{part}", os.O_RDWR)
            try:
                self.maps.append(mmap.mmap(fd, os.fstat(fd).st_size))
            finally:
                os.close(fd)
        self.header, self.data = self.maps
        self.words = len(self.data) // 4

    def word(self, index: int) -> int:
        value: int = struct.unpack_from("=I", self.data, (index % self.words) * 4)[0]
        return value

    def write(self, payload: bytes, length: int | None = None) -> None:
        """Commit a chunk (no wrap needed in these tests) and post the semaphore."""
        w = struct.unpack_from("=I", self.header, 0)[0]
        struct.pack_into("=I", self.data, w * 4, len(payload) if length is None else length)
        self.data[(w + 2) * 4 : (w + 2) * 4 + len(payload)] = payload
        struct.pack_into("=I", self.header, 0, w + 2 + (len(payload) + 3) // 4)
        struct.pack_into("=I", self.data, (w + 1) * 4, COMMITTED)
        self._semaphore(_libc.sem_post)

    def _semaphore(self, operation: Callable[[int], int]) -> int:
        anchor = ctypes.c_char.from_buffer(self.header)
        try:
            return operation(ctypes.addressof(anchor) + 8208)
        finally:
            del anchor

    def read(self, timeout: float = 5) -> bytes:
        """Wait for the next committed chunk and consume it."""
        deadline = time.monotonic() + timeout
        r = struct.unpack_from("=I", self.header, 4)[0]
        while self.word(r + 1) != COMMITTED:
            assert time.monotonic() < deadline, "no chunk came"
            time.sleep(0.005)
        length = self.word(r)
        chunk = bytes(self.data[(r + 2) * 4 : (r + 2) * 4 + length])
        struct.pack_into("=I", self.data, ((r + 1) % self.words) * 4, 0)
        struct.pack_into("=I", self.header, 4, r + 2 + (length + 3) // 4)
        # As libqb's reader: one semaphore count per chunk, or the writer sees "full".
        assert self._semaphore(_libc.sem_trywait) == 0
        return chunk

    def close(self) -> None:
        for m in self.maps:
            m.close()


class Client:
    """Handshake on the setup socket, then the three rings."""

    def __init__(self, name: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(abstract_socket_address(name))
        self.sock.sendall(ConnectionRequest(65536).encode())
        raw = b""
        while len(raw) < 12328:
            part = self.sock.recv(12328 - len(raw))
            assert part, "the server closed during the handshake"
            raw += part
        self.answer = decode_connection_response_untrusted(raw)
        assert self.answer.error == 0
        assert self.answer.connection_type == IpcType.SHM
        self.request = Ring(self.answer.request)
        self.response = Ring(self.answer.response)
        self.event = Ring(self.answer.event)
        self.directory = os.path.dirname(self.answer.request)

    def call(self, request_id: int, payload: bytes) -> bytes:
        self.request.write(
            RequestHeader(request_id, REQUEST_HEADER_SIZE + len(payload)).encode() + payload
        )
        self.sock.send(b"x")
        return self.response.read()

    def server_hung_up(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        for ring in (self.request, self.response, self.event):
            ring.close()
        self.sock.close()


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pct-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def server(runtime_dir: str) -> AsyncIterator[IpcServer]:
    prefix = f"s{os.getpid()}{uuid.uuid4().hex[:6]}-"
    made = IpcServer("echo", echo, prefix=prefix, authorize=ME, runtime_dir=runtime_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(made.serve)
        yield made
        nursery.cancel_scope.cancel()


async def _wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_shm_is_the_default_and_serves_requests_in_order(
    server: IpcServer, runtime_dir: str
) -> None:
    """The handshake answers SHM with six ring files; requests are answered in order."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        assert server.transport == "shm"
        assert sorted(os.listdir(client.directory)) == sorted(
            f"qb-{ring}-{server.name}-{part}"
            for ring in ("request", "response", "event")
            for part in ("header", "data")
        )
        for i in range(1, 40):
            payload = bytes([i]) * i
            got = await trio.to_thread.run_sync(client.call, i, payload)
            assert got == reply(i, payload)
        assert server.stats.requests == 39
    finally:
        client.close()
    await _wait_until(lambda: os.listdir(runtime_dir) == [])
    assert server.connections == ()


async def test_events_come_with_a_wakeup_byte(server: IpcServer) -> None:
    """An event lands in the event ring and one byte arrives on the setup socket."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        await trio.to_thread.run_sync(lambda: client.call(7, b"evt"))
        byte = await trio.to_thread.run_sync(lambda: client.sock.recv(16))
        assert len(byte) == 1
        event = await trio.to_thread.run_sync(client.event.read)
        assert event == reply(70, b"evt")
        assert server.stats.events_sent == 1
    finally:
        client.close()


async def test_a_burst_of_events_comes_in_order_with_one_byte_each(server: IpcServer) -> None:
    """Events queued together land in the event ring in order, and exactly one wake-up
    byte per event arrives on the setup socket (libqb's dispatch reads one of each)."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        await trio.to_thread.run_sync(lambda: client.call(8, b"abcde"))
        received = b""
        while len(received) < 5:
            received += await trio.to_thread.run_sync(lambda: client.sock.recv(16))
        assert len(received) == 5
        for i, value in enumerate(b"abcde"):
            event = await trio.to_thread.run_sync(client.event.read)
            assert event == reply(80 + i, bytes([value]))
        assert server.stats.events_sent == 5
        client.sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            client.sock.recv(16)  # no byte more than events
    finally:
        client.close()


async def test_chunks_beyond_one_batch_need_no_further_byte(server: IpcServer) -> None:
    """A client that commits many requests and announces them with a single byte gets
    every answer: the server drains the ring until it is empty after reading bytes,
    more than one batch (64) of requests included."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        count = 150
        for i in range(1, count + 1):
            client.request.write(RequestHeader(i, REQUEST_HEADER_SIZE + 1).encode() + bytes([i]))
        client.sock.send(b"x")
        for i in range(1, count + 1):
            got = await trio.to_thread.run_sync(client.response.read)
            assert got == reply(i, bytes([i]))
        assert server.stats.requests == count
    finally:
        client.close()


async def test_flow_control_lives_in_the_request_ring(server: IpcServer) -> None:
    """set_flow_control writes the int32 at offset 8240 of the request ring's header."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        await _wait_until(lambda: len(server.connections) == 1)
        server.set_flow_control(1)
        assert struct.unpack_from("=i", client.request.header, 8240)[0] == 1
        assert server.connections[0].flow_control == 1
        server.set_flow_control(0)
        assert struct.unpack_from("=i", client.request.header, 8240)[0] == 0
    finally:
        client.close()


async def test_hostile_chunk_drops_only_that_client(server: IpcServer, runtime_dir: str) -> None:
    """A chunk claiming more bytes than the ring holds closes that connection and
    removes its files; other clients go on."""
    good = await trio.to_thread.run_sync(lambda: Client(server.name))
    bad = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        bad.request.write(b"junk", length=10**9)
        bad.sock.send(b"x")
        assert await trio.to_thread.run_sync(bad.server_hung_up)
        await _wait_until(lambda: not os.path.exists(bad.directory))
        assert await trio.to_thread.run_sync(lambda: good.call(3, b"ok")) == reply(3, b"ok")
    finally:
        good.close()
        bad.close()


async def test_shrunk_files_drop_the_client_without_sigbus(server: IpcServer) -> None:
    """A client truncating its data file is disconnected; the server stays up."""
    client = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        client.request.write(RequestHeader(1, REQUEST_HEADER_SIZE).encode())
        os.truncate(f"{client.answer.request}-data", 0)
        client.sock.send(b"x")
        assert await trio.to_thread.run_sync(client.server_hung_up)
    finally:
        client.close()
    other = await trio.to_thread.run_sync(lambda: Client(server.name))
    try:
        assert await trio.to_thread.run_sync(lambda: other.call(2, b"")) == reply(2, b"")
    finally:
        other.close()


async def test_socket_transport_stays_selectable(runtime_dir: str) -> None:
    """transport='socket' answers SOCKET in the handshake."""
    prefix = f"s{os.getpid()}{uuid.uuid4().hex[:6]}-"
    made = IpcServer(
        "echo", echo, prefix=prefix, authorize=ME, runtime_dir=runtime_dir, transport="socket"
    )

    def handshake() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(abstract_socket_address(made.name))
            sock.sendall(ConnectionRequest(65536).encode())
            raw = b""
            while len(raw) < 12328:
                raw += sock.recv(12328 - len(raw))
            return decode_connection_response_untrusted(raw).connection_type

    async with trio.open_nursery() as nursery:
        await nursery.start(made.serve)
        assert await trio.to_thread.run_sync(handshake) == IpcType.SOCKET
        nursery.cancel_scope.cancel()
