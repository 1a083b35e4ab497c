"""Tests of the process-group layer: packing, fragmentation, groups, reassembly."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totem._errors import (
    ConfigError,
    InvalidGroupName,
    MalformedMessage,
    MessageTooLarge,
    TotemError,
)
from totem._events import ConfigurationChange, ConfKind, Delivered, Guarantee, RingId
from totem._pg import (
    ASSEMBLY_SLACK,
    FLAG_CONTINUES_NEXT,
    FLAG_CONTINUES_PREVIOUS,
    MIN_PACKET,
    GroupMessage,
    ProcessGroups,
    QueueLevel,
    decode_message_untrusted,
    decode_packet_untrusted,
    encode_message,
    encode_packet,
)

RING = RingId(seq=1, rep=1)
AGREED = Guarantee.AGREED
SAFE = Guarantee.SAFE


def delivered(sender: int, packet: bytes, guarantee: Guarantee = AGREED, seq: int = 1) -> Delivered:
    """Wrap a packet the way the core delivers it."""
    return Delivered(sender=sender, payload=packet, guarantee=guarantee, ring_id=RING, seq=seq)


def regular(seq: int = 2) -> ConfigurationChange:
    """A regular configuration change to ring ``seq``."""
    return ConfigurationChange(
        kind=ConfKind.REGULAR,
        ring_id=RingId(seq=seq, rep=1),
        previous_ring_id=RingId(seq=seq - 1, rep=1),
        members=(1, 2, 3),
        left=(),
        joined=(),
    )


def transitional(seq: int = 2) -> ConfigurationChange:
    """A transitional configuration change to ring ``seq``."""
    return ConfigurationChange(
        kind=ConfKind.TRANSITIONAL,
        ring_id=RingId(seq=seq, rep=1),
        previous_ring_id=RingId(seq=seq - 1, rep=1),
        members=(1, 2),
        left=(3,),
        joined=(),
    )


def take_all(pg: ProcessGroups, max_bytes: int | None = None) -> list[tuple[bytes, Guarantee]]:
    """Take every queued packet of ``pg``."""
    packets = []
    while pg.pending():
        batch = pg.take(1000, max_bytes if max_bytes is not None else pg.max_packet)
        assert batch, "take returned nothing while messages are pending"
        packets.extend(batch)
    return packets


def feed(
    receiver: ProcessGroups, sender: int, packets: Sequence[tuple[bytes, Guarantee]]
) -> list[GroupMessage]:
    """Deliver ``packets`` of ``sender`` to ``receiver``; return what it delivers."""
    out: list[GroupMessage] = []
    for seq, (packet, guarantee) in enumerate(packets, start=1):
        out.extend(receiver.deliver(delivered(sender, packet, guarantee, seq)))
    return out


def node(max_packet: int = 1500, *groups: bytes, **kwargs: int) -> ProcessGroups:
    """A ProcessGroups that joined ``groups`` (default: b"a")."""
    pg = ProcessGroups(max_packet=max_packet, **kwargs)
    for group in groups or (b"a",):
        pg.join(group)
    return pg


# --------------------------------------------------------------------------- packing


def test_many_small_messages_pack_into_few_packets() -> None:
    """1000 small messages fill 12 packets of 1500 bytes and come back whole, in order."""
    sender, receiver = node(), node()
    payloads = [b"%010d" % i for i in range(1000)]
    for payload in payloads:
        sender.mcast([b"a"], payload)
    assert sender.pending() == 12
    packets = take_all(sender)
    # each entry: 4 (length) + 3 (group header) + 10 (payload) = 17; 1496 // 17 = 88
    assert len(packets) == 12
    assert all(len(packet) <= 1500 for packet, _ in packets)
    got = feed(receiver, 1, packets)
    assert [m.payload for m in got] == payloads
    assert all(m.groups == (b"a",) and m.sender == 1 and m.ring_id == RING for m in got)
    assert sender.stats["packed_messages"] == 1000
    assert sender.stats["fragments"] == 0
    assert sender.stats["packets"] == 12
    assert sender.queued_bytes == 0
    assert sender.pending() == 0


def test_take_honours_max_count_and_max_bytes() -> None:
    """take() returns at most max_count packets, each at most min(max_bytes, max_packet)."""
    pg = node()
    for _ in range(100):
        pg.mcast([b"a"], bytes(50))
    packets = pg.take(3, 400)
    assert len(packets) == 3
    assert all(len(packet) <= 400 for packet, _ in packets)
    big = pg.take(2, 10_000)
    assert all(len(packet) <= 1500 for packet, _ in big)
    assert pg.take(0, 1500) == []
    assert pg.take(5, MIN_PACKET - 1) == []


def test_take_on_empty_queue_returns_nothing() -> None:
    """An empty queue yields no packets and a pending count of zero."""
    pg = node()
    assert pg.take(10, 1500) == []
    assert pg.pending() == 0
    assert pg.stats["packets"] == 0


@pytest.mark.parametrize("max_packet", [MIN_PACKET, 64, 1500, 65536])
def test_message_of_exactly_one_packet_is_not_fragmented(max_packet: int) -> None:
    """A message of max_packet - 8 encoded bytes makes exactly one full packet."""
    sender, receiver = node(max_packet), node(max_packet)
    payload = bytes(range(256)) * (max_packet // 256 + 1)
    payload = payload[: max_packet - 8 - 3]  # 8: packet header + one length; 3: b"a" header
    sender.mcast([b"a"], payload)
    packets = take_all(sender)
    assert len(packets) == 1
    assert len(packets[0][0]) == max_packet
    assert packets[0][0][1] == 0  # no continuation flags
    assert [m.payload for m in feed(receiver, 1, packets)] == [payload]


@pytest.mark.parametrize("max_packet", [MIN_PACKET, 64, 1500, 65536])
def test_message_one_byte_over_a_packet_is_fragmented(max_packet: int) -> None:
    """One byte more than fits a packet makes two packets, the first one full."""
    sender, receiver = node(max_packet), node(max_packet)
    payload = (bytes(range(256)) * (max_packet // 256 + 1))[: max_packet - 8 - 3 + 1]
    sender.mcast([b"a"], payload)
    packets = take_all(sender)
    assert len(packets) == 2
    assert len(packets[0][0]) == max_packet
    assert packets[0][0][1] == FLAG_CONTINUES_NEXT
    assert packets[1][0][1] == FLAG_CONTINUES_PREVIOUS
    assert sender.stats["fragments"] == 2
    assert [m.payload for m in feed(receiver, 1, packets)] == [payload]


def test_message_filling_the_rest_of_a_packet_exactly() -> None:
    """A second message that fills the room left exactly shares the packet."""
    sender, receiver = node(100), node(100)
    sender.mcast([b"a"], b"x" * 10)  # entry 4 + 13
    sender.mcast([b"a"], b"y" * (100 - 4 - 17 - 4 - 3))  # the rest, exactly
    packets = take_all(sender)
    assert len(packets) == 1
    assert len(packets[0][0]) == 100
    assert [m.payload for m in feed(receiver, 1, packets)] == [b"x" * 10, b"y" * 72]


def test_small_message_that_does_not_fit_starts_a_new_packet() -> None:
    """A message that fits a packet of its own is never split, even to fill space."""
    sender = node(100)
    sender.mcast([b"a"], b"x" * 50)
    sender.mcast([b"a"], b"y" * 50)
    packets = take_all(sender)
    assert len(packets) == 2
    assert sender.stats["fragments"] == 0
    assert all(packet[1] == 0 for packet, _ in packets)


def test_large_message_starts_in_the_room_left_by_small_ones() -> None:
    """A message larger than a packet starts in the space left after small messages."""
    sender, receiver = node(200), node(200)
    sender.mcast([b"a"], b"s" * 20)
    sender.mcast([b"a"], b"L" * 1000)
    sender.mcast([b"a"], b"t" * 20)
    packets = take_all(sender)
    first = decode_packet_untrusted(packets[0][0])
    assert len(first.entries) == 2
    assert first.continues_next
    assert not first.continues_previous
    last = decode_packet_untrusted(packets[-1][0])
    assert last.continues_previous
    assert len(last.entries) == 2  # the tail of L, then t
    # 196-byte rooms: s (27) + 165 bytes of L; 4 x 192 bytes of L; the last 70 of L + t
    assert len(packets) == 6
    got = feed(receiver, 1, packets)
    assert [m.payload for m in got] == [b"s" * 20, b"L" * 1000, b"t" * 20]


def test_one_mib_message_is_fragmented_and_reassembled() -> None:
    """A 1 MiB message crosses 17 packets of 64 KiB and arrives intact at every member."""
    rng = random.Random(7)
    payload = rng.randbytes(1 << 20)
    sender = node(65536)
    receivers = [node(65536) for _ in range(3)]
    sender.mcast([b"a"], payload)
    assert sender.queued_bytes == len(payload) + 3
    packets = take_all(sender)
    assert len(packets) == -(-(len(payload) + 3) // (65536 - 8))
    assert len(packets) == 17
    assert all(len(packet) <= 65536 for packet, _ in packets)
    for receiver in receivers:
        got = feed(receiver, 1, packets)
        assert len(got) == 1
        assert got[0].payload == payload
        assert receiver.stats["delivered_messages"] == 1


def test_max_message_boundary() -> None:
    """A payload of exactly max_message is accepted, one byte more raises MessageTooLarge."""
    pg = node(1500, max_message=5000)
    pg.mcast([b"a"], bytes(5000))
    with pytest.raises(MessageTooLarge):
        pg.mcast([b"a"], bytes(5001))
    assert issubclass(MessageTooLarge, TotemError)
    assert pg.stats["mcast_messages"] == 1
    assert pg.queued_bytes == 5003


def test_default_max_message_is_one_mib() -> None:
    """The default max_message is 1 MiB, as in corosync."""
    pg = node(65536)
    assert pg.max_message == 1 << 20
    with pytest.raises(MessageTooLarge):
        pg.mcast([b"a"], bytes((1 << 20) + 1))
    assert pg.queued_bytes == 0


def test_largest_group_header_fits_the_assembly_bound() -> None:
    """255 groups of 255-byte names with a max_message payload still reassemble."""
    groups = [bytes([i]) * 255 for i in range(1, 256)]
    sender = node(1500, max_message=1000)
    receiver = node(1500, groups[-1], max_message=1000)
    sender.mcast(groups, bytes(1000))
    packets = take_all(sender)
    got = feed(receiver, 1, packets)
    assert len(got) == 1
    assert got[0].groups == tuple(groups)
    assert len(encode_message(groups, bytes(1000))) <= 1000 + ASSEMBLY_SLACK


# --------------------------------------------------------------------------- guarantees


def test_guarantees_are_never_mixed_in_a_packet() -> None:
    """Each packet carries one guarantee; every message keeps the one it was sent with."""
    sender, receiver = node(300), node(300)
    sent = []
    for i in range(60):
        guarantee = SAFE if (i // 3) % 2 else AGREED
        payload = bytes([i]) * (i * 17 % 700)
        sender.mcast([b"a"], payload, guarantee)
        sent.append((payload, guarantee))
    packets = take_all(sender)
    # Every entry of a packet (and every fragment) has the packet's guarantee.
    index = 0
    open_guarantee = None
    for packet, guarantee in packets:
        decoded = decode_packet_untrusted(packet)
        if decoded.continues_previous:
            assert open_guarantee is guarantee
        for _ in range(len(decoded.entries) - decoded.continues_previous):
            assert sent[index][1] is guarantee
            index += 1
        open_guarantee = guarantee if decoded.continues_next else None
    assert index == len(sent)
    got = feed(receiver, 1, packets)
    assert [(m.payload, m.guarantee) for m in got] == sent
    # 20 switches of guarantee need at least 20 packets
    assert len(packets) >= 20


def test_guarantee_switch_ends_the_packet() -> None:
    """A SAFE message after an AGREED one goes into a new packet."""
    pg = node()
    pg.mcast([b"a"], b"1")
    pg.mcast([b"a"], b"2", SAFE)
    pg.mcast([b"a"], b"3", SAFE)
    packets = pg.take(10, 1500)
    assert [(len(decode_packet_untrusted(p).entries), g) for p, g in packets] == [
        (1, AGREED),
        (2, SAFE),
    ]


def test_unknown_guarantee_raises() -> None:
    """mcast with a guarantee that is not AGREED or SAFE raises TotemError."""
    pg = node()
    with pytest.raises(TotemError):
        pg.mcast([b"a"], b"x", 7)  # type: ignore[arg-type]
    assert pg.pending() == 0


def test_int_guarantee_is_normalised() -> None:
    """A plain int 1 is taken as Guarantee.SAFE."""
    pg = node()
    pg.mcast([b"a"], b"x", 1)  # type: ignore[arg-type]
    assert pg.take(1, 1500)[0][1] is SAFE


# --------------------------------------------------------------------------- senders


def test_interleaved_senders_reassemble_independently() -> None:
    """Fragments of three senders interleaved in total order reassemble per sender."""
    senders = {s: node(128) for s in (1, 2, 3)}
    receivers = [node(128) for _ in range(3)]
    sent: dict[int, list[bytes]] = {s: [] for s in senders}
    for s, pg in senders.items():
        for i in range(20):
            payload = bytes([s, i]) * (i * 37 % 400)
            pg.mcast([b"a"], payload)
            sent[s].append(payload)
    order: list[Delivered] = []
    seq = 0
    while any(pg.pending() for pg in senders.values()):
        for s, pg in senders.items():
            for packet, guarantee in pg.take(1, 128):
                seq += 1
                order.append(delivered(s, packet, guarantee, seq))
    for receiver in receivers:
        got: dict[int, list[bytes]] = {s: [] for s in senders}
        for item in order:
            for message in receiver.deliver(item):
                got[message.sender].append(message.payload)
        assert got == sent
        assert receiver.stats["mismatched"] == 0


# --------------------------------------------------------------------------- groups


def test_group_filtering() -> None:
    """Only messages addressed to a joined group are delivered, with all their groups."""
    sender = node()
    receiver = node(1500, b"a")
    sender.mcast([b"a"], b"1")
    sender.mcast([b"b"], b"2")
    sender.mcast([b"b", b"a"], b"3")
    sender.mcast([b"c", b"d"], b"4")
    got = feed(receiver, 1, take_all(sender))
    assert [(m.groups, m.payload) for m in got] == [((b"a",), b"1"), ((b"b", b"a"), b"3")]
    assert receiver.stats["filtered_messages"] == 2
    assert receiver.stats["delivered_messages"] == 2


def test_node_that_joined_no_group_receives_nothing() -> None:
    """A node without groups gets no message, but still counts them as filtered."""
    sender = node()
    receiver = ProcessGroups(max_packet=1500)
    sender.mcast([b"a"], b"1")
    assert feed(receiver, 1, take_all(sender)) == []
    assert receiver.stats["filtered_messages"] == 1


def test_join_leave_and_joined_groups() -> None:
    """join/leave change the joined set; joined_groups() is sorted; leave is idempotent."""
    pg = ProcessGroups(max_packet=1500)
    pg.join(b"zz")
    pg.join(b"a")
    pg.join(b"a")
    assert pg.joined_groups() == (b"a", b"zz")
    pg.leave(b"zz")
    pg.leave(b"never")
    assert pg.joined_groups() == (b"a",)
    sender = node()
    sender.mcast([b"zz"], b"x")
    assert feed(pg, 1, take_all(sender)) == []


def test_self_delivery() -> None:
    """A node delivers its own messages when it joined their group."""
    pg = node()
    pg.mcast([b"a"], b"me")
    got = feed(pg, 5, take_all(pg))
    assert [(m.sender, m.payload) for m in got] == [(5, b"me")]


@pytest.mark.parametrize(
    "groups",
    [
        [],
        [b""],
        [b"x" * 256],
        [bytes([1])] * 256,
        b"abc",
        "abc",
        ["abc"],
        [bytearray(b"abc")],
        [b"ok", 3],
    ],
)
def test_invalid_group_names_raise(groups: object) -> None:
    """mcast rejects bad group lists with InvalidGroupName and queues nothing."""
    pg = node()
    with pytest.raises(InvalidGroupName):
        pg.mcast(groups, b"x")  # type: ignore[arg-type]
    assert issubclass(InvalidGroupName, TotemError)
    assert pg.pending() == 0


@pytest.mark.parametrize("name", [b"", b"x" * 256, "a"])
def test_join_rejects_bad_names(name: object) -> None:
    """join rejects names that are not 1..255 bytes."""
    pg = ProcessGroups(max_packet=1500)
    with pytest.raises(InvalidGroupName):
        pg.join(name)  # type: ignore[arg-type]
    assert pg.joined_groups() == ()


def test_limits_of_group_names_are_accepted() -> None:
    """255 groups and 255-byte names are accepted."""
    pg = node(65536)
    pg.mcast([b"g%d" % i for i in range(255)], b"x")
    pg.mcast([b"n" * 255], b"y")
    assert pg.stats["mcast_messages"] == 2


# --------------------------------------------------------------------------- flow control


def test_queue_levels() -> None:
    """queue_level() follows corosync's 30/60/75 % thresholds of the capacity."""
    pg = node(1500, queue_capacity=1000)
    assert pg.queue_level() is QueueLevel.LOW
    pg.mcast([b"a"], bytes(296))  # 299 bytes queued
    assert pg.queue_level() is QueueLevel.LOW
    pg.mcast([b"a"], bytes(0))  # 302
    assert pg.queue_level() is QueueLevel.GOOD
    pg.mcast([b"a"], bytes(297))  # 602
    assert pg.queue_level() is QueueLevel.HIGH
    pg.mcast([b"a"], bytes(147))  # 752
    assert pg.queue_level() is QueueLevel.CRITICAL
    assert pg.queued_bytes == 752
    take_all(pg)
    assert pg.queue_level() is QueueLevel.LOW


