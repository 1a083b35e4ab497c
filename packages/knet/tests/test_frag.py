"""Tests for knet._frag: splitting payloads and reassembling fragments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knet._errors import ConfigError, MalformedPacket
from knet._frag import MAX_FRAGMENTS, Reassembler, split

SECOND = 1_000_000_000


def payload(n: int) -> bytes:
    """Return n bytes whose content reveals any misordering."""
    return bytes(i % 251 for i in range(n))


def feed(
    r: Reassembler, seq: int, frags: list[bytes], order: list[int], now: int = 0
) -> list[bytes]:
    """Add fragments in the given order; return every completed payload."""
    done = []
    for i in order:
        out = r.add(seq, i, len(frags), frags[i], now)
        if out is not None:
            done.append(out)
    return done


# --- split -------------------------------------------------------------------------------


def test_split_empty_payload() -> None:
    """An empty payload is one empty fragment."""
    assert split(b"", 100) == [b""]


def test_split_fits_in_one() -> None:
    """A payload no larger than fragment_size is returned as the only fragment."""
    data = payload(100)
    frags = split(data, 100)
    assert frags == [data]
    assert frags[0] is data


def test_split_sizes() -> None:
    """All fragments but the last are fragment_size long and they join to the payload."""
    data = payload(1001)
    frags = split(data, 100)
    assert len(frags) == 11
    assert [len(f) for f in frags] == [100] * 10 + [1]
    assert b"".join(frags) == data
    assert all(type(f) is bytes for f in frags)


def test_split_exact_multiple() -> None:
    """A payload of exactly k * fragment_size gives k full fragments."""
    frags = split(payload(300), 100)
    assert [len(f) for f in frags] == [100, 100, 100]


def test_split_bad_fragment_size() -> None:
    """fragment_size below 1 is a configuration error."""
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="fragment_size"):
            split(b"abc", bad)


def test_split_64k_into_255_fragments() -> None:
    """64 KiB fits in 255 fragments of 258 bytes but not of 257."""
    data = payload(65536)
    frags = split(data, 258)
    assert len(frags) == MAX_FRAGMENTS == 255
    assert b"".join(frags) == data
    with pytest.raises(ConfigError, match="256 fragments"):
        split(data, 257)


def test_split_boundary_counts() -> None:
    """Exactly 255 fragments are allowed; one byte more needs 256 and fails."""
    assert len(split(payload(255 * 10), 10)) == 255
    with pytest.raises(ConfigError):
        split(payload(255 * 10 + 1), 10)
    assert len(split(payload(255), 1)) == 255


# --- Reassembler ----------------------------------------------------------------------------


def test_unfragmented_fast_path() -> None:
    """count == 1 returns the data at once and never creates a buffer."""
    r = Reassembler(max_buffers=1)
    data = payload(1400)
    assert r.add(7, 0, 1, data, 0) is data
    assert r.pending == 0
    # Even with the only buffer in use, unfragmented packets pass and evict nothing.
    assert r.add(8, 0, 2, b"a", 0) is None
    assert r.add(9, 0, 1, b"x", 0) == b"x"
    assert r.pending == 1
    assert r.evicted == 0


def test_unfragmented_too_big() -> None:
    """An unfragmented payload over max_payload is malformed."""
    r = Reassembler(max_payload=10)
    assert r.add(1, 0, 1, b"0123456789", 0) == b"0123456789"
    with pytest.raises(MalformedPacket):
        r.add(1, 0, 1, b"0123456789a", 0)


def test_in_order() -> None:
    """Fragments in order complete on the last one."""
    data = payload(5000)
    frags = split(data, 1000)
    r = Reassembler()
    for i in range(4):
        assert r.add(1, i, 5, frags[i], 0) is None
        assert r.pending == 1
    assert r.add(1, 4, 5, frags[4], 0) == data
    assert r.pending == 0


def test_reversed() -> None:
    """Fragments in reverse order reassemble to the same payload."""
    data = payload(5000)
    frags = split(data, 700)
    r = Reassembler()
    assert feed(r, 3, frags, list(range(len(frags)))[::-1]) == [data]
    assert r.pending == 0


@given(
    size=st.integers(min_value=0, max_value=20000),
    fragment_size=st.integers(min_value=80, max_value=3000),
    data=st.data(),
)
def test_shuffled_with_duplicates(size: int, fragment_size: int, data: st.DataObject) -> None:
    """Any order, with any duplicates, yields the payload exactly once."""
    original = payload(size)
    frags = split(original, fragment_size)
    order = data.draw(st.permutations(range(len(frags))))
    # Duplicates of any fragment but the completing one, interleaved anywhere before it.
    # (An unfragmented packet has no buffer, so its copies are left to the dedup layer.)
    others = order[:-1]
    dups = data.draw(st.lists(st.sampled_from(others), max_size=10)) if others else []
    full = list(others)
    for d in dups:
        full.insert(data.draw(st.integers(0, len(full))), d)
    full.append(order[-1])
    r = Reassembler()
    assert feed(r, 42, frags, full) == [original]
    assert r.pending == 0


def test_duplicates_ignored() -> None:
    """A fragment received twice (e.g. over two links) is ignored the second time."""
    r = Reassembler()
    assert r.add(1, 0, 3, b"aa", 0) is None
    assert r.add(1, 0, 3, b"XX", 0) is None  # the first copy wins
    assert r.add(1, 2, 3, b"cc", 0) is None
    assert r.add(1, 2, 3, b"cc", 0) is None
    assert r.add(1, 1, 3, b"bb", 0) == b"aabbcc"


def test_interleaved_packets() -> None:
    """Fragments of several packets interleaved reassemble independently."""
    r = Reassembler()
    datas = {seq: payload(3001 + seq) for seq in range(5)}
    frags = {seq: split(d, 1000) for seq, d in datas.items()}
    done = {}
    for i in range(4):
        for seq in range(5):
            out = r.add(seq, i, 4, frags[seq][i], 0)
            if out is not None:
                done[seq] = out
    assert done == datas
    assert r.pending == 0


def test_eviction_of_oldest() -> None:
    """Opening more packets than max_buffers evicts the oldest, counted in evicted."""
    r = Reassembler(max_buffers=4)
    for seq in range(10):
        assert r.add(seq, 0, 2, b"a", seq) is None
    assert r.pending == 4
    assert r.evicted == 6
    # Packets 0..5 are gone: their second half starts a fresh buffer.
    assert r.add(9, 1, 2, b"b", 10) == b"ab"
    assert r.add(6, 1, 2, b"b", 10) == b"ab"
    assert r.add(0, 1, 2, b"b", 10) is None
    assert r.evicted == 6  # two buffers were freed, so no eviction was needed
    assert r.pending == 3


def test_eviction_by_first_seen_not_last_touched() -> None:
    """A buffer that keeps receiving fragments is still evicted first if it is oldest."""
    r = Reassembler(max_buffers=2)
    r.add(1, 0, 3, b"a", 0)
    r.add(2, 0, 3, b"a", 1)
    r.add(1, 1, 3, b"b", 2)  # touch the oldest again
    r.add(3, 0, 3, b"a", 3)  # evicts 1, not 2
    assert r.evicted == 1
    assert r.add(2, 1, 3, b"b", 4) is None
    assert r.add(2, 2, 3, b"c", 4) == b"abc"
    assert r.add(1, 2, 3, b"c", 4) is None  # packet 1 was lost


def test_many_interleaved_packets_with_eviction() -> None:
    """More round-robin packets than buffers thrash: memory stays bounded, evictions counted."""
    r = Reassembler(max_buffers=8)
    frags = {seq: split(payload(401 + seq), 100) for seq in range(20)}
    done = []
    for i in range(5):
        for seq in range(20):
            out = r.add(seq, i, 5, frags[seq][i], 0)
            if out is not None:
                done.append(seq)
    # Every new fragment evicts the oldest buffer: nothing ever completes.
    assert done == []
    assert r.evicted == 100 - 8
    assert r.pending == 8


def test_timeout_expiry() -> None:
    """Buffers older than timeout_ns are dropped by expire() and counted."""
    r = Reassembler(timeout_ns=2 * SECOND)
    r.add(1, 0, 2, b"a", 0)
    r.add(2, 0, 2, b"a", SECOND)
    assert r.expire(2 * SECOND) == 0  # exactly timeout_ns old is not yet older
    assert r.expire(2 * SECOND + 1) == 1
    assert r.pending == 1
    assert r.expired == 1
    assert r.expire(10 * SECOND) == 1
    assert r.pending == 0
    assert r.expired == 2


def test_lazy_expiry_in_add() -> None:
    """add() drops stale buffers, so a late fragment of an expired packet starts over."""
    r = Reassembler(timeout_ns=SECOND)
    r.add(1, 0, 2, b"a", 0)
    assert r.add(1, 1, 2, b"b", 3 * SECOND) is None
    assert r.expired == 1
    assert r.pending == 1
    assert r.add(1, 0, 2, b"a", 3 * SECOND) == b"ab"


def test_reset() -> None:
    """reset() drops every buffer but keeps the counters."""
    r = Reassembler(max_buffers=1)
    r.add(1, 0, 2, b"a", 0)
    r.add(2, 0, 2, b"a", 0)
    r.reset()
    assert r.pending == 0
    assert r.evicted == 1
    assert r.add(1, 1, 2, b"b", 0) is None


@pytest.mark.parametrize(
    ("index", "count"),
    [(0, 0), (2, 2), (5, 3), (-1, 3), (0, 256), (255, 255), (1, 1)],
)
def test_malformed_index_count(index: int, count: int) -> None:
    """index >= count, count == 0 or count > 255 raise MalformedPacket and drop the buffer."""
    r = Reassembler()
    r.add(1, 0, 3, b"a", 0)
    with pytest.raises(MalformedPacket):
        r.add(1, index, count, b"x", 0)
    assert r.pending == 0


def test_count_mismatch() -> None:
    """A fragment whose count differs from the buffer's discards that buffer."""
    r = Reassembler()
    r.add(1, 0, 3, b"a", 0)
    r.add(2, 0, 3, b"a", 0)
    with pytest.raises(MalformedPacket, match="count"):
        r.add(1, 1, 4, b"b", 0)
    assert r.pending == 1
    assert r.add(1, 1, 3, b"b", 0) is None  # packet 1 starts over


