"""Tests of the cfg IPC messages (libqb-ipc.md 5.5): layouts, round trips, fuzzing."""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync import CsError, CsErrorCode, MalformedMessage
from corosync.ipc import (
    CfgGetNodeAddrsRequest,
    CfgGetNodeAddrsResponse,
    CfgKillNodeRequest,
    CfgKillNodeResponse,
    CfgLinkStatus,
    CfgLocalGetRequest,
    CfgLocalGetResponse,
    CfgNodeStatus,
    CfgNodeStatusGetRequest,
    CfgNodeStatusGetResponse,
    CfgReloadConfigRequest,
    CfgReloadConfigResponse,
    CfgReopenLogFilesRequest,
    CfgReopenLogFilesResponse,
    CfgReplyToShutdownRequest,
    CfgReplyToShutdownResponse,
    CfgRequest,
    CfgRingReenableRequest,
    CfgRingReenableResponse,
    CfgRingStatusGetRequest,
    CfgRingStatusGetResponse,
    CfgTestShutdownEvent,
    CfgTrackStartRequest,
    CfgTrackStartResponse,
    CfgTrackStopRequest,
    CfgTrackStopResponse,
    CfgTryShutdownRequest,
    CfgTryShutdownResponse,
    decode_cfg_event_untrusted,
    decode_cfg_request_untrusted,
    decode_cfg_response_untrusted,
    encode_error_response,
)

U32 = st.integers(0, 2**32 - 1)
U8 = st.integers(0, 255)
TEXT = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=60)
ADDRESS = st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str)
LINKS = st.builds(
    CfgLinkStatus,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    U32,
    ADDRESS,
    ADDRESS,
)
NODE_STATUS = st.builds(
    CfgNodeStatus,
    nodeid=U32,
    reachable=st.booleans(),
    remote=st.booleans(),
    external=st.booleans(),
    onwire_min=U8,
    onwire_max=U8,
    onwire_ver=U8,
    link_status=st.lists(LINKS, max_size=8),
    version=U32,
)
REQUESTS = st.one_of(
    st.just(CfgRingStatusGetRequest()),
    st.just(CfgRingReenableRequest()),
    st.builds(CfgKillNodeRequest, U32, TEXT),
    st.builds(CfgTryShutdownRequest, U32),
    st.builds(CfgReplyToShutdownRequest, U32),
    st.builds(CfgGetNodeAddrsRequest, U32),
    st.just(CfgLocalGetRequest()),
    st.just(CfgReloadConfigRequest()),
    st.just(CfgReopenLogFilesRequest()),
    st.builds(CfgNodeStatusGetRequest, U32, U32),
    st.builds(CfgTrackStartRequest, U8),
    st.just(CfgTrackStopRequest()),
)


def _header(raw: bytes) -> tuple[int, int]:
    msg_id, size = struct.unpack_from("=i4xi", raw)
    return msg_id, size


# --------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("request_", "msg_id", "size"),
    [
        (CfgRingStatusGetRequest(), 0, 16),
        (CfgRingReenableRequest(), 1, 16),
        (CfgKillNodeRequest(3, "r"), 2, 288),
        (CfgTryShutdownRequest(1), 3, 24),
        (CfgReplyToShutdownRequest(0), 4, 24),
        (CfgGetNodeAddrsRequest(2), 5, 24),
        (CfgLocalGetRequest(), 6, 16),
        (CfgReloadConfigRequest(), 7, 16),
        (CfgReopenLogFilesRequest(), 8, 16),
        (CfgNodeStatusGetRequest(2), 9, 32),
        (CfgTrackStartRequest(0), 10, 24),
        (CfgTrackStopRequest(), 11, 16),
    ],
)
def test_request_ids_and_sizes(request_: CfgRequest, msg_id: int, size: int) -> None:
    """Every request has corosync's id and sizeof()."""
    raw = request_.encode()
    assert len(raw) == size
    assert _header(raw) == (msg_id, size)


