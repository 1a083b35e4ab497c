"""Tests of knet._crypto: keys, sealing, nonces and the replay window."""

from __future__ import annotations

import hashlib

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from knet._crypto import (
    DEFAULT_CIPHER,
    KEY_MAX_BYTES,
    KEY_MIN_BYTES,
    AuthenticationFailed,
    Cipher,
    CryptoConfig,
    PacketSealer,
    ReplayWindow,
    derive_key,
    make_nonce,
    validate_authkey,
)
from knet._errors import CryptoError, MalformedPacket

KEY = bytes(range(256)) * 2  # 512 bytes
OTHER_KEY = bytes(reversed(KEY))
HEADER = b"\x01\x02hdr-bytes"
BODY = b"hello cluster" * 10

SEALING_CIPHERS = [Cipher.AEGIS256, Cipher.XCHACHA20_POLY1305]
#: libsodium's public AEAD functions (through PyNaCl's checked wrappers), per cipher.
PUBLIC_AEAD = {
    Cipher.AEGIS256: (
        nacl.bindings.crypto_aead_aegis256_encrypt,
        nacl.bindings.crypto_aead_aegis256_decrypt,
    ),
    Cipher.XCHACHA20_POLY1305: (
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt,
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt,
    ),
}


def _sealer(cipher: Cipher = DEFAULT_CIPHER, key: bytes = KEY) -> PacketSealer:
    return PacketSealer(CryptoConfig(key=key, cipher=cipher))


def _nonce(sealer: PacketSealer, counter: int = 7) -> bytes:
    return make_nonce(sealer.nonce_size, 1, 2, 0xDEADBEEF, counter)


# --- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [KEY_MIN_BYTES, 1000, KEY_MAX_BYTES])
def test_authkey_sizes_within_limits_accepted(size: int) -> None:
    """Keys of 128..4096 bytes validate and build a config."""
    validate_authkey(bytes(size))
    assert CryptoConfig(key=bytes(size)).key == bytes(size)


@pytest.mark.parametrize("size", [0, KEY_MIN_BYTES - 1, KEY_MAX_BYTES + 1])
def test_authkey_sizes_outside_limits_rejected(size: int) -> None:
    """Keys outside 128..4096 bytes raise CryptoError naming the size and limits."""
    with pytest.raises(CryptoError, match=rf"\b{size} bytes.*128\.\.4096"):
        validate_authkey(bytes(size))
    with pytest.raises(CryptoError):
        CryptoConfig(key=bytes(size))


def test_derive_key_deterministic_and_32_bytes() -> None:
    """The same authkey and purpose always give the same 32-byte key."""
    key = derive_key(KEY, b"knet-data")
    assert len(key) == 32
    assert key == derive_key(KEY, b"knet-data")


def test_derive_key_never_returns_raw_key_material() -> None:
    """The derived key is not a slice of the authkey nor its plain hash."""
    key = derive_key(KEY, b"knet-data")
    assert key not in KEY
    assert key != hashlib.blake2b(KEY, digest_size=32).digest()


def test_derive_key_separates_purposes_and_keys() -> None:
    """Different purposes or different authkeys give different keys."""
    keys = {
        derive_key(KEY, b"knet-data"),
        derive_key(KEY, b"knet-ctrl"),
        derive_key(KEY, b"a"),
        derive_key(OTHER_KEY, b"knet-data"),
        derive_key(KEY + b"\0", b"knet-data"),
    }
    assert len(keys) == 5


@pytest.mark.parametrize("purpose", [b"", b"x" * 17, b"knet\0"])
def test_derive_key_rejects_ambiguous_purpose(purpose: bytes) -> None:
    """Empty, over-long or NUL-terminated purposes raise CryptoError."""
    with pytest.raises(CryptoError, match="purpose"):
        derive_key(KEY, purpose)


def test_derive_key_validates_authkey() -> None:
    """A too-short authkey is refused by derive_key too."""
    with pytest.raises(CryptoError, match="authkey"):
        derive_key(b"short", b"knet-data")


# --- cipher and config ----------------------------------------------------------------


def test_cipher_from_name() -> None:
    """Names map to ciphers, case-insensitively; unknown names list the valid ones."""
    assert Cipher.from_name("xchacha20poly1305") is Cipher.XCHACHA20_POLY1305
    assert Cipher.from_name("AEGIS256") is Cipher.AEGIS256
    assert Cipher.from_name("none") is Cipher.NONE
    with pytest.raises(CryptoError, match=r"'none'.*'xchacha20poly1305'.*'aegis256'"):
        Cipher.from_name("aes256")


