"""Tests of the executive's cmap map: value encodings, key rules, writes, iteration,
read-only keys, tracking events and generated keys.

The expected behaviour is corosync's icmap and cmap service (reference 3.0-3.2,
libqb-ipc.md 5.1): values stored as the IPC carries them, CS_ERR_* codes in the
order corosync checks, no notification for a set that changes nothing.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from corosync_executive._cmap_store import (
    DEFAULT_RO_KEYS,
    DEFAULT_RO_PREFIXES,
    KEY_NAME_CHARS,
    MAX_VALUE_LEN,
    VOTEQUORUM_RO_KEYS,
    CmapError,
    CmapStore,
    CsErrorCode,
    MalformedValue,
    Notification,
    TrackEvent,
    TrackType,
    TypedValue,
    ValueType,
    decode_value_untrusted,
    encode_value,
    validate_key_name,
)

INT_RANGES = {
    ValueType.INT8: (-(2**7), 2**7 - 1, 1),
    ValueType.UINT8: (0, 2**8 - 1, 1),
    ValueType.INT16: (-(2**15), 2**15 - 1, 2),
    ValueType.UINT16: (0, 2**16 - 1, 2),
    ValueType.INT32: (-(2**31), 2**31 - 1, 4),
    ValueType.UINT32: (0, 2**32 - 1, 4),
    ValueType.INT64: (-(2**63), 2**63 - 1, 8),
    ValueType.UINT64: (0, 2**64 - 1, 8),
}
INT_TYPES = st.sampled_from(sorted(INT_RANGES))
KEY_ALPHABET = "".join(sorted(KEY_NAME_CHARS))
KEYS = st.text(alphabet=KEY_ALPHABET, min_size=3, max_size=40)
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


def int_values(vtype: ValueType) -> st.SearchStrategy[int]:
    low, high, _ = INT_RANGES[vtype]
    return st.integers(low, high)


def typed_values() -> st.SearchStrategy[TypedValue]:
    """Any valid typed value, built through the public encoder."""
    ints = INT_TYPES.flatmap(lambda t: int_values(t).map(lambda v: TypedValue.of(t, v)))
    floats = st.floats(width=32).map(lambda v: TypedValue.of(ValueType.FLOAT, v))
    doubles = st.floats().map(lambda v: TypedValue.of(ValueType.DOUBLE, v))
    strings = st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
        max_size=30,
    ).map(lambda v: TypedValue.of(ValueType.STRING, v))
    binaries = st.binary(max_size=30).map(lambda v: TypedValue.of(ValueType.BINARY, v))
    return st.one_of(ints, floats, doubles, strings, binaries)


def code_of(exc_info: pytest.ExceptionInfo[CmapError]) -> CsErrorCode:
    return exc_info.value.code


def client_store() -> CmapStore:
    return CmapStore()


# -- value types and encodings --------------------------------------------------------


def test_value_type_numbers_are_corosyncs() -> None:
    """The twelve value types carry corosync's cmap_value_types_t numbers."""
    assert [(t.name, int(t)) for t in ValueType] == [
        ("INT8", 1),
        ("UINT8", 2),
        ("INT16", 3),
        ("UINT16", 4),
        ("INT32", 5),
        ("UINT32", 6),
        ("INT64", 7),
        ("UINT64", 8),
        ("FLOAT", 9),
        ("DOUBLE", 10),
        ("STRING", 11),
        ("BINARY", 12),
    ]


def test_value_type_ranges_and_sizes() -> None:
    """Integer types report C ranges and sizes; floats have sizes, strings neither."""
    for vtype, (low, high, size) in INT_RANGES.items():
        assert vtype.range == (low, high)
        assert vtype.size == size
        assert vtype.is_integer
    assert ValueType.FLOAT.size == 4
    assert ValueType.DOUBLE.size == 8
    for vtype in (ValueType.FLOAT, ValueType.DOUBLE, ValueType.STRING, ValueType.BINARY):
        assert vtype.range is None
        assert not vtype.is_integer
    assert ValueType.STRING.size is None
    assert ValueType.BINARY.size is None


def test_cs_error_codes_are_corosyncs() -> None:
    """cs_error_t numbers match corosync's corotypes.h (reference 3.0; 29 is unused)."""
    names = "OK LIBRARY VERSION INIT TIMEOUT TRY_AGAIN INVALID_PARAM NO_MEMORY BAD_HANDLE BUSY"
    names += " ACCESS NOT_EXIST NAME_TOO_LONG EXIST NO_SPACE INTERRUPT NAME_NOT_FOUND"
    names += " NO_RESOURCES NOT_SUPPORTED BAD_OPERATION FAILED_OPERATION MESSAGE_ERROR"
    names += " QUEUE_FULL QUEUE_NOT_AVAILABLE BAD_FLAGS TOO_BIG NO_SECTIONS CONTEXT_NOT_FOUND"
    expected = {name: number for number, name in enumerate(names.split(), start=1)}
    expected |= {"TOO_MANY_GROUPS": 30, "SECURITY": 100}
    assert {c.name: int(c) for c in CsErrorCode} == expected


def test_cmap_error_carries_code_and_message() -> None:
    """CmapError keeps the code and names it in its text; MalformedValue is INVALID_PARAM."""
    err = CmapError(CsErrorCode.ACCESS, "key 'x' is read-only")
    assert err.code is CsErrorCode.ACCESS
    assert err.message == "key 'x' is read-only"
    assert str(err) == "key 'x' is read-only (CS_ERR_ACCESS)"
    bad = MalformedValue("nope")
    assert isinstance(bad, CmapError)
    assert bad.code is CsErrorCode.INVALID_PARAM


