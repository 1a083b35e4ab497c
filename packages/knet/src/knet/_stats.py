"""Counters of a link and of a handle, named like libknet's (see docs/knet.md).

They are plain mutable records updated on the packet path; ``snapshot()`` gives an
immutable copy as a dict for tools and tests.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

__all__ = ["HandleStats", "LinkStats", "TimingStat"]

_HISTORY = 16  # libknet keeps the last 16 up and down times


@attrs.define(slots=True)
class TimingStat:
    """min / max / average of a duration in microseconds."""

    count: int = 0
    min_us: int = 0
    max_us: int = 0
    total_us: int = 0

    def add(self, micros: int) -> None:
        # Called for every sealed, opened or compressed packet: no builtin calls here.
        if micros < self.min_us or not self.count:
            self.min_us = micros
        if micros > self.max_us:  # noqa: PLR1730 - cheaper than max() on the packet path
            self.max_us = micros
        self.total_us += micros
        self.count += 1

    @property
    def ave_us(self) -> int:
        return self.total_us // self.count if self.count else 0


@attrs.define(slots=True)
class LinkStats:
    tx_data_packets: int = 0
    tx_data_bytes: int = 0
    rx_data_packets: int = 0
    rx_data_bytes: int = 0
    tx_ping_packets: int = 0
    tx_ping_bytes: int = 0
    rx_ping_packets: int = 0
    rx_ping_bytes: int = 0
    tx_pong_packets: int = 0
    tx_pong_bytes: int = 0
    rx_pong_packets: int = 0
    rx_pong_bytes: int = 0
    tx_pmtu_packets: int = 0
    tx_pmtu_bytes: int = 0
    rx_pmtu_packets: int = 0
    rx_pmtu_bytes: int = 0
    tx_total_errors: int = 0
    tx_emsgsize_errors: int = 0
    rx_invalid_packets: int = 0
    rx_auth_failures: int = 0
    rx_replayed: int = 0
    rx_duplicates: int = 0
    rx_late_pongs: int = 0
    latency_min_us: int = 0
    latency_max_us: int = 0
    latency_ave_us: int = 0
    latency_samples: int = 0
    up_count: int = 0
    down_count: int = 0
    last_up_times_ns: deque[int] = attrs.field(factory=lambda: deque(maxlen=_HISTORY))
    last_down_times_ns: deque[int] = attrs.field(factory=lambda: deque(maxlen=_HISTORY))

    @property
    def tx_total_packets(self) -> int:
        return (
            self.tx_data_packets
            + self.tx_ping_packets
            + self.tx_pong_packets
            + self.tx_pmtu_packets
        )

    @property
    def rx_total_packets(self) -> int:
        return (
            self.rx_data_packets
            + self.rx_ping_packets
            + self.rx_pong_packets
            + self.rx_pmtu_packets
        )

    @property
    def tx_total_bytes(self) -> int:
        return self.tx_data_bytes + self.tx_ping_bytes + self.tx_pong_bytes + self.tx_pmtu_bytes

    @property
    def rx_total_bytes(self) -> int:
        return self.rx_data_bytes + self.rx_ping_bytes + self.rx_pong_bytes + self.rx_pmtu_bytes

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = attrs.asdict(self, recurse=False)
        out["last_up_times_ns"] = tuple(self.last_up_times_ns)
        out["last_down_times_ns"] = tuple(self.last_down_times_ns)
        for name in ("tx_total_packets", "rx_total_packets", "tx_total_bytes", "rx_total_bytes"):
            out[name] = getattr(self, name)
        return out


@attrs.define(slots=True)
class HandleStats:
    """Per-handle counters: compression, crypto, access control, malformed input."""

    tx_uncompressed_packets: int = 0
    tx_compressed_packets: int = 0
    tx_compressed_original_bytes: int = 0
    tx_compressed_size_bytes: int = 0
    tx_unable_to_compress: int = 0
    tx_compress_time: TimingStat = attrs.field(factory=TimingStat)
    rx_compressed_packets: int = 0
    rx_compressed_original_bytes: int = 0
    rx_compressed_size_bytes: int = 0
    rx_failed_to_decompress: int = 0
    rx_decompress_time: TimingStat = attrs.field(factory=TimingStat)
    tx_crypt_packets: int = 0
    tx_crypt_byte_overhead: int = 0
    tx_crypt_time: TimingStat = attrs.field(factory=TimingStat)
    rx_crypt_packets: int = 0
    rx_crypt_time: TimingStat = attrs.field(factory=TimingStat)
    rx_auth_failures: int = 0
    rx_replayed: int = 0
    rx_unverified_instance: int = 0
    rx_clear_rejected: int = 0
    rx_unknown_source: int = 0
    rx_malformed: int = 0
    rx_unsupported_version: int = 0
    rx_link_mismatch: int = 0
    rx_closed_channel: int = 0
    rx_filtered: int = 0
    tx_no_active_links: int = 0
    tx_filtered: int = 0
    defrag_evicted: int = 0
    defrag_expired: int = 0

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, TimingStat):
                prefix = field.name.removesuffix("_time")
                out[f"{prefix}_time_min_us"] = value.min_us
                out[f"{prefix}_time_max_us"] = value.max_us
                out[f"{prefix}_time_ave_us"] = value.ave_us
            else:
                out[field.name] = value
        return out
