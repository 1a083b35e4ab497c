"""Tests for knet._dedup: the sliding duplicate-suppression window over u32 sequence numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knet._dedup import MAX_WINDOW, DedupWindow
from knet._errors import ConfigError

U32 = 1 << 32
HALF = 1 << 31


class ReferenceWindow:
    """Obviously-correct model: every marked seq in a set, plus the highest seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.marked: set[int] = set()
        self.high: int | None = None

    def is_duplicate(self, seq: int) -> bool:
        if self.high is None:
            return False
        if seq in self.marked:
            return True
        behind = (self.high - seq) % U32
        return self.size <= behind <= HALF

    def mark(self, seq: int) -> None:
        if self.high is None or 0 < (seq - self.high) % U32 < HALF:
            self.high = seq
        self.marked.add(seq)


def test_nothing_is_duplicate_before_first_mark() -> None:
    """A fresh window reports every sequence number as new."""
    w = DedupWindow()
    assert not any(w.is_duplicate(s) for s in (0, 1, 4096, HALF, U32 - 1))


def test_duplicate_after_mark() -> None:
    """A marked seq is a duplicate; its neighbours are not."""
    w = DedupWindow()
    w.mark(100)
    assert w.is_duplicate(100)
    assert not w.is_duplicate(99)
    assert not w.is_duplicate(101)


def test_is_duplicate_does_not_mutate() -> None:
    """Querying never marks anything."""
    w = DedupWindow()
    w.mark(10)
    for _ in range(3):
        assert not w.is_duplicate(11)
        assert not w.is_duplicate(9)


def test_reorder_within_window() -> None:
    """Seqs arriving out of order inside the window are each delivered once."""
    w = DedupWindow(size=64)
    arrivals = [10, 12, 11, 15, 13, 14, 12, 10, 15, 9]
    delivered = []
    for s in arrivals:
        if not w.is_duplicate(s):
            w.mark(s)
            delivered.append(s)
    assert delivered == [10, 12, 11, 15, 13, 14, 9]


def test_too_old() -> None:
    """A seq size or more behind the head is a duplicate even if never marked."""
    w = DedupWindow(size=16)
    w.mark(100)
    assert not w.is_duplicate(85)  # 15 behind: inside the window
    assert w.is_duplicate(84)  # 16 behind: too old
    w.mark(84)  # cannot be recorded, but stays a duplicate
    assert w.is_duplicate(84)
    assert not w.is_duplicate(85)


def test_window_slides() -> None:
    """Marks remain duplicates while the head moves forward, until they are too old."""
    w = DedupWindow(size=8)
    w.mark(0)
    w.mark(3)
    for head in range(4, 11):
        w.mark(head)
        assert w.is_duplicate(3)
    assert w.is_duplicate(2)  # 8 behind the head (10): too old
    assert not w.is_duplicate(11)


def test_window_boundary_exact() -> None:
    """Behind by size - 1 is remembered; behind by size is too old."""
    w = DedupWindow(size=8)
    w.mark(10)
    assert not w.is_duplicate(3)  # 7 behind, never marked
    assert w.is_duplicate(2)  # 8 behind
    w.mark(3)
    assert w.is_duplicate(3)
    w.mark(11)  # 3 is now 8 behind
    assert w.is_duplicate(3)
    assert not w.is_duplicate(4)


def test_jump_by_size_minus_one_keeps_old_head() -> None:
    """A jump of size - 1 keeps the old head as the oldest remembered bit."""
    w = DedupWindow(size=8)
    w.mark(100)
    w.mark(107)
    assert w.is_duplicate(100)
    assert not w.is_duplicate(101)
    w.mark(101)
    assert w.is_duplicate(101)


def test_large_jump_clears_window() -> None:
    """A jump ahead by more than size forgets old marks; new seqs below the head are new."""
    w = DedupWindow(size=4096)
    for s in range(100):
        w.mark(s)
    w.mark(10_000)
    assert not w.is_duplicate(9_000)
    assert w.is_duplicate(5_000)  # too old
    assert w.is_duplicate(50)  # too old, formerly marked
    w.mark(9_000)
    assert w.is_duplicate(9_000)


def test_wrap_around() -> None:
    """Seqs crossing 2**32 keep their order: 0 is just after 2**32 - 1."""
    w = DedupWindow(size=16)
    w.mark(U32 - 2)
    w.mark(U32 - 1)
    assert not w.is_duplicate(0)
    w.mark(0)
    w.mark(1)
    assert w.is_duplicate(U32 - 1)
    assert w.is_duplicate(U32 - 2)
    assert not w.is_duplicate(U32 - 3)
    assert w.is_duplicate(U32 - 15)  # 16 behind 1: too old
    assert not w.is_duplicate(2)


