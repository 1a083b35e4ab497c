"""The knet wire format (knet._wire) and what KnetCore puts on the wire: the fixed,
versioned header, the packet bodies, unsupported versions (issue point 10) and
payload compression with peers using different models (issue point 8)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knet import (
    WIRE_VERSION,
    CompressionConfig,
    CompressionModel,
    CryptoConfig,
    Datagram,
    KnetCore,
    LinkPolicy,
    LinkUp,
    LogLevel,
)
from knet._crypto import PacketSealer
from knet._errors import MalformedPacket
from knet._wire import (
    DATA_HEADER,
    HEADER,
    HEADER_SIZE,
    PING_BODY,
    PROBE,
    DataHeader,
    Header,
    PacketType,
    UnsupportedVersion,
    decode_data_untrusted,
    decode_header_untrusted,
    decode_ping_untrusted,
    decode_pmtud_untrusted,
    encode_header,
)
from knet.testing import FakeNetwork

MS = 1_000_000
SEC = 1_000_000_000
KEY = bytes(range(200))
COMPRESSION_OFFSET = HEADER_SIZE + 5  # data_seq u32, channel u8, then the model id

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, (1 << 64) - 1)


# --- helpers ---------------------------------------------------------------------------


def endpoint(host: int, link: int = 0) -> tuple[str, int]:
    return (f"127.0.{link}.{host}", 5405)


def cluster(
    net: FakeNetwork, host_ids: Iterable[int], *, key: bytes | None = None
) -> dict[int, KnetCore]:
    """Full mesh over one link, channel 0 open, optional crypto."""
    ids = sorted(host_ids)
    cores = {h: net.add_core(h) for h in ids}
    for host_id, core in cores.items():
        for peer in ids:
            core.add_host(peer, policy=LinkPolicy.PASSIVE)
            if peer != host_id:
                core.set_link(peer, 0, local=endpoint(host_id), remote=endpoint(peer), now=net.now)
        core.open_channel(0)
        if key is not None:
            core.set_crypto_config(1, CryptoConfig(key))
            core.use_crypto_config(1)
    net.flush()
    return cores


def data_from(net: FakeNetwork, host_id: int, start: int) -> list[Datagram]:
    return [d for h, d in net.sent[start:] if h == host_id and d.data[1] == PacketType.DATA]


def payloads_from(net: FakeNetwork, receiver: int, sender: int) -> list[bytes]:
    return [e.payload for e in net.received(receiver) if e.src_host == sender]


def compressible(n: int) -> bytes:
    return (b"totem token rotation, ring id 42; " * (n // 34 + 1))[:n]


def incompressible(n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:n]


# --- 10. the header codec --------------------------------------------------------------------


def test_header_is_fixed_size_with_the_version_first() -> None:
    """The header is 24 bytes for every packet type, and its first byte is the version."""
    assert HEADER_SIZE == HEADER.size == 24
    assert WIRE_VERSION == 1
    for ptype in PacketType:
        raw = encode_header(ptype, 0xFFFF, 7, 2, (1 << 64) - 1, (1 << 64) - 1)
        assert len(raw) == HEADER_SIZE
        assert raw[0] == WIRE_VERSION
        assert raw[1] == ptype
    assert [int(t) for t in PacketType] == [1, 2, 3, 4, 5]


@given(
    ptype=st.sampled_from(list(PacketType)),
    src_host=u16,
    link_id=st.integers(0, 7),
    slot=st.integers(0, 2),
    instance=u64,
    counter=u64,
    body=st.binary(max_size=64),
)
def test_header_round_trip(
    ptype: PacketType,
    src_host: int,
    link_id: int,
    slot: int,
    instance: int,
    counter: int,
    body: bytes,
) -> None:
    """Every valid header decodes to the fields it was encoded from, whatever follows."""
    raw = encode_header(ptype, src_host, link_id, slot, instance, counter)
    header = decode_header_untrusted(raw + body)
    assert header == Header(ptype, src_host, link_id, slot, instance, counter)
    assert isinstance(header.type, PacketType)


def _raw_header(**fields: int) -> bytes:
    values = {
        "version": 1,
        "type": 1,
        "src": 1,
        "link": 0,
        "slot": 0,
        "reserved": 0,
        "instance": 5,
        "counter": 9,
    } | fields
    return HEADER.pack(*values.values())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\x01", "shorter than the header"),
        (_raw_header()[:23], "shorter than the header"),
        (_raw_header(type=0), "unknown packet type 0"),
        (_raw_header(type=6), "unknown packet type 6"),
        (_raw_header(type=255), "unknown packet type 255"),
        (_raw_header(slot=3), "crypto slot 3"),
        (_raw_header(link=8), "link id 8"),
        (_raw_header(reserved=1), "reserved"),
        (_raw_header(reserved=0x8000), "reserved"),
    ],
)
def test_bad_headers_raise_malformed_packet(raw: bytes, message: str) -> None:
    """Each impossible header field raises MalformedPacket naming the problem."""
    with pytest.raises(MalformedPacket, match=message) as info:
        decode_header_untrusted(raw)
    assert not isinstance(info.value, UnsupportedVersion)


@given(version=u8.filter(lambda v: v != WIRE_VERSION), rest=st.binary(max_size=40))
def test_other_versions_raise_unsupported_version(version: int, rest: bytes) -> None:
    """Any first byte but 1 is an unsupported version, whatever the length or content."""
    with pytest.raises(UnsupportedVersion, match="unsupported knet wire version") as info:
        decode_header_untrusted(bytes([version]) + rest)
    assert info.value.version == version
    assert isinstance(info.value, MalformedPacket)
    assert str(version) in str(info.value)


# --- 10. the bodies ----------------------------------------------------------------------------


@given(
    seq=u32,
    channel=st.integers(0, 31),
    compression=u8,
    count=st.integers(1, 255),
    index_seed=u8,
    fragment=st.binary(max_size=100),
)
def test_data_body_round_trip(
    seq: int, channel: int, compression: int, count: int, index_seed: int, fragment: bytes
) -> None:
    """A DATA body splits back into its header fields and fragment bytes."""
    index = index_seed % count
    body = DATA_HEADER.pack(seq, channel, compression, index, count) + fragment
    assert decode_data_untrusted(body) == (
        DataHeader(seq, channel, compression, index, count),
        fragment,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "shorter"),
        (DATA_HEADER.pack(1, 0, 0, 0, 1)[:7], "shorter"),
        (DATA_HEADER.pack(1, 0, 0, 0, 0), "impossible"),
        (DATA_HEADER.pack(1, 0, 0, 3, 3), "impossible"),
        (DATA_HEADER.pack(1, 0, 0, 255, 1), "impossible"),
        (DATA_HEADER.pack(1, 32, 0, 0, 1), "channel 32"),
        (DATA_HEADER.pack(1, 255, 0, 0, 1), "channel 255"),
    ],
)
def test_bad_data_bodies_raise_malformed_packet(body: bytes, message: str) -> None:
    """Short DATA bodies, impossible fragment numbers and bad channels are malformed."""
    with pytest.raises(MalformedPacket, match=message):
        decode_data_untrusted(body)


@given(timestamp=u64, instance=u64)
def test_ping_body_round_trip(timestamp: int, instance: int) -> None:
    """PING/PONG bodies carry the pinger's u64 timestamp and u64 instance id."""
    assert decode_ping_untrusted(PING_BODY.pack(timestamp, instance)) == (timestamp, instance)


