"""The SHM rings of :mod:`corosync_executive._ipc_shm` (reference/libqb-ipc.md section 3):
file layout, chunk format, wrap-around, full rings, the glibc semaphore, hostile chunks.
The real libqb client against these rings is tested in test_ipc_real_tool.py."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync_executive._ipc_server import IpcServer, IpcServerError
from corosync_executive._ipc_shm import HEADER_SIZE, ShmRing, ShmRingError, data_file_size

COMMITTED = 0xA1A1A1A1
CONSUMED = 0xD0D0D0D0


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[ShmRing]:
    made = ShmRing(str(tmp_path / "qb-request-cmap"), 5000, uid=os.getuid(), gid=os.getgid())
    yield made
    made.close()


def _map(path: str) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def test_data_file_size_matches_libqb() -> None:
    """roundup(max_msg_size + 13, page): 1 MiB gives 1052672 bytes."""
    assert data_file_size(1048576) == 1052672
    assert data_file_size(5000) == 8192


def test_ring_files_and_header_layout(ring: ShmRing) -> None:
    """Both files exist with mode 0600 and the header holds sizes, paths and ref count 1."""
    assert os.path.getsize(ring.header_path) == HEADER_SIZE == 8252
    assert os.path.getsize(ring.data_path) == 8192
    assert os.stat(ring.data_path).st_mode & 0o777 == 0o600
    header = _map(ring.header_path)
    try:
        write_pt, read_pt, words = struct.unpack_from("=III", header, 0)
        assert (write_pt, read_pt, words) == (0, 0, 2048)
        assert header[12:4108].rstrip(b"\0") == ring.header_path.encode()
        assert header[4108:8204].rstrip(b"\0") == ring.data_path.encode()
        assert struct.unpack_from("=i", header, 8204)[0] == 1
    finally:
        header.close()


def test_write_then_read_round_trips_across_the_wrap(ring: ShmRing) -> None:
    """Chunks written and consumed in turn come back intact, also split at the file end."""
    for i in range(12):
        payload = bytes([i]) * (1001 + i)
        assert ring.write(payload)
        assert ring.semaphore_value() == 1
        assert ring.read() == payload
        assert ring.semaphore_value() == 0
    assert ring.read() is None


def test_chunk_format_in_the_data_file(ring: ShmRing) -> None:
    """A written chunk is length, committed magic, payload; a consumed one is zeroed."""
    assert ring.write(b"hello")
    data = _map(ring.data_path)
    try:
        assert struct.unpack_from("=II", data, 0) == (5, COMMITTED)
        assert data[8:13] == b"hello"
        header = _map(ring.header_path)
        assert struct.unpack_from("=I", header, 0)[0] == 2 + 2  # next chunk at word 4
        assert ring.read() == b"hello"
        assert struct.unpack_from("=II", data, 0) == (0, CONSUMED)
        assert struct.unpack_from("=I", header, 4)[0] == 4
        header.close()
    finally:
        data.close()


def test_full_ring_refuses_writes_until_read(ring: ShmRing) -> None:
    """A write that does not fit returns False and changes nothing; reading makes room."""
    assert ring.write(b"a" * 4000)
    assert ring.write(b"b" * 4000)
    assert not ring.write(b"c" * 4000)
    assert ring.semaphore_value() == 2
    assert ring.read() == b"a" * 4000
    assert ring.write(b"c" * 4000)
    assert ring.read() == b"b" * 4000
    assert ring.read() == b"c" * 4000


def test_a_chunk_committed_but_not_yet_posted_waits_for_its_post(ring: ShmRing) -> None:
    """A writer commits a chunk, then posts. read() in between leaves the chunk alone:
    consuming it would leave its count behind, and the writer's free-space check would
    then find the empty ring "full" for ever (write pointer = read pointer, count > 0)."""
    header = _map(ring.header_path)
    data = _map(ring.data_path)
    try:
        struct.pack_into("=II", data, 0, 3, COMMITTED)
        data[8:11] = b"abc"
        struct.pack_into("=I", header, 0, 2 + 1)  # the writer's pointer, past the chunk
        assert ring.read() is None  # committed, not posted yet
        ring.post()
        assert ring.read() == b"abc"
        assert ring.semaphore_value() == 0
        assert ring.free_words() == ring.words  # empty, not full
        assert ring.write(b"next")
    finally:
        header.close()
        data.close()


def test_a_post_without_a_chunk_keeps_its_count(ring: ShmRing) -> None:
    """A count with no committed chunk behind it is left for the chunk that follows."""
    ring.post()
    assert ring.read() is None
    assert ring.semaphore_value() == 1


def test_close_removes_the_files(tmp_path: Path) -> None:
    """close() unlinks both files and may be called twice."""
    made = ShmRing(str(tmp_path / "r"), 100, uid=os.getuid(), gid=os.getgid())
    made.close()
    made.close()
    assert os.listdir(tmp_path) == []
    assert made.read() is None
    assert not made.write(b"x")


def test_existing_files_are_not_reused(tmp_path: Path) -> None:
    """Creation is O_EXCL: a ring name that exists is an error, and nothing is left."""
    (tmp_path / "r-data").write_bytes(b"")
    with pytest.raises(FileExistsError):
        ShmRing(str(tmp_path / "r"), 100, uid=os.getuid(), gid=os.getgid())
    assert os.listdir(tmp_path) == ["r-data"]


def test_too_long_ring_name_is_refused(tmp_path: Path) -> None:
    """Paths that do not fit the header's 4096-byte fields are refused."""
    with pytest.raises(ShmRingError, match="too long"):
        ShmRing(str(tmp_path / ("x" * 4100)), 100, uid=0, gid=0)


