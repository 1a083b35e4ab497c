"""Tests of the cmap IPC messages (libqb-ipc.md 5.1): layouts, round trips, fuzzing."""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync import CsError, CsErrorCode, MalformedMessage
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
    CmapRequest,
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
    RequestHeader,
    decode_cmap_notify_event_untrusted,
    decode_cmap_request_untrusted,
    decode_cmap_response_untrusted,
    decode_cmap_value_untrusted,
    encode_cmap_value,
    encode_error_response,
)

U64 = st.integers(0, 2**64 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
KEYS = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x2FF, blacklist_characters="\0"), max_size=120
)
VALUE_TYPES = st.sampled_from(list(CmapValueType))
TRACK_TYPES = st.integers(0, 15).map(CmapTrackType)
EVENT_KINDS = st.sampled_from([CmapTrackType.ADD, CmapTrackType.DELETE, CmapTrackType.MODIFY])


def _name_at(raw: bytes, offset: int) -> tuple[int, bytes]:
    """mar_name_t at offset: (length, value up to its NUL)."""
    length = struct.unpack_from("<H", raw, offset)[0]
    value = raw[offset + 8 : offset + 8 + 256]
    return length, value.split(b"\0", 1)[0]


def _sized(raw: bytes) -> bytes:
    """raw with its header size set to its length."""
    return raw[:8] + struct.pack("<i", len(raw)) + raw[12:]


# ------------------------------------------------------------------ layouts


def test_set_request_layout() -> None:
    """SET: key at 16, value_len at 280, type at 288, value at 296."""
    raw = CmapSetRequest("test.key", CmapValueType.UINT32, b"\xb8\x0b\0\0").encode()
    assert len(raw) == 300
    assert struct.unpack_from("<i4xi", raw) == (0, 300)
    assert _name_at(raw, 16) == (8, b"test.key")
    assert struct.unpack_from("<QB", raw, 280) == (4, 6)
    assert raw[296:] == b"\xb8\x0b\0\0"


def test_get_request_layout() -> None:
    """GET: 288 bytes, key at 16, value_len at 280."""
    raw = CmapGetRequest("totem.token", 16).encode()
    assert len(raw) == 288
    assert struct.unpack_from("<i4xi", raw) == (2, 288)
    assert _name_at(raw, 16) == (11, b"totem.token")
    assert struct.unpack_from("<Q", raw, 280) == (16,)


@pytest.mark.parametrize(
    ("request_", "msg_id", "size", "tail"),
    [
        (CmapDeleteRequest("a.b.c"), 1, 280, None),
        (CmapAdjustIntRequest("a.b.c", -5), 3, 288, (280, "<i", -5)),
        (CmapIterInitRequest("nodelist."), 4, 280, None),
        (CmapIterNextRequest(7), 5, 24, (16, "<Q", 7)),
        (CmapIterFinalizeRequest(8), 6, 24, (16, "<Q", 8)),
        (CmapTrackDeleteRequest(2**64 - 1), 8, 24, (16, "<Q", 2**64 - 1)),
        (CmapSetCurrentMapRequest(CmapMap.STATS), 9, 24, (16, "<i", 1)),
    ],
)
def test_fixed_request_layouts(
    request_: CmapRequest, msg_id: int, size: int, tail: tuple[int, str, int] | None
) -> None:
    """Each fixed-size request has its id, size and field offsets."""
    raw = request_.encode()
    assert len(raw) == size
    assert struct.unpack_from("<i4xi", raw) == (msg_id, size)
    if tail is not None:
        offset, fmt, value = tail
        assert struct.unpack_from(fmt, raw, offset) == (value,)


def test_track_add_request_layout() -> None:
    """TRACK_ADD: key at 16, track_type at 280, track_inst_handle at 288."""
    flags = CmapTrackType.ADD | CmapTrackType.DELETE | CmapTrackType.MODIFY | CmapTrackType.PREFIX
    raw = CmapTrackAddRequest("totem.", flags, 0xDEADBEEF).encode()
    assert len(raw) == 296
    assert struct.unpack_from("<i4xi", raw) == (7, 296)
    assert _name_at(raw, 16) == (6, b"totem.")
    assert struct.unpack_from("<i4xQ", raw, 280) == (15, 0xDEADBEEF)