@given(body=st.binary(max_size=40).filter(lambda b: len(b) != 16))
def test_ping_body_of_wrong_size_is_malformed(body: bytes) -> None:
    """A PING/PONG body of any size but 16 is malformed."""
    with pytest.raises(MalformedPacket, match="expected 16"):
        decode_ping_untrusted(body)


@given(size=u16, padding=st.binary(max_size=64))
def test_pmtud_round_trip(size: int, padding: bytes) -> None:
    """PMTUD bodies start with the u16 probe size; padding after it is ignored."""
    assert decode_pmtud_untrusted(PROBE.pack(size) + padding) == size


@pytest.mark.parametrize("body", [b"", b"\x05"])
def test_short_pmtud_body_is_malformed(body: bytes) -> None:
    """A PMTUD body without its probe size is malformed."""
    with pytest.raises(MalformedPacket, match="too short"):
        decode_pmtud_untrusted(body)


# --- 10. what the core emits --------------------------------------------------------------------


def test_every_emitted_datagram_decodes_consistently() -> None:
    """Every datagram of a real run decodes to consistent headers and bodies."""
    net = FakeNetwork(seed=21)
    cores = cluster(net, [1, 2, 3])
    net.run_for(10 * SEC)
    for size in (0, 10, 3000, 65_536):
        cores[1].send(compressible(size), net.now)
    net.run_for(SEC)
    assert payloads_from(net, 2, 1) == [compressible(n) for n in (0, 10, 3000, 65_536)]

    counters: dict[tuple[int, str], list[int]] = defaultdict(list)
    pings: set[int] = set()
    pongs: list[int] = []
    fragments: dict[int, list[bytes]] = defaultdict(list)
    types = set()
    for host_id, datagram in net.sent:
        header = decode_header_untrusted(datagram.data)
        body = datagram.data[HEADER_SIZE:]
        types.add(header.type)
        assert header.src_host == host_id
        assert header.link_id == 0
        assert header.crypto_slot == 0
        assert header.instance == net.cores[host_id].instance
        counters[(host_id, datagram.remote.ip)].append(header.counter)
        if header.type is PacketType.PING:
            pings.add(decode_ping_untrusted(body))
        elif header.type is PacketType.PONG:
            pongs.append(decode_ping_untrusted(body))
        elif header.type is PacketType.PMTUD:
            assert decode_pmtud_untrusted(body) == len(datagram.data)
        elif header.type is PacketType.PMTUD_REPLY:
            assert len(body) == PROBE.size
        elif host_id == 1 and datagram.remote.ip == "127.0.0.2":
            data_header, fragment = decode_data_untrusted(body)
            assert data_header.channel == 0
            assert data_header.compression == 0
            fragments[data_header.data_seq].append(fragment)
    assert types == set(PacketType)
    for sequence in counters.values():
        assert sequence == list(range(1, len(sequence) + 1))
    assert pongs
    assert set(pongs) <= pings
    assert [b"".join(parts) for _, parts in sorted(fragments.items())] == [
        compressible(n) for n in (0, 10, 3000, 65_536)
    ]


