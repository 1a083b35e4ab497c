"""A ring store in a file: the highest ring sequence number survives a restart.

corosync keeps it in ``/var/lib/corosync/ringid_<nodeid>``; a restarted node must never
form a ring with an id it used before (peers would take new messages for old ones).
The file holds exactly 8 bytes, the sequence number big-endian. It is replaced
atomically: written to a temporary file in the same directory, flushed to disk, then
renamed over the old one (and the directory flushed), so a crash leaves either the old
or the new number, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from totem._errors import TotemError

__all__ = ["FileRingStore"]

_SIZE = 8


class FileRingStore:
    """A :class:`~totem.RingStore` in the file ``path`` (created on the first save; a
    missing file means 0). An unreadable or corrupt file raises :class:`TotemError`
    naming it, at the first :meth:`load` (when the node starts): a node must not guess
    its ring sequence number. The value is cached after the first load or save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cached: int | None = None

    def load(self) -> int:
        if self._cached is None:
            self._cached = self._read()
        return self._cached

    def _read(self) -> int:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise TotemError(
                f"cannot read the ring id file {self.path}: {exc.strerror or exc}"
            ) from exc
        if len(data) != _SIZE:
            raise TotemError(
                f"the ring id file {self.path} is corrupt: {len(data)} bytes, expected {_SIZE}"
                " (remove it only if this node's old rings are gone from every peer)"
            )
        return int.from_bytes(data, "big")

    def save(self, ring_seq: int) -> None:
        if not 0 <= ring_seq < 1 << 64:
            raise TotemError(f"ring seq {ring_seq} does not fit 8 bytes")
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, ring_seq.to_bytes(_SIZE, "big"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            with contextlib.suppress(OSError):  # not every platform can open a directory
                dir_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise TotemError(
                f"cannot write the ring id file {self.path}: {exc.strerror or exc}"
            ) from exc
        self._cached = ring_seq

    def __repr__(self) -> str:
        return f"FileRingStore({str(self.path)!r})"