def test_default_cipher_is_aegis256() -> None:
    """The default cipher is AEGIS-256 (32-byte tag and nonce), for configs and sealers."""
    assert DEFAULT_CIPHER is Cipher.AEGIS256
    assert CryptoConfig(key=KEY).cipher is DEFAULT_CIPHER
    sealer = PacketSealer(CryptoConfig(key=KEY))
    assert sealer.cipher is Cipher.AEGIS256
    assert (sealer.nonce_size, sealer.overhead) == (32, 32)


def test_xchacha_stays_selectable() -> None:
    """XChaCha20-Poly1305 is chosen explicitly: 24-byte nonce, 16-byte tag."""
    sealer = PacketSealer(CryptoConfig(key=KEY, cipher=Cipher.XCHACHA20_POLY1305))
    assert sealer.cipher is Cipher.XCHACHA20_POLY1305
    assert (sealer.nonce_size, sealer.overhead) == (24, 16)


def test_config_repr_hides_key() -> None:
    """repr of a config and of a sealer shows the cipher but no key bytes."""
    key = b"SECRET-KEY-MATERIAL" * 8
    config = CryptoConfig(key=key)
    for text in (repr(config), repr(PacketSealer(config))):
        assert DEFAULT_CIPHER.value in text.lower()
        assert "SECRET" not in text
        assert "key=" not in text


def test_config_rejects_non_cipher() -> None:
    """A cipher given as a plain string is a CryptoError, not a silent mismatch."""
    with pytest.raises(CryptoError, match="Cipher"):
        CryptoConfig(key=KEY, cipher="aegis256")  # type: ignore[arg-type]


def test_sealer_refuses_cipher_none() -> None:
    """Cipher.NONE is allowed in a config but cannot build a sealer."""
    config = CryptoConfig(key=KEY, cipher=Cipher.NONE)
    with pytest.raises(CryptoError, match="none"):
        PacketSealer(config)


def test_aegis_sizes() -> None:
    """AEGIS-256 uses a 32-byte nonce and libsodium's 32-byte tag."""
    sealer = _sealer(Cipher.AEGIS256)
    assert (sealer.nonce_size, sealer.overhead) == (32, 32)
    assert (sealer.nonce_size, sealer.overhead) == (
        nacl.bindings.crypto_aead_aegis256_NPUBBYTES,
        nacl.bindings.crypto_aead_aegis256_ABYTES,
    )


# --- seal / open ----------------------------------------------------------------------


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
@given(header=st.binary(max_size=64), body=st.binary(max_size=2000))
def test_seal_open_round_trip(cipher: Cipher, header: bytes, body: bytes) -> None:
    """open(seal(x)) == x, and the sealed data is exactly overhead bytes longer."""
    sealer = _sealer(cipher)
    nonce = _nonce(sealer)
    sealed = sealer.seal(header, nonce, body)
    assert len(sealed) == len(body) + sealer.overhead
    assert sealer.open(header, nonce, sealed) == body


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
def test_seal_hides_body(cipher: Cipher) -> None:
    """The sealed data does not contain the body in clear."""
    sealer = _sealer(cipher)
    assert b"hello cluster" not in sealer.seal(HEADER, _nonce(sealer), BODY)


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
@pytest.mark.parametrize("size", [0, 1, 1024, 65536])
def test_fast_path_is_byte_identical_to_libsodium_public_api(cipher: Cipher, size: int) -> None:
    """The direct libsodium path seals and opens exactly like PyNaCl's public AEAD calls."""
    sealer = _sealer(cipher)
    assert sealer._sodium is not None  # the packet path really is the direct one
    encrypt, decrypt = PUBLIC_AEAD[cipher]
    key = derive_key(KEY, b"knet-data")
    nonce = _nonce(sealer, counter=size)
    body = bytes((7 * i + size) % 256 for i in range(size))
    expected = encrypt(body, HEADER, nonce, key)
    assert sealer.seal(HEADER, nonce, body) == expected
    assert sealer.seal_packet(HEADER, nonce, body) == HEADER + expected
    assert sealer.open(HEADER, nonce, expected) == body
    assert decrypt(sealer.seal(HEADER, nonce, body), HEADER, nonce, key) == body


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
@given(data=st.data())
def test_any_flipped_byte_fails_authentication(cipher: Cipher, data: st.DataObject) -> None:
    """Changing one byte of header, nonce or sealed data raises AuthenticationFailed."""
    sealer = _sealer(cipher)
    nonce = _nonce(sealer)
    parts = [HEADER, nonce, sealer.seal(HEADER, nonce, BODY)]
    which = data.draw(st.integers(0, 2))
    pos = data.draw(st.integers(0, len(parts[which]) - 1))
    delta = data.draw(st.integers(1, 255))
    tampered = bytearray(parts[which])
    tampered[pos] ^= delta
    parts[which] = bytes(tampered)
    with pytest.raises(AuthenticationFailed):
        sealer.open(*parts)


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
def test_wrong_key_fails_authentication(cipher: Cipher) -> None:
    """A packet sealed under another authkey does not open."""
    sender, receiver = _sealer(cipher), _sealer(cipher, OTHER_KEY)
    nonce = _nonce(sender)
    with pytest.raises(AuthenticationFailed):
        receiver.open(HEADER, nonce, sender.seal(HEADER, nonce, BODY))


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
def test_truncated_input_fails_authentication(cipher: Cipher) -> None:
    """Every truncation of sealed data, even below the tag size, is AuthenticationFailed."""
    sealer = _sealer(cipher)
    nonce = _nonce(sealer)
    sealed = sealer.seal(HEADER, nonce, b"tiny")
    for end in range(len(sealed)):
        with pytest.raises(AuthenticationFailed):
            sealer.open(HEADER, nonce, sealed[:end])