@pytest.mark.parametrize("version", [0, 2, 255])
def test_datagram_of_unsupported_version_is_dropped_with_a_warning(version: int) -> None:
    """Another wire version is dropped, counted and logged as unsupported; never raised."""
    net = FakeNetwork(seed=22)
    a, b = cluster(net, [1, 2]).values()
    net.run_for(10 * SEC)
    start = len(net.sent)
    a.send(b"from a newer peer", net.now)
    net.flush()
    (datagram,) = data_from(net, 1, start)
    newer = bytes([version]) + datagram.data[1:]
    net.inject(datagram.local, datagram.remote, newer + b"extension fields")
    net.inject(datagram.local, datagram.remote, bytes([version]))  # even a 1-byte one
    stats = b.stats()
    assert stats["rx_unsupported_version"] == 2
    assert stats["rx_malformed"] == 0
    assert b.link_status(1, 0).stats["rx_invalid_packets"] == 2
    logs = [r for r in net.logs[2] if r.level <= LogLevel.WARNING]
    assert len(logs) == 1  # rate limited per peer
    (log,) = logs
    assert log.level is LogLevel.WARNING
    assert "unsupported" in log.event
    assert "version" in log.event
    assert f"version {version}" in log.fields["reason"]
    assert log.fields["address"] == "127.0.0.1:5405"

    net.run_for(10 * MS)  # the real packet still arrives, once
    assert payloads_from(net, 2, 1) == [b"from a newer peer"]
    net.run_for(10 * SEC)
    assert b.link_status(1, 0).connected
    assert not [r for r in net.logs[2] if r.level is LogLevel.ERROR]


def test_unsupported_version_from_a_stranger_is_an_unknown_source() -> None:
    """Another version from a stranger counts as an unknown source: access control first."""
    net = FakeNetwork(seed=23)
    _, b = cluster(net, [1, 2]).values()
    net.inject(("127.0.0.99", 5405), endpoint(2), b"\x02" + bytes(40))
    assert b.stats()["rx_unknown_source"] == 1
    assert b.stats()["rx_unsupported_version"] == 0


# --- 8. compression -----------------------------------------------------------------------------