def test_default_queue_capacity_is_four_mib() -> None:
    """The default capacity is 4 MiB: 3 MiB queued is CRITICAL."""
    pg = node(65536)
    assert pg.queue_capacity == 4 << 20
    for _ in range(3):
        pg.mcast([b"a"], bytes(1 << 20))
    assert pg.queue_level() is QueueLevel.CRITICAL


def test_queued_bytes_drop_as_fragments_are_taken() -> None:
    """queued_bytes counts only the part not yet taken."""
    pg = node(1000)
    pg.mcast([b"a"], bytes(5000))
    pg.take(1, 1000)
    assert pg.queued_bytes == 5003 - (1000 - 8)
    assert pg.pending() >= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_packet": MIN_PACKET - 1},
        {"max_packet": 1500, "max_message": -1},
        {"max_packet": 1500, "queue_capacity": 0},
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, int]) -> None:
    """Unusable sizes raise ConfigError, a TotemError."""
    with pytest.raises(ConfigError):
        ProcessGroups(**kwargs)
    assert issubclass(ConfigError, TotemError)


# --------------------------------------------------------------------------- membership


def test_partial_assembly_discarded_on_regular_change() -> None:
    """A regular configuration change drops partial assemblies and counts them."""
    sender, receiver = node(100), node(100)
    sender.mcast([b"a"], bytes(1000))
    packets = take_all(sender)
    assert feed(receiver, 1, packets[:3]) == []
    receiver.configuration_change(regular())
    assert receiver.stats["discarded_partial"] == 1
    # The rest of that message (old ring) is dropped quietly, not as an error.
    assert feed(receiver, 1, packets[3:]) == []
    assert receiver.stats["discarded_fragments"] == len(packets) - 3
    assert receiver.stats["mismatched"] == 0
    assert receiver.stats["malformed"] == 0
    # The sender's next message comes through.
    sender.mcast([b"a"], b"after")
    assert [m.payload for m in feed(receiver, 1, take_all(sender))] == [b"after"]


