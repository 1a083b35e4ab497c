"""libqb IPC wire layouts shared by every service: handshake and message headers.

Layouts are those of libqb 2.0.6 on Linux (reference/libqb-ipc.md sections 1 and 4), in
native byte order with the padding the C structs have: every header field is 8-byte
aligned, so a request header is 16 bytes (id at 0, size at 8) and a response header 24
(id, size, error at 0, 8, 16). ``size`` always counts the whole message, header included.

The service is named only by the socket a client connects to: the abstract unix name
``NUL + name`` padded with NULs to the full 108-byte ``sun_path``
(:func:`abstract_socket_address`).
"""

from __future__ import annotations

import enum
import os
import struct

import attrs

from corosync._errors import MalformedMessage

__all__ = [
    "CONNECTION_REQUEST_SIZE",
    "CONNECTION_RESPONSE_SIZE",
    "DEFAULT_MAX_MSG_SIZE",
    "QB_IPC_MSG_AUTHENTICATE",
    "QB_IPC_MSG_DISCONNECT",
    "REQUEST_HEADER_SIZE",
    "RESPONSE_HEADER_SIZE",
    "SUN_PATH_MAX",
    "ConnectionRequest",
    "ConnectionResponse",
    "Credentials",
    "IpcType",
    "RequestHeader",
    "ResponseHeader",
    "abstract_socket_address",
    "decode_connection_request_untrusted",
    "decode_connection_response_untrusted",
    "decode_credentials_untrusted",
    "decode_dispatch_header_untrusted",
    "decode_request_header_untrusted",
    "decode_response_header_untrusted",
]

QB_IPC_MSG_AUTHENTICATE = -1
"""``hdr.id`` of both handshake messages."""
QB_IPC_MSG_DISCONNECT = -3
"""A request with this id (or with size 0) means the client is leaving."""

DEFAULT_MAX_MSG_SIZE = 1048576
"""What every corosync library asks for in the handshake (``IPC_REQUEST_SIZE``)."""

REQUEST_HEADER_SIZE = 16
RESPONSE_HEADER_SIZE = 24
CONNECTION_REQUEST_SIZE = 24
CONNECTION_RESPONSE_SIZE = 12328
SUN_PATH_MAX = 108
_PATH_MAX = 4096

_REQUEST_HEADER = struct.Struct("=i4xi4x")
_RESPONSE_HEADER = struct.Struct("=i4xi4xi4x")
_CONNECTION_REQUEST = struct.Struct("=i4xi4xI4x")
# header, connection_type, max_msg_size, connection cookie (intptr_t), three paths
_CONNECTION_RESPONSE = struct.Struct(f"=i4xi4xi4xiIq{_PATH_MAX}s{_PATH_MAX}s{_PATH_MAX}s")
assert _CONNECTION_RESPONSE.size == CONNECTION_RESPONSE_SIZE
assert _CONNECTION_REQUEST.size == CONNECTION_REQUEST_SIZE

_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
_INT32 = (-(2**31), 2**31 - 1)
_UINT32_MAX = 2**32 - 1


class IpcType(enum.IntEnum):
    """``connection_type`` in the connection response: the server picks the transport."""

    SOCKET = 0
    SHM = 1
    POSIX_MQ = 2
    SYSV_MQ = 3


def abstract_socket_address(name: str) -> bytes:
    """The abstract unix address libqb uses for ``name``: NUL, the name, NUL padding to
    108 bytes. (``b"\\0" + name`` alone is a different name that libqb never finds.)"""
    raw = os.fsencode(name)
    if not raw or b"\0" in raw or len(raw) > SUN_PATH_MAX - 1:
        raise ValueError(
            f"IPC socket name {name!r} must be 1..{SUN_PATH_MAX - 1} bytes without NUL"
        )
    return (b"\0" + raw).ljust(SUN_PATH_MAX, b"\0")