def test_request_field_offsets() -> None:
    """Fields sit at the offsets of the C structs (8-byte aligned after the header)."""
    kill = CfgKillNodeRequest(0x01020304, "Killed by corosync-cfgtool").encode()
    assert struct.unpack_from("=I", kill, 16)[0] == 0x01020304
    assert struct.unpack_from("=H", kill, 24)[0] == len("Killed by corosync-cfgtool") + 1
    assert kill[26 : 26 + 27] == b"Killed by corosync-cfgtool\0"
    status = CfgNodeStatusGetRequest(7, 1).encode()
    assert struct.unpack_from("=I4xI", status, 16) == (7, 1)
    assert CfgTrackStartRequest(5).encode()[16] == 5
    assert struct.unpack_from("=I", CfgTryShutdownRequest(2).encode(), 16)[0] == 2


@pytest.mark.parametrize(
    ("response", "msg_id", "size"),
    [
        (CfgRingStatusGetResponse(), 0, 10272),
        (CfgRingReenableResponse(), 1, 24),
        (CfgTrackStartResponse(), 2, 24),
        (CfgTrackStopResponse(), 3, 24),
        (CfgKillNodeResponse(), 8, 24),
        (CfgTryShutdownResponse(), 9, 24),
        (CfgTestShutdownEvent(), 10, 32),
        (CfgGetNodeAddrsResponse(family=socket.AF_INET, addresses=("10.0.0.1",)), 11, 48),
        (CfgLocalGetResponse(local_nodeid=1), 12, 32),
        (CfgReplyToShutdownResponse(), 13, 24),
        (CfgReloadConfigResponse(), 14, 24),
        (CfgReopenLogFilesResponse(), 15, 24),
        (CfgNodeStatusGetResponse(status=CfgNodeStatus(1)), 16, 4200),
    ],
)
def test_response_ids_and_sizes(response: Any, msg_id: int, size: int) -> None:
    """Every response (and the event) has corosync's res id and size."""
    raw = response.encode()
    assert (len(raw), _header(raw)) == (size, (msg_id, size))
    assert struct.unpack_from("=i", raw, 16)[0] == 1  # CS_OK


def test_node_status_layout() -> None:
    """corosync_cfg_node_status_v1: 16-byte head, then 8 links of 520 bytes."""
    link = CfgLinkStatus(True, True, False, 1397, "10.231.0.1", "10.231.0.2")
    status = CfgNodeStatus(2, reachable=True, onwire_max=1, link_status=[CfgLinkStatus(), link])
    raw = CfgNodeStatusGetResponse(status=status).encode()
    body = raw[24:]
    assert struct.unpack_from("=II6B", body) == (1, 2, 1, 0, 0, 0, 1, 0)
    second = body[16 + 520 : 16 + 1040]
    assert second[:3] == b"\x01\x01\x00"
    assert struct.unpack_from("=I", second, 4)[0] == 1397
    assert second[8:19] == b"10.231.0.1\0"
    assert second[264:275] == b"10.231.0.2\0"
    assert len(status.link_status) == 8
    assert status.link_status[0] == CfgLinkStatus()


def test_node_status_error_is_32_bytes() -> None:
    """A failed NODESTATUSGET is 32 bytes, as corosync 3.1.7 sends it; only its error counts."""
    raw = CfgNodeStatusGetResponse(error=CsErrorCode.FAILED_OPERATION).encode()
    assert len(raw) == 32
    decoded = decode_cfg_response_untrusted(raw, CfgNodeStatusGetResponse)
    assert (decoded.error, decoded.status) == (CsErrorCode.FAILED_OPERATION, None)


def test_node_addrs_layout() -> None:
    """Each address takes 16 bytes; IPv4 in the first 4; one family for all."""
    v4 = CfgGetNodeAddrsResponse(family=socket.AF_INET, addresses=("10.231.0.2", "10.232.0.2"))
    raw = v4.encode()
    assert struct.unpack_from("=II", raw, 24) == (socket.AF_INET, 2)
    assert raw[32:48] == bytes([10, 231, 0, 2]) + bytes(12)
    assert raw[48:64] == bytes([10, 232, 0, 2]) + bytes(12)
    assert decode_cfg_response_untrusted(raw, CfgGetNodeAddrsResponse) == v4
    v6 = CfgGetNodeAddrsResponse(family=socket.AF_INET6, addresses=("fd00::1",))
    assert decode_cfg_response_untrusted(v6.encode(), CfgGetNodeAddrsResponse) == v6
    with pytest.raises(ValueError, match="family"):
        CfgGetNodeAddrsResponse(family=socket.AF_INET, addresses=("fd00::1",)).encode()


