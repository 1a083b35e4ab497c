"""libqb's SHM transport rings, server side (reference/libqb-ipc.md section 3).

A ring is two files in ``/dev/shm``: ``<name>-header`` (read/write pointers, paths,
ref count, a process-shared glibc semaphore counting committed chunks, a flow-control
int32) and ``<name>-data`` (the chunks, addressed in 32-bit words). libqb clients map
the data file twice back to back; we split copies at the end of the file instead.

The semaphore is glibc's own ``sem_t`` driven through ctypes, so clients linked against
glibc see exactly what libqb's server would leave there.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import struct
from typing import Final

__all__ = [
    "HEADER_SIZE",
    "ShmRing",
    "ShmRingError",
    "data_file_size",
]

_WRITE_PT = 0
_READ_PT = 4
_WORD_SIZE = 8
_HDR_PATH = 12
_DATA_PATH = 4108
_PATH_MAX = 4096
_REF_COUNT = 8204
_SEM = 8208
FLOW_CONTROL_OFFSET: Final = 8240
HEADER_SIZE: Final = 8252  # base 8248 plus libqb's 4 bytes of user data (flow control)
_BASE_HEADER_SIZE = 8248
_CHUNK_MARGIN = 13  # two header words plus one byte, as libqb sizes the data file

_MAGIC_COMMITTED: Final = 0xA1A1A1A1
_MAGIC_ALLOCATED: Final = 0xA110CED0
_MAGIC_CONSUMED: Final = 0xD0D0D0D0

_U32 = struct.Struct("=I")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.sem_init.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint)
_libc.sem_post.argtypes = (ctypes.c_void_p,)
_libc.sem_trywait.argtypes = (ctypes.c_void_p,)
_libc.sem_destroy.argtypes = (ctypes.c_void_p,)
_libc.sem_getvalue.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))


class ShmRingError(Exception):
    """A ring cannot be created, or its client wrote something no libqb client writes."""


def data_file_size(max_msg_size: int) -> int:
    """The data file's size as the client computes it from ``max_msg_size``."""
    page = mmap.PAGESIZE
    return (max_msg_size + _CHUNK_MARGIN + page - 1) // page * page


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


class ShmRing:
    """One ring created by the server. The request ring is read with :meth:`read`,
    the response and event rings written with :meth:`write`."""

    def __init__(self, name: str, max_msg_size: int, *, uid: int, gid: int) -> None:
        self.name = name
        self.header_path = f"{name}-header"
        self.data_path = f"{name}-data"
        if len(self.header_path) >= _PATH_MAX or len(self.data_path) >= _PATH_MAX:
            raise ShmRingError(f"ring name {name!r} is too long")
        self.size = data_file_size(max_msg_size)
        self.words = self.size // 4
        self.max_msg_size = max_msg_size
        self._closed = True
        self._header_fd, self._header = _create_file(self.header_path, HEADER_SIZE, uid, gid)
        try:
            self._data_fd, self._data = _create_file(self.data_path, self.size, uid, gid)
        except BaseException:
            self._header.close()
            os.close(self._header_fd)
            os.unlink(self.header_path)
            raise
        self._hwords = memoryview(self._header).cast("B")[:8].cast("I")
        self._dwords = memoryview(self._data).cast("I")
        self._anchor = ctypes.c_char.from_buffer(self._header)
        self._sem = ctypes.c_void_p(ctypes.addressof(self._anchor) + _SEM)
        self._closed = False
        _U32.pack_into(self._header, _WORD_SIZE, self.words)
        self._header[_HDR_PATH : _HDR_PATH + len(self.header_path)] = self.header_path.encode()
        self._header[_DATA_PATH : _DATA_PATH + len(self.data_path)] = self.data_path.encode()
        struct.pack_into("=i", self._header, _REF_COUNT, 1)  # the client makes it 2
        if _libc.sem_init(self._sem, 1, 0) != 0:
            err = ctypes.get_errno()
            self._closed = True  # nothing to sem_destroy
            self.close()
            raise ShmRingError(f"sem_init failed: {os.strerror(err)}")

    @property
    def flow_control_view(self) -> mmap.mmap:
        """The header mapping; the request ring's flow-control int32 is at
        :data:`FLOW_CONTROL_OFFSET`."""
        return self._header

    def semaphore_value(self) -> int:
        """The semaphore's count (committed chunks not yet consumed)."""
        value = ctypes.c_int(0)
        _libc.sem_getvalue(self._sem, ctypes.byref(value))
        return value.value

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

    def files_intact(self) -> bool:
        """The client owns the files and could shrink them; touching a mapped page past
        the end would kill us with SIGBUS. libqb clients only ftruncate them to the sizes
        they have (the header of the response and event rings to 8248, 4 bytes less)."""
        if self._closed:
            return False
        return (
            os.fstat(self._data_fd).st_size >= self.size
            and os.fstat(self._header_fd).st_size >= _BASE_HEADER_SIZE
        )

    def _check_sizes(self) -> None:
        if not self.files_intact():
            raise ShmRingError(f"ring {self.name!r} was truncated by its client")

    def read(self) -> bytes | None:
        """Consume the next committed chunk; None when there is none. Raises
        ShmRingError when the client's chunk cannot be one, or its files were shrunk
        (the caller disconnects)."""
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
        _libc.sem_trywait(self._sem)
        return payload

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
        ring has no room for it now. Raises ShmRingError when the files were shrunk."""
        if self._closed:
            return False
        self._check_sizes()
        if self.free_words() * 4 < len(payload) + 12:
            return False
        n = self.words
        w = self._hwords[0]
        self._dwords[w] = 0
        self._dwords[(w + 1) % n] = _MAGIC_ALLOCATED
        self._copy_in(w + 2, payload)
        self._dwords[w] = len(payload)
        self._hwords[0] = self._next(w, len(payload))
        self._dwords[(w + 1) % n] = _MAGIC_COMMITTED
        _libc.sem_post(self._sem)
        return True

    def close(self) -> None:
        """Destroy the semaphore, unmap and unlink both files. Only after the client
        has gone: a client truncating a mapped file would make our access SIGBUS."""
        if not self._closed:
            _libc.sem_destroy(self._sem)
            self._closed = True
        for attr in ("_hwords", "_dwords"):
            view = getattr(self, attr, None)
            if view is not None:
                view.release()
        self.__dict__.pop("_anchor", None)
        self.__dict__.pop("_sem", None)
        for mapping in (self.__dict__.get("_header"), self.__dict__.get("_data")):
            if mapping is not None:
                with contextlib.suppress(BufferError):
                    mapping.close()
        for fd_attr in ("_header_fd", "_data_fd"):
            fd = self.__dict__.pop(fd_attr, None)
            if fd is not None:
                os.close(fd)
        for path in (self.header_path, self.data_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
