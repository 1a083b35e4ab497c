"""Tests of the libqb IPC server (SOCKET transport) with our blocking client.

Each test runs an :class:`IpcServer` under a unique abstract name (a per-test prefix,
so parallel runs and a real corosync on this host never meet) and drives it from
:class:`corosync.ipc.IpcClient` in a worker thread. The per-connection files go to a
private directory under /dev/shm, so the tests can check that they are removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from corosync import CsError, CsErrorCode, MalformedMessage
from corosync.ipc import (
    CmapGetRequest,
    CmapGetResponse,
    CmapNotifyEvent,
    CmapRequestId,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapTrackType,
    CmapValueType,
    ConnectionRequest,
    Credentials,
    IpcClient,
    RequestHeader,
    abstract_socket_address,
    decode_cmap_notify_event_untrusted,
    decode_cmap_request_untrusted,
    decode_cmap_response_untrusted,
    decode_cmap_value_untrusted,
    decode_connection_response_untrusted,
    decode_response_header_untrusted,
    encode_cmap_value,
    encode_error_response,
)
from corosync_executive._ipc_server import (
    MAX_MSG_SIZE_CAP,
    AccessPolicy,
    IpcConnection,
    IpcServer,
    IpcServerError,
    check_credentials,
)

SRC_PATHS = [str(Path(__file__).resolve().parents[2] / d / "src") for d in ("executive", "clients")]

Handler = Callable[[IpcConnection, int, bytes], Awaitable[bytes | None]]

# corosync's rule plus our own uid, so the suite also passes when not run as root.
ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))


async def cmap_get_handler(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
    """A tiny cmap: SET_CURRENT_MAP, and GET of the one key totem.token (u32) = 3000."""
    del conn, request_id
    request = decode_cmap_request_untrusted(message)
    if isinstance(request, CmapSetCurrentMapRequest):
        return CmapSetCurrentMapResponse().encode()
    if isinstance(request, CmapGetRequest):
        if request.key != "totem.token":
            return CmapGetResponse(error=CsErrorCode.NOT_EXIST).encode(buffer_len=request.value_len)
        value = encode_cmap_value(CmapValueType.UINT32, 3000)
        if request.value_len == 0:
            response = CmapGetResponse(value_type=CmapValueType.UINT32, value_len=len(value))
            return response.encode(buffer_len=0)
        if request.value_len < len(value):
            return encode_error_response(CsErrorCode.INVALID_PARAM)
        response = CmapGetResponse(
            value_type=CmapValueType.UINT32, value_len=len(value), value=value
        )
        return response.encode(buffer_len=request.value_len)
    return encode_error_response(CsErrorCode.NOT_SUPPORTED)


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pct-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def prefix() -> str:
    return f"t{os.getpid()}{uuid.uuid4().hex[:6]}-"


class Harness:
    """A running server plus helpers to call it from a thread."""

    def __init__(self, server: IpcServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(fn)

    def connect(self, **kwargs: Any) -> IpcClient:
        return IpcClient.connect(self.server.service_name, prefix=self.prefix, **kwargs)


@pytest.fixture
async def start_server(
    prefix: str, runtime_dir: str
) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    async with trio.open_nursery() as nursery:

        async def start(handler: Handler = cmap_get_handler, **kwargs: Any) -> Harness:
            kwargs.setdefault("runtime_dir", runtime_dir)
            kwargs.setdefault("authorize", ME)
            kwargs.setdefault("transport", "socket")  # our IpcClient speaks SOCKET only
            server = IpcServer("cmap", handler, prefix=prefix, **kwargs)
            await nursery.start(server.serve)
            return Harness(server, prefix)

        yield start
        nursery.cancel_scope.cancel()


def _get_token(client: IpcClient, value_len: int = 16) -> CmapGetResponse:
    raw = client.request(CmapGetRequest("totem.token", value_len).encode(), timeout=5)
    return decode_cmap_response_untrusted(raw, CmapGetResponse)


# ---------------------------------------------------------------- basics


async def test_client_reads_totem_token(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """The cmapctl flow: set map, length query, typed get -> totem.token (u32) = 3000."""
    h = await start_server()

    def flow() -> tuple[CmapGetResponse, CmapGetResponse, CmapGetResponse]:
        with h.connect() as client:
            raw = client.request(CmapSetCurrentMapRequest().encode(), timeout=5)
            assert decode_cmap_response_untrusted(raw, CmapSetCurrentMapResponse).error is (
                CsErrorCode.OK
            )
            length = _get_token(client, 0)
            full = _get_token(client, 16)
            raw = client.request(CmapGetRequest("no.such.key", 16).encode(), timeout=5)
            missing = decode_cmap_response_untrusted(raw, CmapGetResponse)
            assert len(os.listdir(runtime_dir)) == 1  # this connection's directory
            return length, full, missing

    length, full, missing = await h.call(flow)
    assert (length.value_type, length.value_len, length.value) == (CmapValueType.UINT32, 4, b"")
    assert full.value_type is CmapValueType.UINT32
    assert decode_cmap_value_untrusted(CmapValueType.UINT32, full.value) == 3000
    assert missing.error is CsErrorCode.NOT_EXIST
    with trio.fail_after(5):
        while h.server.connections or os.listdir(runtime_dir):
            await trio.sleep(0.01)
    assert h.server.stats.accepted == 1
    assert h.server.stats.requests == 4


async def test_connection_files_and_credentials(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """The control file is 24 bytes, mode 0600; both sides see each other's pid."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        (conn,) = h.server.connections
        assert conn.credentials == Credentials(os.getpid(), os.getuid(), os.getgid())
        assert client.server_credentials == Credentials(os.getpid(), os.getuid(), os.getgid())
        assert client.max_msg_size == 1048576
        (directory,) = os.listdir(runtime_dir)
        assert directory.startswith(f"qb-{os.getpid()}-{os.getpid()}-")
        (control,) = os.listdir(os.path.join(runtime_dir, directory))
        assert control == f"qb-control-{h.prefix}cmap"
        info = os.stat(os.path.join(runtime_dir, directory, control))
        assert (info.st_size, info.st_mode & 0o777) == (24, 0o600)
    finally:
        client.close()