def test_ring_status_layout() -> None:
    """Names are 128-byte fields from 32, statuses 512-byte fields from 2080."""
    response = CfgRingStatusGetResponse(
        interfaces=(("0 10.231.0.1", "n33"), ("1 10.232.0.1", "n13"))
    )
    raw = response.encode()
    assert struct.unpack_from("=I", raw, 24)[0] == 2
    assert raw[32 + 128 : 32 + 128 + 13] == b"1 10.232.0.1\0"
    assert raw[2080 + 512 : 2080 + 512 + 4] == b"n13\0"
    assert decode_cfg_response_untrusted(raw, CfgRingStatusGetResponse) == response


def test_event_layout_and_decoding() -> None:
    """TESTSHUTDOWN carries the flags at 24 and may carry an error (TIMEOUT)."""
    raw = CfgTestShutdownEvent(flags=1).encode()
    assert struct.unpack_from("=I", raw, 24)[0] == 1
    assert decode_cfg_event_untrusted(raw) == CfgTestShutdownEvent(flags=1)
    timeout = CfgTestShutdownEvent(error=CsErrorCode.TIMEOUT).encode()
    assert decode_cfg_event_untrusted(timeout).error is CsErrorCode.TIMEOUT
    with pytest.raises(MalformedMessage, match="unknown cfg event id"):
        decode_cfg_event_untrusted(CfgLocalGetResponse().encode())


def test_generic_error_reply_stands_in_for_any_response() -> None:
    """corosync's bare id-0 INVALID_PARAM reply decodes as an error of any response."""
    bare = encode_error_response(CsErrorCode.INVALID_PARAM)
    for cls in (CfgLocalGetResponse, CfgNodeStatusGetResponse, CfgRingStatusGetResponse):
        assert decode_cfg_response_untrusted(bare, cls).error is CsErrorCode.INVALID_PARAM


def test_wrong_response_id_is_malformed() -> None:
    """A successful response of another kind is not taken for the expected one."""
    with pytest.raises(MalformedMessage, match="expected 12"):
        decode_cfg_response_untrusted(CfgKillNodeResponse().encode(), CfgLocalGetResponse)


def test_kill_reason_limits() -> None:
    """A reason is at most 255 bytes without NUL, like libcfg's cs_name_t."""
    assert len(CfgKillNodeRequest(1, "x" * 255).encode()) == 288
    with pytest.raises(CsError) as too_long:
        CfgKillNodeRequest(1, "x" * 256).encode()
    assert too_long.value.code is CsErrorCode.NAME_TOO_LONG
    with pytest.raises(CsError) as nul:
        CfgKillNodeRequest(1, "a\0b").encode()
    assert nul.value.code is CsErrorCode.INVALID_PARAM


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (struct.pack("=i4xi4x", 12, 16), "unknown cfg request id 12"),
        (struct.pack("=i4xi4x", 6, 16) + bytes(8), "header says 16 bytes but 24"),
        (struct.pack("=i4xi4x", 6, 24) + bytes(8), "LOCAL_GET of 24 bytes, expected 16"),
        (struct.pack("=i4xi4x", 9, 24) + bytes(8), "NODESTATUSGET of 24 bytes, expected 32"),
        (struct.pack("=i4xi4x", 2, 288) + bytes(8) + b"\1" * 264, "not NUL-terminated"),
        (b"\0" * 8, "shorter than its 16-byte header"),
    ],
)
def test_malformed_requests_are_rejected(raw: bytes, match: str) -> None:
    """Unknown ids, wrong sizes and unterminated strings are MalformedMessage."""
    with pytest.raises(MalformedMessage, match=match):
        decode_cfg_request_untrusted(raw)


# ----------------------------------------------------------------- round trips


@given(REQUESTS)
def test_request_round_trip(request_: CfgRequest) -> None:
    """What a client encodes, the server decodes back to the same request."""
    assert decode_cfg_request_untrusted(request_.encode()) == request_


@given(NODE_STATUS)
def test_node_status_round_trip(status: CfgNodeStatus) -> None:
    """Node statuses survive encoding, links padded to 8."""
    raw = CfgNodeStatusGetResponse(status=status).encode()
    assert decode_cfg_response_untrusted(raw, CfgNodeStatusGetResponse).status == status


