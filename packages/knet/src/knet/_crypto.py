"""Packet encryption, key derivation, nonces and replay protection (sans-IO).

Every host of a cluster shares one *authkey* (128..4096 bytes, like corosync's
``authkey`` file). It is never used directly as a cipher key: :func:`derive_key` turns it
into independent 32-byte keys, one per purpose.

A data packet is sealed with an AEAD cipher. The clear packet header is the associated
data, so it is authenticated but stays readable, and the nonce is rebuilt by the receiver
from header fields (:func:`make_nonce`), so it costs no bytes on the wire. Only the tag is
added (:attr:`PacketSealer.overhead`).

Once a packet has authenticated, :class:`ReplayWindow` (one per remote peer) rejects
copies of it that an attacker records and sends again. Corosync's knet has no such
protection; we add it.

Nothing here does I/O or reads a clock: randomness (the instance id) comes from the
caller.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import struct
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import attrs
import nacl.bindings
import nacl.exceptions

from knet._errors import CryptoError, MalformedPacket

__all__ = [
    "DEFAULT_CIPHER",
    "KEY_MAX_BYTES",
    "KEY_MIN_BYTES",
    "AuthenticationFailed",
    "Cipher",
    "CryptoConfig",
    "PacketSealer",
    "ReplayWindow",
    "derive_key",
    "make_nonce",
    "validate_authkey",
]

KEY_MIN_BYTES: Final = 128
KEY_MAX_BYTES: Final = 4096

# Personalisation of the step that compresses the authkey; exactly 16 bytes, BLAKE2b's max.
_MASTER_PERSON: Final = b"pycorosync-knet1"
_PERSON_MAX: Final = 16
_DERIVED_KEY_BYTES: Final = 32
_DATA_KEY_PURPOSE: Final = b"knet-data"

# (message or ciphertext, associated data, nonce, key) -> bytes: PyNaCl's AEAD signature.
_AeadFunc: TypeAlias = Callable[[bytes, bytes | None, bytes, bytes], bytes]


class AuthenticationFailed(MalformedPacket):
    """A sealed packet did not authenticate: forged, corrupted, truncated or wrong key."""


class Cipher(enum.Enum):
    """The AEAD cipher that seals data packets. All hosts of a cluster must agree."""

    NONE = "none"
    XCHACHA20_POLY1305 = "xchacha20poly1305"
    AEGIS256 = "aegis256"

    @classmethod
    def from_name(cls, name: str) -> Cipher:
        """Return the cipher called ``name`` (case-insensitive), as written in a config."""
        try:
            return cls(name.strip().lower())
        except ValueError:
            valid = ", ".join(repr(c.value) for c in cls)
            raise CryptoError(f"unknown cipher {name!r}; valid names: {valid}") from None


# AEGIS-256 (AES-based, as corosync's default aes256): bench/knet_bench.py measured it
# faster than XChaCha20-Poly1305 for 1 KiB packets (docs/performance.md). libsodium has a
# software fallback for CPUs without AES instructions. Every host must use the same cipher.
DEFAULT_CIPHER: Final = Cipher.AEGIS256


def validate_authkey(key: bytes) -> None:
    """Raise :class:`CryptoError` unless ``key`` has between 128 and 4096 bytes."""
    size = len(key)
    if not KEY_MIN_BYTES <= size <= KEY_MAX_BYTES:
        raise CryptoError(
            f"authkey is {size} bytes; it must be {KEY_MIN_BYTES}..{KEY_MAX_BYTES} bytes"
        )


def derive_key(authkey: bytes, purpose: bytes) -> bytes:
    """Derive a 32-byte key for ``purpose`` from the shared ``authkey``.

    Construction (BLAKE2b, RFC 7693)::

        master = BLAKE2b-512(authkey, person=b"pycorosync-knet1")
        key    = BLAKE2b-256(b"", key=master, person=purpose)

    The first step is needed because a BLAKE2b key is at most 64 bytes while an authkey
    may have 4096; it is unkeyed but personalised, so its output is unrelated to any other
    use of BLAKE2b on the same bytes. The second step is BLAKE2b as a keyed PRF whose
    personalisation is the purpose, so distinct purposes give unrelated keys.

    ``purpose`` must be 1..16 bytes and must not end with a NUL byte: BLAKE2b pads the
    personalisation with zeros, so ``b"x"`` and ``b"x\\0"`` would give the same key.
    """
    validate_authkey(authkey)
    if not 0 < len(purpose) <= _PERSON_MAX or purpose.endswith(b"\0"):
        raise CryptoError(
            f"key purpose {purpose!r} must be 1..{_PERSON_MAX} bytes, not ending with NUL"
        )
    master = hashlib.blake2b(authkey, digest_size=64, person=_MASTER_PERSON).digest()
    return hashlib.blake2b(b"", digest_size=_DERIVED_KEY_BYTES, key=master, person=purpose).digest()


def _check_cipher(_instance: object, _attribute: object, value: object) -> None:
    if not isinstance(value, Cipher):
        raise CryptoError(f"cipher must be a Cipher, not {value!r}")


def _check_key(_instance: object, _attribute: object, value: bytes) -> None:
    validate_authkey(value)


@attrs.frozen
class CryptoConfig:
    """The crypto settings of a knet instance: shared authkey and cipher.

    The key is always required and validated, even with :attr:`Cipher.NONE` (where it is
    ignored): that keeps the type simple and lets a config switch the cipher off for
    debugging without touching the key. To run without crypto at all, pass no
    ``CryptoConfig``. ``repr`` never shows the key.
    """

    key: bytes = attrs.field(repr=False, validator=_check_key)
    cipher: Cipher = attrs.field(default=DEFAULT_CIPHER, validator=_check_cipher)


def _aead_for(cipher: Cipher) -> tuple[_AeadFunc, _AeadFunc, int, int]:
    """Return (encrypt, decrypt, nonce size, tag size) of ``cipher``."""
    if cipher is Cipher.XCHACHA20_POLY1305:
        return (
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt,
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt,
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES,
        )
    if cipher is Cipher.AEGIS256:
        # AEGIS arrived in PyNaCl 1.6; look it up so an older PyNaCl fails clearly here.
        encrypt: _AeadFunc | None = getattr(nacl.bindings, "crypto_aead_aegis256_encrypt", None)
        decrypt: _AeadFunc | None = getattr(nacl.bindings, "crypto_aead_aegis256_decrypt", None)
        if encrypt is None or decrypt is None:
            raise CryptoError("cipher 'aegis256' needs PyNaCl >= 1.6")
        nonce_size: int = nacl.bindings.crypto_aead_aegis256_NPUBBYTES
        tag_size: int = nacl.bindings.crypto_aead_aegis256_ABYTES
        return encrypt, decrypt, nonce_size, tag_size
    raise CryptoError(f"cipher {cipher.value!r} cannot seal packets")


def _load_sodium() -> tuple[Any, Any] | None:
    """PyNaCl's cffi binding of libsodium (``nacl._sodium``), or None if it is missing.

    The packet path calls libsodium through it directly: PyNaCl's public AEAD wrappers
    re-check every argument and allocate twice per call, which costs more than the
    encryption of a 1 KiB packet. The module is private to PyNaCl but has carried the
    cffi ``ffi``/``lib`` pair since PyNaCl 1.0; without it the public wrappers are used.
    """
    try:
        module = importlib.import_module("nacl._sodium")
    except ImportError:  # pragma: no cover - every PyNaCl release so far has it
        return None
    ffi, lib = getattr(module, "ffi", None), getattr(module, "lib", None)
    if ffi is None or lib is None:  # pragma: no cover
        return None
    return ffi, lib


_SODIUM = _load_sodium()
_LIB_PREFIX: Final = {
    Cipher.XCHACHA20_POLY1305: "crypto_aead_xchacha20poly1305_ietf",
    Cipher.AEGIS256: "crypto_aead_aegis256",
}
# Packets are at most 64 KiB of payload plus knet's small headers: one output buffer of
# this size per sealer serves every packet; anything larger takes PyNaCl's wrappers.
_SCRATCH_BYTES: Final = 65536 + 256


class _Sodium:
    """libsodium's entry points for one cipher and a reused output buffer.

    Not thread-safe (calls share the buffer); each core owns its sealers.
    """

    __slots__ = ("buffer", "decrypt", "encrypt", "null", "view")

    def __init__(self, ffi: Any, lib: Any, prefix: str) -> None:
        self.encrypt = getattr(lib, prefix + "_encrypt")
        self.decrypt = getattr(lib, prefix + "_decrypt")
        self.null = ffi.NULL
        self.buffer = ffi.new("unsigned char[]", _SCRATCH_BYTES)
        self.view = ffi.buffer(self.buffer)


def _sodium_for(cipher: Cipher) -> _Sodium | None:
    prefix = _LIB_PREFIX.get(cipher)
    if _SODIUM is None or prefix is None:
        return None
    ffi, lib = _SODIUM
    if not hasattr(lib, prefix + "_encrypt") or not hasattr(lib, prefix + "_decrypt"):
        return None
    return _Sodium(ffi, lib, prefix)


class PacketSealer:
    """Seals and opens packets with the data key derived from a :class:`CryptoConfig`.

    The packet header is authenticated as associated data. ``nonce`` must be built with
    :func:`make_nonce` from header fields, and a nonce must never seal two different
    (header, body) pairs: with either cipher that leaks plaintext relations and allows
    forgeries (with Poly1305, the one-time MAC key). Sending the very same sealed bytes on
    several links is harmless.

    Not thread-safe: each core owns its sealers.
    """

    __slots__ = (
        "_decrypt",
        "_encrypt",
        "_key",
        "_sodium",
        "cipher",
        "make_nonce",
        "nonce_size",
        "overhead",
    )

    cipher: Cipher
    overhead: int
    nonce_size: int
    #: ``make_nonce(src_host, dst_host, instance, counter)`` for this cipher's nonce size
    #: (:func:`make_nonce` without its range check: the core passes valid header fields).
    make_nonce: Callable[[int, int, int, int], bytes]

    def __init__(self, config: CryptoConfig) -> None:
        if config.cipher is Cipher.NONE:
            raise CryptoError("cipher 'none' has no sealer; send packets in clear instead")
        # Bound once: this object is used for every packet.
        self._encrypt, self._decrypt, self.nonce_size, self.overhead = _aead_for(config.cipher)
        self._key = derive_key(config.key, _DATA_KEY_PURPOSE)
        self.cipher = config.cipher
        # The packet path: direct libsodium calls (None: PyNaCl's public wrappers only).
        self._sodium = _sodium_for(config.cipher)
        self.make_nonce = (
            _nonce_structs.get(self.nonce_size) or _nonce_struct(self.nonce_size)
        ).pack

    def __repr__(self) -> str:
        return f"PacketSealer(cipher={self.cipher.value!r})"

    def seal(self, header: bytes, nonce: bytes, body: bytes) -> bytes:
        """Encrypt ``body`` and authenticate it with ``header``; return ciphertext+tag."""
        sodium = self._sodium
        size = len(body) + self.overhead
        if (
            sodium is not None
            and size <= _SCRATCH_BYTES
            and type(body) is bytes
            and type(header) is bytes
            and type(nonce) is bytes
            and len(nonce) == self.nonce_size
        ):
            null = sodium.null
            if not sodium.encrypt(
                sodium.buffer, null, body, len(body), header, len(header), null, nonce, self._key
            ):
                return sodium.view[0:size]  # type: ignore[no-any-return]
        # Anything unusual (other buffer types, bad sizes) goes through PyNaCl's checks.
        try:
            return self._encrypt(body, header, nonce, self._key)
        except nacl.exceptions.CryptoError as exc:
            # Only reachable by misuse (wrong nonce size, not bytes): the caller's bug.
            raise CryptoError(f"cannot seal packet: {exc}") from exc

    def seal_packet(self, header: bytes, nonce: bytes, body: bytes) -> bytes:
        """``header + seal(header, nonce, body)``, built in one buffer (the packet path)."""
        sodium = self._sodium
        # libsodium reads exactly nonce_size nonce bytes and writes ``size`` bytes: those
        # two are checked; cffi itself refuses arguments that are not byte buffers.
        if sodium is not None:
            try:
                start = len(header)
                size = start + len(body) + self.overhead
                if len(nonce) != self.nonce_size or size > _SCRATCH_BYTES:
                    raise TypeError("not for the fast path")
                view = sodium.view
                view[0:start] = header
                null = sodium.null
                failed = sodium.encrypt(
                    sodium.buffer + start, null, body, len(body), header, start, null, nonce,
                    self._key,
                )  # fmt: skip
            except TypeError:
                failed = True  # not bytes, or odd sizes: seal() below says what is wrong
            if not failed:
                return view[0:size]  # type: ignore[no-any-return]
        return header + self.seal(header, nonce, body)

    def open(self, header: bytes, nonce: bytes, sealed: bytes) -> bytes:
        """Return the body of ``sealed``; raise :class:`AuthenticationFailed` on any fault."""
        # PyNaCl fails with an obscure ValueError on input shorter than the tag.
        size = len(sealed) - self.overhead
        if size < 0:
            raise AuthenticationFailed(f"sealed data too short ({len(sealed)} bytes)")
        sodium = self._sodium
        # As in seal_packet: the nonce and output sizes are checked, cffi checks types.
        if sodium is not None and size <= _SCRATCH_BYTES:
            null = sodium.null
            try:
                if len(nonce) != self.nonce_size:
                    raise TypeError("not for the fast path")
                failed = sodium.decrypt(
                    sodium.buffer, null, null, sealed, len(sealed), header, len(header), nonce,
                    self._key,
                )  # fmt: skip
            except TypeError:
                failed = None  # not bytes, or a bad nonce: PyNaCl's wrapper below rejects it
            if failed == 0:
                return sodium.view[0:size]  # type: ignore[no-any-return]
            if failed:
                raise AuthenticationFailed("packet did not authenticate")
        try:
            return self._decrypt(sealed, header, nonce, self._key)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise AuthenticationFailed("packet did not authenticate") from exc


# Nonce fields: src host u16, dst host u16, instance u64, counter u64.
_NONCE_FIELDS_BYTES: Final = 20
# One Struct per nonce size, compiled on first use, with the zero padding in its format.
_nonce_structs: dict[int, struct.Struct] = {}


def _nonce_struct(nonce_size: int) -> struct.Struct:
    if nonce_size < _NONCE_FIELDS_BYTES:
        raise CryptoError(f"nonce size {nonce_size} is below {_NONCE_FIELDS_BYTES} bytes")
    packer = struct.Struct(f">{nonce_size - _NONCE_FIELDS_BYTES}xHHQQ")
    _nonce_structs[nonce_size] = packer
    return packer


def make_nonce(nonce_size: int, src_host: int, dst_host: int, instance: int, counter: int) -> bytes:
    """Return the ``nonce_size``-byte nonce of one packet.

    Layout (big-endian): zero padding, src host u16, dst host u16, instance u64,
    counter u64.

    Why it never repeats under the one key shared by all hosts: the (src, dst) pair keeps
    apart the nonces of different senders and of one sender's different destinations;
    ``instance`` is a random 64-bit id the sender draws at every start, so a restarted
    sender (whose counters start again) uses fresh nonces; ``counter`` counts the
    packets from this instance to this destination, so it differs for every packet.
    A repeat would need a 64-bit instance collision between two starts of the same host.
    """
    packer = _nonce_structs.get(nonce_size) or _nonce_struct(nonce_size)
    try:
        return packer.pack(src_host, dst_host, instance, counter)
    except struct.error as exc:
        raise CryptoError(f"nonce field out of range: {exc}") from exc


class ReplayWindow:
    """Replay protection for the packets of ONE remote peer.

    A packet carries ``(instance, counter)``: ``instance`` is the sender's random id,
    drawn at every start, and ``counter`` grows by one per packet sent to us. Packets get
    lost and two links reorder them, so the window accepts any counter not yet seen that
    is at most ``size - 1`` below the highest seen, or above it (the window slides).
    Duplicates and counters older than the window are rejected.

    A packet from another instance means the peer restarted. Instance ids are ordered:
    the driver makes them from the wall clock at start (milliseconds, shifted left 16
    bits) plus 16 random bits, so a restarted peer has a larger id. A new instance is
    accepted only if it is larger than the current one and not among the last
    ``retired_limit`` instances; once accepted it becomes current and the previous one is
    retired. So a packet recorded from an earlier run of the peer is never accepted
    again, however old. Before any packet, everything is accepted.

    ``allow_older=True`` (the core passes it while the peer is unreachable) also accepts
    a smaller, never-seen instance: a peer whose clock was stepped back before it
    restarted can still rejoin once its old incarnation has gone silent. This is the
    residual risk, an accepted design limit: while a peer is unreachable, one recorded
    packet of an old, non-retired instance of it can be replayed, and the peer's next
    packets (a larger instance) take over again at once.

    Call :meth:`check` (no state change) before decrypting, and :meth:`accept` only after
    the packet authenticated, so forged packets cannot move the window.
    """

    __slots__ = (
        "_bitmap",
        "_current",
        "_floor",
        "_highest",
        "_mask",
        "_retired",
        "_retired_limit",
        "size",
    )

    size: int

    def __init__(self, size: int = 1024, retired_limit: int = 32) -> None:
        if size < 1:
            raise CryptoError(f"replay window size must be at least 1, not {size}")
        if retired_limit < 0:
            raise CryptoError(f"retired instance limit must be at least 0, not {retired_limit}")
        self.size = size
        self._mask = (1 << size) - 1
        self._retired_limit = retired_limit
        self._current: int | None = None
        self._highest = 0
        # Counters of the current instance up to this one predate its proof of life.
        self._floor = -1
        # Bit i set <=> counter (highest - i) of the current instance was accepted.
        self._bitmap = 0
        # Insertion-ordered set of retired instances, oldest first.
        self._retired: dict[int, None] = {}

    def reset(self) -> None:
        """Forget everything, retired instances included (e.g. after a key change)."""
        self._current = None
        self._highest = 0
        self._floor = -1
        self._bitmap = 0
        self._retired.clear()

    @property
    def current_instance(self) -> int | None:
        """The peer instance currently tracked, or None before the first packet."""
        return self._current

    def check(self, instance: int, counter: int, *, allow_older: bool = False) -> bool:
        """Return True if the packet ``(instance, counter)`` would be accepted. Pure."""
        if instance != self._current:
            return self._new_instance_ok(instance, allow_older)
        diff = self._highest - counter
        if diff < 0:
            return True
        return diff < self.size and not (self._bitmap >> diff) & 1

    def predates_verification(self, instance: int, counter: int) -> bool:
        """True if ``(instance, counter)`` is of the current instance but was sent before
        the pong that verified it: rejected by :meth:`check`, yet most likely a packet
        that was in flight on another link, not a replay."""
        return instance == self._current and counter <= self._floor

    def _new_instance_ok(self, instance: int, allow_older: bool) -> bool:
        if instance in self._retired:
            return False
        return allow_older or self._current is None or instance > self._current

    def start_instance(self, instance: int, counter: int) -> None:
        """Make ``instance`` current with every counter up to ``counter`` already seen:
        the caller verified the instance is alive at ``counter`` (a fresh pong), and
        nothing older of it may be accepted. The previous instance is retired."""
        if self._current is not None and self._current != instance and self._retired_limit:
            self._retired[self._current] = None
            if len(self._retired) > self._retired_limit:
                del self._retired[next(iter(self._retired))]
        self._retired.pop(instance, None)
        self._current = instance
        self._highest = counter
        self._floor = counter
        self._bitmap = self._mask

    def accept(self, instance: int, counter: int, *, allow_older: bool = False) -> None:
        """Record an authenticated packet. A packet :meth:`check` rejects is ignored."""
        if instance != self._current:
            if not self._new_instance_ok(instance, allow_older):
                return
            if self._current is not None and self._retired_limit:
                self._retired[self._current] = None
                if len(self._retired) > self._retired_limit:
                    del self._retired[next(iter(self._retired))]
            self._current = instance
            self._highest = counter
            self._bitmap = 1
            return
        diff = self._highest - counter
        if diff < 0:
            # Cap the shift: a far jump must not build a huge int.
            shift = -diff
            self._bitmap = ((self._bitmap << shift) & self._mask) | 1 if shift < self.size else 1
            self._highest = counter
        elif diff < self.size:
            self._bitmap |= 1 << diff
