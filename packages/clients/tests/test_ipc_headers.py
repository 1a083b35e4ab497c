"""Tests of the libqb IPC handshake and header layouts (libqb-ipc.md 1.1, 1.2, 4)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corosync import MalformedMessage
from corosync.ipc import (
    CONNECTION_RESPONSE_SIZE,
    ConnectionRequest,
    ConnectionResponse,
    Credentials,
    IpcType,
    RequestHeader,
    ResponseHeader,
    abstract_socket_address,
    decode_connection_request_untrusted,
    decode_connection_response_untrusted,
    decode_credentials_untrusted,
    decode_dispatch_header_untrusted,
    decode_request_header_untrusted,
    decode_response_header_untrusted,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
PATHS = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x7F, blacklist_characters="\0"), max_size=200
)


def test_abstract_address_is_padded_to_108_bytes() -> None:
    """NUL, the name, NUL padding to the full sun_path."""
    address = abstract_socket_address("cmap")
    assert len(address) == 108
    assert address == b"\0cmap" + b"\0" * 103


@pytest.mark.parametrize("name", ["", "a\0b", "x" * 108])
def test_abstract_address_rejects_bad_names(name: str) -> None:
    """Empty names, NULs and names over 107 bytes are refused."""
    with pytest.raises(ValueError, match="IPC socket name"):
        abstract_socket_address(name)


def test_request_header_layout() -> None:
    """id at 0, size at 8, 16 bytes with zero padding."""
    raw = RequestHeader(id=2, size=288).encode()
    assert raw == struct.pack("<i4xi4x", 2, 288)
    assert len(raw) == 16


def test_response_header_layout() -> None:
    """id at 0, size at 8, error at 16, 24 bytes with zero padding."""
    raw = ResponseHeader(id=10, size=24, error=1).encode()
    assert raw == struct.pack("<i4xi4xi4x", 10, 24, 1)


def test_headers_must_match_message_length() -> None:
    """A header whose size is not the message length is malformed."""
    body = RequestHeader(id=0, size=20).encode() + b"\0" * 8
    with pytest.raises(MalformedMessage, match="says 20 bytes but 24"):
        decode_request_header_untrusted(body)
    ok = ResponseHeader(id=9, size=30, error=1).encode() + b"x" * 6
    assert decode_dispatch_header_untrusted(ok) == ResponseHeader(9, 30, 1)
    with pytest.raises(MalformedMessage, match="shorter"):
        decode_response_header_untrusted(b"\0" * 23)


def test_connection_request_layout() -> None:
    """24 bytes: id -1 at 0, size 24 at 8, max_msg_size at 16."""
    raw = ConnectionRequest(1048576).encode()
    assert raw == struct.pack("<i4xi4xI4x", -1, 24, 1048576)
    assert decode_connection_request_untrusted(raw) == ConnectionRequest(1048576)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (struct.pack("<i4xi4xI4x", -2, 24, 1), "expected -1"),
        (struct.pack("<i4xi4xI4x", -1, 25, 1), "expected 24"),
        (b"\xff" * 23, "of 23 bytes"),
    ],
)
def test_connection_request_rejects_bad_fields(raw: bytes, match: str) -> None:
    """Wrong id, size or length are malformed."""
    with pytest.raises(MalformedMessage, match=match):
        decode_connection_request_untrusted(raw)


def test_connection_response_layout() -> None:
    """12328 bytes; type at 24, max_msg_size at 28, cookie at 32, paths at 40/4136/8232."""
    response = ConnectionResponse(
        error=0,
        connection_type=IpcType.SOCKET,
        max_msg_size=1048576,
        connection=0x1234,
        request="/dev/shm/qb-1/qb-control-cmap",
        response="/dev/shm/qb-1/qb-cmap",
    )
    raw = response.encode()
    assert len(raw) == CONNECTION_RESPONSE_SIZE == 12328
    assert struct.unpack_from("<i4xi4xi4xiIq", raw) == (-1, 12328, 0, 0, 1048576, 0x1234)
    assert raw[40:70] == b"/dev/shm/qb-1/qb-control-cmap\0"
    assert raw[4136:4158] == b"/dev/shm/qb-1/qb-cmap\0"
    assert raw[8232] == 0
    assert decode_connection_response_untrusted(raw) == response


def test_connection_refusal_keeps_only_the_error() -> None:
    """A refusal is read from its header alone."""
    raw = bytearray(ConnectionResponse(error=-13).encode())
    raw[40:4136] = b"x" * 4096  # garbage where the paths would be
    decoded = decode_connection_response_untrusted(bytes(raw))
    assert decoded.error == -13
    assert decoded.request == ""


def test_connection_response_path_must_be_terminated() -> None:
    """An accepted response whose path field has no NUL is malformed."""
    raw = bytearray(ConnectionResponse(request="/a").encode())
    raw[40:4136] = b"y" * 4096
    with pytest.raises(MalformedMessage, match="not NUL-terminated"):
        decode_connection_response_untrusted(bytes(raw))


def test_connection_response_rejects_overlong_paths() -> None:
    """The encoder refuses paths that cannot fit the 4096-byte fields."""
    with pytest.raises(ValueError, match="4096"):
        ConnectionResponse(request="/" * 4096).encode()


def test_credentials_decode() -> None:
    """struct ucred is pid, uid, gid."""
    assert decode_credentials_untrusted(struct.pack("=iII", 42, 1000, 100)) == Credentials(
        42, 1000, 100
    )
    with pytest.raises(MalformedMessage):
        decode_credentials_untrusted(b"\0" * 11)


@given(
    conn_type=INT32,
    size=UINT32,
    cookie=st.integers(-(2**63), 2**63 - 1),
    paths=st.tuples(PATHS, PATHS, PATHS),
)
def test_connection_response_round_trip(
    conn_type: int, size: int, cookie: int, paths: tuple[str, str, str]
) -> None:
    """Accepted responses survive encode and decode unchanged."""
    response = ConnectionResponse(0, conn_type, size, cookie, *paths)
    assert decode_connection_response_untrusted(response.encode()) == response


@given(msg_id=INT32, extra=st.binary(max_size=64), error=INT32)
def test_header_round_trips(msg_id: int, extra: bytes, error: int) -> None:
    """Both headers survive encode and decode with any id and body."""
    req = RequestHeader(msg_id, 16 + len(extra))
    assert decode_request_header_untrusted(req.encode() + extra) == req
    res = ResponseHeader(msg_id, 24 + len(extra), error)
    assert decode_response_header_untrusted(res.encode() + extra) == res


DECODERS = [
    decode_request_header_untrusted,
    decode_response_header_untrusted,
    decode_dispatch_header_untrusted,
    decode_connection_request_untrusted,
    decode_connection_response_untrusted,
    decode_credentials_untrusted,
]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__name__)
@given(data=st.binary(max_size=512))
def test_fuzz_header_decoders(decoder: object, data: bytes) -> None:
    """Random bytes decode or raise MalformedMessage, nothing else."""
    assert callable(decoder)
    with contextlib.suppress(MalformedMessage):
        decoder(data)


@given(
    base=st.builds(ConnectionResponse, INT32, INT32, UINT32, st.just(0), PATHS, PATHS, PATHS),
    edits=st.lists(st.tuples(st.integers(0, 12327), st.integers(0, 255)), max_size=8),
    fill=st.none() | st.tuples(st.sampled_from([40, 4136, 8232]), st.integers(1, 255)),
)
def test_fuzz_connection_response(
    base: ConnectionResponse, edits: list[tuple[int, int]], fill: tuple[int, int] | None
) -> None:
    """Full-size responses with random bytes changed decode or are malformed."""
    raw = bytearray(base.encode())
    for offset, value in edits:
        raw[offset] = value
    if fill is not None:  # a path field with no NUL at all
        raw[fill[0] : fill[0] + 4096] = bytes([fill[1]]) * 4096
    with contextlib.suppress(MalformedMessage):
        decode_connection_response_untrusted(bytes(raw))