@given(data=st.data())
def test_integer_round_trip(data: st.DataObject) -> None:
    """Every in-range integer encodes to its C size in host order and decodes back."""
    vtype = data.draw(INT_TYPES)
    value = data.draw(int_values(vtype))
    _, _, size = INT_RANGES[vtype]
    raw = encode_value(vtype, value)
    assert raw == value.to_bytes(size, sys.byteorder, signed=value < 0)
    typed = decode_value_untrusted(int(vtype), raw)
    assert typed == TypedValue(vtype, raw)
    assert typed.value == value
    assert isinstance(typed.value, int)


@given(data=st.data())
def test_integer_out_of_range_rejected(data: st.DataObject) -> None:
    """An integer one past either end of its type's range is INVALID_PARAM."""
    vtype = data.draw(INT_TYPES)
    low, high, _ = INT_RANGES[vtype]
    value = data.draw(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)))
    with pytest.raises(MalformedValue, match="out of range") as exc_info:
        encode_value(vtype, value)
    assert code_of(exc_info) is CsErrorCode.INVALID_PARAM


def test_integer_range_edges() -> None:
    """The extreme values of every integer type are accepted, one beyond is not."""
    for vtype, (low, high, _) in INT_RANGES.items():
        assert TypedValue.of(vtype, low).value == low
        assert TypedValue.of(vtype, high).value == high
        for bad in (low - 1, high + 1):
            with pytest.raises(MalformedValue):
                encode_value(vtype, bad)


def test_host_byte_order() -> None:
    """Values are in host order as the IPC carries them (little-endian on x86-64)."""
    assert encode_value(ValueType.UINT32, 1) == (1).to_bytes(4, sys.byteorder)
    assert encode_value(ValueType.INT16, -2) == (-2).to_bytes(2, sys.byteorder, signed=True)
    assert encode_value(ValueType.DOUBLE, 1.5) == struct.pack("=d", 1.5)


@given(st.floats(width=32))
def test_float_round_trip(value: float) -> None:
    """Any float32 value encodes to 4 bytes and decodes to the same value."""
    raw = encode_value(ValueType.FLOAT, value)
    assert len(raw) == 4
    back = decode_value_untrusted(ValueType.FLOAT, raw).value
    assert isinstance(back, float)
    assert back == value or (math.isnan(back) and math.isnan(value))


@given(st.floats())
def test_double_round_trip(value: float) -> None:
    """Any double encodes to 8 bytes and decodes to the same value."""
    raw = encode_value(ValueType.DOUBLE, value)
    assert len(raw) == 8
    back = decode_value_untrusted(ValueType.DOUBLE, raw).value
    assert isinstance(back, float)
    assert back == value or (math.isnan(back) and math.isnan(value))


def test_float_range() -> None:
    """FLOAT takes the float32 range (inf and nan too); a larger finite value is rejected."""
    assert TypedValue.of(ValueType.FLOAT, FLOAT32_MAX).value == FLOAT32_MAX
    assert TypedValue.of(ValueType.FLOAT, math.inf).value == math.inf
    assert math.isnan(TypedValue.of(ValueType.FLOAT, math.nan).value)  # type: ignore[arg-type]
    assert (
        TypedValue.of(ValueType.FLOAT, 0.1).value == struct.unpack("=f", struct.pack("=f", 0.1))[0]
    )
    with pytest.raises(MalformedValue, match="out of range for FLOAT"):
        encode_value(ValueType.FLOAT, 1e39)
    assert TypedValue.of(ValueType.DOUBLE, 1e300).value == 1e300
    assert TypedValue.of(ValueType.DOUBLE, 3).value == 3.0


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=8, max_size=8))
def test_float_bytes_kept_verbatim(raw32: bytes, raw64: bytes) -> None:
    """Any 4 or 8 bytes are a valid FLOAT or DOUBLE, stored bit for bit (NaN payloads too)."""
    assert decode_value_untrusted(ValueType.FLOAT, raw32).data == raw32
    assert decode_value_untrusted(ValueType.DOUBLE, raw64).data == raw64
    store = client_store()
    store.set_encoded("test.f", ValueType.FLOAT, raw32)
    assert store.get_typed("test.f").data == raw32


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0")))
def test_string_round_trip(value: str) -> None:
    """A string encodes as UTF-8 plus a NUL (the length counts the NUL) and decodes back."""
    raw = encode_value(ValueType.STRING, value)
    assert raw == value.encode() + b"\0"
    assert decode_value_untrusted(ValueType.STRING, raw).value == value


def test_string_rules() -> None:
    """Strings reject NUL and over-long values; non-UTF-8 bytes survive a round trip."""
    with pytest.raises(MalformedValue, match="NUL"):
        encode_value(ValueType.STRING, "a\0b")
    with pytest.raises(MalformedValue, match="cannot be encoded"):
        encode_value(ValueType.STRING, "\ud800")
    assert len(encode_value(ValueType.STRING, "x" * MAX_VALUE_LEN)) == MAX_VALUE_LEN + 1
    with pytest.raises(MalformedValue, match="more than"):
        encode_value(ValueType.STRING, "x" * (MAX_VALUE_LEN + 1))
    latin = decode_value_untrusted(ValueType.STRING, b"caf\xe9\0")
    assert latin.data == b"caf\xe9\0"
    assert TypedValue.of(ValueType.STRING, latin.value) == latin
    assert encode_value(ValueType.STRING, "") == b"\0"


def test_untrusted_string_like_icmap() -> None:
    """A STRING from a client: NUL last or absent is fine, bytes after the NUL are not."""
    assert decode_value_untrusted(ValueType.STRING, b"abc\0") == TypedValue(
        ValueType.STRING, b"abc\0"
    )
    # Without a NUL, corosync takes the bytes as the string and terminates it.
    assert decode_value_untrusted(ValueType.STRING, b"abc").data == b"abc\0"
    assert decode_value_untrusted(ValueType.STRING, b"").value == ""
    assert decode_value_untrusted(ValueType.STRING, b"\0").value == ""
    with pytest.raises(MalformedValue, match="after its terminating NUL"):
        decode_value_untrusted(ValueType.STRING, b"ab\0c")
    with pytest.raises(MalformedValue, match="after its terminating NUL"):
        decode_value_untrusted(ValueType.STRING, b"ab\0\0")


