"""Process groups above Totem: packing, fragmentation and named groups (sans-IO).

This is the ``totempg`` layer of corosync, rewritten. The application multicasts
*messages* (a payload of up to ``max_message`` bytes addressed to one or more named
groups); the Totem core originates *packets* (totem messages of at most ``max_packet``
bytes) and delivers them to every member in agreed order. :class:`ProcessGroups` sits in
between, once per node:

* as the core's message source, :meth:`ProcessGroups.take` packs many small queued
  messages into one packet and splits a large message across packets;
* :meth:`ProcessGroups.deliver` unpacks every delivered packet (from any sender,
  including this node), reassembles fragments per sender, and returns the whole
  messages addressed to a group this node joined.

Wire format (ours, versioned; all integers big-endian)::

    packet   +---------+-------+----------+------------------+-------------------------+
             | version | flags | count    | length[count]    | entry bytes, in order   |
             | u8 = 1  | u8    | u16 >= 1 | u32 each, >= 1   | sum(length) bytes       |
             +---------+-------+----------+------------------+-------------------------+

    flags    bit 0  CONTINUES_NEXT      the last entry continues in this sender's next packet
             bit 1  CONTINUES_PREVIOUS  the first entry continues this sender's previous packet
             bits 2-7 are zero

    message  +----------+-----------------------------------------+-----------------+
             | n_groups | n_groups x (name_len u8 >= 1, name)     | payload         |
             | u8 >= 1  |                                         | (rest of bytes) |
             +----------+-----------------------------------------+-----------------+

An *entry* is a whole message, or a fragment of one: the concatenation of a message's
fragments, in the order of the sender's packets, is the message. Only the first and
the last entry of a packet can be fragments (as said by the flags), so one packet can
carry the tail of a large message, then whole small ones, then the head of the next
large one. A packet never mixes guarantees: every entry of a packet (and every
fragment of a message) has the packet's guarantee, which the core carries.

Sending policy: messages leave in FIFO order. A message that fits in a packet of its
own is never split (it starts a new packet when the current one is too full); a larger
one is split, starting in the room left in the current packet. ``mcast`` never refuses
for lack of queue space: callers apply flow control with :meth:`ProcessGroups.queue_level`
(corosync's LOW / GOOD / HIGH / CRITICAL) or :attr:`ProcessGroups.queued_bytes`.

Receiving: Totem delivers each sender's packets in the order it originated them, so
one assembly buffer per sender is enough. It is bounded at ``max_message + 64 KiB``
(the largest payload plus the largest group header). A message is returned when at
least one of its groups is joined here (a node that joined no group gets nothing; the
other messages are counted in ``stats["filtered_messages"]``).

Membership changes (extended virtual synchrony): fragments of one message are
originated in one ring, and a regular configuration change ends the old ring, so the
missing fragments of a partial assembly will never arrive. On a REGULAR configuration
change every partial assembly is discarded (``stats["discarded_partial"]``) and every
sender is *resynchronising*: its continuation fragments are dropped quietly
(``stats["discarded_fragments"]``) until it starts a message afresh. The sending side
mirrors this: a message of ours whose first fragments were taken but whose last one
was not is restarted from its first byte (``stats["restarted"]``), so it is delivered
whole in the new ring instead of being lost; nobody can have delivered it before,
since its last fragment had not been sent. A packet that does not continue an open
assembly of its sender means the sender abandoned that message: the assembly is
dropped (``stats["aborted_partial"]``) and the packet is used. Receivers see this when
the core took the first fragments of a message in the new ring before the
configuration change reached this layer, which then restarted it. A TRANSITIONAL
change needs nothing: the messages delivered with it still belong to the old ring.

This assumes that every packet :meth:`ProcessGroups.take` returns is originated at
once, in the ring current at that moment, and that deliveries and configuration
changes are fed to :meth:`ProcessGroups.deliver` and
:meth:`ProcessGroups.configuration_change` in the order the core reports them.

Untrusted input never raises: :func:`decode_packet_untrusted` and
:func:`decode_message_untrusted` raise only :class:`~totem._errors.MalformedMessage`,
and :meth:`ProcessGroups.deliver` counts and drops a malformed packet (resetting the
sender's assembly) or a continuation that does not match the sender's state.
"""

from __future__ import annotations