def test_wrap_with_reorder() -> None:
    """A late seq from before the wrap is still recognised after it."""
    w = DedupWindow(size=64)
    w.mark(U32 - 10)
    w.mark(5)  # 15 ahead across the wrap
    assert not w.is_duplicate(U32 - 3)
    w.mark(U32 - 3)
    assert w.is_duplicate(U32 - 3)
    assert w.is_duplicate(U32 - 10)


def test_far_ahead_is_behind() -> None:
    """More than 2**31 ahead is behind in serial arithmetic: too old, and mark ignores it."""
    w = DedupWindow()
    w.mark(0)
    assert not w.is_duplicate(HALF - 1)  # the furthest seq still ahead
    assert w.is_duplicate(HALF)  # exactly half-way counts as behind
    assert w.is_duplicate(HALF + 1)
    w.mark(HALF + 1)  # ignored: the head stays at 0
    assert not w.is_duplicate(1)
    assert w.is_duplicate(0)


def test_jump_of_almost_half() -> None:
    """A jump just below 2**31 moves the head; the old head becomes too old."""
    w = DedupWindow()
    w.mark(7)
    w.mark(7 + HALF - 1)
    assert w.is_duplicate(7 + HALF - 1)
    assert w.is_duplicate(7)
    assert not w.is_duplicate(7 + HALF)


def test_reset() -> None:
    """reset() forgets everything, including the head."""
    w = DedupWindow()
    w.mark(5)
    w.reset()
    assert not w.is_duplicate(5)
    assert not w.is_duplicate(5 + HALF)
    w.mark(5 + HALF)
    assert w.is_duplicate(5 + HALF)


def test_size_one() -> None:
    """With size 1 only the head itself is remembered."""
    w = DedupWindow(size=1)
    w.mark(10)
    assert w.is_duplicate(10)
    assert w.is_duplicate(9)
    assert not w.is_duplicate(11)


def test_bad_size() -> None:
    """Sizes outside 1..MAX_WINDOW are configuration errors."""
    for bad in (0, -1, MAX_WINDOW + 1):
        with pytest.raises(ConfigError, match="size"):
            DedupWindow(size=bad)
    assert DedupWindow(size=MAX_WINDOW).size == MAX_WINDOW


# Every generated seq lies within 2**30 of the base, so any two compare consistently in
# serial arithmetic (nothing ever looks 2**31 ahead of something marked earlier).
bases = st.integers(0, U32 - 1) | st.sampled_from([0, U32 - 1, U32 - 50, HALF - 20])
offsets = st.integers(0, 300) | st.integers(0, (1 << 30) - 1)


@given(
    size=st.integers(1, 128),
    base=bases,
    ops=st.lists(st.tuples(st.booleans(), offsets), max_size=300),
)
def test_model_check_against_reference(size: int, base: int, ops: list[tuple[bool, int]]) -> None:
    """For any marks and queries the window answers exactly like a set-based reference."""
    w = DedupWindow(size=size)
    ref = ReferenceWindow(size)
    for is_mark, off in ops:
        seq = (base + off) % U32
        assert w.is_duplicate(seq) == ref.is_duplicate(seq), (seq, sorted(ref.marked))
        if is_mark:
            w.mark(seq)
            ref.mark(seq)
            assert w.is_duplicate(seq)


@given(
    size=st.integers(1, 128),
    base=bases,
    arrivals=st.lists(st.integers(0, 400), max_size=400),
)
def test_each_seq_delivered_at_most_once(size: int, base: int, arrivals: list[int]) -> None:
    """When the caller marks every non-duplicate, no seq is ever delivered twice."""
    w = DedupWindow(size=size)
    delivered: set[int] = set()
    for off in arrivals:
        seq = (base + off) % U32
        if not w.is_duplicate(seq):
            assert seq not in delivered
            delivered.add(seq)
            w.mark(seq)


@given(base=bases, gaps=st.lists(st.integers(1, 4), min_size=1, max_size=200))
def test_in_order_stream_with_copies(base: int, gaps: list[int]) -> None:
    """A forward stream where every packet arrives twice (two links) delivers each once."""
    w = DedupWindow(size=64)
    seq = base
    delivered = 0
    for gap in gaps:
        seq = (seq + gap) % U32
        for _copy in range(2):
            if not w.is_duplicate(seq):
                w.mark(seq)
                delivered += 1
    assert delivered == len(gaps)