@attrs.frozen
class Credentials:
    """A peer's process id, user id and group id, as the kernel reports them in an
    ``SCM_CREDENTIALS`` control message during the handshake."""

    pid: int
    uid: int
    gid: int


def decode_credentials_untrusted(data: bytes) -> Credentials:
    """The ``struct ucred`` of an ``SCM_CREDENTIALS`` control message."""
    if len(data) < _UCRED.size:
        raise MalformedMessage(f"credentials of {len(data)} bytes, expected {_UCRED.size}")
    pid, uid, gid = _UCRED.unpack_from(data)
    return Credentials(pid, uid, gid)


def _check_int32(name: str, value: int) -> None:
    if not _INT32[0] <= value <= _INT32[1]:
        raise ValueError(f"{name} {value} does not fit in an int32")


@attrs.frozen
class RequestHeader:
    """``qb_ipc_request_header``: the message number inside the service, total size."""

    id: int
    size: int

    def encode(self) -> bytes:
        _check_int32("id", self.id)
        _check_int32("size", self.size)
        return _REQUEST_HEADER.pack(self.id, self.size)


@attrs.frozen
class ResponseHeader:
    """``qb_ipc_response_header``, also the header of dispatch events. ``error`` is a
    ``cs_error_t`` (1 is OK), not an errno."""

    id: int
    size: int
    error: int

    def encode(self) -> bytes:
        _check_int32("id", self.id)
        _check_int32("size", self.size)
        _check_int32("error", self.error)
        return _RESPONSE_HEADER.pack(self.id, self.size, self.error)


def decode_request_header_untrusted(message: bytes) -> RequestHeader:
    """The header of a whole request message; its size must be the message length."""
    if len(message) < REQUEST_HEADER_SIZE:
        raise MalformedMessage(
            f"request of {len(message)} bytes is shorter than its {REQUEST_HEADER_SIZE}-byte header"
        )
    msg_id, size = _REQUEST_HEADER.unpack_from(message)
    if size != len(message):
        raise MalformedMessage(f"request header says {size} bytes but {len(message)} arrived")
    return RequestHeader(msg_id, size)


def decode_response_header_untrusted(message: bytes) -> ResponseHeader:
    """The header of a whole response message; its size must be the message length."""
    if len(message) < RESPONSE_HEADER_SIZE:
        raise MalformedMessage(
            f"response of {len(message)} bytes is shorter than its "
            f"{RESPONSE_HEADER_SIZE}-byte header"
        )
    msg_id, size, error = _RESPONSE_HEADER.unpack_from(message)
    if size != len(message):
        raise MalformedMessage(f"response header says {size} bytes but {len(message)} arrived")
    return ResponseHeader(msg_id, size, error)


def decode_dispatch_header_untrusted(message: bytes) -> ResponseHeader:
    """The header of a whole dispatch event (a response header); size = message length."""
    if len(message) < RESPONSE_HEADER_SIZE:
        raise MalformedMessage(
            f"event of {len(message)} bytes is shorter than its {RESPONSE_HEADER_SIZE}-byte header"
        )
    msg_id, size, error = _RESPONSE_HEADER.unpack_from(message)
    if size != len(message):
        raise MalformedMessage(f"event header says {size} bytes but {len(message)} arrived")
    return ResponseHeader(msg_id, size, error)


@attrs.frozen
class ConnectionRequest:
    """The 24-byte handshake request: the buffer size the client would like."""

    max_msg_size: int = DEFAULT_MAX_MSG_SIZE

    def encode(self) -> bytes:
        if not 0 <= self.max_msg_size <= _UINT32_MAX:
            raise ValueError(f"max_msg_size {self.max_msg_size} does not fit in a uint32")
        return _CONNECTION_REQUEST.pack(
            QB_IPC_MSG_AUTHENTICATE, CONNECTION_REQUEST_SIZE, self.max_msg_size
        )