def test_regular_change_discards_every_sender_partial() -> None:
    """Each sender's partial assembly is discarded and counted once."""
    receiver = node(100)
    for s in (1, 2, 3):
        sender = node(100)
        sender.mcast([b"a"], bytes(500))
        feed(receiver, s, sender.take(1, 100))
    receiver.configuration_change(regular())
    assert receiver.stats["discarded_partial"] == 3
    receiver.configuration_change(regular(3))
    assert receiver.stats["discarded_partial"] == 3


def test_transitional_change_keeps_assemblies() -> None:
    """A transitional change does not touch assemblies: old-ring messages still complete."""
    sender, receiver = node(100), node(100)
    sender.mcast([b"a"], bytes(range(250)) * 2)
    packets = take_all(sender)
    feed(receiver, 1, packets[:2])
    receiver.configuration_change(transitional())
    got = feed(receiver, 1, packets[2:])
    assert [m.payload for m in got] == [bytes(range(250)) * 2]
    assert receiver.stats["discarded_partial"] == 0


def test_sender_restarts_partly_taken_message_at_regular_change() -> None:
    """A message cut by a regular change is sent again whole and delivered exactly once."""
    sender, receiver = node(100), node(100)
    payload = bytes(range(256)) * 3
    sender.mcast([b"a"], payload)
    sender.mcast([b"a"], b"next")
    old_ring = sender.take(2, 100)
    out = feed(receiver, 1, old_ring)
    for pg in (sender, receiver):
        pg.configuration_change(transitional())
        pg.configuration_change(regular())
    assert sender.stats["restarted"] == 1
    assert sender.queued_bytes == len(payload) + 3 + 4 + 3
    out += feed(receiver, 1, take_all(sender))
    assert [m.payload for m in out] == [payload, b"next"]
    assert receiver.stats["discarded_partial"] == 1


