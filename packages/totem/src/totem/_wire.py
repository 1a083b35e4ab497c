"""Totem wire format, version 1 (our own encoding of corosync's totemsrp messages).

Every message starts with a 10-byte header, big-endian::

    version u8 (1) | type u8 | sender u32 | target u32 (0 = to every node)

Bodies by type (``ring`` = ring seq u64 + rep u32, 12 bytes)::

    TOKEN (0)        ring, token_seq u32, seq u32, aru u32, aru_addr u32, backlog u32,
                     fcc u32, recovery_pending u32, rotation_min_aru u32, safe_aru u32,
                     idle_rotations u32, rtr_count u16, rtr seqs u32 x rtr_count
    MCAST (1)        ring, seq u32, guarantee u8, encapsulated u8 (0 = an application
                     message; 1 = an old-ring message re-sent during recovery; 2 = an
                     old-ring seq that held no application message), then if
                     encapsulated: orig ring, orig sender u32, orig seq u32,
                     orig guarantee u8; then the payload
    MERGE_DETECT (2) ring
    JOIN (3)         ring_seq u64, proc_count u16, failed_count u16, node ids u32 ...
    COMMIT (4)       ring, token_seq u32, round u8, count u16, then per member:
                     node u32, filled u8, old ring, aru u32, high_delivered u32,
                     high_received u32
    LEAVE (5)        ring
    HOLD_CANCEL (6)  ring

Compared with corosync: the token carries ``rotation_min_aru`` / ``safe_aru`` (the
minimum aru over one whole rotation, published by the representative) so that safe
delivery and the end of recovery rest on a proven bound, and ``recovery_pending``
(messages still to re-send) instead of the retrans flag. Decoders of network input are
named ``decode_*_untrusted`` and raise only :class:`MalformedMessage`.
"""

from __future__ import annotations

import enum
import struct

import attrs

from totem._errors import MalformedMessage
from totem._events import Guarantee, RingId

__all__ = [
    "MAX_RTR",
    "CommitEntry",
    "CommitToken",
    "Join",
    "Mcast",
    "MessageType",
    "RingMessage",
    "Token",
    "decode_message_untrusted",
    "encode_commit",
    "encode_join",
    "encode_mcast",
    "encode_ring_message",
    "encode_token",
]

WIRE_VERSION = 1
MAX_RTR = 64  # retransmit requests carried by one token
MAX_NODES = 1024

_HEADER = struct.Struct(">BBII")
_RING = struct.Struct(">QI")
_TOKEN = struct.Struct(">QIIIIIIIIIIIH")
_MCAST = struct.Struct(">QIIBB")
_ENCAP = struct.Struct(">QIIIB")
_JOIN = struct.Struct(">QHH")
_COMMIT = struct.Struct(">QIIBH")
_ENTRY = struct.Struct(">IBQIIII")


class MessageType(enum.IntEnum):
    TOKEN = 0
    MCAST = 1
    MERGE_DETECT = 2
    JOIN = 3
    COMMIT = 4
    LEAVE = 5
    HOLD_CANCEL = 6


@attrs.define(slots=True)
class Token:
    """The ORF token (mutable: each node updates it before forwarding)."""

    sender: int
    ring_id: RingId
    token_seq: int = 0
    seq: int = 0
    aru: int = 0
    aru_addr: int = 0
    backlog: int = 0
    fcc: int = 0
    recovery_pending: int = 0
    rotation_min_aru: int = 0
    safe_aru: int = 0
    idle_rotations: int = 0
    rtr: list[int] = attrs.field(factory=list)


@attrs.frozen(slots=True)
class Mcast:
    sender: int
    ring_id: RingId
    seq: int
    guarantee: Guarantee
    payload: bytes
    #: 0: an application message; 1: a recovery re-send of an old-ring message;
    #: 2: a recovery re-send of an old-ring seq that carried no application message.
    encapsulated: int = 0
    #: For a recovery re-send: the original (ring, sender, seq, guarantee).
    orig_ring_id: RingId | None = None
    orig_sender: int = 0
    orig_seq: int = 0
    orig_guarantee: Guarantee = Guarantee.AGREED