def test_get_response_layout() -> None:
    """GET response: value_len at 24, type at 32, value at 40, sized by the request."""
    value = encode_cmap_value(CmapValueType.UINT32, 3000)
    raw = CmapGetResponse(value_type=CmapValueType.UINT32, value_len=4, value=value).encode(
        buffer_len=16
    )
    assert len(raw) == 56
    assert struct.unpack_from("<i4xi4xi4xQB", raw) == (2, 56, 1, 4, 6)
    assert raw[40:44] == value
    assert raw[44:] == b"\0" * 12
    length_only = CmapGetResponse(value_type=CmapValueType.UINT32, value_len=4).encode(buffer_len=0)
    assert len(length_only) == 40
    decoded = decode_cmap_response_untrusted(length_only, CmapGetResponse)
    assert (decoded.value_len, decoded.value, decoded.value_type) == (4, b"", CmapValueType.UINT32)


def test_iter_next_response_layout() -> None:
    """ITER_NEXT response: key at 24, value_len at 288, type at 296, 304 bytes."""
    raw = CmapIterNextResponse(
        key="totem.token", value_len=4, value_type=CmapValueType.UINT32
    ).encode()
    assert len(raw) == 304
    assert struct.unpack_from("<i4xi4xi", raw) == (5, 304, 1)
    assert _name_at(raw, 24) == (11, b"totem.token")
    assert struct.unpack_from("<QB", raw, 288) == (4, 6)


@pytest.mark.parametrize(
    ("response", "msg_id", "size", "value"),
    [
        (CmapSetResponse(), 0, 24, None),
        (CmapDeleteResponse(), 1, 24, None),
        (CmapAdjustIntResponse(), 3, 24, None),
        (CmapIterInitResponse(iter_handle=99), 4, 32, 99),
        (CmapIterFinalizeResponse(), 6, 24, None),
        (CmapTrackAddResponse(track_handle=5), 7, 32, 5),
        (CmapTrackDeleteResponse(track_inst_handle=6), 8, 32, 6),
        (CmapSetCurrentMapResponse(), 10, 24, None),
    ],
)
def test_fixed_response_layouts(response: Any, msg_id: int, size: int, value: int | None) -> None:
    """Each fixed-size response has its id (SET_CURRENT_MAP is 10), size and handle."""
    raw = response.encode()
    assert struct.unpack_from("<i4xi4xi", raw) == (msg_id, size, 1)
    assert len(raw) == size
    if value is not None:
        assert struct.unpack_from("<Q", raw, 24) == (value,)
    assert decode_cmap_response_untrusted(raw, type(response)) == response


def test_notify_event_layout() -> None:
    """Notify: inst at 24, key at 32, event 296, types 304/312, lengths 320/328, values 336."""
    event = CmapNotifyEvent(
        track_inst_handle=3,
        key="test.foo",
        event=CmapTrackType.MODIFY,
        new_value_type=CmapValueType.UINT32,
        new_value=b"\x08\0\0\0",
        old_value_type=CmapValueType.UINT32,
        old_value=b"\x07\0\0\0",
    )
    raw = event.encode()
    assert len(raw) == 344
    assert struct.unpack_from("<i4xi4xi4xQ", raw) == (9, 344, 1, 3)
    assert _name_at(raw, 32) == (8, b"test.foo")
    assert struct.unpack_from("<i4xB7xB7xQQ", raw, 296) == (2, 6, 6, 4, 4)
    assert raw[336:] == b"\x08\0\0\0\x07\0\0\0"
    assert decode_cmap_notify_event_untrusted(raw) == event