@pytest.mark.parametrize("cipher", SEALING_CIPHERS)
def test_bad_nonce_size_on_open_fails_authentication(cipher: Cipher) -> None:
    """A nonce of the wrong size on open is AuthenticationFailed, a MalformedPacket."""
    sealer = _sealer(cipher)
    sealed = sealer.seal(HEADER, _nonce(sealer), BODY)
    with pytest.raises(MalformedPacket):
        sealer.open(HEADER, bytes(sealer.nonce_size - 1), sealed)


def test_bad_nonce_size_on_seal_is_caller_error() -> None:
    """Sealing with a wrong-size nonce is the caller's bug: CryptoError."""
    sealer = _sealer()
    with pytest.raises(CryptoError, match="cannot seal"):
        sealer.seal(HEADER, bytes(12), BODY)


def test_sealers_on_different_ciphers_do_not_interoperate() -> None:
    """A packet sealed with one cipher does not open with another of the same nonce size."""
    aegis = _sealer(Cipher.AEGIS256)
    xchacha = _sealer(Cipher.XCHACHA20_POLY1305)
    sealed = aegis.seal(HEADER, _nonce(aegis), BODY)
    with pytest.raises(AuthenticationFailed):
        xchacha.open(HEADER, _nonce(xchacha), sealed)


# --- nonces ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [20, 24, 32])
def test_make_nonce_layout(size: int) -> None:
    """The nonce is the big-endian fields, left-padded with zeros to the requested size."""
    nonce = make_nonce(size, 0x0102, 0x0304, 0x05060708090A0B0C, 0x0D0E0F1011121314)
    assert len(nonce) == size
    assert nonce == bytes(size - 20) + bytes(range(1, 21))