@given(st.binary(max_size=200))
def test_binary_round_trip(value: bytes) -> None:
    """Binary values are any bytes, NULs included, kept as they are."""
    assert encode_value(ValueType.BINARY, value) == value
    assert decode_value_untrusted(ValueType.BINARY, value).value == value


def test_binary_limits() -> None:
    """Binary values may be empty and at most 16 KiB long; bytearray is accepted."""
    assert TypedValue.of(ValueType.BINARY, b"").data == b""
    assert TypedValue.of(ValueType.BINARY, bytearray(b"\0\1")).data == b"\0\1"  # type: ignore[arg-type]
    assert len(encode_value(ValueType.BINARY, bytes(MAX_VALUE_LEN))) == MAX_VALUE_LEN
    with pytest.raises(MalformedValue, match="more than"):
        encode_value(ValueType.BINARY, bytes(MAX_VALUE_LEN + 1))
    with pytest.raises(MalformedValue, match="more than"):
        decode_value_untrusted(ValueType.BINARY, bytes(MAX_VALUE_LEN + 1))


def test_python_type_mismatch_rejected() -> None:
    """A Python value of the wrong kind for the type is INVALID_PARAM, bools included."""
    cases: list[tuple[ValueType, object]] = [
        (ValueType.UINT32, "1"),
        (ValueType.UINT32, 1.0),
        (ValueType.UINT8, True),
        (ValueType.DOUBLE, "1.0"),
        (ValueType.FLOAT, False),
        (ValueType.STRING, b"abc"),
        (ValueType.BINARY, "abc"),
    ]
    for vtype, value in cases:
        with pytest.raises(MalformedValue, match="must be"):
            encode_value(vtype, value)  # type: ignore[arg-type]


def test_untrusted_fixed_size_lengths() -> None:
    """A fixed-size value with any other length is INVALID_PARAM."""
    for vtype in ValueType:
        size = vtype.size
        if size is None:
            continue
        for length in (0, size - 1, size + 1):
            with pytest.raises(MalformedValue, match=f"expected {size}"):
                decode_value_untrusted(vtype, bytes(length))


def test_untrusted_unknown_types() -> None:
    """Types outside 1..12 (and non-integers) are INVALID_PARAM, even with an empty value,
    for decoding and encoding alike."""
    for bad in (0, 13, -1, 255, 2**31, True, "1", None):
        with pytest.raises(MalformedValue, match="unknown value type"):
            decode_value_untrusted(bad, b"")  # type: ignore[arg-type]
    with pytest.raises(MalformedValue, match="must be bytes"):
        decode_value_untrusted(ValueType.BINARY, 5)  # type: ignore[arg-type]
    for bad in (0, 13, True):
        with pytest.raises(MalformedValue, match="unknown value type"):
            encode_value(bad, 1)


@settings(max_examples=500)
@given(st.integers(-5, 300), st.binary(max_size=64))
def test_fuzz_decode_value_untrusted(vtype: int, data: bytes) -> None:
    """Whatever the type and bytes, decoding gives a value or MalformedValue, never a crash,
    and what it accepts re-encodes to the stored bytes."""
    try:
        typed = decode_value_untrusted(vtype, data)
    except MalformedValue as exc:
        error: MalformedValue | None = exc
    else:
        error = None
    if error is not None:
        assert error.code is CsErrorCode.INVALID_PARAM
        return
    assert typed.type == vtype
    if typed.type.size is not None:
        assert typed.data == data
    value = typed.value
    if typed.type not in (ValueType.FLOAT, ValueType.DOUBLE):
        assert encode_value(typed.type, value) == typed.data
    store = client_store()
    store.set_encoded("fuzz.key", vtype, data)
    assert store.get_typed("fuzz.key") == typed


@settings(max_examples=200)
@given(st.integers(MAX_VALUE_LEN - 3, MAX_VALUE_LEN + 3), st.binary(max_size=3))
def test_fuzz_long_values(length: int, tail: bytes) -> None:
    """Values around the 16 KiB limit are accepted exactly up to the limit."""
    data = b"x" * (length - len(tail)) + tail
    for vtype in (ValueType.BINARY, ValueType.STRING):
        try:
            typed = decode_value_untrusted(vtype, data)
        except MalformedValue:
            assert len(data) > MAX_VALUE_LEN or (vtype is ValueType.STRING and b"\0" in data)
            continue
        assert len(data) <= MAX_VALUE_LEN
        assert typed.data.rstrip(b"\0") == data.rstrip(b"\0")


# -- key names --------------------------------------------------------------------------


@given(KEYS)
def test_valid_key_names_accepted(key: str) -> None:
    """Any 3..255 characters of [A-Za-z0-9._/:-] make a key that can be set."""
    validate_key_name(key)
    store = CmapStore(read_only_defaults=False)
    store.set(key, ValueType.UINT8, 1)
    assert store.get(key) == (ValueType.UINT8, 1)


def test_key_name_lengths() -> None:
    """Names of 3 and 255 characters are fine; 2 and 256 are NAME_TOO_LONG."""
    store = client_store()
    for good in ("abc", "a" * 255):
        store.set(good, ValueType.UINT8, 1)
    for bad in ("", "ab", "a" * 256):
        with pytest.raises(CmapError, match=r"must be 3\.\.255") as exc_info:
            store.set(bad, ValueType.UINT8, 1)
        assert code_of(exc_info) is CsErrorCode.NAME_TOO_LONG
        assert bad not in store


