"""Wire formats of the cmap service (socket ``cmap``): every request, response and event.

Layouts follow corosync 3.1.7's ``ipc_cmap.h`` on Linux (reference/libqb-ipc.md 5.1),
native byte order, header first. Each request record's :meth:`encode` gives the whole
message; :func:`decode_cmap_request_untrusted` reads one (the server side). Responses are
matched to requests by order, so a client names the response it expects:
``decode_cmap_response_untrusted(message, CmapGetResponse)``.

Error replies: corosync answers a failed call with the call's own response (full size,
``error`` set) or, for a request it could not even parse, with a bare 24-byte header of
id 0 and ``error`` INVALID_PARAM. Callers look at ``error`` before anything else, so a
decoded response whose ``error`` is not OK carries only defaults in its other fields.

Key names travel as ``mar_name_t``: a uint16 length at 0 (corosync reads the value as a
C string and ignores the length, and so do we) and 256 bytes of NUL-terminated value at 8.
"""

from __future__ import annotations

import enum
import struct
from typing import ClassVar, TypeAlias, TypeVar

import attrs

from corosync._errors import CsError, CsErrorCode, MalformedMessage
from corosync.ipc._headers import (
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    decode_dispatch_header_untrusted,
    decode_request_header_untrusted,
)
from corosync.ipc._message import (
    ResponseBase,
    check_unsigned,
    decode_response_untrusted,
    encode_request,
    encode_response,
)

__all__ = [
    "CMAP_KEYNAME_MAXLEN",
    "CmapAdjustIntRequest",
    "CmapAdjustIntResponse",
    "CmapDeleteRequest",
    "CmapDeleteResponse",
    "CmapGetRequest",
    "CmapGetResponse",
    "CmapIterFinalizeRequest",
    "CmapIterFinalizeResponse",
    "CmapIterInitRequest",
    "CmapIterInitResponse",
    "CmapIterNextRequest",
    "CmapIterNextResponse",
    "CmapMap",
    "CmapNotifyEvent",
    "CmapRequest",
    "CmapRequestId",
    "CmapResponse",
    "CmapResponseId",
    "CmapSetCurrentMapRequest",
    "CmapSetCurrentMapResponse",
    "CmapSetRequest",
    "CmapSetResponse",
    "CmapTrackAddRequest",
    "CmapTrackAddResponse",
    "CmapTrackDeleteRequest",
    "CmapTrackDeleteResponse",
    "CmapTrackType",
    "CmapValue",
    "CmapValueType",
    "decode_cmap_notify_event_untrusted",
    "decode_cmap_request_untrusted",
    "decode_cmap_response_untrusted",
    "decode_cmap_value_untrusted",
    "encode_cmap_value",
    "encode_error_response",
]

CMAP_KEYNAME_MAXLEN = 255
"""Longest key name in bytes; ``mar_name_t`` keeps a NUL after it."""

_NAME_VALUE_SIZE = 256
_NAME = struct.Struct(f"=H6x{_NAME_VALUE_SIZE}s")  # mar_name_t, 264 bytes
_U64 = struct.Struct("=Q")
_I32 = struct.Struct("=i")

CmapValue: TypeAlias = int | float | str | bytes
"""A cmap value in Python: int for the integer types, float, str, bytes for BINARY."""


class CmapRequestId(enum.IntEnum):
    """``hdr.id`` of cmap requests (``MESSAGE_REQ_CMAP_*``)."""

    SET = 0
    DELETE = 1
    GET = 2
    ADJUST_INT = 3
    ITER_INIT = 4
    ITER_NEXT = 5
    ITER_FINALIZE = 6
    TRACK_ADD = 7
    TRACK_DELETE = 8
    SET_CURRENT_MAP = 9


class CmapResponseId(enum.IntEnum):
    """``hdr.id`` of cmap responses and events (``MESSAGE_RES_CMAP_*``): note the
    event is 9 and SET_CURRENT_MAP's answer 10."""

    SET = 0
    DELETE = 1
    GET = 2
    ADJUST_INT = 3
    ITER_INIT = 4
    ITER_NEXT = 5
    ITER_FINALIZE = 6
    TRACK_ADD = 7
    TRACK_DELETE = 8
    NOTIFY_CALLBACK = 9
    SET_CURRENT_MAP = 10