def test_restart_seen_after_new_ring_fragments_aborts_the_assembly() -> None:
    """Fragments taken in the new ring before the change reached us are superseded."""
    sender, receiver = node(100), node(100)
    payload = bytes(range(200)) * 3
    receiver.configuration_change(regular())  # the receiver is ahead of the sender
    sender.mcast([b"a"], payload)
    early = sender.take(2, 100)  # taken in the new ring, before our confchg
    sender.configuration_change(regular())
    out = feed(receiver, 1, early) + feed(receiver, 1, take_all(sender))
    assert [m.payload for m in out] == [payload]
    assert receiver.stats["aborted_partial"] == 1
    assert receiver.stats["mismatched"] == 0


def test_regular_change_without_partial_message_restarts_nothing() -> None:
    """Whole messages already taken are not sent again at a configuration change."""
    sender = node()
    sender.mcast([b"a"], b"x")
    sender.take(1, 1500)
    sender.configuration_change(regular())
    assert sender.pending() == 0
    assert sender.stats["restarted"] == 0


# --------------------------------------------------------------------------- untrusted input


def test_continuation_from_synchronised_sender_without_assembly_is_mismatched() -> None:
    """A continuation nobody announced is counted as mismatched and dropped."""
    receiver = node()
    whole = encode_packet([encode_message([b"a"], b"1")])
    stray = encode_packet([b"tail"], continues_previous=True)
    assert len(receiver.deliver(delivered(1, whole))) == 1
    assert receiver.deliver(delivered(1, stray)) == []
    assert receiver.stats["mismatched"] == 1