@attrs.frozen(slots=True)
class Join:
    sender: int
    ring_seq: int
    proc: frozenset[int]
    failed: frozenset[int]


@attrs.define(slots=True)
class CommitEntry:
    node: int
    filled: bool = False
    old_ring_id: RingId = attrs.field(factory=lambda: RingId(0, 0))
    aru: int = 0
    high_delivered: int = 0
    high_received: int = 0


@attrs.define(slots=True)
class CommitToken:
    sender: int
    ring_id: RingId
    token_seq: int
    round: int
    entries: list[CommitEntry]

    @property
    def members(self) -> tuple[int, ...]:
        return tuple(entry.node for entry in self.entries)


@attrs.frozen(slots=True)
class RingMessage:
    """MERGE_DETECT, LEAVE or HOLD_CANCEL: a type and a ring id."""

    type: MessageType
    sender: int
    ring_id: RingId


Message = Token | Mcast | Join | CommitToken | RingMessage


def _header(mtype: MessageType, sender: int, target: int) -> bytes:
    return _HEADER.pack(WIRE_VERSION, mtype, sender, target)


def encode_token(token: Token, target: int) -> bytes:
    rtr = token.rtr[:MAX_RTR]
    return b"".join(
        (
            _header(MessageType.TOKEN, token.sender, target),
            _TOKEN.pack(
                token.ring_id.seq,
                token.ring_id.rep,
                token.token_seq,
                token.seq,
                token.aru,
                token.aru_addr,
                token.backlog,
                token.fcc,
                token.recovery_pending,
                token.rotation_min_aru,
                token.safe_aru,
                token.idle_rotations,
                len(rtr),
            ),
            struct.pack(f">{len(rtr)}I", *rtr),
        )
    )


def encode_mcast(message: Mcast) -> bytes:
    parts = [
        _header(MessageType.MCAST, message.sender, 0),
        _MCAST.pack(
            message.ring_id.seq,
            message.ring_id.rep,
            message.seq,
            message.guarantee,
            message.encapsulated,
        ),
    ]
    if message.encapsulated:
        assert message.orig_ring_id is not None
        parts.append(
            _ENCAP.pack(
                message.orig_ring_id.seq,
                message.orig_ring_id.rep,
                message.orig_sender,
                message.orig_seq,
                message.orig_guarantee,
            )
        )
    parts.append(message.payload)
    return b"".join(parts)


def encode_join(join: Join) -> bytes:
    proc = sorted(join.proc)
    failed = sorted(join.failed)
    return b"".join(
        (
            _header(MessageType.JOIN, join.sender, 0),
            _JOIN.pack(join.ring_seq, len(proc), len(failed)),
            struct.pack(f">{len(proc) + len(failed)}I", *proc, *failed),
        )
    )


def encode_commit(commit: CommitToken, target: int) -> bytes:
    parts = [
        _header(MessageType.COMMIT, commit.sender, target),
        _COMMIT.pack(
            commit.ring_id.seq,
            commit.ring_id.rep,
            commit.token_seq,
            commit.round,
            len(commit.entries),
        ),
    ]
    parts.extend(
        _ENTRY.pack(
            entry.node,
            entry.filled,
            entry.old_ring_id.seq,
            entry.old_ring_id.rep,
            entry.aru,
            entry.high_delivered,
            entry.high_received,
        )
        for entry in commit.entries
    )
    return b"".join(parts)


def encode_ring_message(mtype: MessageType, sender: int, ring_id: RingId) -> bytes:
    return _header(mtype, sender, 0) + _RING.pack(ring_id.seq, ring_id.rep)


def decode_message_untrusted(data: bytes) -> tuple[Message, int]:
    """Decode one totem message from the network; returns it and its target (0 = all).

    Raises :class:`MalformedMessage` for anything wrong, never another exception.
    """
    try:
        return _decode(data)
    except struct.error as exc:
        raise MalformedMessage(f"truncated totem message: {exc}") from None
    except ValueError as exc:  # enum conversion of an unknown guarantee
        raise MalformedMessage(str(exc)) from None


