"""Payload compression (sans-IO).

A sender compresses with its own configured model; a receiver decompresses whatever
model id the packet carries, so peers may use different models. The model id travels
in the packet header; the compressed bytes carry no extra framing of ours:

* ``NONE`` (0): the payload itself.
* ``ZLIB`` (1): one zlib stream (RFC 1950: 2-byte header, deflate data, Adler-32).
  Trailing bytes after the stream are rejected.
* ``LZ4`` (2): one raw LZ4 block, *without* the size prefix ``lz4.block`` adds by
  default (``store_size=False``). The receiver bounds the output by ``max_size``.
* ``ZSTD`` (3): one zstd frame (RFC 8878), with the content size in the frame header
  and no checksum. A frame without a content size is accepted. Bytes after the first
  frame are ignored by the zstandard decoder.

Received data is untrusted: :func:`decompress_untrusted` never allocates more than
about ``max_size`` bytes and raises only :class:`MalformedPacket` for bad input.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable
from functools import partial

import attrs
import lz4.block
import zstandard

from knet._errors import ConfigError, MalformedPacket

__all__ = [
    "DEFAULT_THRESHOLD",
    "CompressionConfig",
    "CompressionModel",
    "Compressor",
    "decompress_untrusted",
]

#: Payloads shorter than this are sent uncompressed when the threshold is 0 (libknet's value).
DEFAULT_THRESHOLD = 100


class CompressionModel(enum.IntEnum):
    """Compression algorithm; the value is the id carried on the wire."""

    NONE = 0
    ZLIB = 1
    LZ4 = 2
    ZSTD = 3

    @classmethod
    def from_name(cls, name: str) -> CompressionModel:
        """Return the model called ``name`` ("none", "zlib", "lz4", "zstd"; any case)."""
        try:
            return cls[name.upper()]
        except KeyError:
            valid = ", ".join(m.name.lower() for m in cls)
            raise ConfigError(f"unknown compression model {name!r}; valid names: {valid}") from None


# Accepted levels per model, inclusive; 0 always means "the library's default".
# LZ4: negative = fast mode with acceleration -level, 1..12 = LZ4HC level.
# ZSTD: negative levels are zstd's fast levels (ZSTD_minCLevel() is -131072).
_LEVEL_RANGES: dict[CompressionModel, tuple[int, int]] = {
    CompressionModel.NONE: (0, 0),
    CompressionModel.ZLIB: (0, 9),
    CompressionModel.LZ4: (-65537, 12),
    CompressionModel.ZSTD: (-131072, zstandard.MAX_COMPRESSION_LEVEL),
}


def _to_model(value: CompressionModel | str | int) -> CompressionModel:
    if isinstance(value, str):
        return CompressionModel.from_name(value)
    try:
        return CompressionModel(value)
    except ValueError:
        raise ConfigError(f"unknown compression model id {value!r}") from None


def _check_threshold(_inst: object, _attr: object, value: int) -> None:
    if value < 0:
        raise ConfigError(f"compression threshold must be >= 0, got {value}")


@attrs.frozen
class CompressionConfig:
    """How this node compresses what it sends.

    ``threshold`` 0 means :data:`DEFAULT_THRESHOLD`; 1 compresses every non-empty
    payload. ``level`` 0 means the library's default level.
    """

    model: CompressionModel = attrs.field(default=CompressionModel.NONE, converter=_to_model)
    threshold: int = attrs.field(default=0, validator=_check_threshold)
    level: int = attrs.field(default=0)

    @level.validator
    def _check_level(self, _attr: object, value: int) -> None:
        lo, hi = _LEVEL_RANGES[self.model]
        if not lo <= value <= hi:
            raise ConfigError(
                f"{self.model.name.lower()} compression level must be in {lo}..{hi}"
                f" (0 = library default), got {value}"
            )

    @property
    def effective_threshold(self) -> int:
        """The minimum payload length that is compressed."""
        return self.threshold or DEFAULT_THRESHOLD


def _make_compress(model: CompressionModel, level: int) -> Callable[[bytes], bytes]:
    # partial() binds the options once and calls straight into C on the hot path.
    if model is CompressionModel.ZLIB:
        # zlib's own level 0 means "store", so our 0 maps to its default (-1).
        return partial(zlib.compress, level=level or zlib.Z_DEFAULT_COMPRESSION)
    if model is CompressionModel.LZ4:
        if level > 0:
            return partial(
                lz4.block.compress, mode="high_compression", compression=level, store_size=False
            )
        if level < 0:
            return partial(lz4.block.compress, mode="fast", acceleration=-level, store_size=False)
        return partial(lz4.block.compress, store_size=False)
    if model is CompressionModel.ZSTD:
        # One context per Compressor: creating it costs far more than a small compress.
        # 3 is zstd's default level.
        return zstandard.ZstdCompressor(level=level or 3, write_content_size=True).compress
    raise AssertionError(model)  # NONE never gets here


class Compressor:
    """Compresses outgoing payloads according to a :class:`CompressionConfig`.

    Not thread-safe (the zstd context is reused); use one per sender task.
    """

    __slots__ = ("_compress", "config", "model", "threshold")

    def __init__(self, config: CompressionConfig) -> None:
        self.config = config
        self.model = config.model
        #: Effective minimum payload length that is compressed (0 resolved to the default).
        self.threshold = config.effective_threshold
        self._compress: Callable[[bytes], bytes] | None = (
            None
            if config.model is CompressionModel.NONE
            else _make_compress(config.model, config.level)
        )

    def compress(self, data: bytes) -> tuple[CompressionModel, bytes]:
        """Return ``(model, wire_bytes)``; ``(NONE, data)`` when compression is off,
        ``data`` is below the threshold, or compressing would not make it smaller."""
        if self._compress is None or len(data) < self.threshold:
            return CompressionModel.NONE, data
        out = self._compress(data)
        if len(out) >= len(data):
            return CompressionModel.NONE, data
        return self.model, out


# Reused to skip building a context per packet. Safe for sequential calls only: the core
# runs on one thread; two threads decompressing zstd at once would share this context.
_ZSTD_DECOMPRESSOR = zstandard.ZstdDecompressor()


def _zlib_decompress(data: bytes, max_size: int) -> bytes:
    d = zlib.decompressobj()
    # One byte of slack tells "exactly max_size" (trailer consumed) from "too big".
    out = d.decompress(data, max_size + 1)
    if len(out) > max_size:
        raise MalformedPacket(f"zlib payload exceeds {max_size} bytes")
    if not d.eof or d.unused_data:
        raise MalformedPacket("zlib payload truncated or followed by garbage")
    return out


def _lz4_decompress(data: bytes, max_size: int) -> bytes:
    # With an explicit size lz4 allocates exactly that, fails if the output would not
    # fit, and returns only the bytes actually produced.
    return lz4.block.decompress(data, uncompressed_size=max_size)  # type: ignore[no-any-return]


def _zstd_decompress(data: bytes, max_size: int) -> bytes:
    # decompress() allocates the size the frame header claims, whatever max_output_size
    # says, so a forged header is a memory bomb: check the claim first.
    claimed = zstandard.frame_content_size(data)
    if claimed > max_size:
        raise MalformedPacket(f"zstd frame claims {claimed} bytes, limit {max_size}")
    if claimed == 0:
        return b""
    # claimed == -1 (unknown): max_output_size bounds the buffer instead.
    return _ZSTD_DECOMPRESSOR.decompress(data, max_output_size=max_size)


def decompress_untrusted(model_id: int, data: bytes, max_size: int) -> bytes:
    """Decompress ``data`` received with compression ``model_id``.

    Raises :class:`MalformedPacket` for an unknown model id, corrupt data, or output
    longer than ``max_size``; never allocates much more than ``max_size`` bytes.
    """
    if max_size < 0:
        raise ConfigError(f"max_size must be >= 0, got {max_size}")
    try:
        if model_id == CompressionModel.NONE:
            out = data
        elif model_id == CompressionModel.ZLIB:
            out = _zlib_decompress(data, max_size)
        elif model_id == CompressionModel.LZ4:
            out = _lz4_decompress(data, max_size)
        elif model_id == CompressionModel.ZSTD:
            out = _zstd_decompress(data, max_size)
        else:
            raise MalformedPacket(f"unknown compression model id {model_id}")
    except (zlib.error, lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
        raise MalformedPacket(f"corrupt compressed payload: {exc}") from exc
    if len(out) > max_size:
        raise MalformedPacket(f"payload exceeds {max_size} bytes")
    return out