def test_mismatched_continuation_keeps_the_rest_of_the_packet() -> None:
    """Whole messages after a stray continuation in the same packet are delivered."""
    receiver = node()
    receiver.deliver(delivered(1, encode_packet([encode_message([b"a"], b"1")])))
    packet = encode_packet([b"tail", encode_message([b"a"], b"2")], continues_previous=True)
    assert [m.payload for m in receiver.deliver(delivered(1, packet))] == [b"2"]
    assert receiver.stats["mismatched"] == 1


def test_guarantee_change_inside_a_message_is_mismatched() -> None:
    """A continuation delivered with another guarantee aborts the assembly."""
    receiver = node()
    head = encode_packet([encode_message([b"a"], b"he")], continues_next=True)
    tail = encode_packet([b"ad"], continues_previous=True)
    receiver.deliver(delivered(1, head, AGREED))
    assert receiver.deliver(delivered(1, tail, SAFE)) == []
    assert receiver.stats["mismatched"] == 1
    assert receiver.stats["aborted_partial"] == 1


def test_malformed_packet_resets_the_senders_assembly() -> None:
    """A malformed packet is counted, dropped, and aborts the sender's assembly."""
    sender, receiver = node(100), node(100)
    sender.mcast([b"a"], bytes(300))
    packets = take_all(sender)
    feed(receiver, 1, packets[:1])
    assert receiver.deliver(delivered(1, b"\x09garbage")) == []
    assert receiver.stats["malformed"] == 1
    assert receiver.stats["aborted_partial"] == 1
    assert feed(receiver, 1, packets[1:]) == []
    assert receiver.stats["discarded_fragments"] == len(packets) - 1
    sender.mcast([b"a"], b"ok")
    assert [m.payload for m in feed(receiver, 1, take_all(sender))] == [b"ok"]


