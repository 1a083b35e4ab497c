"""Fuzzing: random and mutated datagrams never raise out of KnetCore.receive, are
always accounted for, and every ``*_untrusted`` decoder raises only MalformedPacket."""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import pkgutil
import struct
from collections.abc import Callable

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knet
from knet import (
    CompressionConfig,
    CompressionModel,
    CryptoConfig,
    DataReceived,
    KnetCore,
    LinkPolicy,
    LogLevel,
)
from knet._compress import Compressor, decompress_untrusted
from knet._crypto import PacketSealer, make_nonce
from knet._errors import MalformedPacket
from knet._wire import (
    HEADER,
    HEADER_SIZE,
    PacketType,
    decode_data_untrusted,
    decode_header_untrusted,
    decode_ping_untrusted,
    decode_pmtud_untrusted,
    encode_header,
)
from knet.testing import FakeNetwork

SEC = 1_000_000_000
MS = 1_000_000
KEY = bytes((i * 37 + 11) % 256 for i in range(512))
PEER = ("127.0.0.1", 5405)  # host 1, the configured peer of the receiver
LOCAL = ("127.0.0.2", 5405)  # host 2, the receiver
STRANGER = ("127.0.0.66", 5405)

#: Counters of datagrams dropped before any packet-type handler saw them.
REJECT_COUNTERS = (
    "rx_auth_failures",
    "rx_replayed",
    "rx_unverified_instance",
    "rx_malformed",
    "rx_unsupported_version",
    "rx_link_mismatch",
    "rx_clear_rejected",
    "rx_unknown_source",
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: (offset, struct format) of every fixed field: the header, then the DATA body header
#: (or a PING/PONG timestamp, or a probe size, at the same offset).
FIELDS = [
    (0, ">B"),  # version
    (1, ">B"),  # type
    (2, ">H"),  # src_host
    (4, ">B"),  # link_id
    (5, ">B"),  # crypto_slot
    (6, ">H"),  # reserved
    (8, ">Q"),  # instance
    (16, ">Q"),  # counter
    (24, ">I"),  # DATA data_seq
    (28, ">B"),  # DATA channel
    (29, ">B"),  # DATA compression
    (30, ">B"),  # DATA frag_index
    (31, ">B"),  # DATA frag_count
    (24, ">Q"),  # PING/PONG timestamp
    (24, ">H"),  # PMTUD probe size
]


# --- the worlds: two hosts, one link, every kind of datagram captured -------------------------


@attrs.frozen
class World:
    net: FakeNetwork
    receiver: KnetCore
    samples: tuple[bytes, ...]  # datagrams host 1 sent to host 2, of every kind


@functools.cache
def world(crypto: bool) -> World:
    """Hosts 1 and 2 (with crypto: sealing and refusing clear packets) with the link up
    (PMTU 1500 both ways), and what 1 sent to 2:
    pings, pongs, probes and replies, DATA clear and compressed with every model,
    fragmented DATA."""
    net = FakeNetwork(seed=31 + crypto)
    cores = {h: net.add_core(h) for h in (1, 2)}
    for host_id, core in cores.items():
        peer = 3 - host_id
        core.add_host(peer, policy=LinkPolicy.PASSIVE)
        core.set_link(
            peer,
            0,
            local=(f"127.0.0.{host_id}", 5405),
            remote=(f"127.0.0.{peer}", 5405),
            now=net.now,
        )
        core.open_channel(0)
        core.open_channel(5)
        if crypto:
            core.set_crypto_config(1, CryptoConfig(KEY))
            core.use_crypto_config(1)
            core.set_rx_clear_traffic(False)  # what open_handle does with crypto
    net.path(PEER, LOCAL).mtu = 1500
    net.path(LOCAL, PEER).mtu = 1500
    net.run_for(10 * SEC)
    sender = cores[1]
    sender.send(b"plain", net.now, channel=5)
    for model in CompressionModel:
        sender.set_compression(CompressionConfig(model, threshold=1))
        sender.send(b"compressible text " * 30, net.now)
    sender.set_compression(CompressionConfig())
    sender.send(bytes(range(256)) * 20, net.now)  # fragmented
    net.run_for(SEC)
    assert len([e for e in net.received(2) if isinstance(e, DataReceived)]) == 6
    samples = tuple(
        d.data
        for h, d in net.sent
        if h == 1 and len(d.data) + 28 <= 1500 and (d.remote.ip, d.remote.port) == LOCAL
    )
    kinds = {decode_header_untrusted(s).type for s in samples}
    assert kinds == set(PacketType)
    return World(net, cores[2], samples)


# --- strategies --------------------------------------------------------------------------------


@st.composite
def mutation(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` after 1 to 4 edits: bit flips, byte writes, truncation, extension,
    field rewrites (header and body fields, with edge values)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "extend", "field", "field"]))
        if kind == "flip" and data:
            bit = draw(st.integers(0, len(data) * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif kind == "field":
            offset, fmt = draw(st.sampled_from(FIELDS))
            size = struct.calcsize(fmt)
            if len(data) >= offset + size:
                top = (1 << (8 * size)) - 1
                (old,) = struct.unpack_from(fmt, data, offset)
                value = draw(
                    st.one_of(
                        st.sampled_from([0, 1, 2, 3, 5, 7, 8, 31, 32, 255, top, top - 1]),
                        st.sampled_from([(old + 1) & top, (old - 1) & top]),
                        st.integers(0, top),
                    )
                )
                struct.pack_into(fmt, data, offset, value & top)
    return bytes(data)


def random_datagrams() -> st.SearchStrategy[bytes]:
    """Random bytes, some starting like a valid header of host 1's link 0."""
    header = st.builds(
        encode_header,
        st.sampled_from(list(PacketType)),
        st.just(1),
        st.just(0),
        st.integers(0, 2),
        st.integers(0, (1 << 64) - 1),
        st.integers(0, (1 << 64) - 1),
    )
    return st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"\x01" + b),
        st.tuples(header, st.binary(max_size=200)).map(lambda t: t[0] + t[1]),
    )


# --- the invariant -------------------------------------------------------------------------------


def feed(w: World, data: bytes, source: tuple[str, int] = PEER) -> None:
    """Inject ``data`` and check it was accounted for exactly once, without a crash."""
    core = w.receiver
    net = w.net
    stats = core.stats()
    link = core.link_status(1, 0).stats
    events, logs = len(net.events[2]), len(net.logs[2])

    net.inject(source, LOCAL, data)  # calls core.receive; would propagate an exception

    after = core.stats()
    after_link = core.link_status(1, 0).stats
    rejected = sum(after[n] - stats[n] for n in REJECT_COUNTERS)
    handled = after_link["rx_total_packets"] - link["rx_total_packets"]
    assert rejected in (0, 1)
    assert handled in (0, 1)
    assert rejected + handled >= 1, "a datagram was neither counted nor handled"
    delivered = [e for e in net.events[2][events:] if isinstance(e, DataReceived)]
    assert len(delivered) <= 1
    if delivered:
        assert (rejected, handled) == (0, 1)
        assert after_link["rx_data_packets"] == link["rx_data_packets"] + 1
    if after["rx_crypt_packets"] > stats["rx_crypt_packets"]:
        assert handled == 1  # authenticated packets reach their handler
    errors = [r for r in net.logs[2][logs:] if r.level is LogLevel.ERROR]
    assert not errors, errors  # "internal error while handling a packet" = decoder bug
    assert core.link_status(1, 0).enabled


# --- the core under fuzz --------------------------------------------------------------------------


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
@FUZZ
@given(data=st.data())
def test_mutated_real_datagrams_never_raise_and_are_counted(
    crypto: bool, data: st.DataObject
) -> None:
    """Mutations of captured datagrams of every type never raise and are always accounted for."""
    w = world(crypto)
    original = data.draw(st.sampled_from(w.samples), label="original")
    feed(w, data.draw(mutation(original), label="mutated"))


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
@FUZZ
@given(datagram=random_datagrams())
def test_random_datagrams_never_raise_and_are_counted(crypto: bool, datagram: bytes) -> None:
    """Random bytes from the configured peer's address never raise and are counted."""
    feed(world(crypto), datagram)


@FUZZ
@given(datagram=random_datagrams())
def test_random_datagrams_from_strangers_count_as_unknown_source(datagram: bytes) -> None:
    """Whatever a stranger sends is counted as rx_unknown_source and nothing else."""
    w = world(True)
    before = w.receiver.stats()
    feed(w, datagram, source=STRANGER)
    after = w.receiver.stats()
    assert after["rx_unknown_source"] == before["rx_unknown_source"] + 1
    assert {k: v for k, v in after.items() if k != "rx_unknown_source"} == {
        k: v for k, v in before.items() if k != "rx_unknown_source"
    }


_fresh_counters = itertools.count(1 << 40)


def reseal(original: bytes, mutate: Callable[[bytes, bytes], tuple[bytes, bytes]]) -> bytes:
    """Open a datagram host 1 sealed for host 2, let ``mutate`` rewrite its (header,
    body), and seal it again with the right key and a fresh counter: an authentic
    packet with arbitrary content, as a buggy or hostile key holder would send."""
    sealer = PacketSealer(CryptoConfig(KEY))
    header = decode_header_untrusted(original)
    nonce = make_nonce(sealer.nonce_size, 1, 2, header.instance, header.counter)
    body = sealer.open(original[:HEADER_SIZE], nonce, original[HEADER_SIZE:])
    raw_header, body = mutate(original[:HEADER_SIZE], body)
    fields = list(HEADER.unpack(raw_header))
    fields[2], fields[3], fields[4] = 1, 0, 1  # src host, link id, slot: pass the checks
    fields[6] = header.instance
    fields[7] = counter = next(_fresh_counters)
    new_header = HEADER.pack(*fields)
    nonce = make_nonce(sealer.nonce_size, 1, 2, header.instance, counter)
    return new_header + sealer.seal(new_header, nonce, body)


@FUZZ
@given(data=st.data())
def test_authentic_packets_with_garbage_bodies_are_counted(data: st.DataObject) -> None:
    """Authentic packets with garbage bodies or types reach the decoders and are counted."""
    w = world(True)
    original = data.draw(st.sampled_from(w.samples), label="original")

    def mutate(header: bytes, body: bytes) -> tuple[bytes, bytes]:
        fields = bytearray(header)
        fields[1] = data.draw(st.sampled_from(list(PacketType)), label="type")
        # Mutate the clear body as if it were a clear datagram, then drop the header.
        mutated = data.draw(mutation(bytes(fields) + body), label="body")
        return bytes(fields), mutated[HEADER_SIZE:] if len(mutated) > HEADER_SIZE else b""

    before = w.receiver.stats()["rx_crypt_packets"]
    feed(w, reseal(original, mutate))
    assert w.receiver.stats()["rx_crypt_packets"] == before + 1


# --- every decoder of network input -------------------------------------------------------

BYTES_DECODERS: dict[str, Callable[[bytes], object]] = {
    "decode_header_untrusted": decode_header_untrusted,
    "decode_data_untrusted": decode_data_untrusted,
    "decode_ping_untrusted": decode_ping_untrusted,
    "decode_pmtud_untrusted": decode_pmtud_untrusted,
}
FUZZED = {*BYTES_DECODERS, "decompress_untrusted"}


def test_every_untrusted_decoder_is_fuzzed_here() -> None:
    """Every *_untrusted function in knet is one that this file fuzzes."""
    modules = [
        importlib.import_module(f"knet.{m.name}") for m in pkgutil.iter_modules(knet.__path__)
    ]
    found = {
        name: obj
        for module in modules
        for name, obj in inspect.getmembers(module, inspect.isfunction)
        if name.endswith("_untrusted") and obj.__module__ == module.__name__
    }
    assert set(found) == FUZZED
    for name, decoder in BYTES_DECODERS.items():
        assert found[name] is decoder
    assert found["decompress_untrusted"] is decompress_untrusted


def _decode_or_malformed(decoder: Callable[..., object], *args: object) -> object | None:
    try:
        return decoder(*args)
    except MalformedPacket:
        return None
    # Any other exception propagates and fails the test.


@pytest.mark.parametrize("name", sorted(BYTES_DECODERS))
@FUZZ
@given(data=st.data())
def test_wire_decoders_raise_only_malformed_packet(name: str, data: st.DataObject) -> None:
    """Wire decoders fed random and mutated real input raise nothing but MalformedPacket."""
    decoder = BYTES_DECODERS[name]
    real = [d[HEADER_SIZE:] for d in world(False).samples]
    if name == "decode_header_untrusted":
        real = list(world(False).samples)
    raw = data.draw(
        st.one_of(
            st.binary(max_size=100),
            st.sampled_from(real).flatmap(mutation),
        ),
        label="input",
    )
    _decode_or_malformed(decoder, raw)


def _compressed_samples() -> list[tuple[int, bytes, bytes]]:
    """(model id, compressed bytes, original) for every model and a few payloads."""
    texts = [b"", b"x", b"compressible text " * 40, bytes(range(256)) * 8, bytes(65_536)]
    samples = []
    for model in (CompressionModel.ZLIB, CompressionModel.LZ4, CompressionModel.ZSTD):
        compressor = Compressor(CompressionConfig(model, threshold=1))
        for text in texts:
            used, body = compressor.compress(text)
            samples.append((int(used), body, text))
    return samples


COMPRESSED = _compressed_samples()


@FUZZ
@given(
    sample=st.sampled_from(COMPRESSED),
    model=st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 255), st.none()),
    max_size=st.one_of(st.just(65_536), st.integers(0, 70_000)),
    data=st.data(),
)
def test_decompress_untrusted_raises_only_malformed_packet(
    sample: tuple[int, bytes, bytes], model: int | None, max_size: int, data: st.DataObject
) -> None:
    """decompress_untrusted returns at most max_size bytes or raises MalformedPacket."""
    real_model, body, _ = sample
    raw = data.draw(
        st.one_of(st.just(body), mutation(body), st.binary(max_size=300)), label="input"
    )
    model_id = real_model if model is None else model
    out = _decode_or_malformed(decompress_untrusted, model_id, raw, max_size)
    if out is not None:
        assert isinstance(out, bytes)
        assert len(out) <= max_size


@pytest.mark.parametrize(
    "sample", COMPRESSED, ids=lambda s: f"{CompressionModel(s[0]).name.lower()}-{len(s[2])}"
)
def test_decompress_untrusted_round_trips_real_payloads(sample: tuple[int, bytes, bytes]) -> None:
    """The positive control of the decoder fuzzed above: real payloads decompress."""
    model, body, text = sample
    assert decompress_untrusted(model, body, 65_536) == text