@pytest.mark.parametrize("key", ["a b", "key*", "key\0x", "caf\xe9", "a\nb", "x=y", "a,b"])
def test_key_name_characters(key: str) -> None:
    """A character outside [A-Za-z0-9._/:-] is NAME_TOO_LONG, as corosync answers."""
    with pytest.raises(CmapError, match="characters outside") as exc_info:
        client_store().set(key, ValueType.UINT8, 1)
    assert code_of(exc_info) is CsErrorCode.NAME_TOO_LONG


def test_long_key_shortened_in_message() -> None:
    """Error messages quote at most 80 characters of a key."""
    with pytest.raises(CmapError) as exc_info:
        client_store().get("k" * 5000)
    assert len(str(exc_info.value)) < 200


# -- get, set, delete -------------------------------------------------------------------


def test_get_missing_is_not_exist() -> None:
    """Getting an absent key (valid name or not) is NOT_EXIST."""
    store = client_store()
    for key in ("totem.token", "x", "bad key"):
        with pytest.raises(CmapError, match="does not exist") as exc_info:
            store.get(key)
        assert code_of(exc_info) is CsErrorCode.NOT_EXIST


@given(typed_values())
def test_set_get_every_type(typed: TypedValue) -> None:
    """A value of any type set through set() comes back with its type and value."""
    store = client_store()
    store.set("test.key", typed.type, typed.value)
    assert store.get_typed("test.key") == typed
    vtype, value = store.get("test.key")
    assert vtype is typed.type
    assert value == typed.value or (isinstance(value, float) and math.isnan(value))


def test_set_replaces_value_and_type() -> None:
    """A set with another type replaces both value and type (icmap does)."""
    store = client_store()
    store.set("test.key", ValueType.UINT32, 5)
    store.set("test.key", ValueType.STRING, "five")
    assert store.get("test.key") == (ValueType.STRING, "five")
    store.set("test.key", ValueType.INT8, -5)
    assert store.get("test.key") == (ValueType.INT8, -5)
    assert len(store) == 1


def test_set_encoded_and_set_typed() -> None:
    """Raw IPC bytes and ready TypedValues are stored like set() values."""
    store = client_store()
    store.set_encoded("test.s", int(ValueType.STRING), b"hello")
    assert store.get("test.s") == (ValueType.STRING, "hello")
    assert store.get_typed("test.s").data == b"hello\0"
    store.set_typed("test.u", TypedValue.of(ValueType.UINT16, 7))
    assert store.get("test.u") == (ValueType.UINT16, 7)
    with pytest.raises(MalformedValue):
        store.set_encoded("test.bad", 99, b"")
    assert "test.bad" not in store


def test_delete() -> None:
    """Delete removes a key; deleting an absent key is NOT_EXIST."""
    store = client_store()
    store.set("test.key", ValueType.UINT8, 1)
    store.delete("test.key")
    assert "test.key" not in store
    assert len(store) == 0
    with pytest.raises(CmapError) as exc_info:
        store.delete("test.key")
    assert code_of(exc_info) is CsErrorCode.NOT_EXIST
    store.set("test.key", ValueType.UINT8, 2)
    assert store.get("test.key") == (ValueType.UINT8, 2)


def test_contains() -> None:
    """``in`` tells whether a key exists; non-strings are never in the map."""
    store = client_store()
    store.set("test.key", ValueType.UINT8, 1)
    assert "test.key" in store
    assert "test.other" not in store
    assert 5 not in store


def test_error_order_like_corosync() -> None:
    """Checks come in cmap.c/icmap.c order: ACCESS, then INVALID_PARAM, then NAME_TOO_LONG."""
    store = client_store()
    with pytest.raises(CmapError) as exc_info:
        store.set_encoded("totem.cluster_name", 99, b"")
    assert code_of(exc_info) is CsErrorCode.ACCESS
    with pytest.raises(CmapError) as exc_info:
        store.set_encoded("a b", ValueType.UINT32, b"\0")
    assert code_of(exc_info) is CsErrorCode.INVALID_PARAM
    with pytest.raises(CmapError) as exc_info:
        store.set("a b", ValueType.UINT32, 1)
    assert code_of(exc_info) is CsErrorCode.NAME_TOO_LONG
    with pytest.raises(CmapError) as exc_info:
        store.delete("nodelist.missing")
    assert code_of(exc_info) is CsErrorCode.ACCESS


# -- inc / dec --------------------------------------------------------------------------


def test_inc_dec() -> None:
    """inc adds one and dec subtracts one, keeping the type."""
    store = client_store()
    store.set("test.n", ValueType.UINT32, 10)
    store.inc("test.n")
    store.inc("test.n")
    store.dec("test.n")
    assert store.get("test.n") == (ValueType.UINT32, 11)


def test_inc_dec_wrap_around() -> None:
    """inc past the maximum wraps to the minimum and dec below the minimum to the maximum."""
    store = client_store()
    for vtype, (low, high, _) in INT_RANGES.items():
        key = f"test.{vtype.name.lower()}"
        store.set(key, vtype, high)
        store.inc(key)
        assert store.get(key) == (vtype, low)
        store.dec(key)
        assert store.get(key) == (vtype, high)


@given(data=st.data())
def test_adjust_is_c_arithmetic(data: st.DataObject) -> None:
    """adjust(step) gives the C result: (value + step) modulo 2**bits, read back as the type."""
    vtype = data.draw(INT_TYPES)
    low, high, size = INT_RANGES[vtype]
    value = data.draw(int_values(vtype))
    step = data.draw(st.integers(-(2**31), 2**31 - 1))
    store = client_store()
    store.set("test.n", vtype, value)
    store.adjust("test.n", step)
    expected = (value + step) % (1 << (8 * size))
    if low < 0 and expected > high:
        expected -= 1 << (8 * size)
    assert store.get("test.n") == (vtype, expected)


