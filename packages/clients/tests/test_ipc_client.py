"""Tests of the blocking IPC client's handshake against scripted fake servers.

The full request/response/event behaviour is tested against the executive's real server
in packages/executive/tests/test_ipc_server.py; here a thread plays a server that
answers the handshake in ways a real one rarely does (refusals, other transports,
garbage, silence), and the client must turn each into a clear CsError.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from corosync import CsError, CsErrorCode
from corosync.ipc import (
    CONNECTION_REQUEST_SIZE,
    ConnectionResponse,
    IpcClient,
    IpcType,
    abstract_socket_address,
)

Behaviour = Callable[[socket.socket], None]


def _unique_name() -> str:
    return f"pytest-ipc-{os.getpid()}-{uuid.uuid4().hex[:8]}-cmap"


class FakeServer:
    """Listens on an abstract name; runs ``behaviour`` on the first connection."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.name = _unique_name()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(abstract_socket_address(self.name))
        self.listener.listen(4)
        self.received = b""
        self.done = threading.Event()
        self._behaviour = behaviour
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            while len(self.received) < CONNECTION_REQUEST_SIZE:
                chunk = conn.recv(CONNECTION_REQUEST_SIZE - len(self.received))
                if not chunk:
                    break
                self.received += chunk
            self._behaviour(conn)
            self.done.set()
            self.done.wait(0)

    def close(self) -> None:
        self._thread.join(10)
        self.listener.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Behaviour], FakeServer]]:
    servers: list[FakeServer] = []

    def make(behaviour: Behaviour) -> FakeServer:
        server = FakeServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def _answer(response: ConnectionResponse) -> Behaviour:
    def behaviour(conn: socket.socket) -> None:
        conn.sendall(response.encode())

    return behaviour


def _connect_error(name: str, timeout: float = 10.0) -> CsError:
    with pytest.raises(CsError) as info:
        IpcClient.connect(name, timeout=timeout)
    return info.value


def test_no_daemon_gives_library_error() -> None:
    """Nothing listening: CS_ERR_LIBRARY with a message that says so."""
    error = _connect_error(_unique_name())
    assert error.code is CsErrorCode.LIBRARY
    assert "nothing is listening" in str(error)
    assert str(error).startswith("CS_ERR_LIBRARY: ")


def test_unpadded_name_is_a_different_socket() -> None:
    """A listener bound without the NUL padding is not found (libqb's rule)."""
    name = _unique_name()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(b"\0" + name.encode())
        listener.listen(1)
        assert _connect_error(name).code is CsErrorCode.LIBRARY


def test_handshake_request_is_libqbs(fake_server: Callable[[Behaviour], FakeServer]) -> None:
    """The client sends id -1, size 24, max_msg_size 1 MiB."""
    server = fake_server(_answer(ConnectionResponse(error=-errno.EACCES)))
    _connect_error(server.name)
    assert server.received == struct.pack("=i4xi4xI4x", -1, 24, 1048576)


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (-errno.EACCES, CsErrorCode.ACCESS, "Permission denied"),
        (-errno.EAGAIN, CsErrorCode.TRY_AGAIN, "temporarily unavailable"),
        (-errno.ENOTSUP, CsErrorCode.NOT_SUPPORTED, "not supported"),
        (-errno.EMFILE, CsErrorCode.LIBRARY, "Too many open files"),
        (-errno.ENOMEM, CsErrorCode.NO_MEMORY, "memory"),
    ],
)
def test_refusals_map_to_cs_errors(
    fake_server: Callable[[Behaviour], FakeServer], error: int, code: CsErrorCode, text: str
) -> None:
    """A refusal's negative errno becomes the cs_error_t of qb_to_cs_error."""
    server = fake_server(_answer(ConnectionResponse(error=error)))
    exc = _connect_error(server.name)
    assert exc.code is code
    assert "refused the connection" in str(exc)
    assert text in str(exc)


@pytest.mark.parametrize(
    ("conn_type", "code"),
    [
        (IpcType.POSIX_MQ, CsErrorCode.NOT_SUPPORTED),
        (IpcType.SYSV_MQ, CsErrorCode.NOT_SUPPORTED),
        (7, CsErrorCode.INVALID_PARAM),
    ],
)
def test_other_transports_are_refused(
    fake_server: Callable[[Behaviour], FakeServer], conn_type: int, code: CsErrorCode
) -> None:
    """A server choosing a transport other than SHM or SOCKET gets a clear error."""
    server = fake_server(_answer(ConnectionResponse(connection_type=conn_type)))
    exc = _connect_error(server.name)
    assert exc.code is code
    assert "this client speaks SHM and SOCKET" in str(exc)


def test_garbage_handshake_is_library_error(
    fake_server: Callable[[Behaviour], FakeServer],
) -> None:
    """A full-size answer that is not a connection response is rejected."""
    server = fake_server(lambda conn: conn.sendall(b"\x07" * 12328))
    exc = _connect_error(server.name)
    assert exc.code is CsErrorCode.LIBRARY
    assert "bad handshake" in str(exc)


def test_server_closing_in_handshake_is_library_error(
    fake_server: Callable[[Behaviour], FakeServer],
) -> None:
    """EOF before the whole answer is CS_ERR_LIBRARY."""
    server = fake_server(lambda conn: conn.sendall(b"\0" * 100))
    exc = _connect_error(server.name)
    assert exc.code is CsErrorCode.LIBRARY
    assert "closed the connection in the handshake" in str(exc)


def test_silent_server_times_out(fake_server: Callable[[Behaviour], FakeServer]) -> None:
    """No answer within the timeout is CS_ERR_TIMEOUT."""
    release = threading.Event()

    def stall(conn: socket.socket) -> None:
        release.wait(10)

    server = fake_server(stall)
    try:
        exc = _connect_error(server.name, timeout=0.2)
    finally:
        release.set()
    assert exc.code is CsErrorCode.TIMEOUT


def test_missing_transport_files_are_library_error(
    fake_server: Callable[[Behaviour], FakeServer],
) -> None:
    """An accepted answer naming files and sockets that do not exist fails cleanly."""
    answer = ConnectionResponse(request="/nonexistent/qb-control-cmap", response="/nonexistent/b")
    server = fake_server(_answer(answer))
    exc = _connect_error(server.name)
    assert exc.code is CsErrorCode.LIBRARY
    assert "cannot open the transport" in str(exc)


@pytest.mark.parametrize(
    "names",
    [
        ("", "", ""),
        ("relative/r", "/nonexistent/s", "/nonexistent/e"),
        ("/nonexistent/qb-request-cmap", "/nonexistent/r", "/nonexistent/e"),
    ],
)
def test_missing_shm_rings_are_library_error(
    fake_server: Callable[[Behaviour], FakeServer], names: tuple[str, str, str]
) -> None:
    """An SHM answer naming rings that are not there (or not absolute) fails cleanly."""
    request, response, event = names
    answer = ConnectionResponse(
        connection_type=IpcType.SHM, request=request, response=response, event=event
    )
    server = fake_server(_answer(answer))
    exc = _connect_error(server.name)
    assert exc.code is CsErrorCode.LIBRARY
    assert "cannot open the transport" in str(exc)


def test_overlong_name_is_invalid_param() -> None:
    """A service name that cannot fit sun_path is CS_ERR_INVALID_PARAM."""
    exc = _connect_error("x" * 200)
    assert exc.code is CsErrorCode.INVALID_PARAM