def test_malformed_message_inside_valid_packet_is_counted() -> None:
    """A bad group header is counted as malformed; other messages still arrive."""
    receiver = node()
    packet = encode_packet([b"\x00abc", encode_message([b"a"], b"ok"), b"\x02\x01a"])
    assert [m.payload for m in receiver.deliver(delivered(1, packet))] == [b"ok"]
    assert receiver.stats["malformed"] == 2


def test_oversize_assembly_is_dropped() -> None:
    """An assembly beyond max_message + 64 KiB is dropped and counted."""
    sender = node(65536, max_message=1 << 20)
    receiver = node(65536, max_message=0)
    sender.mcast([b"a"], bytes(200_000))
    sender.mcast([b"a"], b"small")
    got = feed(receiver, 1, take_all(sender))
    assert [m.payload for m in got] == [b"small"]
    assert receiver.stats["oversize"] == 1
    assert receiver.stats["mismatched"] == 0


def test_decode_packet_rejects_inconsistent_packets() -> None:
    """Every kind of inconsistency raises MalformedMessage."""
    good = encode_packet([b"\x01\x01aX"])
    bad = [
        b"",
        b"\x01\x00",
        b"\x02" + good[1:],  # version
        good[:1] + b"\x04" + good[2:],  # unknown flag
        b"\x01\x00\x00\x00",  # no entries
        b"\x01\x00\x00\x02" + struct.pack(">I", 1),  # length table truncated
        good[:-1],  # lengths do not add up
        good + b"x",
        b"\x01\x00\x00\x02" + struct.pack(">II", 0, 1) + b"x",  # empty entry
    ]
    for data in bad:
        with pytest.raises(MalformedMessage):
            decode_packet_untrusted(data)
    assert decode_packet_untrusted(good).entries == (b"\x01\x01aX",)


def test_decode_message_rejects_bad_group_headers() -> None:
    """Bad group headers raise MalformedMessage; a good one decodes."""
    for data in (b"", b"\x00", b"\x01", b"\x01\x00", b"\x01\x05ab", b"\x02\x01a"):
        with pytest.raises(MalformedMessage):
            decode_message_untrusted(data)
    assert decode_message_untrusted(b"\x02\x01a\x02bcpay") == ((b"a", b"bc"), b"pay")


def test_encode_packet_rejects_misuse() -> None:
    """encode_packet refuses no entries or an empty entry."""
    with pytest.raises(TotemError):
        encode_packet([])
    with pytest.raises(TotemError):
        encode_packet([b"x", b""])
    assert decode_packet_untrusted(encode_packet([b"x"], continues_next=True)).continues_next


# --------------------------------------------------------------------------- properties

_entries = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=20)


@given(entries=_entries, previous=st.booleans(), following=st.booleans())
def test_packet_round_trip(entries: list[bytes], previous: bool, following: bool) -> None:
    """encode_packet then decode_packet_untrusted gives back the entries and flags."""
    packet = decode_packet_untrusted(
        encode_packet(entries, continues_previous=previous, continues_next=following)
    )
    assert packet.entries == tuple(entries)
    assert packet.continues_previous == previous
    assert packet.continues_next == following


@given(data=st.binary(max_size=200))
def test_fuzz_decode_packet_random_bytes(data: bytes) -> None:
    """Random bytes decode or raise MalformedMessage, nothing else."""
    try:
        packet = decode_packet_untrusted(data)
    except MalformedMessage:
        return
    assert sum(map(len, packet.entries)) < len(data)