def test_total_size_over_max_payload() -> None:
    """A packet whose fragments add up to more than max_payload is malformed."""
    r = Reassembler(max_payload=10)
    r.add(1, 0, 3, b"12345", 0)
    assert r.add(1, 1, 3, b"12345", 0) is None  # exactly 10 so far
    with pytest.raises(MalformedPacket, match="size"):
        r.add(1, 2, 3, b"1", 0)
    assert r.pending == 0


def test_exact_max_payload() -> None:
    """A packet of exactly max_payload bytes reassembles."""
    r = Reassembler(max_payload=65536 + 1024)
    data = payload(65536 + 1024)
    frags = split(data, 300)
    assert len(frags) == 222
    assert feed(r, 1, frags, list(range(len(frags)))) == [data]


def test_max_fragments_64k() -> None:
    """A 64 KiB payload split into 255 fragments reassembles in any order."""
    data = payload(65536)
    frags = split(data, 258)
    assert len(frags) == 255
    r = Reassembler()
    order = list(range(0, 255, 2)) + list(range(1, 255, 2))
    assert feed(r, 9, frags, order) == [data]


def test_empty_fragments() -> None:
    """Empty fragments are valid data, not markers of absence."""
    r = Reassembler()
    assert r.add(1, 1, 2, b"", 0) is None
    assert r.add(1, 1, 2, b"", 0) is None
    assert r.add(1, 0, 2, b"", 0) == b""


def test_bad_config() -> None:
    """Non-positive limits are configuration errors."""
    for kwargs in ({"max_buffers": 0}, {"max_payload": 0}, {"timeout_ns": 0}):
        with pytest.raises(ConfigError):
            Reassembler(**kwargs)