MODELS = [CompressionModel.ZLIB, CompressionModel.LZ4, CompressionModel.ZSTD]


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name.lower())
def test_compression_above_the_threshold_only(model: CompressionModel, crypto: bool) -> None:
    """Payloads at or above the threshold are compressed and counted; shorter ones are not."""
    net = FakeNetwork(seed=24)
    a, b = cluster(net, [1, 2], key=KEY if crypto else None).values()
    a.set_compression(CompressionConfig(model, threshold=200))
    net.run_for(10 * SEC)
    big, at_threshold, small = compressible(5000), compressible(200), compressible(199)

    start = len(net.sent)
    for payload in (big, at_threshold, small):
        a.send(payload, net.now)
    net.run_for(10 * MS)
    assert payloads_from(net, 2, 1) == [big, at_threshold, small]
    sizes = [len(d.data) for d in data_from(net, 1, start)]
    assert sizes[0] < 1000
    assert sizes[1] < HEADER_SIZE + 8 + 200
    overhead = HEADER_SIZE + 8 + (PacketSealer(CryptoConfig(KEY)).overhead if crypto else 0)
    assert sizes[2] == overhead + 199
    sa, sb = a.stats(), b.stats()
    assert sa["tx_compressed_packets"] == sb["rx_compressed_packets"] == 2
    assert sa["tx_uncompressed_packets"] == 1
    assert sa["tx_compressed_original_bytes"] == sb["rx_compressed_original_bytes"] == 5200
    assert (
        sa["tx_compressed_size_bytes"]
        == sb["rx_compressed_size_bytes"]
        == sum(n - overhead for n in sizes[:2])
    )
    if not crypto:
        models = [d.data[COMPRESSION_OFFSET] for d in data_from(net, 1, start)]
        assert models == [model, model, CompressionModel.NONE]
        assert small in data_from(net, 1, start)[2].data


def test_peers_with_different_models_talk() -> None:
    """Hosts compressing with zstd, lz4 and zlib all understand each other."""
    net = FakeNetwork(seed=25)
    cores = cluster(net, [1, 2, 3])
    own = {1: CompressionModel.ZSTD, 2: CompressionModel.LZ4, 3: CompressionModel.ZLIB}
    for host_id, model in own.items():
        cores[host_id].set_compression(CompressionConfig(model, threshold=100))
    net.run_for(10 * SEC)
    start = len(net.sent)
    for host_id, core in cores.items():
        core.send(compressible(4000 + host_id), net.now)
    net.run_for(10 * MS)
    for receiver in cores:
        for sender in cores:
            if sender != receiver:
                assert payloads_from(net, receiver, sender) == [compressible(4000 + sender)]
    for host_id, model in own.items():
        wire_models = {d.data[COMPRESSION_OFFSET] for d in data_from(net, host_id, start)}
        assert wire_models == {model}
        stats = cores[host_id].stats()
        assert stats["tx_compressed_packets"] == 1
        assert stats["rx_compressed_packets"] == 2
        assert stats["rx_failed_to_decompress"] == 0


def test_incompressible_payload_is_sent_as_it_is() -> None:
    """An incompressible 64 KiB payload is sent uncompressed, fragmented, and counted so."""
    net = FakeNetwork(seed=26)
    a, b = cluster(net, [1, 2]).values()
    a.set_compression(CompressionConfig(CompressionModel.ZSTD, threshold=1))
    net.path(endpoint(1), endpoint(2)).mtu = 1500
    net.run_for(10 * SEC)
    noise = incompressible(65_536)
    start = len(net.sent)
    a.send(noise, net.now)
    net.run_for(10 * MS)
    assert payloads_from(net, 2, 1) == [noise]
    fragments = data_from(net, 1, start)
    assert len(fragments) > 40
    assert {d.data[COMPRESSION_OFFSET] for d in fragments} == {CompressionModel.NONE}
    stats = a.stats()
    assert stats["tx_unable_to_compress"] == 1
    assert stats["tx_compressed_packets"] == 0
    assert b.stats()["rx_compressed_packets"] == 0


def test_links_come_up_with_compression_and_crypto_everywhere() -> None:
    """With zstd and crypto on both ends links come up and every payload size round-trips."""
    net = FakeNetwork(seed=27)
    cores = cluster(net, [1, 2], key=KEY)
    for core in cores.values():
        core.set_compression(CompressionConfig(CompressionModel.ZSTD, threshold=1))
    net.run_for(10 * SEC)
    assert LinkUp(2, 0) in net.events[1]
    sizes = (1, 64, 1024, 16_384, 65_536)
    for size in sizes:
        cores[1].send(compressible(size), net.now)
    net.run_for(10 * MS)
    assert payloads_from(net, 2, 1) == [compressible(n) for n in sizes]