class CmapValueType(enum.IntEnum):
    """``cmap_value_types_t``. A STRING value's length counts its NUL."""

    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    INT64 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    STRING = 11
    BINARY = 12

    @property
    def short_name(self) -> str:
        """The name corosync-cmapctl prints and accepts: ``u32``, ``str``, ``bin``..."""
        return _SHORT_NAMES[self]

    @property
    def is_integer(self) -> bool:
        """True for the eight integer types (the ones inc/dec accept)."""
        return self <= CmapValueType.UINT64

    @property
    def size(self) -> int | None:
        """Encoded size of a fixed-size type in bytes; None for STRING and BINARY."""
        fmt = _NUMERIC_FORMATS.get(self)
        return None if fmt is None else fmt.size

    @property
    def range(self) -> tuple[int, int] | None:
        """(min, max) of an integer type, inclusive; None for the other types."""
        if not self.is_integer:
            return None
        bits = 8 * _NUMERIC_FORMATS[self].size
        if self in _SIGNED_TYPES:
            return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return (0, (1 << bits) - 1)


_SHORT_NAMES = {
    CmapValueType.INT8: "i8",
    CmapValueType.UINT8: "u8",
    CmapValueType.INT16: "i16",
    CmapValueType.UINT16: "u16",
    CmapValueType.INT32: "i32",
    CmapValueType.UINT32: "u32",
    CmapValueType.INT64: "i64",
    CmapValueType.UINT64: "u64",
    CmapValueType.FLOAT: "flt",
    CmapValueType.DOUBLE: "dbl",
    CmapValueType.STRING: "str",
    CmapValueType.BINARY: "bin",
}

_NUMERIC_FORMATS = {
    CmapValueType.INT8: struct.Struct("=b"),
    CmapValueType.UINT8: struct.Struct("=B"),
    CmapValueType.INT16: struct.Struct("=h"),
    CmapValueType.UINT16: struct.Struct("=H"),
    CmapValueType.INT32: struct.Struct("=i"),
    CmapValueType.UINT32: struct.Struct("=I"),
    CmapValueType.INT64: struct.Struct("=q"),
    CmapValueType.UINT64: struct.Struct("=Q"),
    CmapValueType.FLOAT: struct.Struct("=f"),
    CmapValueType.DOUBLE: struct.Struct("=d"),
}


_SIGNED_TYPES = frozenset(
    {CmapValueType.INT8, CmapValueType.INT16, CmapValueType.INT32, CmapValueType.INT64}
)


class CmapTrackType(enum.IntFlag):
    """``track_type`` bits of TRACK_ADD; a notify event's ``event`` is one of the
    first three."""

    DELETE = 1
    MODIFY = 2
    ADD = 4
    PREFIX = 8


_TRACK_ALL = CmapTrackType.DELETE | CmapTrackType.MODIFY | CmapTrackType.ADD | CmapTrackType.PREFIX
_EVENT_KINDS = frozenset({CmapTrackType.DELETE, CmapTrackType.MODIFY, CmapTrackType.ADD})


class CmapMap(enum.IntEnum):
    """The map a connection works on (SET_CURRENT_MAP): the configuration or stats."""

    DEFAULT = 0
    STATS = 1


# ------------------------------------------------------------------------- values