@given(data=st.binary(max_size=300))
def test_fuzz_decode_message_random_bytes(data: bytes) -> None:
    """Random bytes decode as a message or raise MalformedMessage, nothing else."""
    try:
        groups, payload = decode_message_untrusted(data)
    except MalformedMessage:
        return
    assert 1 <= len(groups) <= 255
    assert all(1 <= len(g) <= 255 for g in groups)
    assert data.endswith(payload)


@st.composite
def _mutated_packets(draw: st.DrawFn) -> bytes:
    entries = draw(_entries)
    packet = bytearray(
        encode_packet(
            entries, continues_previous=draw(st.booleans()), continues_next=draw(st.booleans())
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "grow", "set"]))
        if kind == "flip" and packet:
            i = draw(st.integers(0, len(packet) - 1))
            packet[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut" and packet:
            del packet[draw(st.integers(0, len(packet) - 1)) :]
        elif kind == "grow":
            packet += draw(st.binary(min_size=1, max_size=8))
        elif packet:
            packet[draw(st.integers(0, min(len(packet) - 1, 12)))] = draw(st.integers(0, 255))
    return bytes(packet)


@given(data=_mutated_packets())
def test_fuzz_decode_packet_mutated(data: bytes) -> None:
    """Mutated valid packets decode consistently or raise MalformedMessage."""
    try:
        packet = decode_packet_untrusted(data)
    except MalformedMessage:
        return
    assert data[0] == 1
    assert len(packet.entries) == int.from_bytes(data[2:4], "big")
    assert all(packet.entries)


@given(
    stream=st.lists(
        st.tuples(st.integers(1, 3), st.one_of(_mutated_packets(), st.binary(max_size=60))),
        max_size=40,
    ),
    confchg_at=st.sets(st.integers(0, 40)),
)
def test_fuzz_deliver_never_raises(stream: list[tuple[int, bytes]], confchg_at: set[int]) -> None:
    """deliver() never raises on garbage from any sender; it counts every packet."""
    pg = ProcessGroups(max_packet=256)
    pg.join(b"\x01")
    for i, (sender, data) in enumerate(stream):
        if i in confchg_at:
            pg.configuration_change(regular(i + 2))
        for message in pg.deliver(delivered(sender, data, seq=i + 1)):
            assert message.sender == sender
            assert b"\x01" in message.groups
    assert pg.stats["received_packets"] == len(stream)
    assert len(pg._assemblies) <= 3


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    honest=st.lists(st.binary(max_size=600), max_size=15),
    garbage=st.lists(st.one_of(_mutated_packets(), st.binary(max_size=80)), max_size=30),
    seed=st.integers(0, 2**32),
)
def test_garbage_from_one_sender_does_not_disturb_others(
    honest: list[bytes], garbage: list[bytes], seed: int
) -> None:
    """A rogue sender's garbage never changes what an honest sender's messages give."""
    sender = node(64)
    receiver = node(64)
    for payload in honest:
        sender.mcast([b"a"], payload)
    stream = [delivered(1, packet, guarantee) for packet, guarantee in take_all(sender)]
    rng = random.Random(seed)
    for data in garbage:
        stream.insert(rng.randrange(len(stream) + 1), delivered(9, data))
    got = [m for item in stream for m in receiver.deliver(item)]
    assert [m.payload for m in got if m.sender == 1] == honest


# --------------------------------------------------------------------------- cluster model

_GROUPS = (b"a", b"b", b"c")


def _payload(sender: int, index: int, size: int) -> bytes:
    """A payload that names its sender and index, so it can be checked intact."""
    head = struct.pack(">II", sender, index)
    return head + bytes((sender * 31 + index + k) & 0xFF for k in range(size))


@st.composite
def _cluster_runs(draw: st.DrawFn, with_confchg: bool) -> tuple[int, list[tuple[object, ...]]]:
    max_packet = draw(st.sampled_from([MIN_PACKET, 17, 40, 64, 200, 1500]))
    kinds = ["mcast", "mcast", "take", "take", "deliver"]
    if with_confchg:
        kinds.append("confchg")
    ops: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(kinds))
        if kind == "mcast":
            groups = draw(st.lists(st.sampled_from(_GROUPS), min_size=1, max_size=3, unique=True))
            ops.append(
                (
                    kind,
                    draw(st.integers(1, 3)),
                    tuple(groups),
                    draw(st.sampled_from([0, 1, 5, 50, 300, 2000])),
                    draw(st.sampled_from(list(Guarantee))),
                )
            )
        elif kind == "take":
            ops.append(
                (
                    kind,
                    draw(st.integers(1, 3)),
                    draw(st.integers(0, 4)),
                    draw(st.integers(MIN_PACKET - 2, max_packet + 10)),
                )
            )
        elif kind == "deliver":
            ops.append((kind, draw(st.integers(1, 20))))
        else:
            ops.append((kind,))
    return max_packet, ops