def test_delete_event_has_no_new_value() -> None:
    """A DELETE event carries type 0 and no bytes for the new value."""
    event = CmapNotifyEvent(
        1, "a.b", CmapTrackType.DELETE, old_value_type=CmapValueType.UINT8, old_value=b"\1"
    )
    raw = event.encode()
    assert raw[304] == 0
    decoded = decode_cmap_notify_event_untrusted(raw)
    assert decoded.new_value_type is None
    assert decoded.old_value == b"\1"


# ------------------------------------------------------------------ errors


def test_generic_error_reply_stands_in_for_any_response() -> None:
    """A bare id-0 header with an error decodes as any expected response."""
    raw = encode_error_response(CsErrorCode.INVALID_PARAM)
    assert raw == struct.pack("<i4xi4xi4x", 0, 24, 7)
    for cls in (CmapGetResponse, CmapIterNextResponse, CmapTrackAddResponse, CmapSetResponse):
        assert decode_cmap_response_untrusted(raw, cls).error is CsErrorCode.INVALID_PARAM


def test_full_size_error_response_keeps_only_the_error() -> None:
    """corosync's NOT_EXIST GET reply is full size; only its error is read."""
    raw = CmapGetResponse(error=CsErrorCode.NOT_EXIST).encode(buffer_len=16)
    decoded = decode_cmap_response_untrusted(raw, CmapGetResponse)
    assert decoded == CmapGetResponse(error=CsErrorCode.NOT_EXIST)


def test_end_of_iteration_is_no_sections() -> None:
    """ITER_NEXT at the end answers NO_SECTIONS."""
    raw = CmapIterNextResponse(error=CsErrorCode.NO_SECTIONS).encode()
    assert decode_cmap_response_untrusted(raw, CmapIterNextResponse).error is (
        CsErrorCode.NO_SECTIONS
    )


def test_wrong_response_id_is_malformed() -> None:
    """An OK response with another message's id is malformed."""
    with pytest.raises(MalformedMessage, match=r"response id 0, expected 2 \(GET\)"):
        decode_cmap_response_untrusted(CmapSetResponse().encode(), CmapGetResponse)


def test_unknown_error_code_is_malformed() -> None:
    """An error value that is not a cs_error_t is malformed."""
    raw = struct.pack("<i4xi4xi4x", 0, 24, 29)
    with pytest.raises(MalformedMessage, match="not a cs_error_t"):
        decode_cmap_response_untrusted(raw, CmapSetResponse)


def test_key_names_are_limited_to_255_bytes() -> None:
    """Encoding a longer key raises NAME_TOO_LONG; 255 bytes fit."""
    assert decode_cmap_request_untrusted(CmapDeleteRequest("k" * 255).encode()) == (
        CmapDeleteRequest("k" * 255)
    )
    with pytest.raises(CsError) as info:
        CmapGetRequest("k" * 256).encode()
    assert info.value.code is CsErrorCode.NAME_TOO_LONG
    with pytest.raises(CsError) as info:
        CmapGetRequest("a\0b").encode()
    assert info.value.code is CsErrorCode.INVALID_PARAM


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (RequestHeader(42, 16).encode(), "unknown cmap request id 42"),
        (RequestHeader(2, 24).encode() + b"\0" * 8, "GET of 24 bytes, expected 288"),
        (
            _sized(CmapSetRequest("a.b", CmapValueType.UINT8, b"\1").encode()[:296]),
            "value_len 1 but 0",
        ),
        (
            CmapSetRequest("a.b", CmapValueType.UINT8, b"\1").encode()[:288] + b"\x0d" + b"\0" * 8,
            "not a cmap value type",
        ),
        (CmapDeleteRequest("x").encode()[:24] + b"y" * 256, "not NUL-terminated"),
        (CmapDeleteRequest("\xff").encode().replace(b"\xc3\xbf", b"\xff\xfe"), "UTF-8"),
        (
            CmapTrackAddRequest("k", CmapTrackType.ADD, 1).encode()[:280]
            + struct.pack("<i4xQ", 16, 1),
            "unknown bits",
        ),
        (RequestHeader(9, 24).encode() + struct.pack("<i4x", 2), "unknown cmap map 2"),
    ],
)
def test_malformed_requests_are_rejected(raw: bytes, match: str) -> None:
    """Requests with a bad id, size or field raise MalformedMessage naming the problem."""
    with pytest.raises(MalformedMessage, match=match):
        decode_cmap_request_untrusted(raw)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize(
    ("value_type", "value", "raw"),
    [
        (CmapValueType.INT8, -1, b"\xff"),
        (CmapValueType.UINT8, 255, b"\xff"),
        (CmapValueType.INT16, -2, b"\xfe\xff"),
        (CmapValueType.UINT16, 65535, b"\xff\xff"),
        (CmapValueType.INT32, -3, b"\xfd\xff\xff\xff"),
        (CmapValueType.UINT32, 3000, b"\xb8\x0b\0\0"),
        (CmapValueType.INT64, -(2**63), b"\0" * 7 + b"\x80"),
        (CmapValueType.UINT64, 2**64 - 1, b"\xff" * 8),
        (CmapValueType.FLOAT, 1.5, struct.pack("<f", 1.5)),
        (CmapValueType.DOUBLE, 0.1, struct.pack("<d", 0.1)),
        (CmapValueType.STRING, "abc", b"abc\0"),
        (CmapValueType.BINARY, b"\0\1", b"\0\1"),
    ],
)
def test_value_encoding(value_type: CmapValueType, value: Any, raw: bytes) -> None:
    """Values are native-endian, strings carry their NUL, binary is as is."""
    assert encode_cmap_value(value_type, value) == raw
    assert decode_cmap_value_untrusted(value_type, raw) == value