def encode_cmap_value(value_type: CmapValueType, value: CmapValue) -> bytes:
    """The bytes of ``value`` as cmap stores it: native integers and floats, a STRING
    with its NUL, BINARY as is. Raises ValueError when the value does not fit the type."""
    value_type = CmapValueType(value_type)
    if value_type is CmapValueType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"a {value_type.short_name} value must be a str")
        raw = value.encode()
        if b"\0" in raw:
            raise ValueError("a str value cannot contain NUL")
        return raw + b"\0"
    if value_type is CmapValueType.BINARY:
        if not isinstance(value, bytes | bytearray):
            raise ValueError("a bin value must be bytes")
        return bytes(value)
    fmt = _NUMERIC_FORMATS[value_type]
    if value_type in {CmapValueType.FLOAT, CmapValueType.DOUBLE}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"a {value_type.short_name} value must be a number")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a {value_type.short_name} value must be an int")
    try:
        return fmt.pack(value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit in {value_type.short_name}") from exc


def decode_cmap_value_untrusted(value_type: CmapValueType, data: bytes) -> CmapValue:
    """The Python value of cmap bytes of ``value_type``. A STRING ends at its first NUL
    (bytes that are not UTF-8 come back backslash-escaped); numbers must have their
    exact size."""
    value_type = CmapValueType(value_type)
    if value_type is CmapValueType.STRING:
        end = data.find(b"\0")
        return (data if end < 0 else data[:end]).decode("utf-8", errors="backslashreplace")
    if value_type is CmapValueType.BINARY:
        return bytes(data)
    fmt = _NUMERIC_FORMATS[value_type]
    if len(data) != fmt.size:
        raise MalformedMessage(
            f"{value_type.short_name} value of {len(data)} bytes, expected {fmt.size}"
        )
    result: CmapValue = fmt.unpack(data)[0]
    return result


# ----------------------------------------------------------------- field helpers


def _encode_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > CMAP_KEYNAME_MAXLEN:
        raise CsError(
            CsErrorCode.NAME_TOO_LONG,
            f"key name of {len(raw)} bytes, at most {CMAP_KEYNAME_MAXLEN}",
        )
    if b"\0" in raw:
        raise CsError(CsErrorCode.INVALID_PARAM, "key name contains NUL")
    return _NAME.pack(len(raw), raw)


def _decode_name(data: bytes, offset: int) -> str:
    _length, value = _NAME.unpack_from(data, offset)
    end = value.find(b"\0")
    if end < 0:
        raise MalformedMessage("key name is not NUL-terminated")
    try:
        return str(value[:end].decode())
    except UnicodeDecodeError as exc:
        raise MalformedMessage("key name is not valid UTF-8") from exc


def _value_type_or_none(raw: int, what: str) -> CmapValueType | None:
    if raw == 0:
        return None
    try:
        return CmapValueType(raw)
    except ValueError:
        raise MalformedMessage(f"{what} {raw} is not a cmap value type") from None


def _value_type(raw: int, what: str) -> CmapValueType:
    result = _value_type_or_none(raw, what)
    if result is None:
        raise MalformedMessage(f"{what} 0 is not a cmap value type")
    return result


def encode_error_response(error: CsErrorCode, response_id: int = 0) -> bytes:
    """A bare 24-byte response carrying only ``error``: corosync's answer to a request
    it cannot parse (id 0, INVALID_PARAM) or cannot take now (TRY_AGAIN). Every
    library checks ``error`` first, so it stands in for any response."""
    return encode_response(response_id, CsErrorCode(error), b"")


# ---------------------------------------------------------------------- requests

_SET_FIXED = struct.Struct(f"={_NAME.size}sQB7x")  # key, value_len, type; value at 296
_GET_BODY = struct.Struct(f"={_NAME.size}sQ")
_ADJUST_BODY = struct.Struct(f"={_NAME.size}si4x")
_TRACK_ADD_BODY = struct.Struct(f"={_NAME.size}si4xQ")
_SET_MAP_BODY = struct.Struct("=i4x")


@attrs.frozen
class CmapSetRequest:
    """SET (296 + value bytes): store ``value`` (already encoded) as ``value_type``."""

    key: str
    value_type: CmapValueType
    value: bytes

    def encode(self) -> bytes:
        fixed = _SET_FIXED.pack(
            _encode_name(self.key), len(self.value), CmapValueType(self.value_type)
        )
        return encode_request(CmapRequestId.SET, fixed + self.value)


@attrs.frozen
class CmapDeleteRequest:
    """DELETE (280 bytes)."""

    key: str

    def encode(self) -> bytes:
        return encode_request(CmapRequestId.DELETE, _encode_name(self.key))


@attrs.frozen
class CmapGetRequest:
    """GET (288 bytes). ``value_len`` is the client's buffer: 0 asks for length and type
    only; otherwise it must hold the whole value."""

    key: str
    value_len: int = 0

    def encode(self) -> bytes:
        check_unsigned("value_len", self.value_len, 64)
        return encode_request(
            CmapRequestId.GET, _GET_BODY.pack(_encode_name(self.key), self.value_len)
        )


@attrs.frozen
class CmapAdjustIntRequest:
    """ADJUST_INT (288 bytes): add ``step`` to an integer key (cmap_inc / cmap_dec)."""

    key: str
    step: int

    def encode(self) -> bytes:
        return encode_request(
            CmapRequestId.ADJUST_INT, _ADJUST_BODY.pack(_encode_name(self.key), self.step)
        )


@attrs.frozen
class CmapIterInitRequest:
    """ITER_INIT (280 bytes); the prefix may be empty (every key)."""

    prefix: str = ""

    def encode(self) -> bytes:
        return encode_request(CmapRequestId.ITER_INIT, _encode_name(self.prefix))


@attrs.frozen
class CmapIterNextRequest:
    """ITER_NEXT (24 bytes)."""

    iter_handle: int

    def encode(self) -> bytes:
        check_unsigned("iter_handle", self.iter_handle, 64)
        return encode_request(CmapRequestId.ITER_NEXT, _U64.pack(self.iter_handle))


@attrs.frozen
class CmapIterFinalizeRequest:
    """ITER_FINALIZE (24 bytes)."""

    iter_handle: int

    def encode(self) -> bytes:
        check_unsigned("iter_handle", self.iter_handle, 64)
        return encode_request(CmapRequestId.ITER_FINALIZE, _U64.pack(self.iter_handle))


@attrs.frozen
class CmapTrackAddRequest:
    """TRACK_ADD (296 bytes): ``track_inst_handle`` is the client's own handle, echoed
    in every notify event."""

    key: str
    track_type: CmapTrackType
    track_inst_handle: int

    def encode(self) -> bytes:
        check_unsigned("track_inst_handle", self.track_inst_handle, 64)
        body = _TRACK_ADD_BODY.pack(
            _encode_name(self.key), int(self.track_type), self.track_inst_handle
        )
        return encode_request(CmapRequestId.TRACK_ADD, body)


@attrs.frozen
class CmapTrackDeleteRequest:
    """TRACK_DELETE (24 bytes): ``track_handle`` is the server's handle."""

    track_handle: int

    def encode(self) -> bytes:
        check_unsigned("track_handle", self.track_handle, 64)
        return encode_request(CmapRequestId.TRACK_DELETE, _U64.pack(self.track_handle))


@attrs.frozen
class CmapSetCurrentMapRequest:
    """SET_CURRENT_MAP (24 bytes); corosync-cmapctl always sends it first."""

    map: CmapMap = CmapMap.DEFAULT

    def encode(self) -> bytes:
        return encode_request(CmapRequestId.SET_CURRENT_MAP, _SET_MAP_BODY.pack(CmapMap(self.map)))


CmapRequest: TypeAlias = (
    CmapSetRequest
    | CmapDeleteRequest
    | CmapGetRequest
    | CmapAdjustIntRequest
    | CmapIterInitRequest
    | CmapIterNextRequest
    | CmapIterFinalizeRequest
    | CmapTrackAddRequest
    | CmapTrackDeleteRequest
    | CmapSetCurrentMapRequest
)

_REQUEST_SIZES = {
    CmapRequestId.DELETE: 280,
    CmapRequestId.GET: 288,
    CmapRequestId.ADJUST_INT: 288,
    CmapRequestId.ITER_INIT: 280,
    CmapRequestId.ITER_NEXT: 24,
    CmapRequestId.ITER_FINALIZE: 24,
    CmapRequestId.TRACK_ADD: 296,
    CmapRequestId.TRACK_DELETE: 24,
    CmapRequestId.SET_CURRENT_MAP: 24,
}
_SET_MIN_SIZE = REQUEST_HEADER_SIZE + _SET_FIXED.size  # 296


def decode_cmap_request_untrusted(message: bytes) -> CmapRequest:
    """One whole cmap request as a client sent it. Raises MalformedMessage for an
    unknown id, a size that does not match the id, or an invalid field; corosync
    answers those with INVALID_PARAM."""
    header = decode_request_header_untrusted(message)
    try:
        msg_id = CmapRequestId(header.id)
    except ValueError:
        raise MalformedMessage(f"unknown cmap request id {header.id}") from None
    if msg_id is CmapRequestId.SET:
        if header.size < _SET_MIN_SIZE:
            raise MalformedMessage(f"cmap SET of {header.size} bytes, at least {_SET_MIN_SIZE}")
        key_raw, value_len, raw_type = _SET_FIXED.unpack_from(message, REQUEST_HEADER_SIZE)
        if value_len != header.size - _SET_MIN_SIZE:
            raise MalformedMessage(
                f"cmap SET value_len {value_len} but {header.size - _SET_MIN_SIZE} value bytes"
            )
        return CmapSetRequest(
            key=_decode_name(key_raw, 0),
            value_type=_value_type(raw_type, "SET value type"),
            value=bytes(message[_SET_MIN_SIZE:]),
        )
    expected = _REQUEST_SIZES[msg_id]
    if header.size != expected:
        raise MalformedMessage(f"cmap {msg_id.name} of {header.size} bytes, expected {expected}")
    off = REQUEST_HEADER_SIZE
    if msg_id is CmapRequestId.DELETE:
        return CmapDeleteRequest(_decode_name(message, off))
    if msg_id is CmapRequestId.GET:
        key_raw, value_len = _GET_BODY.unpack_from(message, off)
        return CmapGetRequest(_decode_name(key_raw, 0), value_len)
    if msg_id is CmapRequestId.ADJUST_INT:
        key_raw, step = _ADJUST_BODY.unpack_from(message, off)
        return CmapAdjustIntRequest(_decode_name(key_raw, 0), step)
    if msg_id is CmapRequestId.ITER_INIT:
        return CmapIterInitRequest(_decode_name(message, off))
    if msg_id is CmapRequestId.ITER_NEXT:
        return CmapIterNextRequest(_U64.unpack_from(message, off)[0])
    if msg_id is CmapRequestId.ITER_FINALIZE:
        return CmapIterFinalizeRequest(_U64.unpack_from(message, off)[0])
    if msg_id is CmapRequestId.TRACK_ADD:
        key_raw, track_type, inst = _TRACK_ADD_BODY.unpack_from(message, off)
        if track_type & ~int(_TRACK_ALL):
            raise MalformedMessage(f"cmap track type {track_type:#x} has unknown bits")
        return CmapTrackAddRequest(_decode_name(key_raw, 0), CmapTrackType(track_type), inst)
    if msg_id is CmapRequestId.TRACK_DELETE:
        return CmapTrackDeleteRequest(_U64.unpack_from(message, off)[0])
    (map_id,) = _SET_MAP_BODY.unpack_from(message, off)
    try:
        return CmapSetCurrentMapRequest(CmapMap(map_id))
    except ValueError:
        raise MalformedMessage(f"unknown cmap map {map_id}") from None


# --------------------------------------------------------------------- responses


class _CmapResponseBase(ResponseBase):
    """Shared decoding of cmap responses; subclasses define the body."""

    SERVICE = "cmap"
    RESPONSE_ID: ClassVar[CmapResponseId]


@attrs.frozen
class CmapSetResponse(_CmapResponseBase):
    """Answer to SET (24 bytes)."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.SET
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CmapDeleteResponse(_CmapResponseBase):
    """Answer to DELETE (24 bytes)."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.DELETE
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CmapAdjustIntResponse(_CmapResponseBase):
    """Answer to ADJUST_INT (24 bytes)."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.ADJUST_INT
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CmapIterFinalizeResponse(_CmapResponseBase):
    """Answer to ITER_FINALIZE (24 bytes)."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.ITER_FINALIZE
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CmapSetCurrentMapResponse(_CmapResponseBase):
    """Answer to SET_CURRENT_MAP: a bare header with id 10."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.SET_CURRENT_MAP
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


_GET_RES_FIXED = struct.Struct("=QB7x")  # value_len, type; value at 40
_GET_RES_MIN = RESPONSE_HEADER_SIZE + _GET_RES_FIXED.size


@attrs.frozen
class CmapGetResponse(_CmapResponseBase):
    """Answer to GET (40 + the requested value_len bytes).

    ``value_len`` is the key's real length; ``value`` holds the value, or nothing when
    the request asked for length and type only (value_len 0).
    """

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.GET
    error: CsErrorCode = CsErrorCode.OK
    value_type: CmapValueType | None = None
    value_len: int = 0
    value: bytes = b""

    def encode(self, *, buffer_len: int | None = None) -> bytes:
        """The message for a request whose ``value_len`` was ``buffer_len`` (default:
        the value's own length): corosync sizes the reply by the request, never larger."""
        trailing = len(self.value) if buffer_len is None else buffer_len
        if trailing < len(self.value):
            raise ValueError(f"a {len(self.value)}-byte value does not fit in {trailing} bytes")
        if self.value and len(self.value) != self.value_len:
            raise ValueError("value_len must be the length of value")
        check_unsigned("value_len", self.value_len, 64)
        fixed = _GET_RES_FIXED.pack(self.value_len, int(self.value_type or 0))
        return encode_response(
            self.RESPONSE_ID, self.error, fixed + self.value.ljust(trailing, b"\0")
        )

    @classmethod
    def _from_body(cls, message: bytes) -> CmapGetResponse:
        if len(message) < _GET_RES_MIN:
            raise MalformedMessage(f"cmap GET response of {len(message)} bytes, at least 40")
        value_len, raw_type = _GET_RES_FIXED.unpack_from(message, RESPONSE_HEADER_SIZE)
        trailing = message[_GET_RES_MIN:]
        if value_len <= len(trailing):
            value = bytes(trailing[:value_len])
        elif not trailing:
            value = b""  # a length-and-type query
        else:
            raise MalformedMessage(
                f"cmap GET response value_len {value_len} exceeds its {len(trailing)} bytes"
            )
        return cls(
            error=CsErrorCode.OK,
            value_type=_value_type(raw_type, "GET value type"),
            value_len=value_len,
            value=value,
        )


_HANDLE_RES = struct.Struct("=Q")


@attrs.frozen
class CmapIterInitResponse(_CmapResponseBase):
    """Answer to ITER_INIT (32 bytes): the server's iteration handle."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.ITER_INIT
    error: CsErrorCode = CsErrorCode.OK
    iter_handle: int = 0

    def encode(self) -> bytes:
        check_unsigned("iter_handle", self.iter_handle, 64)
        return encode_response(self.RESPONSE_ID, self.error, _HANDLE_RES.pack(self.iter_handle))

    @classmethod
    def _from_body(cls, message: bytes) -> CmapIterInitResponse:
        if len(message) != 32:
            raise MalformedMessage(f"cmap ITER_INIT response of {len(message)} bytes, expected 32")
        return cls(iter_handle=_HANDLE_RES.unpack_from(message, RESPONSE_HEADER_SIZE)[0])


_ITER_NEXT_BODY = struct.Struct(f"={_NAME.size}sQB7x")


@attrs.frozen
class CmapIterNextResponse(_CmapResponseBase):
    """Answer to ITER_NEXT (304 bytes): the next key, its length and type. The end of
    the iteration is ``error`` NO_SECTIONS."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.ITER_NEXT
    error: CsErrorCode = CsErrorCode.OK
    key: str = ""
    value_len: int = 0
    value_type: CmapValueType | None = None

    def encode(self) -> bytes:
        check_unsigned("value_len", self.value_len, 64)
        body = _ITER_NEXT_BODY.pack(
            _encode_name(self.key), self.value_len, int(self.value_type or 0)
        )
        return encode_response(self.RESPONSE_ID, self.error, body)

    @classmethod
    def _from_body(cls, message: bytes) -> CmapIterNextResponse:
        if len(message) != 304:
            raise MalformedMessage(f"cmap ITER_NEXT response of {len(message)} bytes, expected 304")
        key_raw, value_len, raw_type = _ITER_NEXT_BODY.unpack_from(message, RESPONSE_HEADER_SIZE)
        return cls(
            key=_decode_name(key_raw, 0),
            value_len=value_len,
            value_type=_value_type(raw_type, "ITER_NEXT value type"),
        )


@attrs.frozen
class CmapTrackAddResponse(_CmapResponseBase):
    """Answer to TRACK_ADD (32 bytes): the server's track handle."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.TRACK_ADD
    error: CsErrorCode = CsErrorCode.OK
    track_handle: int = 0

    def encode(self) -> bytes:
        check_unsigned("track_handle", self.track_handle, 64)
        return encode_response(self.RESPONSE_ID, self.error, _HANDLE_RES.pack(self.track_handle))

    @classmethod
    def _from_body(cls, message: bytes) -> CmapTrackAddResponse:
        if len(message) != 32:
            raise MalformedMessage(f"cmap TRACK_ADD response of {len(message)} bytes, expected 32")
        return cls(track_handle=_HANDLE_RES.unpack_from(message, RESPONSE_HEADER_SIZE)[0])


@attrs.frozen
class CmapTrackDeleteResponse(_CmapResponseBase):
    """Answer to TRACK_DELETE (32 bytes): the client's track_inst_handle."""

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.TRACK_DELETE
    error: CsErrorCode = CsErrorCode.OK
    track_inst_handle: int = 0

    def encode(self) -> bytes:
        check_unsigned("track_inst_handle", self.track_inst_handle, 64)
        return encode_response(
            self.RESPONSE_ID, self.error, _HANDLE_RES.pack(self.track_inst_handle)
        )

    @classmethod
    def _from_body(cls, message: bytes) -> CmapTrackDeleteResponse:
        if len(message) != 32:
            raise MalformedMessage(
                f"cmap TRACK_DELETE response of {len(message)} bytes, expected 32"
            )
        return cls(track_inst_handle=_HANDLE_RES.unpack_from(message, RESPONSE_HEADER_SIZE)[0])


CmapResponse: TypeAlias = (
    CmapSetResponse
    | CmapDeleteResponse
    | CmapGetResponse
    | CmapAdjustIntResponse
    | CmapIterInitResponse
    | CmapIterNextResponse
    | CmapIterFinalizeResponse
    | CmapTrackAddResponse
    | CmapTrackDeleteResponse
    | CmapSetCurrentMapResponse
)

_R = TypeVar("_R", bound=_CmapResponseBase)


def decode_cmap_response_untrusted(message: bytes, expected: type[_R]) -> _R:
    """One whole response to the request the client sent last, decoded as ``expected``
    (e.g. :class:`CmapGetResponse`). A response whose ``error`` is not OK may be a bare
    header of any id; only its error is kept."""
    return decode_response_untrusted(message, expected)


# ------------------------------------------------------------------------- event

_NOTIFY_BODY = struct.Struct(f"=Q{_NAME.size}si4xB7xB7xQQ")
_NOTIFY_MIN = RESPONSE_HEADER_SIZE + _NOTIFY_BODY.size  # 336


@attrs.frozen
class CmapNotifyEvent:
    """The track notification event (res id 9, 336 + new + old value bytes).

    ``event`` is ADD, DELETE or MODIFY. A value that does not exist (the old value of
    an ADD, the new value of a DELETE) has type None and no bytes.
    """

    RESPONSE_ID: ClassVar[CmapResponseId] = CmapResponseId.NOTIFY_CALLBACK
    track_inst_handle: int
    key: str
    event: CmapTrackType
    new_value_type: CmapValueType | None = None
    new_value: bytes = b""
    old_value_type: CmapValueType | None = None
    old_value: bytes = b""

    def encode(self) -> bytes:
        check_unsigned("track_inst_handle", self.track_inst_handle, 64)
        if self.event not in _EVENT_KINDS:
            raise ValueError(f"a notify event is ADD, DELETE or MODIFY, not {self.event!r}")
        body = _NOTIFY_BODY.pack(
            self.track_inst_handle,
            _encode_name(self.key),
            int(self.event),
            int(self.new_value_type or 0),
            int(self.old_value_type or 0),
            len(self.new_value),
            len(self.old_value),
        )
        return encode_response(
            self.RESPONSE_ID, CsErrorCode.OK, body + self.new_value + self.old_value
        )


def decode_cmap_notify_event_untrusted(message: bytes) -> CmapNotifyEvent:
    """One whole dispatch event of the cmap service."""
    header = decode_dispatch_header_untrusted(message)
    if header.id != CmapResponseId.NOTIFY_CALLBACK:
        raise MalformedMessage(f"unknown cmap event id {header.id}")
    if len(message) < _NOTIFY_MIN:
        raise MalformedMessage(f"cmap notify event of {len(message)} bytes, at least 336")
    inst, key_raw, event, new_type, old_type, new_len, old_len = _NOTIFY_BODY.unpack_from(
        message, RESPONSE_HEADER_SIZE
    )
    if _NOTIFY_MIN + new_len + old_len != len(message):
        raise MalformedMessage(
            f"cmap notify event values of {new_len} + {old_len} bytes "
            f"do not fill its {len(message) - _NOTIFY_MIN}"
        )
    if event not in _EVENT_KINDS:
        raise MalformedMessage(f"cmap notify event kind {event} is not ADD, DELETE or MODIFY")
    new_end = _NOTIFY_MIN + new_len
    return CmapNotifyEvent(
        track_inst_handle=inst,
        key=_decode_name(key_raw, 0),
        event=CmapTrackType(event),
        new_value_type=_value_type_or_none(new_type, "new value type"),
        new_value=bytes(message[_NOTIFY_MIN:new_end]),
        old_value_type=_value_type_or_none(old_type, "old value type"),
        old_value=bytes(message[new_end:]),
    )