import enum
import struct
import sys
from array import array
from collections import deque
from collections.abc import Sequence

import attrs

from totem._errors import (
    ConfigError,
    InvalidGroupName,
    MalformedMessage,
    MessageTooLarge,
    TotemError,
)
from totem._events import ConfigurationChange, ConfKind, Delivered, Guarantee, RingId

__all__ = [
    "ASSEMBLY_SLACK",
    "FLAG_CONTINUES_NEXT",
    "FLAG_CONTINUES_PREVIOUS",
    "LENGTH_SIZE",
    "MAX_ENTRIES",
    "MAX_GROUPS",
    "MAX_GROUP_NAME",
    "MIN_PACKET",
    "PACKET_HEADER_SIZE",
    "VERSION",
    "GroupMessage",
    "PgPacket",
    "ProcessGroups",
    "QueueLevel",
    "decode_message_untrusted",
    "decode_packet_untrusted",
    "encode_message",
    "encode_packet",
]

#: Wire format version (the first byte of every packet).
VERSION = 1
#: Flag bit: the last entry continues in the sender's next packet.
FLAG_CONTINUES_NEXT = 0x01
#: Flag bit: the first entry continues the sender's previous packet.
FLAG_CONTINUES_PREVIOUS = 0x02
_KNOWN_FLAGS = FLAG_CONTINUES_NEXT | FLAG_CONTINUES_PREVIOUS
#: Bytes before the length table: version u8, flags u8, count u16.
PACKET_HEADER_SIZE = 4
#: Bytes per entry in the length table (u32).
LENGTH_SIZE = 4
#: Entries per packet (count is a u16).
MAX_ENTRIES = 0xFFFF
#: Groups per message (n_groups is a u8).
MAX_GROUPS = 255
#: Bytes per group name (name_len is a u8).
MAX_GROUP_NAME = 255
#: Room for the largest group header on top of ``max_message`` in an assembly buffer.
ASSEMBLY_SLACK = 64 * 1024
#: Smallest usable ``max_packet``: header, one length, and a little data.
MIN_PACKET = 16

#: Do not start a fragment in less room than this when the packet already has entries.
_MIN_FRAGMENT = 32
#: Group headers cached by ``mcast`` (the cache is cleared when it is full).
_HEADER_CACHE_SIZE = 256

_HEADER = struct.Struct(">BBH")

# Length tables are packed and unpacked as an array of 4-byte unsigned integers.
_U32 = "I" if array("I").itemsize == 4 else "L"
assert array(_U32).itemsize == 4
_SWAP = sys.byteorder == "little"

# One queued message: (group header, payload, encoded size, guarantee).
_Queued = tuple[bytes, bytes, int, Guarantee]
_Buffer = bytes | memoryview


class QueueLevel(enum.IntEnum):
    """How full the send queue is, like corosync's TOTEM_Q_LEVEL_*.

    Below 30 % of the capacity LOW, below 60 % GOOD, below 75 % HIGH, else CRITICAL.
    """

    LOW = 1
    GOOD = 2
    HIGH = 3
    CRITICAL = 4


@attrs.frozen(slots=True)
class GroupMessage:
    """A whole application message, as delivered to the application."""

    sender: int  #: node id of the sender
    groups: tuple[bytes, ...]  #: every group the sender addressed (not only joined ones)
    payload: bytes
    guarantee: Guarantee
    ring_id: RingId  #: the ring its last fragment was originated in


@attrs.frozen(slots=True)
class PgPacket:
    """A decoded process-group packet: its flags and its entries (whole messages or
    fragments). Not the core's ``totem.Packet`` (a datagram to send)."""

    continues_previous: bool
    continues_next: bool
    entries: tuple[bytes, ...]


@attrs.define(slots=True)
class _Assembly:
    """The fragments received so far of one sender's message."""

    guarantee: Guarantee
    parts: list[_Buffer]
    size: int


def _pack_lengths(lengths: list[int]) -> bytes:
    table = array(_U32, lengths)
    if _SWAP:
        table.byteswap()
    return table.tobytes()


