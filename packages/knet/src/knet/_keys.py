"""Reading and making authkey files (I/O: not part of the sans-IO core)."""

from __future__ import annotations

import os
from pathlib import Path

from knet._crypto import KEY_MAX_BYTES, KEY_MIN_BYTES, validate_authkey
from knet._errors import CryptoError

__all__ = ["generate_authkey", "read_authkey"]


def read_authkey(path: str | os.PathLike[str]) -> bytes:
    """Read a shared authkey file: 128..4096 bytes, like corosync's authkey.

    Raises :class:`CryptoError` naming the file for a missing, unreadable or wrongly
    sized key. A key file larger than 4096 bytes is refused, not truncated.
    """
    file = Path(path)
    try:
        with file.open("rb") as stream:
            key = stream.read(KEY_MAX_BYTES + 1)
    except OSError as exc:
        raise CryptoError(f"cannot read authkey {file}: {exc.strerror or exc}") from exc
    if len(key) > KEY_MAX_BYTES:
        raise CryptoError(f"authkey {file} is larger than {KEY_MAX_BYTES} bytes")
    try:
        validate_authkey(key)
    except CryptoError as exc:
        raise CryptoError(f"authkey {file}: {exc}") from exc
    return key


def generate_authkey(size: int = 256) -> bytes:
    """A new random authkey of ``size`` bytes (128..4096) from the OS's CSPRNG."""
    if not KEY_MIN_BYTES <= size <= KEY_MAX_BYTES:
        raise CryptoError(f"authkey size must be {KEY_MIN_BYTES}..{KEY_MAX_BYTES}, got {size}")
    return os.urandom(size)