def decode_connection_request_untrusted(data: bytes) -> ConnectionRequest:
    """A handshake request as read from the setup socket (exactly 24 bytes)."""
    if len(data) != CONNECTION_REQUEST_SIZE:
        raise MalformedMessage(
            f"connection request of {len(data)} bytes, expected {CONNECTION_REQUEST_SIZE}"
        )
    msg_id, size, max_msg_size = _CONNECTION_REQUEST.unpack(data)
    if msg_id != QB_IPC_MSG_AUTHENTICATE:
        raise MalformedMessage(f"connection request has id {msg_id}, expected -1 (authenticate)")
    if size != CONNECTION_REQUEST_SIZE:
        raise MalformedMessage(f"connection request header says {size} bytes, expected 24")
    return ConnectionRequest(max_msg_size)


def _encode_path(field: str, value: str) -> bytes:
    raw = os.fsencode(value)
    if b"\0" in raw or len(raw) >= _PATH_MAX:
        raise ValueError(f"{field} path must be under {_PATH_MAX} bytes without NUL")
    return raw


def _decode_path(field: str, raw: bytes) -> str:
    end = raw.find(b"\0")
    if end < 0:
        raise MalformedMessage(f"connection response {field} path is not NUL-terminated")
    return os.fsdecode(raw[:end])


@attrs.frozen
class ConnectionResponse:
    """The 12328-byte handshake answer.

    ``error`` is 0 (accepted) or a negative errno. For the SOCKET transport ``request``
    is the control file path and ``response`` the base name of the datagram sockets;
    for SHM the three fields name the request, response and event rings.
    ``connection_type`` is kept as a plain int: a client must cope with values it does
    not know (libqb answers ENOTSUP or EINVAL).
    """

    error: int = 0
    connection_type: int = IpcType.SOCKET
    max_msg_size: int = DEFAULT_MAX_MSG_SIZE
    connection: int = 0
    request: str = ""
    response: str = ""
    event: str = ""

    def encode(self) -> bytes:
        _check_int32("error", self.error)
        _check_int32("connection_type", self.connection_type)
        if not 0 <= self.max_msg_size <= _UINT32_MAX:
            raise ValueError(f"max_msg_size {self.max_msg_size} does not fit in a uint32")
        if not -(2**63) <= self.connection < 2**63:
            raise ValueError("connection cookie does not fit in an intptr_t")
        return _CONNECTION_RESPONSE.pack(
            QB_IPC_MSG_AUTHENTICATE,
            CONNECTION_RESPONSE_SIZE,
            self.error,
            self.connection_type,
            self.max_msg_size,
            self.connection,
            _encode_path("request", self.request),
            _encode_path("response", self.response),
            _encode_path("event", self.event),
        )


def decode_connection_response_untrusted(data: bytes) -> ConnectionResponse:
    """A handshake response as read from the setup socket (exactly 12328 bytes).

    A refusal (``error != 0``) has only its header filled in, so its other fields are
    not looked at and come back as defaults.
    """
    if len(data) != CONNECTION_RESPONSE_SIZE:
        raise MalformedMessage(
            f"connection response of {len(data)} bytes, expected {CONNECTION_RESPONSE_SIZE}"
        )
    (msg_id, size, error, conn_type, max_msg_size, cookie, request, response, event) = (
        _CONNECTION_RESPONSE.unpack(data)
    )
    if msg_id != QB_IPC_MSG_AUTHENTICATE:
        raise MalformedMessage(f"connection response has id {msg_id}, expected -1")
    if error != 0:
        return ConnectionResponse(error=error, connection_type=conn_type, max_msg_size=0)
    if size != CONNECTION_RESPONSE_SIZE:
        raise MalformedMessage(f"connection response header says {size} bytes, expected 12328")
    return ConnectionResponse(
        error=0,
        connection_type=conn_type,
        max_msg_size=max_msg_size,
        connection=cookie,
        request=_decode_path("request", request),
        response=_decode_path("response", response),
        event=_decode_path("event", event),
    )
