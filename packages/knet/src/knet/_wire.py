"""knet wire format, version 1 (our own; not libknet-compatible).

Every datagram starts with a fixed 24-byte header, all fields big-endian::

    offset size field
    0      1    version      wire format version, 1 (the first byte, always)
    1      1    type         DATA 1, PING 2, PONG 3, PMTUD 4, PMTUD_REPLY 5
    2      2    src_host     sender's host id
    4      1    link_id      sender's link id (link ids pair up on both ends)
    5      1    crypto_slot  0 = clear, 1 or 2 = sealed with that key slot
    6      2    reserved     zero
    8      8    instance     sender's random id, new at every start
    16     8    counter      per-destination packet counter (nonce and replay window)

The body follows. When ``crypto_slot`` is not 0 the body is AEAD-sealed with the header
as associated data, so every header bit is authenticated too. Bodies::

    DATA         data_seq u32, channel u8, compression u8, frag_index u8, frag_count u8,
                 then the fragment bytes                                    (8 + n)
    PING, PONG   timestamp u64 (the pinger's clock), pinger_instance u64 (the pinger's
                 instance id); a pong echoes its ping's body                 (16)
    PMTUD        probe_size u16, then zero padding up to probe_size          (probe_size - 24 - tag)
    PMTUD_REPLY  probe_size u16                                              (2)
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

import attrs

from knet._errors import MalformedPacket

__all__ = [
    "DATA_HEADER",
    "HEADER",
    "HEADER_SIZE",
    "PING_BODY",
    "WIRE_VERSION",
    "DataHeader",
    "Header",
    "PacketType",
    "UnsupportedVersion",
    "decode_data_untrusted",
    "decode_header_untrusted",
    "decode_ping_untrusted",
    "decode_pmtud_untrusted",
    "encode_header",
]

WIRE_VERSION = 1

HEADER = struct.Struct(">BBHBBHQQ")
HEADER_SIZE = HEADER.size  # 24
DATA_HEADER = struct.Struct(">IBBBB")  # 8
PING_BODY = struct.Struct(">QQ")
PROBE = struct.Struct(">H")


class PacketType(enum.IntEnum):
    DATA = 1
    PING = 2
    PONG = 3
    PMTUD = 4
    PMTUD_REPLY = 5


_TYPES = frozenset(int(t) for t in PacketType)


class UnsupportedVersion(MalformedPacket):
    """The first byte names a wire version we do not speak (a newer peer)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported knet wire version {version} (we speak {WIRE_VERSION})")
        self.version = version


@attrs.frozen(slots=True)
class Header:
    type: PacketType
    src_host: int
    link_id: int
    crypto_slot: int
    instance: int
    counter: int


class DataHeader(NamedTuple):
    """The DATA body header. A named tuple, not an attrs class: one is decoded for
    every data packet received, and a tuple is built several times faster."""

    data_seq: int
    channel: int
    compression: int
    frag_index: int
    frag_count: int


def encode_header(
    ptype: PacketType, src_host: int, link_id: int, crypto_slot: int, instance: int, counter: int
) -> bytes:
    return HEADER.pack(WIRE_VERSION, ptype, src_host, link_id, crypto_slot, 0, instance, counter)


def decode_header_untrusted(data: bytes) -> Header:
    """Decode the fixed header of a datagram from the network.

    Raises :class:`UnsupportedVersion` for another version and :class:`MalformedPacket`
    for anything else that is wrong; never anything else.
    """
    if len(data) < 1:
        raise MalformedPacket("empty datagram")
    if data[0] != WIRE_VERSION:
        raise UnsupportedVersion(data[0])
    if len(data) < HEADER_SIZE:
        raise MalformedPacket(f"datagram of {len(data)} bytes is shorter than the header")
    _version, ptype, src_host, link_id, slot, reserved, instance, counter = HEADER.unpack_from(data)
    if ptype not in _TYPES:
        raise MalformedPacket(f"unknown packet type {ptype}")
    if slot > 2:
        raise MalformedPacket(f"crypto slot {slot} out of range")
    if link_id >= 8:
        raise MalformedPacket(f"link id {link_id} out of range")
    if reserved:
        raise MalformedPacket("reserved header bits set")
    return Header(PacketType(ptype), src_host, link_id, slot, instance, counter)


def decode_data_untrusted(body: bytes) -> tuple[DataHeader, bytes]:
    """Split a DATA body into its header and fragment bytes."""
    if len(body) < DATA_HEADER.size:
        raise MalformedPacket("DATA body shorter than its header")
    seq, channel, compression, index, count = DATA_HEADER.unpack_from(body)
    if count == 0 or index >= count:
        raise MalformedPacket(f"fragment {index} of {count} is impossible")
    if channel >= 32:
        raise MalformedPacket(f"channel {channel} out of range")
    return DataHeader(seq, channel, compression, index, count), body[DATA_HEADER.size :]


def decode_ping_untrusted(body: bytes) -> tuple[int, int]:
    """The (timestamp, pinger instance) of a PING or PONG body."""
    if len(body) != PING_BODY.size:
        raise MalformedPacket(f"PING/PONG body of {len(body)} bytes, expected {PING_BODY.size}")
    timestamp, instance = PING_BODY.unpack(body)
    return int(timestamp), int(instance)


def decode_pmtud_untrusted(body: bytes) -> int:
    """The probe size of a PMTUD or PMTUD_REPLY body."""
    if len(body) < PROBE.size:
        raise MalformedPacket("PMTUD body too short")
    return int(PROBE.unpack_from(body)[0])
