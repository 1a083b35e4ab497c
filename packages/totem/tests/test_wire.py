"""Tests of the totem wire format: round trips of every message type and decoder fuzzing.

``decode_message_untrusted`` reads datagrams from the network: whatever the bytes, it
returns a message or raises :class:`totem.MalformedMessage`, never another exception.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import totem
from totem import Guarantee, MalformedMessage, RingId
from totem._wire import (
    MAX_NODES,
    MAX_RTR,
    WIRE_VERSION,
    CommitEntry,
    CommitToken,
    Join,
    Mcast,
    MessageType,
    RingMessage,
    Token,
    decode_message_untrusted,
    encode_commit,
    encode_join,
    encode_mcast,
    encode_ring_message,
    encode_token,
)

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
NODE = st.integers(1, 2**32 - 1)
SEQ = st.integers(1, 2**32 - 1)  # message seqs start at 1
RINGS = st.builds(RingId, seq=U64, rep=U32)
GUARANTEES = st.sampled_from(Guarantee)

TOKENS = st.builds(
    Token,
    sender=NODE,
    ring_id=RINGS,
    token_seq=U32,
    seq=U32,
    aru=U32,
    aru_addr=U32,
    backlog=U32,
    fcc=U32,
    recovery_pending=U32,
    rotation_min_aru=U32,
    safe_aru=U32,
    idle_rotations=U32,
    rtr=st.lists(SEQ, max_size=MAX_RTR),
)

PLAIN_MCASTS = st.builds(
    Mcast,
    sender=NODE,
    ring_id=RINGS,
    seq=SEQ,
    guarantee=GUARANTEES,
    payload=st.binary(max_size=300),
)

ENCAPSULATED_MCASTS = st.builds(
    Mcast,
    sender=NODE,
    ring_id=RINGS,
    seq=SEQ,
    guarantee=GUARANTEES,
    payload=st.binary(max_size=300),
    encapsulated=st.sampled_from([1, 2]),
    orig_ring_id=RINGS,
    orig_sender=NODE,
    orig_seq=SEQ,
    orig_guarantee=GUARANTEES,
)

JOINS = st.builds(
    Join,
    sender=NODE,
    ring_seq=U64,
    proc=st.frozensets(NODE, max_size=40),
    failed=st.frozensets(NODE, max_size=40),
)

ENTRIES = st.builds(
    CommitEntry,
    node=NODE,
    filled=st.booleans(),
    old_ring_id=RINGS,
    aru=U32,
    high_delivered=U32,
    high_received=U32,
)

COMMITS = st.builds(
    CommitToken,
    sender=NODE,
    ring_id=RINGS,
    token_seq=U32,
    round=st.sampled_from([1, 2]),
    entries=st.lists(ENTRIES, min_size=1, max_size=20, unique_by=lambda e: e.node),
)

RING_MESSAGES = st.builds(
    RingMessage,
    type=st.sampled_from([MessageType.MERGE_DETECT, MessageType.LEAVE, MessageType.HOLD_CANCEL]),
    sender=NODE,
    ring_id=RINGS,
)


def encode_any(message: object, target: int) -> bytes:
    """Encode any message type (mcast and join are always sent to everyone)."""
    if isinstance(message, Token):
        return encode_token(message, target)
    if isinstance(message, CommitToken):
        return encode_commit(message, target)
    if isinstance(message, Mcast):
        return encode_mcast(message)
    if isinstance(message, Join):
        return encode_join(message)
    assert isinstance(message, RingMessage)
    return encode_ring_message(message.type, message.sender, message.ring_id)


ALL_MESSAGES = st.one_of(TOKENS, PLAIN_MCASTS, ENCAPSULATED_MCASTS, JOINS, COMMITS, RING_MESSAGES)


# --------------------------------------------------------------------------- round trips


@given(TOKENS, U32)
def test_token_round_trip(token: Token, target: int) -> None:
    """Every token field and the retransmit list survive encoding, with the target."""
    assert decode_message_untrusted(encode_token(token, target)) == (token, target)


@given(PLAIN_MCASTS)
def test_mcast_round_trip(message: Mcast) -> None:
    """An application message survives encoding, payload bytes included; target is 0."""
    assert decode_message_untrusted(encode_mcast(message)) == (message, 0)


@given(ENCAPSULATED_MCASTS)
def test_encapsulated_mcast_round_trip(message: Mcast) -> None:
    """A recovery re-send keeps its original ring, sender, seq and guarantee."""
    assert decode_message_untrusted(encode_mcast(message)) == (message, 0)


@given(JOINS)
def test_join_round_trip(join: Join) -> None:
    """A join keeps its ring seq and its proc and failed sets."""
    assert decode_message_untrusted(encode_join(join)) == (join, 0)


@given(COMMITS, U32)
def test_commit_round_trip(commit: CommitToken, target: int) -> None:
    """A commit token keeps its round, ring id and every member's entry, in order."""
    decoded, got_target = decode_message_untrusted(encode_commit(commit, target))
    assert got_target == target
    assert decoded == commit
    assert isinstance(decoded, CommitToken)
    assert decoded.members == tuple(entry.node for entry in commit.entries)