def test_adjust_errors() -> None:
    """Non-integer keys and steps outside int32 are INVALID_PARAM; absent keys NOT_EXIST."""
    store = client_store()
    store.set("test.f", ValueType.DOUBLE, 1.0)
    store.set("test.s", ValueType.STRING, "1")
    store.set("test.b", ValueType.BINARY, b"\1")
    store.set("test.flt", ValueType.FLOAT, 1.0)
    for key in ("test.f", "test.s", "test.b", "test.flt"):
        with pytest.raises(CmapError, match="only integer keys") as exc_info:
            store.inc(key)
        assert code_of(exc_info) is CsErrorCode.INVALID_PARAM
    with pytest.raises(CmapError) as exc_info:
        store.dec("test.missing")
    assert code_of(exc_info) is CsErrorCode.NOT_EXIST
    store.set("test.n", ValueType.UINT8, 1)
    for step in (2**31, -(2**31) - 1, True, 1.0):
        with pytest.raises(CmapError) as exc_info:
            store.adjust("test.n", step)  # type: ignore[arg-type]
        assert code_of(exc_info) is CsErrorCode.INVALID_PARAM
    assert store.get("test.n") == (ValueType.UINT8, 1)


# -- iteration --------------------------------------------------------------------------


def test_iterate_sorted_by_prefix() -> None:
    """Iteration is in sorted key order and uses plain string prefixes."""
    store = client_store()
    for key in ("totem.token", "totem.interface.0.mcastport", "logging.debug", "totem.tok"):
        store.set(key, ValueType.STRING, key)
    assert [k for k, _ in store.iterate()] == [
        "logging.debug",
        "totem.interface.0.mcastport",
        "totem.tok",
        "totem.token",
    ]
    assert [k for k, _ in store.iterate("totem.tok")] == ["totem.tok", "totem.token"]
    assert [k for k, _ in store.iterate("totem.token")] == ["totem.token"]
    assert store.iterate("quorum.") == []
    assert store.iterate("totem.")[0][1] == TypedValue.of(
        ValueType.STRING, "totem.interface.0.mcastport"
    )


def test_iterate_is_a_snapshot() -> None:
    """Changes after an iteration started do not alter the list it returned."""
    store = client_store()
    store.set("a.a", ValueType.UINT8, 1)
    entries = store.iterate("a.")
    store.set("a.b", ValueType.UINT8, 2)
    store.delete("a.a")
    assert entries == [("a.a", TypedValue.of(ValueType.UINT8, 1))]


@given(st.dictionaries(KEYS, st.integers(0, 255), max_size=30), st.text(KEY_ALPHABET, max_size=4))
def test_iterate_matches_model(keys: dict[str, int], prefix: str) -> None:
    """iterate(prefix) lists exactly the keys starting with prefix, sorted, with values."""
    store = CmapStore(read_only_defaults=False)
    for key, value in keys.items():
        store.set(key, ValueType.UINT8, value)
    for key in list(keys)[::3]:
        store.delete(key)
        del keys[key]
    expected = sorted((k, v) for k, v in keys.items() if k.startswith(prefix))
    assert [(k, t.value) for k, t in store.iterate(prefix)] == expected


# -- read-only keys ---------------------------------------------------------------------


def test_default_read_only_rules() -> None:
    """corosync's startup read-only prefixes and keys refuse client writes with ACCESS."""
    store = client_store()
    samples = [p + "x.y" for p in DEFAULT_RO_PREFIXES] + list(DEFAULT_RO_KEYS)
    assert "totem.cluster_name" in samples
    assert "config.reload_in_progress" in samples
    for key in samples:
        assert store.is_read_only(key)
        with pytest.raises(CmapError, match="read-only") as exc_info:
            store.set(key, ValueType.UINT8, 1)
        assert code_of(exc_info) is CsErrorCode.ACCESS
        store.set(key, ValueType.UINT8, 1, writer=True)
        for write in (store.inc, store.dec, store.delete):
            with pytest.raises(CmapError) as exc_info:
                write(key)
            assert code_of(exc_info) is CsErrorCode.ACCESS
        store.inc(key, writer=True)
        assert store.get(key) == (ValueType.UINT8, 2)
        store.delete(key, writer=True)
        assert key not in store


def test_read_only_prefix_is_plain_prefix() -> None:
    """Only keys starting with a read-only prefix, or equal to a read-only key, are locked."""
    store = client_store()
    for key in (
        "systemd.x",
        "totem.token",
        "totem.cluster_name_extra",
        "nodelis.x",
        "quorum.wait_for_all",
    ):
        assert not store.is_read_only(key)
        store.set(key, ValueType.UINT8, 1)
    assert store.is_read_only("system.")
    assert store.is_read_only("runtime.config.totem.token")
    assert not store.is_read_only("runtime.members.1.ip")


def test_read_only_rules_added_and_removed() -> None:
    """set_read_only adds keys and prefixes (votequorum's set) and removes them again."""
    store = client_store()
    for key in VOTEQUORUM_RO_KEYS:
        store.set_read_only(key)
    with pytest.raises(CmapError) as exc_info:
        store.set("quorum.wait_for_all", ValueType.UINT8, 1)
    assert code_of(exc_info) is CsErrorCode.ACCESS
    store.set_read_only("quorum.wait_for_all", read_only=False)
    store.set("quorum.wait_for_all", ValueType.UINT8, 1)
    store.set_read_only("app.", prefix=True)
    assert store.is_read_only("app.x")
    store.set_read_only("app.", prefix=True, read_only=False)
    assert not store.is_read_only("app.x")
    store.set_read_only("system.", prefix=True, read_only=False)
    assert not store.is_read_only("system.x")
    bare = CmapStore(read_only_defaults=False)
    assert not any(bare.is_read_only(p + "x") for p in DEFAULT_RO_PREFIXES)


