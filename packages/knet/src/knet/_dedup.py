"""Duplicate suppression for data packets received over several links (sans-IO).

With the active and round-robin link policies the same data packet, identified by the
sender's 32-bit sequence number, can arrive over more than one link. A
:class:`DedupWindow` per remote host remembers the last ``size`` sequence numbers at
or below the highest one marked, so each packet is delivered once.

Sequence numbers wrap at 2**32 and are compared with serial-number arithmetic
(RFC 1982): ``seq`` is ahead of ``head`` when ``0 < (seq - head) mod 2**32 < 2**31``
and behind otherwise, so exactly 2**31 away counts as behind. Anything behind by
``size`` or more is too old to tell apart and is reported as a duplicate.
"""

from __future__ import annotations

from knet._errors import ConfigError

__all__ = ["MAX_WINDOW", "DedupWindow"]

_MASK32 = 0xFFFF_FFFF
_HALF = 1 << 31

#: Largest window: every forward mark shifts a ``size``-bit int, so cost grows with it.
MAX_WINDOW = 1 << 16


class DedupWindow:
    """Remembers which of the latest ``size`` sequence numbers were delivered.

    Bit ``i`` of the bitmap is set when ``head - i`` has been marked; bit 0 is the
    head itself, the highest sequence number marked so far.
    """

    __slots__ = ("_bits", "_head", "_mask", "size")

    def __init__(self, size: int = 4096) -> None:
        if not 1 <= size <= MAX_WINDOW:
            raise ConfigError(f"dedup window size must be in 1..{MAX_WINDOW}, got {size}")
        self.size = size
        self._mask = (1 << size) - 1
        self._head: int | None = None
        self._bits = 0

    def is_duplicate(self, seq: int) -> bool:
        """True if ``seq`` was already marked or is too old to tell; never mutates."""
        head = self._head
        if head is None:
            return False
        behind = (head - seq) & _MASK32
        if behind > _HALF:
            return False  # ahead of head: new
        if behind >= self.size:
            return True  # too old to remember
        return bool(self._bits >> behind & 1)

    def mark(self, seq: int) -> None:
        """Record ``seq`` as delivered, sliding the window forward if it is ahead."""
        head = self._head
        if head is None:
            self._head = seq & _MASK32
            self._bits = 1
            return
        ahead = (seq - head) & _MASK32
        if 0 < ahead < _HALF:
            # Slide forward; a jump past the whole window forgets everything.
            self._bits = (self._bits << ahead | 1) & self._mask if ahead < self.size else 1
            self._head = seq & _MASK32
            return
        behind = (head - seq) & _MASK32
        if behind < self.size:
            self._bits |= 1 << behind
        # Older than the window: nothing to record, is_duplicate() already says True.

    def mark_new(self, seq: int) -> bool:
        """``is_duplicate`` and ``mark`` in one step (the per-packet path): False for a
        duplicate or too old ``seq`` (nothing changes), True once a new one is marked."""
        head = self._head
        if head is None:
            self._head = seq & _MASK32
            self._bits = 1
            return True
        ahead = (seq - head) & _MASK32
        if 0 < ahead < _HALF:
            self._bits = (self._bits << ahead | 1) & self._mask if ahead < self.size else 1
            self._head = seq & _MASK32
            return True
        behind = (head - seq) & _MASK32
        if behind >= self.size:
            return False
        bit = 1 << behind
        if self._bits & bit:
            return False
        self._bits |= bit
        return True

    def reset(self) -> None:
        """Forget everything; the next sequence number is new whatever it is."""
        self._head = None
        self._bits = 0