@given(
    a=st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1),
                st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    b=st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1),
                st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
)  # fmt: skip
def test_make_nonce_injective(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> None:
    """Different (src, dst, instance, counter) always give different nonces."""
    assert (make_nonce(24, *a) == make_nonce(24, *b)) == (a == b)


def test_make_nonce_each_field_matters() -> None:
    """Changing any single field changes the nonce."""
    base = (1, 2, 3, 4)
    nonces = {make_nonce(24, *base)}
    for i in range(4):
        changed = list(base)
        changed[i] += 1
        nonces.add(make_nonce(24, *changed))
    assert len(nonces) == 5


@pytest.mark.parametrize(
    "fields", [(-1, 0, 0, 0), (2**16, 0, 0, 0), (0, 0, 2**64, 0), (0, 0, 0, -1)]
)
def test_make_nonce_out_of_range(fields: tuple[int, int, int, int]) -> None:
    """Field values that do not fit their width raise CryptoError."""
    with pytest.raises(CryptoError, match="out of range"):
        make_nonce(24, *fields)


def test_make_nonce_too_small() -> None:
    """A nonce size below the 20 bytes of fields raises CryptoError."""
    with pytest.raises(CryptoError, match="nonce size"):
        make_nonce(16, 1, 2, 3, 4)


# --- replay window --------------------------------------------------------------------


def _feed(window: ReplayWindow, instance: int, counter: int) -> bool:
    """Run a packet through check then accept, as the receive path does."""
    if not window.check(instance, counter):
        return False
    window.accept(instance, counter)
    return True


def test_replay_everything_accepted_before_first_packet() -> None:
    """A fresh window accepts any packet."""
    window = ReplayWindow()
    assert window.current_instance is None
    assert window.check(123, 0)
    assert window.check(456, 2**64 - 1)


def test_replay_duplicate_rejected() -> None:
    """The same (instance, counter) is accepted once only."""
    window = ReplayWindow()
    assert _feed(window, 9, 100)
    assert not _feed(window, 9, 100)
    assert _feed(window, 9, 101)
    assert not _feed(window, 9, 101)
    assert not _feed(window, 9, 100)


def test_replay_reordering_within_window_accepted() -> None:
    """Counters arriving out of order inside the window are each accepted once."""
    window = ReplayWindow(size=64)
    order = [10, 12, 11, 20, 15, 13, 14, 19, 16, 18, 17]
    assert [_feed(window, 1, c) for c in order] == [True] * len(order)
    assert not any(window.check(1, c) for c in range(10, 21))


def test_replay_too_old_rejected() -> None:
    """A counter size or more below the highest is rejected even if never seen."""
    window = ReplayWindow(size=16)
    assert _feed(window, 1, 100)
    assert window.check(1, 85)  # 15 below: last slot of the window
    assert not window.check(1, 84)  # 16 below: outside
    assert not window.check(1, 0)


def test_replay_window_slides() -> None:
    """Moving the highest counter up moves the lower edge and keeps seen bits."""
    window = ReplayWindow(size=8)
    for c in (1, 3):
        assert _feed(window, 1, c)
    assert _feed(window, 1, 9)  # window is now 2..9
    assert not window.check(1, 1)
    assert window.check(1, 2)
    assert not window.check(1, 3)  # still remembered after the shift
    assert window.check(1, 8)
    assert _feed(window, 1, 10**6)  # far jump: everything older is out
    assert not window.check(1, 9)
    assert window.check(1, 10**6 - 7)
    assert not window.check(1, 10**6 - 8)


def test_replay_new_instance_replaces_and_retires_old() -> None:
    """A new instance is accepted, becomes current, and the old one is then rejected."""
    window = ReplayWindow()
    assert _feed(window, 1, 500)
    assert _feed(window, 2, 0)  # peer restarted; counters start again
    assert window.current_instance == 2
    assert not window.check(1, 501)  # even a never-seen counter of the old instance
    assert _feed(window, 2, 1)
    assert not _feed(window, 2, 0)


def test_replay_new_instance_window_starts_at_its_first_counter() -> None:
    """After a restart, reordered earlier counters of the new instance are still accepted."""
    window = ReplayWindow(size=16)
    assert _feed(window, 1, 1000)
    assert _feed(window, 2, 5)
    assert _feed(window, 2, 3)
    assert not window.check(2, 5)


def test_replay_check_does_not_mutate() -> None:
    """check() on any packet, accepted or not, leaves the window unchanged."""
    window = ReplayWindow(size=8)
    for instance, counter in [(1, 10), (2, 0), (2, 1)]:
        window.accept(instance, counter)
    probes = [(2, 1), (2, 0), (2, 50), (2, 2), (1, 11), (3, 0), (2, 2**64 - 1)]
    before = [window.check(i, c) for i, c in probes]
    for _ in range(3):
        for i, c in probes:
            window.check(i, c)
    assert [window.check(i, c) for i, c in probes] == before
    assert window.current_instance == 2


def test_replay_accept_ignores_rejected_packet() -> None:
    """accept() of a packet check() rejects does not resurrect a retired instance."""
    window = ReplayWindow()
    window.accept(1, 0)
    window.accept(2, 0)
    window.accept(1, 1)  # retired: must be ignored
    assert window.current_instance == 2
    assert not window.check(1, 2)


def test_replay_older_instance_rejected() -> None:
    """A packet recorded from an earlier run of the peer (smaller instance) is never
    accepted again, however many restarts ago it was."""
    window = ReplayWindow(retired_limit=3)
    for instance in range(1, 10):
        assert _feed(window, instance, 0)
    assert window.current_instance == 9
    assert not any(window.check(i, 1) for i in range(1, 9))
    assert not window.check(0, 0)  # smaller and never seen: still an older incarnation
    assert window.check(9, 1)
    assert window.check(10, 0)


def test_replay_allow_older_lets_a_peer_with_a_stepped_back_clock_rejoin() -> None:
    """With allow_older (peer unreachable), a smaller, never-retired instance is taken,
    and the peer's larger instance takes over again at once."""
    window = ReplayWindow(retired_limit=3)
    assert _feed(window, 100, 0)
    assert not window.check(50, 0)
    assert window.check(50, 0, allow_older=True)
    window.accept(50, 0, allow_older=True)
    assert window.current_instance == 50
    assert not window.check(100, 1, allow_older=True)  # 100 was retired
    assert window.check(60, 0)


def test_replay_retired_limit_zero() -> None:
    """With retired_limit=0 only the ordering protects: older ones are still refused."""
    window = ReplayWindow(retired_limit=0)
    assert _feed(window, 1, 0)
    assert _feed(window, 2, 0)
    assert not window.check(1, 0)
    assert window.check(1, 0, allow_older=True)


def test_replay_reset() -> None:
    """reset() forgets the current instance, its window and the retired set."""
    window = ReplayWindow()
    for instance, counter in [(1, 0), (2, 0), (2, 1)]:
        window.accept(instance, counter)
    window.reset()
    assert window.current_instance is None
    assert window.check(1, 0)
    assert window.check(2, 1)


@pytest.mark.parametrize(("size", "retired"), [(0, 32), (1024, -1)])
def test_replay_bad_parameters(size: int, retired: int) -> None:
    """A window size below 1 or a negative retired limit raises CryptoError."""
    with pytest.raises(CryptoError):
        ReplayWindow(size, retired)


@given(
    size=st.integers(1, 40),
    events=st.lists(
        st.tuples(
            st.integers(0, 5),  # fewer instances than retired_limit + 1
            st.one_of(st.integers(0, 120), st.integers(0, 2**64 - 1)),
        ),
        max_size=300,
    ),
)
def test_replay_property_never_accepts_twice(size: int, events: list[tuple[int, int]]) -> None:
    """No (instance, counter) pair gets through check+accept twice."""
    window = ReplayWindow(size=size, retired_limit=8)
    seen: set[tuple[int, int]] = set()
    for event in events:
        if _feed(window, *event):
            assert event not in seen
            seen.add(event)


@given(
    size=st.integers(1, 64),
    start=st.integers(0, 2**32),
    offsets=st.permutations(list(range(16))),
)
def test_replay_property_permutation_inside_window_all_accepted(
    size: int, start: int, offsets: list[int]
) -> None:
    """Any reordering that never falls size behind the highest is fully accepted."""
    window = ReplayWindow(size=size)
    highest = -1
    for off in offsets:
        ok = _feed(window, 7, start + off)
        assert ok == (highest < 0 or highest - off < size)
        highest = max(highest, off)


class _ModelWindow:
    """Obviously-correct replay window using sets, to compare the bitmap one against."""

    def __init__(self, size: int, retired_limit: int) -> None:
        self.size, self.limit = size, retired_limit
        self.current: int | None = None
        self.seen: set[int] = set()
        self.retired: list[int] = []

    def check(self, instance: int, counter: int) -> bool:
        if instance != self.current:
            return instance not in self.retired and (
                self.current is None or instance > self.current
            )
        return counter not in self.seen and counter > max(self.seen) - self.size

    def accept(self, instance: int, counter: int) -> None:
        if instance != self.current:
            if self.current is not None and self.limit:
                self.retired = [*self.retired, self.current][-self.limit :]
            self.current, self.seen = instance, set()
        self.seen.add(counter)


@given(
    size=st.integers(1, 40),
    retired_limit=st.integers(0, 4),
    events=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 150)), max_size=300),
)
def test_replay_matches_reference_model(
    size: int, retired_limit: int, events: list[tuple[int, int]]
) -> None:
    """The bitmap window decides exactly like a set-based reference model."""
    window, model = ReplayWindow(size, retired_limit), _ModelWindow(size, retired_limit)
    for instance, counter in events:
        decision = window.check(instance, counter)
        assert decision == model.check(instance, counter)
        if decision:
            window.accept(instance, counter)
            model.accept(instance, counter)


def test_replay_window_tells_packets_from_before_verification() -> None:
    """start_instance(i, c) rejects counters up to c of instance i (they predate the
    proof of life) and says so; true replays of later counters are not 'predating'."""
    window = ReplayWindow(size=64)
    window.start_instance(7, 100)
    assert not window.check(7, 99)
    assert window.predates_verification(7, 99)
    assert window.predates_verification(7, 100)
    assert window.check(7, 101)
    window.accept(7, 101)
    assert not window.check(7, 101)  # a replay of a verified packet
    assert not window.predates_verification(7, 101)
    assert not window.predates_verification(8, 50)  # another instance
    window.reset()
    assert not window.predates_verification(7, 99)