def _decode(data: bytes) -> tuple[Message, int]:
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"totem message of {len(data)} bytes is shorter than the header")
    version, mtype, sender, target = _HEADER.unpack_from(data)
    if version != WIRE_VERSION:
        raise MalformedMessage(f"unsupported totem wire version {version}")
    offset = _HEADER.size
    if mtype == MessageType.TOKEN:
        fields = _TOKEN.unpack_from(data, offset)
        offset += _TOKEN.size
        count = fields[-1]
        if count > MAX_RTR:
            raise MalformedMessage(f"token carries {count} retransmit requests")
        if len(data) != offset + 4 * count:
            raise MalformedMessage("token length does not match its retransmit list")
        rtr = list(struct.unpack_from(f">{count}I", data, offset))
        token = Token(
            sender,
            RingId(fields[0], fields[1]),
            token_seq=fields[2],
            seq=fields[3],
            aru=fields[4],
            aru_addr=fields[5],
            backlog=fields[6],
            fcc=fields[7],
            recovery_pending=fields[8],
            rotation_min_aru=fields[9],
            safe_aru=fields[10],
            idle_rotations=fields[11],
            rtr=rtr,
        )
        return token, target
    if mtype == MessageType.MCAST:
        ring_seq, rep, seq, guarantee, encapsulated = _MCAST.unpack_from(data, offset)
        offset += _MCAST.size
        if encapsulated > 2:
            raise MalformedMessage("bad encapsulated flag")
        orig: tuple[RingId | None, int, int, Guarantee] = (None, 0, 0, Guarantee.AGREED)
        if encapsulated:
            o_seq, o_rep, o_sender, o_msg_seq, o_guarantee = _ENCAP.unpack_from(data, offset)
            offset += _ENCAP.size
            orig = (RingId(o_seq, o_rep), o_sender, o_msg_seq, Guarantee(o_guarantee))
        if seq == 0:
            raise MalformedMessage("message sequence number 0")
        message = Mcast(
            sender,
            RingId(ring_seq, rep),
            seq,
            Guarantee(guarantee),
            data[offset:],
            encapsulated,
            orig[0],
            orig[1],
            orig[2],
            orig[3],
        )
        return message, target
    if mtype == MessageType.JOIN:
        ring_seq, proc_count, failed_count = _JOIN.unpack_from(data, offset)
        offset += _JOIN.size
        if proc_count + failed_count > MAX_NODES:
            raise MalformedMessage("join lists too long")
        if len(data) != offset + 4 * (proc_count + failed_count):
            raise MalformedMessage("join length does not match its lists")
        ids = struct.unpack_from(f">{proc_count + failed_count}I", data, offset)
        return Join(
            sender, ring_seq, frozenset(ids[:proc_count]), frozenset(ids[proc_count:])
        ), target
    if mtype == MessageType.COMMIT:
        ring_seq, rep, token_seq, round_, count = _COMMIT.unpack_from(data, offset)
        offset += _COMMIT.size
        if count == 0 or count > MAX_NODES or round_ not in (1, 2):
            raise MalformedMessage("bad commit token")
        if len(data) != offset + _ENTRY.size * count:
            raise MalformedMessage("commit token length does not match its entries")
        entries = []
        for _ in range(count):
            node, filled, o_seq, o_rep, aru, high_delivered, high_received = _ENTRY.unpack_from(
                data, offset
            )
            offset += _ENTRY.size
            entries.append(
                CommitEntry(
                    node, bool(filled), RingId(o_seq, o_rep), aru, high_delivered, high_received
                )
            )
        if len({e.node for e in entries}) != count:
            raise MalformedMessage("commit token lists a node twice")
        return CommitToken(sender, RingId(ring_seq, rep), token_seq, round_, entries), target
    if mtype in (MessageType.MERGE_DETECT, MessageType.LEAVE, MessageType.HOLD_CANCEL):
        if len(data) != offset + _RING.size:
            raise MalformedMessage("bad ring message length")
        ring_seq, rep = _RING.unpack_from(data, offset)
        return RingMessage(MessageType(mtype), sender, RingId(ring_seq, rep)), target
    raise MalformedMessage(f"unknown totem message type {mtype}")