def test_unknown_transport_is_refused() -> None:
    """IpcServer takes 'shm' or 'socket' only."""
    with pytest.raises(IpcServerError, match="transport"):
        IpcServer("cmap", _never, transport="mq")  # type: ignore[arg-type]


async def _never(*_: object) -> bytes | None:
    raise AssertionError


@settings(max_examples=300, deadline=None)
@given(
    read_pt=st.integers(0, 2**32 - 1),
    length=st.integers(0, 2**32 - 1),
    magic=st.sampled_from([COMMITTED, CONSUMED, 0, 0xA110CED0, 0xFFFFFFFF]),
)
def test_hostile_chunks_never_crash(read_pt: int, length: int, magic: int) -> None:
    """Whatever a client writes, read() returns a chunk, None, or raises ShmRingError."""
    directory = Path(f"/dev/shm/pytest-shm-{os.getpid()}")
    directory.mkdir(exist_ok=True)
    made = ShmRing(str(directory / "r"), 5000, uid=os.getuid(), gid=os.getgid())
    try:
        header = _map(made.header_path)
        data = _map(made.data_path)
        words = made.words
        struct.pack_into("=I", header, 4, read_pt)
        slot = read_pt % words
        struct.pack_into("=I", data, slot * 4, length)
        struct.pack_into("=I", data, ((slot + 1) % words) * 4, magic)
        header.close()
        data.close()
        made.post()  # as the writer does after committing, so read() looks at the chunk
        try:
            got = made.read()
        except ShmRingError:
            return
        if got is not None:
            assert magic == COMMITTED
            assert read_pt < words
            assert len(got) == length <= 5000
    finally:
        made.close()
        directory.rmdir()


def test_truncated_files_are_refused_not_touched(ring: ShmRing) -> None:
    """A client shrinking a ring's files makes read/write raise instead of SIGBUS."""
    assert ring.files_intact()
    assert ring.write(b"x")
    os.truncate(ring.header_path, 8248)  # what libqb clients do to response/event rings
    assert ring.read() == b"x"
    os.truncate(ring.data_path, 4096)
    assert not ring.files_intact()
    with pytest.raises(ShmRingError, match="truncated"):
        ring.read()
    with pytest.raises(ShmRingError, match="truncated"):
        ring.write(b"y")