class _Cluster:
    """Three nodes sharing one total order of packets and configuration changes."""

    def __init__(self, max_packet: int, joined: dict[int, set[bytes]]) -> None:
        self.nodes = {n: ProcessGroups(max_packet=max_packet) for n in (1, 2, 3)}
        for n, groups in joined.items():
            for group in sorted(groups):
                self.nodes[n].join(group)
        self.log: list[Delivered | ConfigurationChange] = []
        self.cursor = 0
        self.ring = 1
        self.seq = 0
        self.sent: dict[int, list[tuple[tuple[bytes, ...], bytes, Guarantee]]] = {
            n: [] for n in self.nodes
        }
        self.got: dict[int, list[GroupMessage]] = {n: [] for n in self.nodes}

    def mcast(self, n: int, groups: tuple[bytes, ...], size: int, guarantee: Guarantee) -> None:
        payload = _payload(n, len(self.sent[n]), size)
        self.nodes[n].mcast(groups, payload, guarantee)
        self.sent[n].append((groups, payload, guarantee))

    def take(self, n: int, max_count: int, max_bytes: int) -> None:
        packets = self.nodes[n].take(max_count, max_bytes)
        assert len(packets) <= max_count
        for packet, guarantee in packets:
            assert len(packet) <= min(max_bytes, self.nodes[n].max_packet)
            self.seq += 1
            ring_id = RingId(seq=self.ring, rep=1)
            self.log.append(Delivered(n, packet, guarantee, ring_id, self.seq))

    def confchg(self) -> None:
        self.ring += 1
        self.log.append(regular(self.ring))

    def deliver(self, count: int) -> None:
        for item in self.log[self.cursor : self.cursor + count]:
            for n, pg in self.nodes.items():
                if isinstance(item, Delivered):
                    self.got[n].extend(pg.deliver(item))
                else:
                    pg.configuration_change(item)
        self.cursor = min(len(self.log), self.cursor + count)

    def run(self, ops: list[tuple[object, ...]], *, eager: bool) -> None:
        for op in ops:
            getattr(self, str(op[0]))(*op[1:])
            if eager:
                self.deliver(len(self.log))
        while any(pg.pending() for pg in self.nodes.values()) or self.cursor < len(self.log):
            for n in self.nodes:
                self.take(n, 2, self.nodes[n].max_packet)
            self.deliver(len(self.log))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    run=_cluster_runs(with_confchg=False),
    joined=st.fixed_dictionaries(
        {n: st.sets(st.sampled_from(_GROUPS)) for n in (1, 2, 3)},
    ),
)
def test_cluster_delivers_every_message_once_in_fifo_order(
    run: tuple[int, list[tuple[object, ...]]], joined: dict[int, set[bytes]]
) -> None:
    """Three nodes, one packet order: each delivers every addressed message once, intact."""
    max_packet, ops = run
    cluster = _Cluster(max_packet, joined)
    cluster.run(ops, eager=False)
    for n, pg in cluster.nodes.items():
        for s in cluster.nodes:
            expected = [m for m in cluster.sent[s] if joined[n] & set(m[0])]
            got = [(m.groups, m.payload, m.guarantee) for m in cluster.got[n] if m.sender == s]
            assert got == expected
        for key in ("malformed", "mismatched", "oversize", "aborted_partial"):
            assert pg.stats[key] == 0
        assert pg.queued_bytes == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=_cluster_runs(with_confchg=True), eager=st.booleans())
def test_cluster_agrees_across_configuration_changes(
    run: tuple[int, list[tuple[object, ...]]], eager: bool
) -> None:
    """Across regular changes every node delivers the same messages, each at most once,
    in FIFO order per sender, intact; none is lost when changes reach senders at once."""
    max_packet, ops = run
    everything = {n: set(_GROUPS) for n in (1, 2, 3)}
    cluster = _Cluster(max_packet, everything)
    cluster.run(ops, eager=eager)
    views = [[(m.sender, m.payload, m.guarantee) for m in got] for got in cluster.got.values()]
    assert views[0] == views[1] == views[2]
    for s, sent in cluster.sent.items():
        indexes = []
        for message in cluster.got[1]:
            if message.sender == s:
                index = struct.unpack(">II", message.payload[:8])[1]
                assert (message.groups, message.payload, message.guarantee) == sent[index]
                indexes.append(index)
        assert indexes == sorted(set(indexes))  # FIFO, no duplicates
        if eager:
            assert indexes == list(range(len(sent)))
    for pg in cluster.nodes.values():
        assert pg.stats["malformed"] == 0
        assert pg.stats["mismatched"] == 0