def test_writable_prefix_is_an_exception_to_every_read_only_rule() -> None:
    """A store read-only everywhere but under one prefix (the stats map's stats.clear.)."""
    store = CmapStore(read_only_defaults=False)
    store.set_read_only("", prefix=True)
    store.set_read_only("stats.clear.all")
    store.set_writable_prefix("stats.clear.")
    store.set("stats.clear.all", ValueType.STRING, "1")
    store.set("stats.clear.knet", ValueType.STRING, "1")
    for key in ("stats.clear", "stats.clea", "stats.knet.x", "other.key"):
        with pytest.raises(CmapError) as exc_info:
            store.set(key, ValueType.STRING, "1")
        assert code_of(exc_info) is CsErrorCode.ACCESS, key


# -- tracking ---------------------------------------------------------------------------

ALL = TrackType.ADD | TrackType.MODIFY | TrackType.DELETE


def u8(value: int) -> TypedValue:
    return TypedValue.of(ValueType.UINT8, value)


def test_track_add_modify_delete_events() -> None:
    """An exact-key track sees ADD, MODIFY and DELETE with new and old values."""
    store = client_store()
    handle = store.track_add("test.key", ALL, owner="conn1")
    assert handle != 0
    store.set("test.key", ValueType.UINT8, 1)
    store.set("test.key", ValueType.UINT8, 2)
    store.set("test.key", ValueType.STRING, "two")
    store.delete("test.key")
    store.set("test.other", ValueType.UINT8, 1)
    assert store.drain_notifications() == (
        Notification(handle, "conn1", TrackEvent.ADD, "test.key", u8(1), None),
        Notification(handle, "conn1", TrackEvent.MODIFY, "test.key", u8(2), u8(1)),
        Notification(
            handle,
            "conn1",
            TrackEvent.MODIFY,
            "test.key",
            TypedValue.of(ValueType.STRING, "two"),
            u8(2),
        ),
        Notification(
            handle,
            "conn1",
            TrackEvent.DELETE,
            "test.key",
            None,
            TypedValue.of(ValueType.STRING, "two"),
        ),
    )
    assert store.drain_notifications() == ()


def test_unchanged_set_notifies_nobody() -> None:
    """Setting the same type and value again changes nothing and sends no MODIFY (icmap)."""
    store = client_store()
    store.set("test.key", ValueType.STRING, "same")
    store.track_add("test.key", ALL)
    store.set("test.key", ValueType.STRING, "same")
    store.set_encoded("test.key", ValueType.STRING, b"same")
    assert store.drain_notifications() == ()
    store.set("test.key", ValueType.BINARY, b"same\0")  # same bytes, other type
    (event,) = store.drain_notifications()
    assert event.event is TrackEvent.MODIFY


def test_adjust_notifies_modify() -> None:
    """inc and dec report MODIFY with both values; a zero step reports nothing."""
    store = client_store()
    store.set("test.n", ValueType.UINT8, 255)
    handle = store.track_add("test.n", TrackType.MODIFY)
    store.inc("test.n")
    store.adjust("test.n", 0)
    assert store.drain_notifications() == (
        Notification(handle, None, TrackEvent.MODIFY, "test.n", u8(0), u8(255)),
    )


def test_track_flags_filter_events() -> None:
    """A track gets only the events named in its flags."""
    store = client_store()
    adds = store.track_add("test.key", TrackType.ADD)
    deletes = store.track_add("test.key", TrackType.DELETE)
    modifies = store.track_add("test.key", TrackType.MODIFY)
    store.set("test.key", ValueType.UINT8, 1)
    store.set("test.key", ValueType.UINT8, 2)
    store.delete("test.key")
    assert [(n.track_handle, n.event) for n in store.drain_notifications()] == [
        (adds, TrackEvent.ADD),
        (modifies, TrackEvent.MODIFY),
        (deletes, TrackEvent.DELETE),
    ]


def test_prefix_tracking() -> None:
    """A PREFIX track sees every key starting with its key, including the key itself."""
    store = client_store()
    handle = store.track_add("totem.", ALL | TrackType.PREFIX, owner="c")
    exact = store.track_add("totem.", ALL, owner="c")
    store.set("totem.token", ValueType.UINT32, 3000)
    store.set("totem.token_retransmit", ValueType.UINT32, 700)
    store.set("totemx.a", ValueType.UINT32, 1)
    store.set("totem.", ValueType.UINT32, 1)
    events = store.drain_notifications()
    assert [(n.track_handle, n.key) for n in events] == [
        (handle, "totem.token"),
        (handle, "totem.token_retransmit"),
        (handle, "totem."),
        (exact, "totem."),
    ]
    assert all(n.event is TrackEvent.ADD for n in events)


def test_empty_prefix_tracks_everything() -> None:
    """An empty key with PREFIX (what a zero-length IPC key means) tracks every key."""
    store = client_store()
    handle = store.track_add("", ALL | TrackType.PREFIX)
    nothing = store.track_add("", ALL)
    store.set("a.b.c", ValueType.UINT8, 1)
    store.set("zzz", ValueType.UINT8, 1, writer=True)
    assert [(n.track_handle, n.key) for n in store.drain_notifications()] == [
        (handle, "a.b.c"),
        (handle, "zzz"),
    ]
    store.track_delete(nothing)


def test_writer_changes_are_tracked() -> None:
    """Changes made by the executive itself notify tracks like client changes."""
    store = client_store()
    handle = store.track_add("runtime.config.", ALL | TrackType.PREFIX)
    store.set("runtime.config.totem.token", ValueType.UINT32, 3000, writer=True)
    assert store.drain_notifications()[0].track_handle == handle