@pytest.mark.parametrize(
    ("value_type", "value"),
    [
        (CmapValueType.UINT8, 256),
        (CmapValueType.INT8, -129),
        (CmapValueType.UINT32, -1),
        (CmapValueType.UINT32, "3"),
        (CmapValueType.UINT32, True),
        (CmapValueType.DOUBLE, "x"),
        (CmapValueType.STRING, b"x"),
        (CmapValueType.STRING, "a\0b"),
        (CmapValueType.BINARY, "x"),
    ],
)
def test_value_encoding_rejects_bad_values(value_type: CmapValueType, value: Any) -> None:
    """Out-of-range and wrongly typed values raise ValueError."""
    with pytest.raises(ValueError):
        encode_cmap_value(value_type, value)


def test_short_type_names_are_cmapctls() -> None:
    """The short names are those corosync-cmapctl prints."""
    assert [t.short_name for t in CmapValueType] == [
        "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "flt", "dbl", "str", "bin",
    ]  # fmt: skip


# ------------------------------------------------------------------ round trips

REQUESTS = st.one_of(
    st.builds(CmapSetRequest, KEYS, VALUE_TYPES, st.binary(max_size=64)),
    st.builds(CmapDeleteRequest, KEYS),
    st.builds(CmapGetRequest, KEYS, U64),
    st.builds(CmapAdjustIntRequest, KEYS, I32),
    st.builds(CmapIterInitRequest, KEYS),
    st.builds(CmapIterNextRequest, U64),
    st.builds(CmapIterFinalizeRequest, U64),
    st.builds(CmapTrackAddRequest, KEYS, TRACK_TYPES, U64),
    st.builds(CmapTrackDeleteRequest, U64),
    st.builds(CmapSetCurrentMapRequest, st.sampled_from(list(CmapMap))),
)


@given(REQUESTS)
def test_request_round_trip(request_: CmapRequest) -> None:
    """Every request decodes to itself."""
    assert decode_cmap_request_untrusted(request_.encode()) == request_


@given(value_type=VALUE_TYPES, value=st.binary(max_size=40), pad=st.integers(0, 24))
def test_get_response_round_trip(value_type: CmapValueType, value: bytes, pad: int) -> None:
    """GET responses decode to their value whatever the requested buffer size."""
    response = CmapGetResponse(value_type=value_type, value_len=len(value), value=value)
    raw = response.encode(buffer_len=len(value) + pad)
    assert decode_cmap_response_untrusted(raw, CmapGetResponse) == response


