"""libqb's SHM transport rings, both sides (reference/libqb-ipc.md section 3).

A ring is two files in ``/dev/shm``: ``<name>-header`` (read/write pointers, paths,
ref count, a process-shared glibc semaphore counting committed chunks, a flow-control
int32) and ``<name>-data`` (the chunks, addressed in 32-bit words). The server creates
both (:meth:`ShmRing.create`, also plain ``ShmRing(...)``); the client opens them by the
names in the connection response (:meth:`ShmRing.open`). libqb maps the data file twice
back to back; we split copies at the end of the file instead.

The semaphore is glibc's own ``sem_t`` driven through ctypes, so the other side (a libqb
client or corosync linked against glibc) sees exactly what libqb would leave there.
ctypes releases the GIL while a thread sleeps in :meth:`ShmRing.wait`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import struct
import time
from typing import Final

import attrs

from corosync._errors import MalformedMessage

__all__ = [
    "SHM_FLOW_CONTROL_OFFSET",
    "SHM_RING_BASE_HEADER_SIZE",
    "SHM_RING_HEADER_SIZE",
    "RingHeader",
    "ShmRing",
    "ShmRingError",
    "decode_ring_header_untrusted",
    "shm_data_file_size",
]

_WRITE_PT = 0
_READ_PT = 4
_WORD_SIZE = 8
_HDR_PATH = 12
_DATA_PATH = 4108
_PATH_MAX = 4096
_REF_COUNT = 8204
_SEM = 8208
SHM_FLOW_CONTROL_OFFSET: Final = 8240
"""Offset of the request ring's flow-control int32 (libqb's 4 bytes of user data)."""
SHM_RING_BASE_HEADER_SIZE: Final = 8248
"""A header without user data: libqb clients truncate response and event headers to it."""
SHM_RING_HEADER_SIZE: Final = 8252
"""Base 8248 plus libqb's 4 bytes of user data (flow control), as the server creates it."""
_CHUNK_MARGIN = 13  # two header words plus one byte, as libqb sizes the data file

_MAGIC_COMMITTED: Final = 0xA1A1A1A1
_MAGIC_ALLOCATED: Final = 0xA110CED0
_MAGIC_CONSUMED: Final = 0xD0D0D0D0

_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_HEADER_START = struct.Struct(f"=III{_PATH_MAX}s{_PATH_MAX}si")  # up to ref_count
assert _HEADER_START.size == _REF_COUNT + 4

_CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.sem_init.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint)
_libc.sem_post.argtypes = (ctypes.c_void_p,)
_libc.sem_trywait.argtypes = (ctypes.c_void_p,)
_libc.sem_destroy.argtypes = (ctypes.c_void_p,)
_libc.sem_getvalue.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
# sem_clockwait (glibc 2.30+) takes a monotonic deadline, immune to clock changes;
# sem_timedwait (what libqb uses) takes a CLOCK_REALTIME one.
_sem_clockwait = getattr(_libc, "sem_clockwait", None)
if _sem_clockwait is not None:
    _sem_clockwait.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Timespec))
_libc.sem_timedwait.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Timespec))


class ShmRingError(Exception):
    """A ring cannot be created or opened, or the other side wrote something no libqb
    peer writes (or shrank the files)."""


def shm_data_file_size(max_msg_size: int) -> int:
    """The data file's size as libqb computes it from ``max_msg_size``."""
    page = mmap.PAGESIZE
    return (max_msg_size + _CHUNK_MARGIN + page - 1) // page * page


@attrs.frozen
class RingHeader:
    """The fixed fields of a ring's header file as its creator wrote them."""

    write_pt: int
    read_pt: int
    word_size: int
    hdr_path: str
    data_path: str
    ref_count: int


def _c_string(field: str, raw: bytes) -> str:
    end = raw.find(b"\0")
    if end < 0:
        raise MalformedMessage(f"ring header {field} is not NUL-terminated")
    return os.fsdecode(raw[:end])


def decode_ring_header_untrusted(data: bytes) -> RingHeader:
    """The header fields of a ring the other side created (the first 8208 bytes or
    more of ``<ring>-header``)."""
    if len(data) < _HEADER_START.size:
        raise MalformedMessage(
            f"ring header of {len(data)} bytes is shorter than {_HEADER_START.size}"
        )
    write_pt, read_pt, word_size, hdr_path, data_path, ref_count = _HEADER_START.unpack_from(data)
    return RingHeader(
        write_pt=write_pt,
        read_pt=read_pt,
        word_size=word_size,
        hdr_path=_c_string("hdr_path", hdr_path),
        data_path=_c_string("data_path", data_path),
        ref_count=ref_count,
    )


