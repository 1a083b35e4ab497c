"""Fragmentation and reassembly of data packets (sans-IO).

A payload of up to 64 KiB is split into at most :data:`MAX_FRAGMENTS` fragments of at
most ``fragment_size`` bytes; every fragment but the last is exactly ``fragment_size``
long. The receiver keeps one :class:`Reassembler` per remote host and feeds it each
fragment with the packet's sequence number, fragment index and fragment count.

With several active links the same fragment may arrive more than once; duplicates are
ignored. A late copy arriving after its packet completed opens a new buffer that
never completes and is expired or evicted later, so callers that receive over several
links should drop already-delivered sequence numbers (``knet._dedup``) before calling
:meth:`Reassembler.add`.
"""

from __future__ import annotations

import attrs

from knet._errors import ConfigError, MalformedPacket

__all__ = ["MAX_FRAGMENTS", "Reassembler", "split"]

#: Fragment index and count are u8 on the wire.
MAX_FRAGMENTS = 255


def split(payload: bytes, fragment_size: int) -> list[bytes]:
    """Split ``payload`` into fragments of at most ``fragment_size`` bytes.

    Always returns at least one fragment (``[b""]`` for an empty payload). Raises
    :class:`ConfigError` if ``fragment_size`` < 1 or more than :data:`MAX_FRAGMENTS`
    fragments would be needed.
    """
    if fragment_size < 1:
        raise ConfigError(f"fragment_size must be >= 1, got {fragment_size}")
    size = len(payload)
    if size <= fragment_size:
        return [payload]  # the common case: no copy
    count = -(-size // fragment_size)
    if count > MAX_FRAGMENTS:
        raise ConfigError(
            f"payload of {size} bytes needs {count} fragments of {fragment_size} bytes;"
            f" at most {MAX_FRAGMENTS} are allowed"
        )
    return [payload[i : i + fragment_size] for i in range(0, size, fragment_size)]


@attrs.define(slots=True)
class _Buffer:
    """Fragments received so far for one packet."""

    count: int
    first_seen: int
    parts: list[bytes | None]
    missing: int
    size: int = 0


class Reassembler:
    """Reassembles fragmented packets from one remote host.

    At most ``max_buffers`` packets are in progress at once; a new one evicts the
    oldest (counted in :attr:`evicted`). Buffers older than ``timeout_ns`` are dropped
    (counted in :attr:`expired`). ``now`` is a monotonic clock in nanoseconds.
    """

    __slots__ = ("_buffers", "evicted", "expired", "max_buffers", "max_payload", "timeout_ns")

    def __init__(
        self,
        *,
        max_buffers: int = 32,
        max_payload: int = 65536 + 1024,
        timeout_ns: int = 2_000_000_000,
    ) -> None:
        if max_buffers < 1:
            raise ConfigError(f"max_buffers must be >= 1, got {max_buffers}")
        if max_payload < 1:
            raise ConfigError(f"max_payload must be >= 1, got {max_payload}")
        if timeout_ns < 1:
            raise ConfigError(f"timeout_ns must be >= 1, got {timeout_ns}")
        self.max_buffers = max_buffers
        self.max_payload = max_payload
        self.timeout_ns = timeout_ns
        #: Buffers dropped to make room for a newer packet.
        self.evicted = 0
        #: Buffers dropped because they were older than ``timeout_ns``.
        self.expired = 0
        # Insertion order is first-seen order, so the oldest buffer is always first.
        self._buffers: dict[int, _Buffer] = {}

    @property
    def pending(self) -> int:
        """Number of packets partially received."""
        return len(self._buffers)

    def add(self, seq: int, index: int, count: int, data: bytes, now: int) -> bytes | None:
        """Add fragment ``index`` of ``count`` of packet ``seq``.

        Returns the whole payload once every fragment has arrived, else ``None``
        (also for a duplicate fragment). Raises :class:`MalformedPacket` for
        inconsistent input and discards that packet's buffer.
        """
        if count == 1 and index == 0:
            # Fast path: an unfragmented packet never touches the buffers.
            if len(data) > self.max_payload:
                raise MalformedPacket(f"payload of {len(data)} bytes exceeds {self.max_payload}")
            return data
        buffers = self._buffers
        if not 0 <= index < count <= MAX_FRAGMENTS:
            buffers.pop(seq, None)
            raise MalformedPacket(f"bad fragment {index} of {count} for packet {seq}")
        if buffers:
            self.expire(now)
        buf = buffers.get(seq)
        if buf is None:
            if len(buffers) >= self.max_buffers:
                del buffers[next(iter(buffers))]
                self.evicted += 1
            buf = buffers[seq] = _Buffer(count, now, [None] * count, count)
        elif buf.count != count:
            del buffers[seq]
            raise MalformedPacket(
                f"packet {seq}: fragment count {count} differs from earlier {buf.count}"
            )
        if buf.parts[index] is not None:
            return None  # duplicate, e.g. the same fragment over a second link
        size = buf.size + len(data)
        if size > self.max_payload:
            del buffers[seq]
            raise MalformedPacket(f"packet {seq}: reassembled size exceeds {self.max_payload}")
        buf.parts[index] = data
        buf.size = size
        buf.missing -= 1
        if buf.missing:
            return None
        del buffers[seq]
        return b"".join(buf.parts)  # type: ignore[arg-type]  # no None left

    def expire(self, now: int) -> int:
        """Drop buffers first seen more than ``timeout_ns`` before ``now``; return how many."""
        buffers = self._buffers
        deadline = now - self.timeout_ns
        dropped = 0
        # Oldest first: stop at the first buffer that is still young enough.
        while buffers:
            seq = next(iter(buffers))
            if buffers[seq].first_seen >= deadline:
                break
            del buffers[seq]
            dropped += 1
        self.expired += dropped
        return dropped

    def reset(self) -> None:
        """Drop every partial packet (counters are kept)."""
        self._buffers.clear()