@given(
    family=st.sampled_from([socket.AF_INET, socket.AF_INET6]),
    data=st.data(),
)
def test_node_addrs_round_trip(family: int, data: st.DataObject) -> None:
    """Address lists of either family survive encoding."""
    version = 4 if family == socket.AF_INET else 6
    addresses = data.draw(st.lists(st.ip_addresses(v=version).map(str), max_size=8))
    response = CfgGetNodeAddrsResponse(family=family, addresses=tuple(addresses))
    assert decode_cfg_response_untrusted(response.encode(), CfgGetNodeAddrsResponse) == response


@given(st.lists(st.tuples(TEXT, TEXT), max_size=16))
def test_ring_status_round_trip(interfaces: list[tuple[str, str]]) -> None:
    """Legacy ring status strings survive encoding."""
    response = CfgRingStatusGetResponse(interfaces=tuple(interfaces))
    assert decode_cfg_response_untrusted(response.encode(), CfgRingStatusGetResponse) == response


@given(U32, st.sampled_from(list(CsErrorCode)))
def test_event_round_trip(flags: int, error: CsErrorCode) -> None:
    """TESTSHUTDOWN events survive encoding."""
    event = CfgTestShutdownEvent(flags=flags, error=error)
    assert decode_cfg_event_untrusted(event.encode()) == event


# --------------------------------------------------------------------- fuzzing

RESPONSE_SAMPLES: list[Any] = [
    CfgRingStatusGetResponse(interfaces=(("0 10.0.0.1", "n3"),)),
    CfgRingReenableResponse(),
    CfgTrackStartResponse(),
    CfgTrackStopResponse(),
    CfgKillNodeResponse(),
    CfgTryShutdownResponse(),
    CfgGetNodeAddrsResponse(family=socket.AF_INET, addresses=("10.0.0.1", "10.0.1.1")),
    CfgLocalGetResponse(local_nodeid=3),
    CfgReplyToShutdownResponse(),
    CfgReloadConfigResponse(),
    CfgReopenLogFilesResponse(),
    CfgNodeStatusGetResponse(
        status=CfgNodeStatus(2, True, link_status=[CfgLinkStatus(True, True, True, 1, "a", "b")])
    ),
]


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    """Flip some bytes, then maybe cut or extend, keeping header sizes plausible."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(0, 6))):
        if out:
            out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(out)))
    out = out[:cut] + data.draw(st.binary(max_size=16))
    if data.draw(st.booleans()) and len(out) >= 16:
        out[8:12] = struct.pack("<i", len(out))  # a consistent size gets past the header
    return bytes(out)


@settings(max_examples=1000)
@given(request_=REQUESTS, data=st.data())
def test_fuzz_request_decoder(request_: CfgRequest, data: st.DataObject) -> None:
    """Mutated requests decode or raise MalformedMessage, nothing else."""
    with contextlib.suppress(MalformedMessage):
        decode_cfg_request_untrusted(_mutate(request_.encode(), data))


@given(raw=st.binary(max_size=400))
def test_fuzz_request_decoder_random(raw: bytes) -> None:
    """Random bytes decode or raise MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_cfg_request_untrusted(raw)


@settings(max_examples=1000)
@given(
    source=st.sampled_from(RESPONSE_SAMPLES),
    cls=st.sampled_from([type(r) for r in RESPONSE_SAMPLES]),
    error=st.sampled_from([1, 1, 1, 7, 12, 21, 29]),
    data=st.data(),
)
def test_fuzz_response_decoder(
    source: Any, cls: type[Any], error: int, data: st.DataObject
) -> None:
    """Mutated responses of any kind, decoded as any kind, decode or are malformed."""
    raw = bytearray(source.encode())
    raw[16:20] = struct.pack("<i", error)
    with contextlib.suppress(MalformedMessage):
        decode_cfg_response_untrusted(_mutate(bytes(raw), data), cls)


@settings(max_examples=500)
@given(flags=U32, data=st.data())
def test_fuzz_event_decoder(flags: int, data: st.DataObject) -> None:
    """Mutated events decode or raise MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_cfg_event_untrusted(_mutate(CfgTestShutdownEvent(flags=flags).encode(), data))
