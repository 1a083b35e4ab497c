"""Tests for knet._compress: models, thresholds, levels and untrusted decompression."""

from __future__ import annotations

import hashlib
import struct
import zlib

import attrs
import lz4.block
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from knet._compress import (
    DEFAULT_THRESHOLD,
    CompressionConfig,
    CompressionModel,
    Compressor,
    decompress_untrusted,
)
from knet._errors import ConfigError, MalformedPacket

MAX = 65536 + 1024
REAL_MODELS = [CompressionModel.ZLIB, CompressionModel.LZ4, CompressionModel.ZSTD]
MiB = 1 << 20


def compressible(n: int) -> bytes:
    """Return n bytes of repetitive text that every model shrinks."""
    return (b"kronosnet heartbeat payload " * (n // 28 + 1))[:n]


def incompressible(n: int) -> bytes:
    """Return n deterministic pseudo-random bytes no model can shrink."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:n])


def test_from_name_is_case_insensitive() -> None:
    """Every model is found by its lower- or upper-case name."""
    for model in CompressionModel:
        assert CompressionModel.from_name(model.name.lower()) is model
        assert CompressionModel.from_name(model.name) is model
    assert CompressionModel.from_name("ZsTd") is CompressionModel.ZSTD


def test_from_name_unknown_lists_valid_names() -> None:
    """An unknown name raises ConfigError naming all valid models."""
    with pytest.raises(ConfigError, match="none, zlib, lz4, zstd"):
        CompressionModel.from_name("bzip2")


def test_wire_ids_are_fixed() -> None:
    """The enum values are the on-wire ids and must never change."""
    assert [int(m) for m in CompressionModel] == [0, 1, 2, 3]


def test_config_defaults_and_conversion() -> None:
    """Defaults are NONE/0/0 and the model converts from names and ids."""
    cfg = CompressionConfig()
    assert (cfg.model, cfg.threshold, cfg.level) == (CompressionModel.NONE, 0, 0)
    assert cfg.effective_threshold == DEFAULT_THRESHOLD
    assert CompressionConfig(model="lz4").model is CompressionModel.LZ4
    assert CompressionConfig(model=3).model is CompressionModel.ZSTD
    assert CompressionConfig(threshold=1).effective_threshold == 1
    with pytest.raises(ConfigError):
        CompressionConfig(model=9)


def test_config_is_frozen() -> None:
    """A config cannot be mutated after creation."""
    cfg = CompressionConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.level = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "good", "bad"),
    [
        (CompressionModel.NONE, [0], [1, -1]),
        (CompressionModel.ZLIB, [0, 1, 9], [-1, 10]),
        (CompressionModel.LZ4, [0, 1, 12, -1, -65537], [13, -65538]),
        (CompressionModel.ZSTD, [0, 1, 22, -5, -131072], [23, -131073]),
    ],
)
def test_level_ranges(model: CompressionModel, good: list[int], bad: list[int]) -> None:
    """Levels inside the model's range work; outside raise a ConfigError naming the range."""
    data = compressible(4000)
    for level in good:
        comp = Compressor(CompressionConfig(model=model, level=level))
        got_model, wire = comp.compress(data)
        assert decompress_untrusted(got_model, wire, MAX) == data
    for level in bad:
        with pytest.raises(ConfigError, match=model.name.lower()):
            CompressionConfig(model=model, level=level)


def test_negative_threshold_rejected() -> None:
    """A negative threshold is a configuration error."""
    with pytest.raises(ConfigError, match="threshold"):
        CompressionConfig(threshold=-1)


@pytest.mark.parametrize("model", REAL_MODELS)
@pytest.mark.parametrize("size", [100, 101, 1000, 1500, 9000, 65536])
def test_round_trip(model: CompressionModel, size: int) -> None:
    """Compressible payloads are compressed and come back unchanged."""
    data = compressible(size)
    got_model, wire = Compressor(CompressionConfig(model=model)).compress(data)
    assert got_model is model
    assert len(wire) < len(data)
    assert decompress_untrusted(got_model, wire, MAX) == data


@pytest.mark.parametrize("model", REAL_MODELS)
def test_round_trip_exact_max_size(model: CompressionModel) -> None:
    """Output of exactly max_size bytes is accepted, one byte less is not."""
    data = compressible(5000)
    got_model, wire = Compressor(CompressionConfig(model=model)).compress(data)
    assert decompress_untrusted(got_model, wire, 5000) == data
    with pytest.raises(MalformedPacket):
        decompress_untrusted(got_model, wire, 4999)


def test_none_model_passes_data_through() -> None:
    """Model NONE never compresses, whatever the size."""
    data = compressible(10000)
    assert Compressor(CompressionConfig()).compress(data) == (CompressionModel.NONE, data)
    assert decompress_untrusted(0, data, MAX) == data
    with pytest.raises(MalformedPacket):
        decompress_untrusted(0, data, 9999)


@pytest.mark.parametrize("model", REAL_MODELS)
def test_default_threshold(model: CompressionModel) -> None:
    """With threshold 0, payloads below DEFAULT_THRESHOLD stay uncompressed."""
    comp = Compressor(CompressionConfig(model=model))
    assert comp.threshold == DEFAULT_THRESHOLD
    small = compressible(DEFAULT_THRESHOLD - 1)
    assert comp.compress(small) == (CompressionModel.NONE, small)
    assert comp.compress(compressible(DEFAULT_THRESHOLD))[0] is model


@pytest.mark.parametrize("model", REAL_MODELS)
def test_explicit_threshold(model: CompressionModel) -> None:
    """An explicit threshold moves the cut-off; threshold 1 tries every non-empty payload."""
    comp = Compressor(CompressionConfig(model=model, threshold=2000))
    assert comp.threshold == 2000
    assert comp.compress(compressible(1999))[0] is CompressionModel.NONE
    assert comp.compress(compressible(2000))[0] is model
    every = Compressor(CompressionConfig(model=model, threshold=1))
    assert every.compress(compressible(60))[0] is model
    assert every.compress(b"") == (CompressionModel.NONE, b"")


@pytest.mark.parametrize("model", REAL_MODELS)
def test_incompressible_falls_back_to_none(model: CompressionModel) -> None:
    """When compression does not shrink the payload, the original is sent as NONE."""
    data = incompressible(1400)
    comp = Compressor(CompressionConfig(model=model, threshold=1))
    assert comp.compress(data) == (CompressionModel.NONE, data)
    # A tiny payload always grows by the format's overhead.
    assert comp.compress(b"x") == (CompressionModel.NONE, b"x")


@pytest.mark.parametrize("sender", REAL_MODELS)
def test_peers_with_other_models_interoperate(sender: CompressionModel) -> None:
    """Decompression depends only on the packet's model id, not on the local config."""
    data = compressible(3000)
    got_model, wire = Compressor(CompressionConfig(model=sender, level=1)).compress(data)
    # A receiver configured with any model (or none) uses the same function.
    for _receiver in CompressionModel:
        assert decompress_untrusted(int(got_model), wire, MAX) == data


def test_wire_formats() -> None:
    """Each model's bytes are the plain library format documented in the module."""
    data = compressible(3000)
    _, z = Compressor(CompressionConfig(model="zlib")).compress(data)
    assert zlib.decompress(z) == data
    _, l4 = Compressor(CompressionConfig(model="lz4")).compress(data)
    assert lz4.block.decompress(l4, uncompressed_size=len(data)) == data
    _, zs = Compressor(CompressionConfig(model="zstd")).compress(data)
    assert zstandard.frame_content_size(zs) == len(data)
    assert zstandard.ZstdDecompressor().decompress(zs) == data


def test_compressor_is_reusable() -> None:
    """One Compressor handles many payloads in a row (the zstd context is reused)."""
    comp = Compressor(CompressionConfig(model=CompressionModel.ZSTD, threshold=1))
    for n in range(50, 3000, 97):
        data = compressible(n)
        got_model, wire = comp.compress(data)
        assert decompress_untrusted(got_model, wire, MAX) == data


def test_unknown_model_id() -> None:
    """An unknown model id from a peer is a malformed packet."""
    for bad in (4, 7, 255, -1):
        with pytest.raises(MalformedPacket, match="model"):
            decompress_untrusted(bad, b"abc", MAX)


def test_negative_max_size_is_caller_error() -> None:
    """A negative max_size is a local bug, not a network problem."""
    with pytest.raises(ConfigError):
        decompress_untrusted(1, b"", -1)


def _bombs() -> list[tuple[CompressionModel, bytes]]:
    zeros = bytes(10 * MiB)
    return [
        (CompressionModel.ZLIB, zlib.compress(zeros, 9)),
        (CompressionModel.LZ4, lz4.block.compress(zeros, store_size=False)),
        (CompressionModel.ZSTD, zstandard.ZstdCompressor().compress(zeros)),
        (
            CompressionModel.ZSTD,
            zstandard.ZstdCompressor(write_content_size=False).compress(zeros),
        ),
    ]


@pytest.mark.parametrize(("model", "bomb"), _bombs())
def test_decompression_bomb(model: CompressionModel, bomb: bytes) -> None:
    """10 MiB of compressed zeros is rejected as malformed, not decompressed."""
    assert len(bomb) < 64 * 1024
    with pytest.raises(MalformedPacket):
        decompress_untrusted(model, bomb, MAX)


def test_zstd_forged_content_size() -> None:
    """A zstd header claiming 8 GiB is rejected before anything is allocated."""
    # Frame: magic, descriptor (single segment, 8-byte content size), size, one raw block.
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", 8 << 30)
    block = struct.pack("<I", (3 << 3) | 1)[:3] + b"abc"
    with pytest.raises(MalformedPacket, match="claims"):
        decompress_untrusted(CompressionModel.ZSTD, header + block, MAX)


def test_zstd_forged_small_content_size() -> None:
    """A zstd header claiming less than the frame really holds is malformed."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", 2)
    block = struct.pack("<I", (3 << 3) | 1)[:3] + b"abc"
    with pytest.raises(MalformedPacket):
        decompress_untrusted(CompressionModel.ZSTD, header + block, MAX)


def test_zlib_truncated_and_trailing() -> None:
    """A truncated zlib stream or one followed by garbage is malformed."""
    data = compressible(3000)
    wire = zlib.compress(data)
    with pytest.raises(MalformedPacket):
        decompress_untrusted(CompressionModel.ZLIB, wire[:-3], MAX)
    with pytest.raises(MalformedPacket):
        decompress_untrusted(CompressionModel.ZLIB, wire + b"junk", MAX)


@pytest.mark.parametrize("model", REAL_MODELS)
def test_corrupt_data(model: CompressionModel) -> None:
    """Flipping bytes of a valid payload never yields anything but MalformedPacket or bytes."""
    data = compressible(3000)
    _, wire = Compressor(CompressionConfig(model=model)).compress(data)
    for pos in range(0, len(wire), max(1, len(wire) // 40)):
        broken = bytearray(wire)
        broken[pos] ^= 0xFF
        try:
            out = decompress_untrusted(model, bytes(broken), MAX)
        except MalformedPacket:
            continue
        assert len(out) <= MAX


@given(
    model_id=st.integers(min_value=-1, max_value=6),
    data=st.binary(max_size=2048),
    max_size=st.integers(min_value=0, max_value=MAX),
)
def test_fuzz_random_bytes(model_id: int, data: bytes, max_size: int) -> None:
    """Random input for any model id yields bytes within max_size or MalformedPacket."""
    try:
        out = decompress_untrusted(model_id, data, max_size)
    except MalformedPacket:
        return
    assert isinstance(out, bytes)
    assert len(out) <= max_size


@given(
    model_id=st.sampled_from([1, 2, 3]),
    prefix=st.sampled_from(
        [b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd", b"\x28\xb5\x2f\xfd\x00", b"\xf0"]
    ),
    data=st.binary(max_size=512),
)
def test_fuzz_plausible_headers(model_id: int, prefix: bytes, data: bytes) -> None:
    """Random bytes behind a valid-looking magic still only raise MalformedPacket."""
    try:
        out = decompress_untrusted(model_id, prefix + data, 4096)
    except MalformedPacket:
        return
    assert len(out) <= 4096


@given(
    model=st.sampled_from(list(CompressionModel)),
    data=st.binary(max_size=4096) | st.builds(compressible, st.integers(0, 8192)),
)
def test_fuzz_round_trip(model: CompressionModel, data: bytes) -> None:
    """Whatever compress returns decompresses back to the original."""
    got_model, wire = Compressor(CompressionConfig(model=model, threshold=1)).compress(data)
    assert got_model in (model, CompressionModel.NONE)
    assert decompress_untrusted(got_model, wire, len(data)) == data