def _parse_packet(data: bytes) -> tuple[int, list[memoryview]]:
    """Validate a packet; return its flags and its entries (views into ``data``)."""
    size = len(data)
    if size < PACKET_HEADER_SIZE:
        raise MalformedMessage(f"packet of {size} bytes is shorter than its header")
    version, flags, count = _HEADER.unpack_from(data)
    if version != VERSION:
        raise MalformedMessage(f"unknown packet version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise MalformedMessage(f"unknown packet flags 0x{flags:02x}")
    if count == 0:
        raise MalformedMessage("packet has no entries")
    base = PACKET_HEADER_SIZE + LENGTH_SIZE * count
    if size < base:
        raise MalformedMessage(f"packet of {size} bytes is too short for {count} lengths")
    view = memoryview(data)
    table = array(_U32)
    table.frombytes(view[PACKET_HEADER_SIZE:base])
    if _SWAP:
        table.byteswap()
    if sum(table) != size - base:
        raise MalformedMessage("entry lengths do not add up to the packet size")
    if 0 in table:
        raise MalformedMessage("packet has an empty entry")
    entries = []
    pos = base
    for length in table:
        end = pos + length
        entries.append(view[pos:end])
        pos = end
    return flags, entries


def decode_packet_untrusted(data: bytes) -> PgPacket:
    """Decode a packet from the network. Raises only :class:`MalformedMessage`."""
    flags, entries = _parse_packet(data)
    return PgPacket(
        continues_previous=bool(flags & FLAG_CONTINUES_PREVIOUS),
        continues_next=bool(flags & FLAG_CONTINUES_NEXT),
        entries=tuple(bytes(entry) for entry in entries),
    )


def encode_packet(
    entries: Sequence[bytes],
    *,
    continues_previous: bool = False,
    continues_next: bool = False,
) -> bytes:
    """Encode one packet from its entries (raises :class:`TotemError` if there are none,
    too many, or an empty one). :meth:`ProcessGroups.take` builds its packets itself."""
    count = len(entries)
    if not 1 <= count <= MAX_ENTRIES:
        raise TotemError(f"a packet holds 1..{MAX_ENTRIES} entries, got {count}")
    lengths = [len(entry) for entry in entries]
    if 0 in lengths:
        raise TotemError("a packet entry cannot be empty")
    flags = (FLAG_CONTINUES_PREVIOUS if continues_previous else 0) | (
        FLAG_CONTINUES_NEXT if continues_next else 0
    )
    return b"".join([_HEADER.pack(VERSION, flags, count), _pack_lengths(lengths), *entries])


def _encode_group_header(groups: Sequence[bytes]) -> bytes:
    """Validate group names and encode the group header of a message."""
    if isinstance(groups, (bytes, bytearray, memoryview, str)):
        raise InvalidGroupName("pass a sequence of group names, not a single name")
    count = len(groups)
    if not 1 <= count <= MAX_GROUPS:
        raise InvalidGroupName(f"a message is addressed to 1..{MAX_GROUPS} groups, got {count}")
    parts = [bytes((count,))]
    for name in groups:
        _check_group_name(name)
        parts.append(bytes((len(name),)))
        parts.append(name)
    return b"".join(parts)


def _check_group_name(name: object) -> None:
    if not isinstance(name, bytes):
        raise InvalidGroupName(f"a group name is bytes, got {type(name).__name__}")
    if not 1 <= len(name) <= MAX_GROUP_NAME:
        raise InvalidGroupName(f"a group name has 1..{MAX_GROUP_NAME} bytes, got {len(name)}")


def encode_message(groups: Sequence[bytes], payload: bytes) -> bytes:
    """Encode one message (group header + payload); raises :class:`InvalidGroupName`."""
    return _encode_group_header(groups) + payload


def decode_message_untrusted(data: _Buffer) -> tuple[tuple[bytes, ...], bytes]:
    """Decode a message into (groups, payload). Raises only :class:`MalformedMessage`."""
    size = len(data)
    if size < 1:
        raise MalformedMessage("empty message")
    count = data[0]
    if count == 0:
        raise MalformedMessage("message addressed to no group")
    groups = []
    pos = 1
    for _ in range(count):
        if pos >= size:
            raise MalformedMessage("message truncated in its group header")
        length = data[pos]
        end = pos + 1 + length
        if length == 0 or end > size:
            raise MalformedMessage("bad group name length")
        groups.append(bytes(data[pos + 1 : end]))
        pos = end
    return tuple(groups), bytes(data[pos:])


def _slice(header: bytes, payload: bytes, start: int, end: int) -> list[_Buffer]:
    """Bytes ``start:end`` of ``header + payload``, without copying the payload."""
    hlen = len(header)
    parts: list[_Buffer] = []
    if start < hlen:
        parts.append(header[start : min(end, hlen)])
    if end > hlen:
        parts.append(memoryview(payload)[max(start - hlen, 0) : end - hlen])
    return parts


class ProcessGroups:
    """The process-group layer of one node: message source of the Totem core on the
    way out, unpacking, reassembly and group filtering on the way in.

    ``max_packet`` is the largest packet the core can originate; ``max_message`` the
    largest payload :meth:`mcast` accepts (corosync: 1 MiB); ``queue_capacity`` the
    number of queued bytes that counts as 100 % for :meth:`queue_level` (corosync:
    4 MiB). Raises :class:`ConfigError` for unusable values.
    """

    __slots__ = (
        "_assemblies",
        "_header_cache",
        "_joined",
        "_max_assembly",
        "_max_message",
        "_max_packet",
        "_offset",
        "_queue",
        "_queue_capacity",
        "_queued_bytes",
        "_synced",
        "stats",
    )

    def __init__(
        self,
        *,
        max_packet: int,
        max_message: int = 1 << 20,
        queue_capacity: int = 4 << 20,
    ) -> None:
        if max_packet < MIN_PACKET:
            raise ConfigError(f"max_packet must be >= {MIN_PACKET}, got {max_packet}")
        if max_message < 0:
            raise ConfigError(f"max_message must be >= 0, got {max_message}")
        if queue_capacity < 1:
            raise ConfigError(f"queue_capacity must be >= 1, got {queue_capacity}")
        self._max_packet = max_packet
        self._max_message = max_message
        self._max_assembly = max_message + ASSEMBLY_SLACK
        self._queue_capacity = queue_capacity
        self._queue: deque[_Queued] = deque()
        self._offset = 0  # bytes of the head message already taken
        self._queued_bytes = 0
        self._header_cache: dict[tuple[bytes, ...], bytes] = {}
        self._joined: set[bytes] = set()
        self._assemblies: dict[int, _Assembly] = {}
        # Senders seen at a message boundary since the last regular configuration.
        self._synced: set[int] = set()
        #: Counters. Sending: ``mcast_messages`` accepted, ``packets`` taken,
        #: ``packed_messages`` whole messages packed, ``fragments`` fragment entries,
        #: ``restarted`` messages restarted at a regular configuration. Receiving:
        #: ``received_packets``, ``delivered_messages`` returned, ``filtered_messages``
        #: (no joined group), ``malformed`` (packets and messages), ``mismatched``
        #: (continuation out of step), ``oversize`` (assembly over the bound),
        #: ``discarded_partial`` (assemblies dropped at a regular configuration),
        #: ``aborted_partial`` (assemblies dropped for a malformed or mismatched
        #: packet, or abandoned by their sender), ``discarded_fragments``
        #: (continuations of a discarded message).
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "mcast_messages",
                "packets",
                "packed_messages",
                "fragments",
                "restarted",
                "received_packets",
                "delivered_messages",
                "filtered_messages",
                "malformed",
                "mismatched",
                "oversize",
                "discarded_partial",
                "aborted_partial",
                "discarded_fragments",
            ),
            0,
        )

    # ----------------------------------------------------------------- properties

    @property
    def max_packet(self) -> int:
        """The largest packet :meth:`take` produces."""
        return self._max_packet

    @property
    def max_message(self) -> int:
        """The largest payload :meth:`mcast` accepts."""
        return self._max_message

    @property
    def queue_capacity(self) -> int:
        """Queued bytes that count as a full queue for :meth:`queue_level`."""
        return self._queue_capacity

    @property
    def queued_bytes(self) -> int:
        """Bytes of encoded messages (group header + payload) not yet taken."""
        return self._queued_bytes

    def queue_level(self) -> QueueLevel:
        """The send queue's fill level, for flow control of the application."""
        percent = self._queued_bytes * 100 // self._queue_capacity
        if percent < 30:
            return QueueLevel.LOW
        if percent < 60:
            return QueueLevel.GOOD
        if percent < 75:
            return QueueLevel.HIGH
        return QueueLevel.CRITICAL

    # --------------------------------------------------------------------- groups

    def join(self, group: bytes) -> None:
        """Receive the messages addressed to ``group`` from now on (idempotent)."""
        _check_group_name(group)
        self._joined.add(group)

    def leave(self, group: bytes) -> None:
        """Stop receiving the messages of ``group`` (no-op if not joined)."""
        _check_group_name(group)
        self._joined.discard(group)

    def joined_groups(self) -> tuple[bytes, ...]:
        """The joined groups, sorted."""
        return tuple(sorted(self._joined))

    # ------------------------------------------------------------------- sending

    def mcast(
        self,
        groups: Sequence[bytes],
        payload: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
    ) -> None:
        """Queue ``payload`` for the members of ``groups`` (this node included, if it
        joined one of them). Raises :class:`MessageTooLarge` if the payload exceeds
        ``max_message``, :class:`InvalidGroupName` for bad group names (each 1..255
        bytes, 1..255 of them), :class:`TotemError` for an unknown guarantee."""
        if isinstance(groups, (bytes, bytearray, memoryview, str)):
            raise InvalidGroupName("pass a sequence of group names, not a single name")
        key = tuple(groups)
        try:
            header = self._header_cache.get(key)
        except TypeError:  # an unhashable name: not bytes
            raise InvalidGroupName("a group name is bytes") from None
        if header is None:
            header = _encode_group_header(key)
            if len(self._header_cache) >= _HEADER_CACHE_SIZE:
                self._header_cache.clear()
            self._header_cache[key] = header
        if type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > self._max_message:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes exceeds max_message ({self._max_message})"
            )
        if guarantee not in (Guarantee.AGREED, Guarantee.SAFE):
            raise TotemError(f"unknown guarantee {guarantee!r}")
        size = len(header) + len(payload)
        self._queue.append((header, payload, size, Guarantee(guarantee)))
        self._queued_bytes += size
        self.stats["mcast_messages"] += 1

    def pending(self) -> int:
        """About how many packets the queued messages make (0 exactly when none is
        queued); the core reports it as its backlog."""
        queue = self._queue
        if not queue:
            return 0
        total = self._queued_bytes + LENGTH_SIZE * len(queue)
        return max(1, -(-total // (self._max_packet - PACKET_HEADER_SIZE)))

    def take(self, max_count: int, max_bytes: int) -> list[tuple[bytes, Guarantee]]:
        """Pack queued messages into at most ``max_count`` packets of at most
        ``min(max_bytes, max_packet)`` bytes each, in FIFO order, one guarantee per
        packet. Returns fewer (possibly none) when the queue runs out, or none when
        ``max_bytes`` is below :data:`MIN_PACKET`."""
        packets: list[tuple[bytes, Guarantee]] = []
        cap = min(max_bytes, self._max_packet)
        if max_count <= 0 or cap < MIN_PACKET:
            return packets
        queue = self._queue
        stats = self.stats
        while queue and len(packets) < max_count:
            packets.append(self._build_packet(cap))
        stats["packets"] += len(packets)
        return packets

    def _build_packet(self, cap: int) -> tuple[bytes, Guarantee]:
        """Build one packet from the head of the (non-empty) queue."""
        queue = self._queue
        header, payload, size, guarantee = queue[0]
        offset = self._offset
        flags = FLAG_CONTINUES_PREVIOUS if offset else 0
        lengths: list[int] = []
        parts: list[_Buffer] = [b""]  # parts[0] becomes the packet header
        room = cap - PACKET_HEADER_SIZE
        fits_alone = cap - PACKET_HEADER_SIZE - LENGTH_SIZE
        packed = fragments = taken = 0
        while True:
            remaining = size - offset
            if remaining + LENGTH_SIZE <= room:
                if offset:
                    parts.extend(_slice(header, payload, offset, size))
                    fragments += 1
                else:
                    parts.append(header)
                    parts.append(payload)
                    packed += 1
                lengths.append(remaining)
                room -= remaining + LENGTH_SIZE
                taken += remaining
                queue.popleft()
                offset = 0
                if not queue or len(lengths) == MAX_ENTRIES:
                    break
                header, payload, size, next_guarantee = queue[0]
                if next_guarantee is not guarantee:
                    break
                continue
            data_room = room - LENGTH_SIZE
            # Here, with entries already packed, offset is 0: a message that fits a
            # packet of its own waits for the next packet rather than being split.
            if lengths and (size <= fits_alone or data_room < _MIN_FRAGMENT):
                break
            end = offset + data_room
            parts.extend(_slice(header, payload, offset, end))
            lengths.append(data_room)
            fragments += 1
            taken += data_room
            offset = end
            flags |= FLAG_CONTINUES_NEXT
            break
        self._offset = offset
        self._queued_bytes -= taken
        stats = self.stats
        stats["packed_messages"] += packed
        stats["fragments"] += fragments
        parts[0] = _HEADER.pack(VERSION, flags, len(lengths)) + _pack_lengths(lengths)
        return b"".join(parts), guarantee

    # ----------------------------------------------------------------- receiving

    def deliver(self, delivered: Delivered) -> list[GroupMessage]:
        """Unpack one delivered packet; return the whole messages it completes that are
        addressed to a joined group. Never raises for bad input: counts and drops."""
        stats = self.stats
        stats["received_packets"] += 1
        sender = delivered.sender
        try:
            flags, entries = _parse_packet(delivered.payload)
        except MalformedMessage:
            stats["malformed"] += 1
            if self._assemblies.pop(sender, None) is not None:
                stats["aborted_partial"] += 1
            self._synced.discard(sender)  # its next continuation is expected, not wrong
            return []
        out: list[GroupMessage] = []
        guarantee = delivered.guarantee
        ring_id = delivered.ring_id
        count = len(entries)
        continues_next = flags & FLAG_CONTINUES_NEXT
        first = 0
        assembly = self._assemblies.pop(sender, None)
        if flags & FLAG_CONTINUES_PREVIOUS:
            first = 1
            piece = entries[0]
            middle = count == 1 and continues_next  # the message goes on after this
            if assembly is not None and assembly.guarantee != guarantee:
                stats["mismatched"] += 1
                stats["aborted_partial"] += 1
                self._synced.discard(sender)
                assembly = None
            elif assembly is None:
                if sender in self._synced:
                    stats["mismatched"] += 1
                    self._synced.discard(sender)
                else:
                    stats["discarded_fragments"] += 1
            if assembly is not None:
                assembly.parts.append(piece)
                assembly.size += len(piece)
                if assembly.size > self._max_assembly:
                    stats["oversize"] += 1
                    self._synced.discard(sender)
                elif middle:
                    self._assemblies[sender] = assembly
                else:
                    self._emit(sender, b"".join(assembly.parts), guarantee, ring_id, out)
            if middle:
                return out
            self._synced.add(sender)  # at a message boundary now
        else:
            if assembly is not None:  # the sender abandoned that message (a restart)
                stats["aborted_partial"] += 1
            self._synced.add(sender)
        last = count - 1 if continues_next else count
        for index in range(first, last):
            self._emit(sender, entries[index], guarantee, ring_id, out)
        if continues_next:
            piece = entries[count - 1]
            if len(piece) > self._max_assembly:
                stats["oversize"] += 1
                self._synced.discard(sender)
            else:
                self._assemblies[sender] = _Assembly(guarantee, [piece], len(piece))
        return out

    def _emit(
        self,
        sender: int,
        message: _Buffer,
        guarantee: Guarantee,
        ring_id: RingId,
        out: list[GroupMessage],
    ) -> None:
        try:
            groups, payload = decode_message_untrusted(message)
        except MalformedMessage:
            self.stats["malformed"] += 1
            return
        if self._joined.isdisjoint(groups):
            self.stats["filtered_messages"] += 1
            return
        out.append(GroupMessage(sender, groups, payload, guarantee, ring_id))
        self.stats["delivered_messages"] += 1

    def configuration_change(self, change: ConfigurationChange) -> None:
        """Install a configuration change, in order with the deliveries. A REGULAR one
        discards every partial assembly and restarts our own partly taken message
        (see the module docstring); a TRANSITIONAL one changes nothing here."""
        if change.kind is not ConfKind.REGULAR:
            return
        if self._assemblies:
            self.stats["discarded_partial"] += len(self._assemblies)
            self._assemblies.clear()
        self._synced.clear()
        if self._offset:
            self._queued_bytes += self._offset
            self._offset = 0
            self.stats["restarted"] += 1