def _create_file(path: str, size: int, uid: int, gid: int) -> tuple[int, mmap.mmap]:
    """The new file's descriptor (kept to watch its size) and its shared mapping."""
    flags = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_RDWR | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.ftruncate(fd, size)
        with contextlib.suppress(OSError):
            os.fchown(fd, uid, gid)  # non-root clients (Pacemaker) must open it
        os.fchmod(fd, 0o600)
        return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _open_file(path: str, size: int) -> tuple[int, mmap.mmap]:
    """An existing file, grown to ``size`` if shorter (libqb's client ftruncates it to
    the size it computes; we never shrink it, which would SIGBUS the creator)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise


class ShmRing:
    """One ring. The reading side consumes chunks with :meth:`read` (or :meth:`wait`
    then :meth:`read_waited`), the writing side commits them with :meth:`write`.

    ``ShmRing(name, max_msg_size, uid=, gid=)`` creates the files (server side);
    :meth:`open` maps files the other side created (client side).
    """

    name: str
    header_path: str
    data_path: str
    size: int
    words: int
    max_msg_size: int
    created: bool

    def __init__(self, name: str, max_msg_size: int, *, uid: int, gid: int) -> None:
        self.created = True
        self._guard = True  # the server does not trust its clients' hands on the files
        self._closed = True
        self._setup_paths(name, f"{name}-data", max_msg_size)
        self._header_fd, self._header = _create_file(
            self.header_path, SHM_RING_HEADER_SIZE, uid, gid
        )
        try:
            self._data_fd, self._data = _create_file(self.data_path, self.size, uid, gid)
        except BaseException:
            self._header.close()
            os.close(self._header_fd)
            os.unlink(self.header_path)
            raise
        self._attach()
        _U32.pack_into(self._header, _WORD_SIZE, self.words)
        self._header[_HDR_PATH : _HDR_PATH + len(self.header_path)] = self.header_path.encode()
        self._header[_DATA_PATH : _DATA_PATH + len(self.data_path)] = self.data_path.encode()
        _I32.pack_into(self._header, _REF_COUNT, 1)  # the client makes it 2
        if _libc.sem_init(self._sem, 1, 0) != 0:
            err = ctypes.get_errno()
            self._closed = True  # nothing to sem_destroy
            self.close()
            raise ShmRingError(f"sem_init failed: {os.strerror(err)}")

    @classmethod
    def create(cls, name: str, max_msg_size: int, *, uid: int, gid: int) -> ShmRing:
        """Create the ring's two files (owned by ``uid``/``gid``), as libqb's server does."""
        return cls(name, max_msg_size, uid=uid, gid=gid)

    @classmethod
    def open(
        cls,
        name: str,
        max_msg_size: int,
        *,
        header_size: int = SHM_RING_BASE_HEADER_SIZE,
        guard_sizes: bool = False,
    ) -> ShmRing:
        """Map a ring the server created, as libqb's client does: the header by its
        name, the data file by the path written in the header, both sized from
        ``max_msg_size`` (the value of the connection response); then take a reference
        (ref_count becomes 2). ``header_size`` is 8252 for the request ring (it has the
        flow-control flag), 8248 for the others. Raises OSError or ShmRingError.

        ``guard_sizes`` checks the file sizes before every access, as the creator always
        does; a client trusts the daemon not to shrink them, as libqb's does, and saves
        the system calls on every message."""
        if not name.startswith("/"):
            raise ShmRingError(f"ring name {name!r} is not an absolute path")
        ring = cls.__new__(cls)
        ring.created = False
        ring._guard = guard_sizes
        ring._closed = True
        ring._setup_paths(name, "", max_msg_size)
        ring._header_fd, ring._header = _open_file(ring.header_path, header_size)
        try:
            try:
                header = decode_ring_header_untrusted(bytes(ring._header[: _REF_COUNT + 4]))
            except MalformedMessage as exc:
                raise ShmRingError(f"ring {name!r}: {exc}") from None
            if header.word_size != ring.words:
                raise ShmRingError(
                    f"ring {name!r} has {header.word_size} words, expected {ring.words} "
                    f"for max_msg_size {max_msg_size}"
                )
            if not header.data_path.startswith("/") or len(header.data_path) >= _PATH_MAX:
                raise ShmRingError(f"ring {name!r} names no usable data file")
            ring.data_path = header.data_path
            ring._data_fd, ring._data = _open_file(ring.data_path, ring.size)
        except BaseException:
            ring._header.close()
            os.close(ring._header_fd)
            raise
        ring._attach()
        # Only we write ref_count from now on (libqb's server leaves it at 1 after
        # creating the ring and drops it only when it closes), so no atomic op is needed.
        ring.ref_count = ring.ref_count + 1
        return ring

    def _setup_paths(self, name: str, data_path: str, max_msg_size: int) -> None:
        self.name = name
        self.header_path = f"{name}-header"
        self.data_path = data_path
        if len(self.header_path) >= _PATH_MAX or len(self.data_path) >= _PATH_MAX:
            raise ShmRingError(f"ring name {name!r} is too long")
        if not 0 < max_msg_size < 2**32:
            raise ShmRingError(f"max_msg_size {max_msg_size} is not a positive uint32")
        self.size = shm_data_file_size(max_msg_size)
        self.words = self.size // 4
        self.max_msg_size = max_msg_size

    def _attach(self) -> None:
        """Views of the pointers, words and semaphore; the ring is usable after this."""
        self._hwords = memoryview(self._header).cast("B")[:8].cast("I")
        self._dwords = memoryview(self._data).cast("I")
        self._anchor = ctypes.c_char.from_buffer(self._header)
        self._sem = ctypes.c_void_p(ctypes.addressof(self._anchor) + _SEM)
        # Made once: every write may ask for the semaphore's value (free_words).
        self._sem_value = ctypes.c_int(0)
        self._sem_value_ref = ctypes.byref(self._sem_value)
        self._closed = False

    # ----------------------------------------------------------------- header

    @property
    def flow_control_view(self) -> mmap.mmap:
        """The header mapping; the request ring's flow-control int32 is at
        :data:`SHM_FLOW_CONTROL_OFFSET`."""
        return self._header

    @property
    def flow_control(self) -> int:
        """The request ring's flow-control flag (0 when closed or shrunk)."""
        if self._closed or len(self._header) < SHM_RING_HEADER_SIZE:
            return 0
        if self._guard and not self.files_intact():
            return 0
        value: int = _I32.unpack_from(self._header, SHM_FLOW_CONTROL_OFFSET)[0]
        return value

    @property
    def ref_count(self) -> int:
        """How many sides have the ring open (libqb's client sends only while it is 2)."""
        if self._closed:
            return 0
        value: int = _I32.unpack_from(self._header, _REF_COUNT)[0]
        return value

    @ref_count.setter
    def ref_count(self, value: int) -> None:
        if not self._closed:
            _I32.pack_into(self._header, _REF_COUNT, value)

    def semaphore_value(self) -> int:
        """The semaphore's count (committed chunks not yet consumed)."""
        if self._closed:
            return 0
        _libc.sem_getvalue(self._sem, self._sem_value_ref)
        return self._sem_value.value

    def files_intact(self) -> bool:
        """The other side could shrink the files; touching a mapped page past the end
        would kill us with SIGBUS. libqb clients only ftruncate them to the sizes they
        have (the header of the response and event rings to 8248, 4 bytes less).

        The sizes come from ``lseek(SEEK_END)`` on our own descriptors (whose offsets
        nothing else uses): the same answer as ``fstat`` at a quarter of the cost, and
        this runs before every chunk."""
        if self._closed:
            return False
        return (
            os.lseek(self._data_fd, 0, os.SEEK_END) >= self.size
            and os.lseek(self._header_fd, 0, os.SEEK_END) >= SHM_RING_BASE_HEADER_SIZE
        )

    def _check_sizes(self) -> None:
        if self._closed:
            raise ShmRingError(f"ring {self.name!r} is closed")
        if self._guard and not self.files_intact():
            raise ShmRingError(f"ring {self.name!r} was truncated by the other side")

    # ----------------------------------------------------------------- chunks

    def _copy_out(self, word: int, length: int) -> bytes:
        start = (word % self.words) * 4
        end = start + length
        if end <= self.size:
            return bytes(self._data[start:end])
        return bytes(self._data[start:]) + bytes(self._data[: end - self.size])

    def _copy_in(self, word: int, payload: bytes) -> None:
        start = (word % self.words) * 4
        first = min(len(payload), self.size - start)
        self._data[start : start + first] = payload[:first]
        if first < len(payload):
            self._data[: len(payload) - first] = payload[first:]

    def _next(self, word: int, length: int) -> int:
        nxt = word + 2 + (length + 3) // 4
        return nxt - self.words if nxt > self.words - 1 else nxt

    def _consume(self) -> bytes | None:
        if self._closed:
            return None
        self._check_sizes()
        n = self.words
        r = self._hwords[1]
        if r >= n:
            raise ShmRingError(f"read pointer {r} is outside the ring")
        if self._dwords[(r + 1) % n] != _MAGIC_COMMITTED:
            return None
        length = self._dwords[r]
        if length > self.max_msg_size or length > (n - 3) * 4:
            raise ShmRingError(f"chunk of {length} bytes exceeds the ring")
        payload = self._copy_out(r + 2, length)
        self._dwords[r] = 0
        self._dwords[(r + 1) % n] = _MAGIC_CONSUMED
        self._hwords[1] = self._next(r, length)
        return payload

    def read(self) -> bytes | None:
        """Take one count off the semaphore (``sem_trywait``), then consume the chunk it
        stands for; None when nothing is posted. Raises ShmRingError when the writer's
        chunk cannot be one, or its files were shrunk (the caller disconnects).

        The count comes first, as libqb's reader waits on the semaphore before it looks
        at a chunk: a writer commits a chunk and only then posts, so a chunk consumed in
        between would leave its count behind once posted, and with the ring empty again
        (write pointer = read pointer) the writer's free-space check would say "full"
        for ever."""
        if self._closed:
            return None
        self._check_sizes()  # the semaphore lives in the header file
        if _libc.sem_trywait(self._sem) != 0:
            return None
        payload = self._consume()
        if payload is None:
            _libc.sem_post(self._sem)  # posted without a committed chunk: leave the count
        return payload

    def wait(self, timeout: float) -> bool:
        """Sleep until a chunk is committed (the semaphore's count is taken, as
        ``sem_timedwait`` does in libqb's reader) or ``timeout`` seconds pass; then
        :meth:`read_waited` consumes the chunk. False at the timeout or when closed.
        The GIL is released while waiting."""
        if self._closed:
            return False
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            result = self._timed_wait(deadline)
            if result == 0:
                return True
            err = ctypes.get_errno()
            if err == errno.EINTR and not self._closed:
                continue
            if err in (errno.ETIMEDOUT, errno.EINTR):
                return False
            raise ShmRingError(f"waiting on ring {self.name!r} failed: {os.strerror(err)}")

    def _timed_wait(self, deadline: float) -> int:
        if _sem_clockwait is not None:
            clock, when = _CLOCK_MONOTONIC, deadline
        else:
            clock, when = -1, time.time() + (deadline - time.monotonic())
        sec = int(when)
        spec = _Timespec(sec, int((when - sec) * 1e9))
        if _sem_clockwait is not None:
            return int(_sem_clockwait(self._sem, clock, ctypes.byref(spec)))
        return int(_libc.sem_timedwait(self._sem, ctypes.byref(spec)))

    def read_waited(self) -> bytes | None:
        """Consume the next committed chunk after a successful :meth:`wait`, leaving
        the semaphore alone (the wait took its count)."""
        return self._consume()

    def post(self) -> None:
        """Add one to the semaphore without writing (wakes a :meth:`wait`)."""
        if not self._closed:
            _libc.sem_post(self._sem)

    def free_words(self) -> int:
        """Free space as libqb's writer computes it."""
        w, r, n = self._hwords[0], self._hwords[1], self.words
        if w > r:
            return r - w + n - 1
        if w < r:
            return r - w - 1
        return 0 if self.semaphore_value() > 0 else n

    def write(self, payload: bytes) -> bool:
        """Commit one chunk and post the semaphore; False (nothing written) when the
        ring has no room for it now. Raises ShmRingError when the files were shrunk,
        or the reader's pointer is outside the ring."""
        if self._closed:
            return False
        self._check_sizes()
        n = self.words
        w = self._hwords[0]
        if w >= n or self._hwords[1] >= n:
            raise ShmRingError(f"ring {self.name!r} has a pointer outside the ring")
        if self.free_words() * 4 < len(payload) + 12:
            return False
        self._dwords[w] = 0
        self._dwords[(w + 1) % n] = _MAGIC_ALLOCATED
        self._copy_in(w + 2, payload)
        self._dwords[w] = len(payload)
        self._hwords[0] = self._next(w, len(payload))
        self._dwords[(w + 1) % n] = _MAGIC_COMMITTED
        _libc.sem_post(self._sem)
        return True

    # -------------------------------------------------------------- lifecycle

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self, *, unlink: bool | None = None) -> None:
        """Unmap the ring. Its creator also destroys the semaphore and unlinks both
        files (``unlink`` overrides: a client removes the files of a dead server, as
        libqb's does). The creator must only close after the other side has gone: a
        client truncating a mapped file would make our access SIGBUS. Idempotent."""
        if not self._closed:
            if self.created:
                _libc.sem_destroy(self._sem)
            else:
                self.ref_count = self.ref_count - 1  # libqb's client drops its reference
            self._closed = True
        self.__dict__.pop("_sem_value_ref", None)
        self.__dict__.pop("_sem_value", None)
        for attr in ("_hwords", "_dwords"):
            view = self.__dict__.pop(attr, None)
            if view is not None:
                view.release()
        self.__dict__.pop("_anchor", None)
        self.__dict__.pop("_sem", None)
        for attr in ("_header", "_data"):
            mapping = self.__dict__.pop(attr, None)
            if mapping is not None:
                with contextlib.suppress(BufferError):
                    mapping.close()
        for fd_attr in ("_header_fd", "_data_fd"):
            fd = self.__dict__.pop(fd_attr, None)
            if fd is not None:
                os.close(fd)
        if self.created if unlink is None else unlink:
            for path in (self.header_path, self.data_path):
                if path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