def test_failed_write_notifies_nobody() -> None:
    """A refused write leaves the map and the notification queue untouched."""
    store = client_store()
    store.track_add("", ALL | TrackType.PREFIX)
    writes: list[Callable[[], None]] = [
        lambda: store.set("system.x", ValueType.UINT8, 1),
        lambda: store.set("ab", ValueType.UINT8, 1),
        lambda: store.set("test.x", ValueType.UINT8, 256),
        lambda: store.delete("test.missing"),
        lambda: store.inc("test.missing"),
    ]
    for write in writes:
        with pytest.raises(CmapError):
            write()
    assert store.drain_notifications() == ()
    assert store.iterate() == []


def test_several_tracks_in_handle_order() -> None:
    """One change reaches every matching track, in the order the tracks were added."""
    store = client_store()
    handles = [
        store.track_add("a.b.c", ALL, owner=1),
        store.track_add("a.", ALL | TrackType.PREFIX, owner=2),
        store.track_add("a.b", ALL | TrackType.PREFIX, owner=1),
        store.track_add("x.", ALL | TrackType.PREFIX, owner=3),
    ]
    store.set("a.b.c", ValueType.UINT8, 1)
    events = store.drain_notifications()
    assert [(n.track_handle, n.owner) for n in events] == [
        (handles[0], 1),
        (handles[1], 2),
        (handles[2], 1),
    ]
    assert len(set(handles)) == 4


def test_track_delete() -> None:
    """A deleted track is silent; unknown handles or another owner's are BAD_HANDLE."""
    store = client_store()
    handle = store.track_add("test.key", ALL, owner="mine")
    with pytest.raises(CmapError) as exc_info:
        store.track_delete(handle, owner="theirs")
    assert code_of(exc_info) is CsErrorCode.BAD_HANDLE
    store.track_delete(handle, owner="mine")
    store.set("test.key", ValueType.UINT8, 1)
    assert store.drain_notifications() == ()
    for bad in (handle, 0, 2**64 - 1):
        with pytest.raises(CmapError, match="no track") as exc_info:
            store.track_delete(bad)
        assert code_of(exc_info) is CsErrorCode.BAD_HANDLE


def test_track_delete_owner() -> None:
    """Dropping an owner removes all of its tracks and no others."""
    store = client_store()
    store.track_add("test.", ALL | TrackType.PREFIX, owner="gone")
    store.track_add("test.key", ALL, owner="gone")
    kept = store.track_add("test.key", ALL, owner="stays")
    assert store.track_delete_owner("gone") == 2
    assert store.track_delete_owner("gone") == 0
    store.set("test.key", ValueType.UINT8, 1)
    assert [n.track_handle for n in store.drain_notifications()] == [kept]


def test_track_add_bad_flags() -> None:
    """Unknown track-type bits are INVALID_PARAM (icmap); no flags at all is allowed."""
    store = client_store()
    for bad in (16, 0x100, -1, 2**40, True, "1"):
        with pytest.raises(CmapError) as exc_info:
            store.track_add("test.key", bad)  # type: ignore[arg-type]
        assert code_of(exc_info) is CsErrorCode.INVALID_PARAM
    silent = store.track_add("test.key", 0)
    store.track_add("test.key", 15)
    store.set("test.key", ValueType.UINT8, 1)
    assert [n.track_handle for n in store.drain_notifications()] == [silent + 1]


def test_tracks_survive_key_deletion() -> None:
    """A track on an exact key keeps working across delete and re-create."""
    store = client_store()
    handle = store.track_add("test.key", ALL)
    store.set("test.key", ValueType.UINT8, 1)
    store.delete("test.key")
    store.set("test.key", ValueType.UINT8, 3)
    assert [(n.track_handle, n.event) for n in store.drain_notifications()] == [
        (handle, TrackEvent.ADD),
        (handle, TrackEvent.DELETE),
        (handle, TrackEvent.ADD),
    ]


# -- generated keys ---------------------------------------------------------------------