async def test_prefix_separates_servers(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A prefixed server is found only with its prefix; the socket name is padded."""
    h = await start_server()
    with pytest.raises(CsError) as info:
        await h.call(lambda: IpcClient.connect("cmap", prefix=h.prefix + "other-"))
    assert info.value.code is CsErrorCode.LIBRARY
    unpadded = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unpadded, pytest.raises(ConnectionRefusedError):
        unpadded.connect(b"\0" + f"{h.prefix}cmap".encode())
    client = await h.call(h.connect)
    client.close()


async def test_second_server_on_same_name_fails(
    start_server: Callable[..., Awaitable[Harness]], prefix: str
) -> None:
    """Binding a name already served raises IpcServerError naming it."""
    await start_server()
    server = IpcServer("cmap", cmap_get_handler, prefix=prefix, transport="socket")
    with pytest.raises(IpcServerError, match="already in use"):
        await server.serve()


def test_bad_service_names_are_rejected() -> None:
    """Names with '/' or too long for sun_path are refused up front."""
    with pytest.raises(IpcServerError, match="without '/'"):
        IpcServer("cmap", cmap_get_handler, prefix="a/")
    with pytest.raises(IpcServerError, match=r"1\.\.107 bytes"):
        IpcServer("cmap", cmap_get_handler, prefix="x" * 110)


# ---------------------------------------------------------------- access policy


def test_policy_accepts_root_and_configured_ids() -> None:
    """uid 0 or gid 0 pass; listed uids and gids pass; others get -EACCES."""

    def check(creds: Credentials | None) -> int:
        return check_credentials(creds, allowed_uids={1000}, allowed_gids={189})

    assert check(Credentials(1, 0, 100)) == 0
    assert check(Credentials(1, 500, 0)) == 0
    assert check(Credentials(1, 1000, 100)) == 0
    assert check(Credentials(1, 1001, 189)) == 0
    assert check(Credentials(1, 1001, 100)) == -errno.EACCES
    assert check(None) == -errno.EACCES


def test_policy_refuses_everyone_while_not_ready() -> None:
    """Before the daemon is ready even root gets -EAGAIN (clients retry)."""
    assert check_credentials(Credentials(1, 0, 0), ready=False) == -errno.EAGAIN
    policy = AccessPolicy(allowed_uids=frozenset({7}))
    assert policy(Credentials(1, 7, 7)) == 0
    assert policy(Credentials(1, 8, 8)) == -errno.EACCES
    assert AccessPolicy(ready=False)(Credentials(1, 0, 0)) == -errno.EAGAIN


async def test_refused_client_gets_access_error(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """A policy refusal reaches the client as CS_ERR_ACCESS; nothing is left behind."""
    seen: list[Credentials | None] = []

    def deny_root(creds: Credentials | None) -> int:
        seen.append(creds)
        fake = Credentials(creds.pid if creds else 0, 1234, 1234)  # pretend a plain user
        return check_credentials(fake, allowed_uids={1000})

    h = await start_server(authorize=deny_root)
    with pytest.raises(CsError) as info:
        await h.call(h.connect)
    assert info.value.code is CsErrorCode.ACCESS
    assert "Permission denied" in str(info.value)
    assert seen == [Credentials(os.getpid(), os.getuid(), os.getgid())]
    assert h.server.stats.refused == 1
    assert os.listdir(runtime_dir) == []


async def test_not_ready_gives_try_again(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A server that is not ready answers CS_ERR_TRY_AGAIN."""
    h = await start_server(authorize=AccessPolicy(ready=False))
    with pytest.raises(CsError) as info:
        await h.call(h.connect)
    assert info.value.code is CsErrorCode.TRY_AGAIN


async def test_failing_policy_refuses(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A policy that raises refuses the client instead of killing the server."""

    def broken(creds: Credentials | None) -> int:
        raise RuntimeError("boom")

    h = await start_server(authorize=broken)
    with pytest.raises(CsError) as info:
        await h.call(h.connect)
    assert info.value.code is CsErrorCode.ACCESS


async def test_bad_connection_request_gets_einval(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A 24-byte handshake with the wrong id is answered -EINVAL and closed."""
    h = await start_server()

    def raw_handshake() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(abstract_socket_address(f"{h.prefix}cmap"))
            sock.sendall(struct.pack("=i4xi4xI4x", 5, 24, 1))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    data = await h.call(raw_handshake)
    assert decode_connection_response_untrusted(data).error == -errno.EINVAL
    assert h.server.stats.failed_handshakes == 1


async def test_silent_client_is_dropped_after_handshake_timeout(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A client that connects and says nothing is closed after the timeout."""
    h = await start_server(handshake_timeout=0.2)

    def silent() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(abstract_socket_address(f"{h.prefix}cmap"))
            return sock.recv(10)

    assert await h.call(silent) == b""
    assert h.server.stats.failed_handshakes == 1
    client = await h.call(h.connect)  # the server still serves
    client.close()


async def test_client_asking_for_more_gets_more(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """max_msg_size is the larger of the client's wish and the server's size, capped."""
    h = await start_server(max_msg_size=65536)
    small = await h.call(lambda: h.connect(max_msg_size=1024))
    big = await h.call(lambda: h.connect(max_msg_size=2 * 1048576))
    huge = await h.call(lambda: h.connect(max_msg_size=2**32 - 1))
    try:
        assert small.max_msg_size == 65536
        assert big.max_msg_size == 2 * 1048576
        assert huge.max_msg_size == MAX_MSG_SIZE_CAP == 16 * 1048576
        assert (await h.call(lambda: _get_token(huge))).error is CsErrorCode.OK
    finally:
        small.close()
        big.close()
        huge.close()
    assert ConnectionRequest(1024).max_msg_size == 1024


# ---------------------------------------------------------------- malformed input


def _bare(raw: bytes) -> tuple[int, int, int]:
    header = decode_response_header_untrusted(raw)
    return header.id, header.size, header.error


async def test_malformed_requests_get_invalid_param(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """Unframeable or undecodable requests get corosync's bare INVALID_PARAM reply."""
    h = await start_server()
    bad = [
        b"abc",  # shorter than a header
        RequestHeader(2, 300).encode() + b"\0" * 8,  # size is not the length
        RequestHeader(99, 16).encode(),  # unknown cmap request
        RequestHeader(CmapRequestId.GET, 24).encode() + b"\0" * 8,  # wrong size for GET
        RequestHeader(-7, 16).encode(),  # negative id
        CmapGetRequest("k").encode()[:24] + b"z" * 264,  # key without NUL
    ]

    def send_all() -> tuple[list[tuple[int, int, int]], CmapGetResponse]:
        with h.connect() as client:
            replies = [_bare(client.request(raw, timeout=5)) for raw in bad]
            return replies, _get_token(client)

    replies, after = await h.call(send_all)
    assert replies == [(0, 24, CsErrorCode.INVALID_PARAM)] * len(bad)
    assert decode_cmap_value_untrusted(CmapValueType.UINT32, after.value) == 3000
    assert h.server.stats.malformed_requests == len(bad)


async def test_handler_failures_become_error_replies(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A handler's CsError, crash or bad response is answered, never fatal."""

    async def handler(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
        del conn, message
        if request_id == 1:
            raise CsError(CsErrorCode.BUSY, "later")
        if request_id == 2:
            raise RuntimeError("handler bug")
        if request_id == 3:
            return b"\0" * 10  # not a response
        if request_id == 4:
            raise MalformedMessage("bad field")
        return encode_error_response(CsErrorCode.OK, 77)

    h = await start_server(handler)

    def calls() -> list[tuple[int, int, int]]:
        with h.connect() as client:
            return [
                _bare(client.request(RequestHeader(i, 16).encode(), timeout=5))
                for i in (1, 2, 3, 4, 0)
            ]

    assert await h.call(calls) == [
        (0, 24, CsErrorCode.BUSY),
        (0, 24, CsErrorCode.LIBRARY),
        (0, 24, CsErrorCode.LIBRARY),
        (0, 24, CsErrorCode.INVALID_PARAM),
        (77, 24, CsErrorCode.OK),
    ]
    assert h.server.stats.handler_errors == 2


async def test_oversized_response_is_replaced(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A response longer than the client's buffer becomes a TOO_BIG error reply."""

    async def handler(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
        del request_id, message
        size = conn.max_msg_size + 8
        return struct.pack("=i4xi4xi4x", 0, size, 1) + b"\0" * (size - 24)

    h = await start_server(handler, max_msg_size=4096)

    def call() -> tuple[int, int, int]:
        with h.connect(max_msg_size=4096) as client:
            return _bare(client.request(RequestHeader(0, 16).encode(), timeout=5))

    assert await h.call(call) == (0, 24, CsErrorCode.TOO_BIG)


async def test_foreign_datagrams_are_ignored(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """Only the client's own socket may send requests to its connection."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        (directory,) = os.listdir(runtime_dir)
        base = f"{runtime_dir}/{directory}/qb-{h.prefix}cmap"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder:
            intruder.sendto(
                CmapGetRequest("totem.token").encode(), abstract_socket_address(f"{base}-request")
            )
        with trio.fail_after(5):
            while h.server.stats.foreign_datagrams == 0:
                await trio.sleep(0.01)
        response = await h.call(lambda: _get_token(client))
        assert decode_cmap_value_untrusted(CmapValueType.UINT32, response.value) == 3000
        assert h.server.stats.requests == 1
    finally:
        client.close()


async def test_disconnect_request_closes_connection(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A QB_IPC_MSG_DISCONNECT request ends the connection; the client sees it."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        await h.call(lambda: client.send(RequestHeader(-3, 16).encode()))
        with pytest.raises(CsError) as info:
            await h.call(lambda: client.request(CmapSetCurrentMapRequest().encode(), timeout=5))
        assert info.value.code is CsErrorCode.LIBRARY
        assert "closed the connection" in str(info.value)
        assert h.server.connections == ()
    finally:
        client.close()


# ---------------------------------------------------------------- client death


CLIENT_SCRIPT = """
import sys
from corosync.ipc import IpcClient, RequestHeader
client = IpcClient.connect("cmap", prefix=sys.argv[1])
print("connected", flush=True)
client.request(RequestHeader(0, 16).encode())
"""


async def test_client_dying_mid_request_is_cleaned_up(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """kill -9 of a client while its request is being handled: work cancelled, files
    removed, on_disconnect called, other clients unaffected."""
    entered = trio.Event()
    cancelled = trio.Event()
    gone: list[IpcConnection] = []

    async def slow(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
        if request_id != 0:
            return await cmap_get_handler(conn, request_id, message)
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    h = await start_server(slow, on_disconnect=gone.append)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(SRC_PATHS))
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, h.prefix], env=env, stdout=subprocess.PIPE
    )
    try:
        with trio.fail_after(20):
            await entered.wait()
        assert len(os.listdir(runtime_dir)) == 1
        (conn,) = h.server.connections
        assert conn.credentials.pid == proc.pid
        proc.kill()
        with trio.fail_after(10):
            await cancelled.wait()
            while os.listdir(runtime_dir):
                await trio.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert gone == [conn]
    assert conn.closed
    assert h.server.connections == ()
    assert not conn.send_event(b"x" * 24)
    client = await h.call(h.connect)
    try:
        response = await h.call(lambda: client.request(RequestHeader(5, 16).encode(), timeout=5))
        assert _bare(response) == (0, 24, CsErrorCode.INVALID_PARAM)
    finally:
        client.close()


async def test_server_side_close_fails_the_client(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """IpcConnection.close disconnects the client: its next call is CS_ERR_LIBRARY."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        (conn,) = h.server.connections
        conn.close()
        with trio.fail_after(5):
            while h.server.connections:
                await trio.sleep(0.01)
        with pytest.raises(CsError) as info:
            await h.call(lambda: _get_token(client))
        assert info.value.code is CsErrorCode.LIBRARY
    finally:
        client.close()


async def test_server_shutdown_removes_everything(prefix: str, runtime_dir: str) -> None:
    """Cancelling serve() closes connections and removes their files."""
    server = IpcServer(
        "cmap",
        cmap_get_handler,
        prefix=prefix,
        runtime_dir=runtime_dir,
        authorize=ME,
        transport="socket",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        client = await trio.to_thread.run_sync(lambda: IpcClient.connect("cmap", prefix=prefix))
        assert len(os.listdir(runtime_dir)) == 1
        nursery.cancel_scope.cancel()
    try:
        assert os.listdir(runtime_dir) == []
        with pytest.raises(CsError) as info:
            _get_token(client)
        assert info.value.code is CsErrorCode.LIBRARY
    finally:
        client.close()


# ---------------------------------------------------------------- timeouts


async def test_timed_out_request_does_not_shift_responses(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """A late response to a timed-out request is skipped, not given to the next call."""
    release = trio.Event()

    async def handler(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
        del conn, message
        if request_id == 1:
            await release.wait()
        return encode_error_response(CsErrorCode.OK, request_id)

    h = await start_server(handler)
    client = await h.call(h.connect)
    try:
        with pytest.raises(CsError) as info:
            await h.call(lambda: client.request(RequestHeader(1, 16).encode(), timeout=0.2))
        assert info.value.code is CsErrorCode.TIMEOUT
        release.set()
        reply = await h.call(lambda: client.request(RequestHeader(2, 16).encode(), timeout=5))
        assert _bare(reply) == (2, 24, CsErrorCode.OK)
    finally:
        client.close()


# ---------------------------------------------------------------- events, flow control


def _event(n: int) -> bytes:
    return CmapNotifyEvent(
        track_inst_handle=n,
        key="test.key",
        event=CmapTrackType.MODIFY,
        new_value_type=CmapValueType.INT32,
        new_value=encode_cmap_value(CmapValueType.INT32, n),
        old_value_type=CmapValueType.INT32,
        old_value=encode_cmap_value(CmapValueType.INT32, n - 1),
    ).encode()


async def test_events_arrive_in_order_past_the_kernel_queue(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """An event queued before the client bound its socket, then 50 more (more than
    max_dgram_qlen), all arrive in order; then there is none."""

    async def handler(conn: IpcConnection, request_id: int, message: bytes) -> bytes | None:
        del message
        for n in range(1, 51):
            assert conn.send_event(_event(n))
        return encode_error_response(CsErrorCode.OK, request_id)

    h = await start_server(handler, on_connect=lambda conn: conn.send_event(_event(0)))

    def run() -> tuple[list[int], bytes | None]:
        with h.connect() as client:
            client.request(RequestHeader(0, 16).encode(), timeout=5)
            handles = []
            for _ in range(51):
                raw = client.receive_event(timeout=5)
                assert raw is not None
                handles.append(decode_cmap_notify_event_untrusted(raw).track_inst_handle)
            return handles, client.receive_event(timeout=0)

    handles, extra = await h.call(run)
    assert handles == list(range(51))
    assert extra is None
    assert h.server.stats.events_sent == 51


async def test_event_backlog_is_bounded(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """send_event refuses when the backlog limit or the client's buffer is exceeded."""
    h = await start_server(max_event_backlog=1000, max_msg_size=4096)
    client = await h.call(lambda: h.connect(max_msg_size=4096))
    try:
        (conn,) = h.server.connections
        assert not conn.send_event(b"\0" * 5000)  # over the client's buffer
        assert conn.send_event(_event(1))
        accepted = sum(conn.send_event(_event(2)) for _ in range(10))
        assert accepted < 10  # 344-byte events, 1000-byte backlog
    finally:
        client.close()


async def test_flow_control_stops_requests(
    start_server: Callable[..., Awaitable[Harness]],
) -> None:
    """Flag 1 in the control file makes requests fail with TRY_AGAIN; 0 lets them by."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        h.server.set_flow_control(1)
        (conn,) = h.server.connections
        assert conn.flow_control == 1
        with pytest.raises(CsError) as info:
            await h.call(lambda: _get_token(client))
        assert info.value.code is CsErrorCode.TRY_AGAIN
        # Level 2 stops only cpg mcasts (the library raises fc_enable_max to 2 for them).
        conn.set_flow_control(2)
        assert (await h.call(lambda: _get_token(client))).error is CsErrorCode.OK
        with pytest.raises(CsError):
            await h.call(lambda: client.send(RequestHeader(2, 16).encode(), fc_enable_max=2))
        h.server.set_flow_control(0)
        assert (await h.call(lambda: _get_token(client))).error is CsErrorCode.OK
        late = await h.call(h.connect)
        late.close()
    finally:
        client.close()


async def test_truncated_control_file_does_not_crash_the_server(
    start_server: Callable[..., Awaitable[Harness]], runtime_dir: str
) -> None:
    """A client that truncates its control file cannot make the daemon touch a mapping
    past the end of the file (SIGBUS): flow control is skipped for it, others go on."""
    h = await start_server()
    client = await h.call(h.connect)
    try:
        (directory,) = os.listdir(runtime_dir)
        (control,) = os.listdir(os.path.join(runtime_dir, directory))
        os.truncate(os.path.join(runtime_dir, directory, control), 0)
        (conn,) = h.server.connections
        h.server.set_flow_control(1)  # would write offset 4 of the now empty file
        assert conn.flow_control == 0  # not readable any more: treated as "no control"
        h.server.set_flow_control(0)
        other = await h.call(h.connect)
        try:
            assert (await h.call(lambda: _get_token(other))).error is CsErrorCode.OK
        finally:
            other.close()
    finally:
        client.close()