@given(
    key=KEYS,
    inst=U64,
    event=EVENT_KINDS,
    new=st.tuples(st.none() | VALUE_TYPES, st.binary(max_size=32)),
    old=st.tuples(st.none() | VALUE_TYPES, st.binary(max_size=32)),
)
def test_notify_event_round_trip(
    key: str,
    inst: int,
    event: CmapTrackType,
    new: tuple[CmapValueType | None, bytes],
    old: tuple[CmapValueType | None, bytes],
) -> None:
    """Notify events decode to themselves."""
    message = CmapNotifyEvent(inst, key, event, new[0], new[1], old[0], old[1])
    assert decode_cmap_notify_event_untrusted(message.encode()) == message


@given(value=st.floats(allow_nan=False, width=32))
def test_float_values_round_trip(value: float) -> None:
    """32-bit floats survive the trip."""
    raw = encode_cmap_value(CmapValueType.FLOAT, value)
    decoded = decode_cmap_value_untrusted(CmapValueType.FLOAT, raw)
    assert decoded == value or (math.isinf(value) and decoded == value)


# ------------------------------------------------------------------ fuzzing

RESPONSE_CLASSES = [
    CmapSetResponse,
    CmapDeleteResponse,
    CmapGetResponse,
    CmapAdjustIntResponse,
    CmapIterInitResponse,
    CmapIterNextResponse,
    CmapIterFinalizeResponse,
    CmapTrackAddResponse,
    CmapTrackDeleteResponse,
    CmapSetCurrentMapResponse,
]


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    """Flip some bytes, then maybe cut or extend, keeping header sizes plausible."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(0, 4))):
        if out:
            out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(out)))
    out = out[:cut] + data.draw(st.binary(max_size=16))
    if data.draw(st.booleans()) and len(out) >= 16:
        out[8:12] = struct.pack("<i", len(out))  # a consistent size gets past the header
    return bytes(out)


@settings(max_examples=1000)
@given(request_=REQUESTS, data=st.data())
def test_fuzz_request_decoder(request_: CmapRequest, data: st.DataObject) -> None:
    """Mutated requests decode or raise MalformedMessage, nothing else."""
    with contextlib.suppress(MalformedMessage):
        decode_cmap_request_untrusted(_mutate(request_.encode(), data))


@given(raw=st.binary(max_size=400))
def test_fuzz_request_decoder_random(raw: bytes) -> None:
    """Random bytes decode or raise MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_cmap_request_untrusted(raw)


@settings(max_examples=1000)
@given(
    cls=st.sampled_from(RESPONSE_CLASSES),
    source=st.sampled_from(RESPONSE_CLASSES),
    error=st.sampled_from([1, 1, 1, 7, 12, 27, 29]),
    data=st.data(),
)
def test_fuzz_response_decoder(
    cls: type[Any], source: type[Any], error: int, data: st.DataObject
) -> None:
    """Mutated responses of any kind, decoded as any kind, decode or are malformed."""
    raw = bytearray(source().encode())
    raw[16:20] = struct.pack("<i", error)
    with contextlib.suppress(MalformedMessage):
        decode_cmap_response_untrusted(_mutate(bytes(raw), data), cls)


@settings(max_examples=1000)
@given(
    event=st.builds(
        CmapNotifyEvent,
        U64,
        KEYS,
        EVENT_KINDS,
        st.none() | VALUE_TYPES,
        st.binary(max_size=16),
        st.none() | VALUE_TYPES,
        st.binary(max_size=16),
    ),
    data=st.data(),
)
def test_fuzz_notify_event_decoder(event: CmapNotifyEvent, data: st.DataObject) -> None:
    """Mutated notify events decode or raise MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_cmap_notify_event_untrusted(_mutate(event.encode(), data))


@given(value_type=VALUE_TYPES, raw=st.binary(max_size=16))
def test_fuzz_value_decoder(value_type: CmapValueType, raw: bytes) -> None:
    """Random value bytes decode or raise MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_cmap_value_untrusted(value_type, raw)