@given(RING_MESSAGES)
def test_ring_message_round_trip(message: RingMessage) -> None:
    """MERGE_DETECT, LEAVE and HOLD_CANCEL keep their type, sender and ring id."""
    data = encode_ring_message(message.type, message.sender, message.ring_id)
    assert decode_message_untrusted(data) == (message, 0)


def test_header_layout() -> None:
    """Every message starts with version, type, sender u32 and target u32, big-endian."""
    token = Token(7, RingId(9, 1), token_seq=3)
    data = encode_token(token, 0x01020304)
    assert struct.unpack_from(">BBII", data) == (WIRE_VERSION, MessageType.TOKEN, 7, 0x01020304)
    join = encode_join(Join(5, 8, frozenset({5, 6}), frozenset()))
    assert struct.unpack_from(">BBII", join) == (WIRE_VERSION, MessageType.JOIN, 5, 0)


def test_token_carries_at_most_max_rtr_requests() -> None:
    """Encoding truncates the retransmit list to MAX_RTR entries; decoding rejects more."""
    token = Token(1, RingId(4, 1), rtr=list(range(1, MAX_RTR + 10)))
    decoded, _target = decode_message_untrusted(encode_token(token, 2))
    assert isinstance(decoded, Token)
    assert decoded.rtr == list(range(1, MAX_RTR + 1))
    data = bytearray(encode_token(Token(1, RingId(4, 1)), 2))
    struct.pack_into(">H", data, len(data) - 2, MAX_RTR + 1)
    data += bytes(4 * (MAX_RTR + 1))
    with pytest.raises(MalformedMessage, match="retransmit"):
        decode_message_untrusted(bytes(data))


# --------------------------------------------------------------------------- rejections


def corrupt(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """``data`` with one field overwritten."""
    buffer = bytearray(data)
    struct.pack_into(fmt, buffer, offset, value)
    return bytes(buffer)


VALID = {
    "token": encode_token(Token(1, RingId(8, 1), token_seq=5, seq=3, rtr=[2]), 2),
    "mcast": encode_mcast(Mcast(2, RingId(8, 1), 4, Guarantee.SAFE, b"hello")),
    "join": encode_join(Join(3, 8, frozenset({1, 2, 3}), frozenset({4}))),
    "commit": encode_commit(CommitToken(1, RingId(12, 1), 1, 1, [CommitEntry(1)]), 1),
    "leave": encode_ring_message(MessageType.LEAVE, 3, RingId(8, 1)),
}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "shorter than the header", id="empty"),
        pytest.param(b"\x01\x00\x00\x00", "shorter than the header", id="short-header"),
        pytest.param(corrupt(VALID["token"], 0, ">B", 2), "version", id="bad-version"),
        pytest.param(
            corrupt(VALID["token"], 1, ">B", 7), "unknown totem message type", id="unknown-type-7"
        ),
        pytest.param(
            corrupt(VALID["token"], 1, ">B", 255),
            "unknown totem message type",
            id="unknown-type-255",
        ),
        pytest.param(VALID["token"][:-1], "truncated|retransmit list", id="token-truncated"),
        pytest.param(VALID["token"] + b"\x00", "retransmit list", id="token-trailing-byte"),
        pytest.param(VALID["mcast"][:20], "truncated", id="mcast-truncated"),
        pytest.param(corrupt(VALID["mcast"], 26, ">B", 2), "Guarantee", id="mcast-bad-guarantee"),
        pytest.param(
            corrupt(VALID["mcast"], 27, ">B", 3), "encapsulated", id="mcast-bad-encapsulated"
        ),
        pytest.param(corrupt(VALID["mcast"], 22, ">I", 0), "sequence number 0", id="mcast-seq-0"),
        pytest.param(VALID["join"][:-2], "truncated|join length", id="join-truncated"),
        pytest.param(VALID["join"] + b"\x00\x00\x00\x09", "join length", id="join-trailing-id"),
        pytest.param(corrupt(VALID["join"], 18, ">H", 1024), "too long", id="join-too-long"),
        pytest.param(
            corrupt(VALID["commit"], 27, ">H", 0), "bad commit token", id="commit-no-entries"
        ),
        pytest.param(
            corrupt(VALID["commit"], 26, ">B", 3), "bad commit token", id="commit-bad-round"
        ),
        pytest.param(VALID["commit"] + b"\x00", "commit token length", id="commit-trailing-byte"),
        pytest.param(VALID["leave"] + b"\x00", "ring message length", id="ring-message-long"),
        pytest.param(VALID["leave"][:-1], "ring message length", id="ring-message-short"),
    ],
)
def test_malformed_inputs_raise_malformed_message(data: bytes, reason: str) -> None:
    """Each kind of bad datagram raises MalformedMessage saying what is wrong."""
    with pytest.raises(MalformedMessage, match=reason):
        decode_message_untrusted(data)