class Counter:
    """A generated-key provider that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.tx = 0

    def __call__(self, prefix: str) -> Mapping[str, TypedValue]:
        self.asked.append(prefix)
        self.tx += 1
        return {
            "stats.srp.orf_token_tx": TypedValue.of(ValueType.UINT64, self.tx),
            "stats.srp.mcast_rx": TypedValue.of(ValueType.UINT64, 7),
            "stats.srp.firewall_enabled_or_nic_failure": TypedValue.of(ValueType.UINT8, 0),
            "elsewhere.key": TypedValue.of(ValueType.UINT8, 1),
        }


def test_generated_get() -> None:
    """Generated keys are computed on every read."""
    store = client_store()
    counter = Counter()
    store.register_generated("stats.srp.", counter)
    assert store.get("stats.srp.orf_token_tx") == (ValueType.UINT64, 1)
    assert store.get("stats.srp.orf_token_tx") == (ValueType.UINT64, 2)
    assert counter.asked == ["stats.srp.orf_token_tx", "stats.srp.orf_token_tx"]
    with pytest.raises(CmapError) as exc_info:
        store.get("stats.srp.missing")
    assert code_of(exc_info) is CsErrorCode.NOT_EXIST
    with pytest.raises(CmapError):
        store.get("elsewhere.key")
    assert "stats.srp.mcast_rx" in store


def test_generated_iteration() -> None:
    """Iteration merges stored and generated keys, sorted, asking only overlapping providers."""
    store = client_store()
    counter = Counter()
    store.register_generated("stats.srp.", counter)
    store.register_generated("stats.knet.", lambda _p: {})
    store.set("stats.clear.all", ValueType.UINT8, 1)
    store.set("totem.token", ValueType.UINT32, 3000)
    assert [k for k, _ in store.iterate("stats.")] == [
        "stats.clear.all",
        "stats.srp.firewall_enabled_or_nic_failure",
        "stats.srp.mcast_rx",
        "stats.srp.orf_token_tx",
    ]
    assert counter.asked == ["stats.srp."]
    assert [k for k, _ in store.iterate("stats.srp.m")] == ["stats.srp.mcast_rx"]
    assert counter.asked[-1] == "stats.srp.m"
    assert [k for k, _ in store.iterate("totem.")] == ["totem.token"]
    assert len(counter.asked) == 2
    assert len(store.iterate()) == 5
    assert len(store) == 2


def test_generated_keys_not_writable() -> None:
    """Writes under a generated prefix are ACCESS for clients, NOT_SUPPORTED for the executive."""
    store = client_store()
    store.register_generated("stats.srp.", Counter())
    client_writes: list[Callable[[], None]] = [
        lambda: store.set("stats.srp.orf_token_tx", ValueType.UINT64, 1),
        lambda: store.delete("stats.srp.mcast_rx"),
        lambda: store.inc("stats.srp.mcast_rx"),
        lambda: store.set_encoded("stats.srp.x", 99, b""),
    ]
    executive_writes: list[Callable[[], None]] = [
        lambda: store.set("stats.srp.new", ValueType.UINT64, 1, writer=True),
        lambda: store.delete("stats.srp.mcast_rx", writer=True),
        lambda: store.dec("stats.srp.mcast_rx", writer=True),
        lambda: store.set_typed("stats.srp.x", u8(1), writer=True),
    ]
    for write in client_writes:
        with pytest.raises(CmapError, match="read-only") as exc_info:
            write()
        assert code_of(exc_info) is CsErrorCode.ACCESS
    for write in executive_writes:
        with pytest.raises(CmapError, match="generated") as exc_info:
            write()
        assert code_of(exc_info) is CsErrorCode.NOT_SUPPORTED
    assert store.get("stats.srp.mcast_rx") == (ValueType.UINT64, 7)


def test_register_generated_conflicts() -> None:
    """Overlapping, empty or already-populated generated prefixes are refused; unregister works."""
    store = client_store()
    store.register_generated("stats.srp.", Counter())
    for bad in ("stats.", "stats.srp.x", "stats.srp.", ""):
        with pytest.raises(ValueError, match=r"overlaps|empty"):
            store.register_generated(bad, Counter())
    store.set("stats.knet.x", ValueType.UINT8, 1)
    with pytest.raises(ValueError, match="stored keys exist"):
        store.register_generated("stats.knet.", Counter())
    store.unregister_generated("stats.srp.")
    with pytest.raises(CmapError):
        store.get("stats.srp.mcast_rx")
    store.set("stats.srp.x", ValueType.UINT8, 1)
    with pytest.raises(KeyError):
        store.unregister_generated("stats.srp.")


# -- model-based check ------------------------------------------------------------------

MODEL_KEYS = st.sampled_from(["a.x", "a.y", "a.z.1", "b.x", "system.x"])


class StoreMachine(RuleBasedStateMachine):
    """Random client and executive operations against a plain dict model and a
    record of what every track must have seen."""

    def __init__(self) -> None:
        super().__init__()
        self.store = CmapStore()
        self.model: dict[str, TypedValue] = {}
        self.tracks: dict[int, tuple[str, TrackType]] = {}
        self.expected: list[Notification] = []

    def _expect(
        self, event: TrackEvent, key: str, new: TypedValue | None, old: TypedValue | None
    ) -> None:
        flag = {TrackEvent.ADD: TrackType.ADD, TrackEvent.MODIFY: TrackType.MODIFY}.get(
            event, TrackType.DELETE
        )
        for handle, (tkey, ttype) in self.tracks.items():
            matches = key.startswith(tkey) if ttype & TrackType.PREFIX else key == tkey
            if matches and ttype & flag:
                self.expected.append(Notification(handle, None, event, key, new, old))

    @rule(key=MODEL_KEYS, value=typed_values(), writer=st.booleans())
    def set(self, key: str, value: TypedValue, writer: bool) -> None:
        old = self.model.get(key)
        if key.startswith("system.") and not writer:
            with pytest.raises(CmapError):
                self.store.set_typed(key, value, writer=writer)
            return
        self.store.set_typed(key, value, writer=writer)
        self.model[key] = value
        if old is None:
            self._expect(TrackEvent.ADD, key, value, None)
        elif old != value:
            self._expect(TrackEvent.MODIFY, key, value, old)

    @rule(key=MODEL_KEYS)
    def delete(self, key: str) -> None:
        old = self.model.pop(key, None)
        if old is None:
            with pytest.raises(CmapError):
                self.store.delete(key, writer=True)
        else:
            self.store.delete(key, writer=True)
            self._expect(TrackEvent.DELETE, key, None, old)

    @rule(key=MODEL_KEYS, step=st.integers(-3, 3))
    def adjust(self, key: str, step: int) -> None:
        old = self.model.get(key)
        if old is None or not old.type.is_integer:
            with pytest.raises(CmapError):
                self.store.adjust(key, step, writer=True)
            return
        self.store.adjust(key, step, writer=True)
        new = self.store.get_typed(key)
        self.model[key] = new
        if step:
            self._expect(TrackEvent.MODIFY, key, new, old)
        else:
            assert new == old

    @rule(
        key=st.sampled_from(["", "a.", "a.x", "a.z", "b.x", "system."]),
        flags=st.integers(0, 15),
    )
    def track(self, key: str, flags: int) -> None:
        handle = self.store.track_add(key, flags)
        self.tracks[handle] = (key, TrackType(flags))

    @rule(data=st.data())
    def untrack(self, data: st.DataObject) -> None:
        if self.tracks:
            handle = data.draw(st.sampled_from(sorted(self.tracks)))
            self.store.track_delete(handle)
            del self.tracks[handle]

    @invariant()
    def same_as_model(self) -> None:
        assert self.store.iterate() == sorted(self.model.items())
        assert self.store.drain_notifications() == tuple(self.expected)
        self.expected.clear()


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_store_against_model = StoreMachine.TestCase