def test_commit_listing_a_node_twice_is_rejected() -> None:
    """A commit token with a duplicated member is malformed."""
    commit = CommitToken(1, RingId(12, 1), 1, 1, [CommitEntry(1), CommitEntry(1)])
    with pytest.raises(MalformedMessage, match="twice"):
        decode_message_untrusted(encode_commit(commit, 1))


def test_join_lists_are_bounded() -> None:
    """A join whose lists hold more than MAX_NODES ids in total is malformed."""
    join = Join(1, 4, frozenset(range(1, MAX_NODES + 1)), frozenset({MAX_NODES + 1}))
    with pytest.raises(MalformedMessage, match="too long"):
        decode_message_untrusted(encode_join(join))
    ok = Join(1, 4, frozenset(range(1, MAX_NODES)), frozenset({MAX_NODES}))
    assert decode_message_untrusted(encode_join(ok))[0] == ok


def test_malformed_message_is_not_a_totem_error() -> None:
    """MalformedMessage is internal (never raised to the caller), not an API error."""
    assert not issubclass(MalformedMessage, totem.TotemError)
    assert totem.MalformedMessage is MalformedMessage


# --------------------------------------------------------------------------- fuzz


def decode_or_malformed(data: bytes) -> None:
    """Decode ``data``; MalformedMessage is the only exception allowed out."""
    try:
        message, target = decode_message_untrusted(data)
    except MalformedMessage:
        return
    assert isinstance(message, Token | Mcast | Join | CommitToken | RingMessage)
    assert 0 <= target < 2**32


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    """Random datagrams only ever raise MalformedMessage."""
    decode_or_malformed(data)


@settings(max_examples=2000)
@given(st.integers(0, 6), st.binary(max_size=300))
def test_fuzz_random_bodies_behind_a_valid_header(mtype: int, body: bytes) -> None:
    """A valid header with a random body reaches every type's decoder and never crashes it."""
    decode_or_malformed(struct.pack(">BBII", WIRE_VERSION, mtype, 3, 0) + body)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding of a random message, then byte flips, cuts or insertions."""
    message = draw(ALL_MESSAGES)
    data = bytearray(encode_any(message, draw(U32)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "field"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "field" and len(data) >= 4:
            at = draw(st.integers(0, len(data) - 4))
            value = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            struct.pack_into(">I", data, at, value)
    return bytes(data)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_encodings())
def test_fuzz_mutations_of_valid_encodings(data: bytes) -> None:
    """Mutated valid messages decode or raise MalformedMessage, nothing else."""
    decode_or_malformed(data)


@settings(max_examples=500)
@given(ALL_MESSAGES, U32, st.integers(0, 400))
def test_every_truncation_is_malformed_or_a_prefix_message(
    message: object, target: int, cut: int
) -> None:
    """Cutting a valid encoding anywhere never crashes the decoder."""
    data = encode_any(message, target)
    decode_or_malformed(data[: min(cut, len(data))])
