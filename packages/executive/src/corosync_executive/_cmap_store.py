"""The cmap key-value map of the executive: typed values, tracking, read-only keys.

A sans-IO model of corosync's icmap (``exec/icmap.c``) and of the checks that its
cmap service (``exec/cmap.c``) adds for IPC clients. No I/O, no clock: the IPC
service calls the methods and drains the notifications after each request.

Semantics, as corosync's (corosync reference 3.0-3.2, libqb-ipc.md 5.1):

* Values are stored as the bytes the IPC carries: integers and floats in host byte
  order, strings with their terminating NUL (the length counts it), binary as is;
  at most 16 KiB (icmap's ``ICMAP_MAX_VALUE_LEN``).
* A set with a different type replaces the value and its type. A set that changes
  nothing (same type, same bytes) is a no-op and notifies nobody, as icmap.
* Key names are 3..255 characters of ``[A-Za-z0-9._/:-]``, checked when a key is
  created; corosync answers CS_ERR_NAME_TOO_LONG for any bad name, bad characters
  included.
* Client writes (``writer=False``) to read-only keys get CS_ERR_ACCESS before any
  other check, as cmap.c does for set, delete and adjust; the executive itself
  (``writer=True``) may write them.
* inc/dec wrap around in the type's width like C integer arithmetic; only integer
  types can be adjusted (else CS_ERR_INVALID_PARAM).
* Iteration is in sorted key order (byte order: icmap's trie), by plain string prefix.
* Tracking: exact key or prefix (TrackType.PREFIX), for ADD, MODIFY and DELETE. Every
  change yields one :class:`Notification` per matching track, in track-handle order
  (the order of track_add), with the new and the old value.

Beyond corosync: a value type outside 1..12 is rejected (icmap accepts an empty value
of any unknown type). Generated keys (:meth:`CmapStore.register_generated`, the future
``stats.*``) live in the same store as stored ones; as in corosync's stats map, clients
writing them get CS_ERR_ACCESS and the executive CS_ERR_NOT_SUPPORTED. Tracking does
not watch generated keys (corosync polls them on a timer; that belongs to the stats
service). Track handles count up from 1 (corosync's are per-connection handle-database
handles); ``owner`` keeps clients from deleting each other's tracks. :meth:`iterate`
returns a snapshot, where corosync's trie iterator is live: the difference shows only
for keys changed during one client's iteration.
"""

from __future__ import annotations

import bisect
import enum
import struct
import sys
from collections.abc import Callable, Hashable, Mapping

import attrs

from corosync._errors import CsErrorCode
from corosync.ipc._cmap_msgs import CmapValueType

__all__ = [
    "DEFAULT_RO_KEYS",
    "DEFAULT_RO_PREFIXES",
    "KEY_NAME_CHARS",
    "KEY_NAME_MAX_LEN",
    "KEY_NAME_MIN_LEN",
    "MAX_VALUE_LEN",
    "VOTEQUORUM_RO_KEYS",
    "CmapError",
    "CmapStore",
    "CsErrorCode",
    "GeneratedProvider",
    "MalformedValue",
    "Notification",
    "TrackEvent",
    "TrackType",
    "TypedValue",
    "Value",
    "ValueType",
    "decode_value_untrusted",
    "encode_value",
    "validate_key_name",
]


class CmapError(Exception):
    """A cmap operation failed; ``code`` is the cs_error_t the IPC reply carries."""

    def __init__(self, code: CsErrorCode, message: str) -> None:
        super().__init__(f"{message} (CS_ERR_{code.name})")
        self.code = code
        self.message = message


class MalformedValue(CmapError):
    """A value from an IPC client has a bad type, length or encoding
    (always CS_ERR_INVALID_PARAM, what corosync answers)."""

    def __init__(self, message: str) -> None:
        super().__init__(CsErrorCode.INVALID_PARAM, message)


#: corosync's ``cmap_value_types_t``: the clients' wire enum is the one type list.
ValueType = CmapValueType


# Native byte order ("="): the IPC carries host-order values (little-endian on x86-64
# and arm64), and real corosync clients on this host expect exactly that.
_INT_FORMATS: dict[ValueType, str] = {
    ValueType.INT8: "=b",
    ValueType.UINT8: "=B",
    ValueType.INT16: "=h",
    ValueType.UINT16: "=H",
    ValueType.INT32: "=i",
    ValueType.UINT32: "=I",
    ValueType.INT64: "=q",
    ValueType.UINT64: "=Q",
}
_FLOAT_FORMATS: dict[ValueType, str] = {ValueType.FLOAT: "=f", ValueType.DOUBLE: "=d"}
_SIGNED = frozenset({ValueType.INT8, ValueType.INT16, ValueType.INT32, ValueType.INT64})

#: A decoded value: int for the integer types, float for FLOAT/DOUBLE, str for STRING
#: (bytes that are not UTF-8 survive as surrogate escapes), bytes for BINARY.
Value = int | float | str | bytes

#: icmap's ICMAP_MAX_VALUE_LEN: the longest value a set may carry (a string's NUL excluded).
MAX_VALUE_LEN = 16 * 1024
KEY_NAME_MIN_LEN = 3
KEY_NAME_MAX_LEN = 255
KEY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:-")


class TrackType(enum.IntFlag):
    """What a track watches (``cmap_track_add`` flags)."""

    DELETE = 1
    MODIFY = 2
    ADD = 4
    PREFIX = 8  #: the key is a prefix: every key starting with it is watched


class TrackEvent(enum.IntEnum):
    """The kind of change a notification reports (the ``event`` of the IPC event)."""

    DELETE = 1
    MODIFY = 2
    ADD = 4


def _encode_string(value: str) -> bytes:
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise MalformedValue(f"string value cannot be encoded: {exc.reason}") from None
    if b"\0" in raw:
        raise MalformedValue("string value contains a NUL character")
    if len(raw) > MAX_VALUE_LEN:
        raise MalformedValue(f"string value is {len(raw)} bytes, more than {MAX_VALUE_LEN}")
    return raw + b"\0"


def encode_value(type: int, value: Value) -> bytes:
    """The bytes cmap stores and the IPC carries for ``value`` of ``type``.

    Raises :class:`MalformedValue` when the value does not fit the type: an integer
    out of range, a float beyond float32 for FLOAT, a string with a NUL, anything
    longer than :data:`MAX_VALUE_LEN`, a Python type that does not match, or an
    unknown ``type``. FLOAT values are rounded to float32.
    """
    if isinstance(type, bool) or type not in _VALUE_TYPES:
        raise MalformedValue(f"unknown value type {type!r}")
    vtype = ValueType(type)
    if vtype in _INT_FORMATS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedValue(f"{vtype.name} value must be an int, got {value!r}")
        low, high = vtype.range or (0, 0)
        if not low <= value <= high:
            raise MalformedValue(f"{value} is out of range for {vtype.name} ({low}..{high})")
        return struct.pack(_INT_FORMATS[vtype], value)
    if vtype in _FLOAT_FORMATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedValue(f"{vtype.name} value must be a float, got {value!r}")
        try:
            return struct.pack(_FLOAT_FORMATS[vtype], value)
        except (OverflowError, struct.error):
            raise MalformedValue(f"{value!r} is out of range for {vtype.name}") from None
    if vtype is ValueType.STRING:
        if not isinstance(value, str):
            raise MalformedValue(f"STRING value must be a str, got {value!r}")
        return _encode_string(value)
    if not isinstance(value, bytes | bytearray):
        raise MalformedValue(f"BINARY value must be bytes, got {value!r}")
    if len(value) > MAX_VALUE_LEN:
        raise MalformedValue(f"binary value is {len(value)} bytes, more than {MAX_VALUE_LEN}")
    return bytes(value)


def _decode_trusted(vtype: ValueType, data: bytes) -> Value:
    if vtype in _INT_FORMATS:
        return int(struct.unpack(_INT_FORMATS[vtype], data)[0])
    if vtype in _FLOAT_FORMATS:
        return float(struct.unpack(_FLOAT_FORMATS[vtype], data)[0])
    if vtype is ValueType.STRING:
        return data[:-1].decode("utf-8", "surrogateescape")
    return data


@attrs.frozen(slots=True)
class TypedValue:
    """A cmap value as stored: its type and its encoded bytes (as the IPC carries them;
    a string's bytes end with its NUL). Build one with :meth:`of` or
    :func:`decode_value_untrusted`; the constructor trusts its arguments."""

    type: ValueType
    data: bytes

    @classmethod
    def of(cls, type: ValueType, value: Value) -> TypedValue:
        """Encode ``value`` as ``type`` (raises :class:`MalformedValue` if it does not fit)."""
        return cls(ValueType(type), encode_value(type, value))

    @property
    def value(self) -> Value:
        """The decoded Python value."""
        return _decode_trusted(self.type, self.data)


def decode_value_untrusted(type: int, data: bytes) -> TypedValue:
    """Validate a value from an IPC client (a SET request's type and value bytes).

    As icmap: a fixed-size type needs exactly its size; a STRING is the bytes up to
    a NUL that must be the last byte, or all the bytes when there is no NUL (corosync
    then terminates it), stored with its NUL; BINARY is any bytes; at most
    :data:`MAX_VALUE_LEN` bytes. Anything else raises :class:`MalformedValue`.
    """
    if isinstance(type, bool) or not isinstance(type, int) or type not in _VALUE_TYPES:
        raise MalformedValue(f"unknown value type {type!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedValue(f"value must be bytes, got {data!r}")
    vtype = ValueType(type)
    data = bytes(data)
    if len(data) > MAX_VALUE_LEN:
        raise MalformedValue(f"value is {len(data)} bytes, more than {MAX_VALUE_LEN}")
    size = vtype.size
    if size is not None:
        if len(data) != size:
            raise MalformedValue(f"{vtype.name} value is {len(data)} bytes, expected {size}")
        return TypedValue(vtype, data)
    if vtype is ValueType.STRING:
        nul = data.find(b"\0")
        if nul == -1:
            return TypedValue(vtype, data + b"\0")
        if nul != len(data) - 1:
            raise MalformedValue("string value has bytes after its terminating NUL")
    return TypedValue(vtype, data)


_VALUE_TYPES = frozenset(int(t) for t in ValueType)


def _show(key: str) -> str:
    """A key for an error message, cut short (client keys can be long garbage)."""
    return repr(key) if len(key) <= 80 else repr(key[:80]) + "..."


def validate_key_name(key: str) -> None:
    """Raise CmapError(NAME_TOO_LONG) unless ``key`` is a valid cmap key name
    (3..255 characters of ``[A-Za-z0-9._/:-]``; corosync uses that code for both
    a bad length and bad characters)."""
    if not KEY_NAME_MIN_LEN <= len(key) <= KEY_NAME_MAX_LEN:
        raise CmapError(
            CsErrorCode.NAME_TOO_LONG,
            f"key name {_show(key)} must be {KEY_NAME_MIN_LEN}..{KEY_NAME_MAX_LEN} characters",
        )
    if not KEY_NAME_CHARS.issuperset(key):
        raise CmapError(
            CsErrorCode.NAME_TOO_LONG,
            f"key name {_show(key)} has characters outside [A-Za-z0-9._/:-]",
        )


#: Prefixes corosync makes read-only for clients at startup (main.c).
DEFAULT_RO_PREFIXES: tuple[str, ...] = (
    "internal_configuration.",
    "runtime.services.",
    "runtime.config.",
    "runtime.totem.",
    "uidgid.config.",
    "system.",
    "nodelist.",
)

#: Single keys corosync makes read-only for clients at startup (main.c).
DEFAULT_RO_KEYS: tuple[str, ...] = (
    *(
        f"totem.{name}"
        for name in (
            "crypto_cipher",
            "crypto_hash",
            "crypto_model",
            "keyfile",
            "key",
            "secauth",
            "ip_version",
            "ip_dscp",
            "transport",
            "cluster_name",
            "netmtu",
            "threads",
            "version",
            "nodeid",
            "clear_node_high_bit",
        )
    ),
    "config.reload_in_progress",
    "config.totemconfig_reload_in_progress",
)

#: Keys the votequorum service additionally locks when it is loaded.
VOTEQUORUM_RO_KEYS: tuple[str, ...] = tuple(
    f"quorum.{name}"
    for name in (
        "allow_downscale",
        "wait_for_all",
        "last_man_standing",
        "last_man_standing_window",
        "expected_votes_tracking",
        "auto_tie_breaker",
        "auto_tie_breaker_node",
    )
)


@attrs.frozen(slots=True)
class Notification:
    """One change seen by one track: what the IPC sends as a cmap notify event.

    ``new_value`` is None for DELETE, ``old_value`` is None for ADD. ``owner`` is what
    the track was added with (the IPC connection), so the event can be routed.
    """

    track_handle: int
    owner: Hashable
    event: TrackEvent
    key: str
    new_value: TypedValue | None
    old_value: TypedValue | None


@attrs.frozen(slots=True)
class _Track:
    key: str
    track_type: TrackType
    owner: Hashable

    def matches(self, key: str) -> bool:
        if self.track_type & TrackType.PREFIX:
            return key.startswith(self.key)
        return key == self.key


#: Called with a key or a prefix inside its registered prefix; returns the generated
#: keys under it (it may return more; keys outside the asked prefix are ignored).
GeneratedProvider = Callable[[str], Mapping[str, TypedValue]]

_EVENT_FLAG = {
    TrackEvent.ADD: TrackType.ADD,
    TrackEvent.MODIFY: TrackType.MODIFY,
    TrackEvent.DELETE: TrackType.DELETE,
}
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_ALL_TRACK_BITS = int(TrackType.DELETE | TrackType.MODIFY | TrackType.ADD | TrackType.PREFIX)


class CmapStore:
    """One cmap map: typed keys, read-only rules, tracks, generated keys.

    Every method that changes the map queues :class:`Notification` records for the
    matching tracks; :meth:`drain_notifications` hands them over. Errors raise
    :class:`CmapError` with the code corosync would answer.
    """

    def __init__(self, *, read_only_defaults: bool = True) -> None:
        """An empty map; with ``read_only_defaults``, corosync's read-only prefixes and
        keys (:data:`DEFAULT_RO_PREFIXES`, :data:`DEFAULT_RO_KEYS`) are installed."""
        self._values: dict[str, TypedValue] = {}
        self._sorted_keys: list[str] = []
        self._ro_prefixes: set[str] = set()
        self._ro_keys: set[str] = set()
        self._rw_prefixes: set[str] = set()  # exceptions to the read-only rules
        self._tracks: dict[int, _Track] = {}
        self._next_track_handle = 1
        self._generated: dict[str, GeneratedProvider] = {}
        self._pending: list[Notification] = []
        if read_only_defaults:
            for prefix in DEFAULT_RO_PREFIXES:
                self.set_read_only(prefix, prefix=True)
            for key in DEFAULT_RO_KEYS:
                self.set_read_only(key)

    # -- read-only rules ------------------------------------------------------------

    def set_read_only(self, key: str, *, prefix: bool = False, read_only: bool = True) -> None:
        """Make ``key`` (or every key starting with it, with ``prefix``) read-only for
        clients, or writable again with ``read_only=False``."""
        rules = self._ro_prefixes if prefix else self._ro_keys
        if read_only:
            rules.add(key)
        else:
            rules.discard(key)

    def set_writable_prefix(self, prefix: str) -> None:
        """Let clients write every key starting with ``prefix`` whatever the read-only
        rules say (e.g. ``stats.clear.`` in the otherwise read-only stats map)."""
        self._rw_prefixes.add(prefix)

    def is_read_only(self, key: str) -> bool:
        """True if clients may not write ``key``."""
        if any(key.startswith(p) for p in self._rw_prefixes):
            return False
        return key in self._ro_keys or any(key.startswith(p) for p in self._ro_prefixes)

    # -- generated keys -------------------------------------------------------------

    def register_generated(self, prefix: str, provider: GeneratedProvider) -> None:
        """Serve the keys under ``prefix`` from ``provider`` on every get and iteration.

        Such keys are read-only: clients get CS_ERR_ACCESS, the executive
        CS_ERR_NOT_SUPPORTED (corosync's stats map). Raises ValueError if the
        prefix overlaps another generated prefix or stored keys exist under it.
        """
        if not prefix:
            raise ValueError("a generated-key prefix must not be empty")
        for other in self._generated:
            if other.startswith(prefix) or prefix.startswith(other):
                raise ValueError(f"generated prefix {prefix!r} overlaps {other!r}")
        if self._stored_keys_with_prefix(prefix):
            raise ValueError(f"stored keys exist under generated prefix {prefix!r}")
        self._generated[prefix] = provider

    def unregister_generated(self, prefix: str) -> None:
        """Stop generating the keys under ``prefix`` (KeyError if it was not registered)."""
        del self._generated[prefix]

    def _generator_for(self, key: str) -> tuple[str, GeneratedProvider] | None:
        for prefix, provider in self._generated.items():
            if key.startswith(prefix):
                return prefix, provider
        return None

    # -- reads ----------------------------------------------------------------------

    def get_typed(self, key: str) -> TypedValue:
        """The value of ``key`` with its type and bytes (CS_ERR_NOT_EXIST if absent)."""
        generator = self._generator_for(key)
        value = self._values.get(key) if generator is None else generator[1](key).get(key)
        if value is None:
            raise CmapError(CsErrorCode.NOT_EXIST, f"key {_show(key)} does not exist")
        return value

    def get(self, key: str) -> tuple[ValueType, Value]:
        """The type and decoded value of ``key`` (CS_ERR_NOT_EXIST if absent)."""
        typed = self.get_typed(key)
        return typed.type, typed.value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self.get_typed(key)
        except CmapError:
            return False
        return True

    def __len__(self) -> int:
        """The number of stored keys (generated keys not counted)."""
        return len(self._values)

    def _stored_keys_with_prefix(self, prefix: str) -> list[str]:
        start = bisect.bisect_left(self._sorted_keys, prefix)
        keys: list[str] = []
        for key in self._sorted_keys[start:]:
            if not key.startswith(prefix):
                break
            keys.append(key)
        return keys

    def iterate(self, prefix: str = "") -> list[tuple[str, TypedValue]]:
        """Every key starting with ``prefix`` (stored and generated), in sorted order,
        with its value: a snapshot taken now."""
        entries = {key: self._values[key] for key in self._stored_keys_with_prefix(prefix)}
        for gen_prefix, provider in self._generated.items():
            if prefix.startswith(gen_prefix):
                asked = prefix
            elif gen_prefix.startswith(prefix):
                asked = gen_prefix
            else:
                continue
            entries.update(
                (key, value) for key, value in provider(asked).items() if key.startswith(asked)
            )
        return [(key, entries[key]) for key in sorted(entries)]

    # -- writes ---------------------------------------------------------------------

    def set(self, key: str, type: ValueType, value: Value, *, writer: bool = False) -> None:
        """Set ``key`` to ``value`` of ``type`` (created, or replaced with its type).

        Errors in corosync's order: ACCESS for a read-only or generated key (clients
        only), NOT_SUPPORTED for a generated key (the executive), INVALID_PARAM for a
        value that does not fit, NAME_TOO_LONG for a new key with a bad name.
        """
        self._check_writable(key, writer)
        self._store(key, TypedValue.of(type, value))

    def set_encoded(self, key: str, type: int, data: bytes, *, writer: bool = False) -> None:
        """Set ``key`` from an IPC SET request's raw type and value bytes (untrusted):
        as :meth:`set`, the value checked by :func:`decode_value_untrusted`."""
        self._check_writable(key, writer)
        self._store(key, decode_value_untrusted(type, data))

    def set_typed(self, key: str, value: TypedValue, *, writer: bool = False) -> None:
        """Set ``key`` to an already encoded value (as :meth:`set`)."""
        self._check_writable(key, writer)
        self._store(key, value)

    def delete(self, key: str, *, writer: bool = False) -> None:
        """Delete ``key`` (ACCESS if read-only for a client, NOT_EXIST if absent)."""
        self._check_writable(key, writer)
        old = self._values.get(key)
        if old is None:
            raise CmapError(CsErrorCode.NOT_EXIST, f"key {_show(key)} does not exist")
        del self._values[key]
        del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
        self._notify(TrackEvent.DELETE, key, None, old)

    def adjust(self, key: str, step: int, *, writer: bool = False) -> None:
        """Add ``step`` (an int32) to an integer key, wrapping around in its width as
        C does (``cmap_inc`` is step 1, ``cmap_dec`` step -1). INVALID_PARAM for a
        non-integer key or a step outside int32, NOT_EXIST if absent."""
        self._check_writable(key, writer)
        if isinstance(step, bool) or not isinstance(step, int):
            raise CmapError(CsErrorCode.INVALID_PARAM, f"step must be an int, got {step!r}")
        if not _INT32_MIN <= step <= _INT32_MAX:
            raise CmapError(CsErrorCode.INVALID_PARAM, f"step {step} is outside int32")
        old = self._values.get(key)
        if old is None:
            raise CmapError(CsErrorCode.NOT_EXIST, f"key {_show(key)} does not exist")
        if not old.type.is_integer:
            raise CmapError(
                CsErrorCode.INVALID_PARAM,
                f"key {_show(key)} is {old.type.name}: only integer keys can be incremented",
            )
        width = 8 * len(old.data)
        raw = (int.from_bytes(old.data, sys.byteorder) + step) % (1 << width)
        self._store(key, TypedValue(old.type, raw.to_bytes(len(old.data), sys.byteorder)))

    def inc(self, key: str, *, writer: bool = False) -> None:
        """``cmap_inc``: add 1, wrapping around."""
        self.adjust(key, 1, writer=writer)

    def dec(self, key: str, *, writer: bool = False) -> None:
        """``cmap_dec``: subtract 1, wrapping around."""
        self.adjust(key, -1, writer=writer)

    def _check_writable(self, key: str, writer: bool) -> None:
        generated = self._generator_for(key) is not None
        # corosync: the stats map calls every key read-only, so clients get ACCESS;
        # only internal writes reach its set/delete/adjust, which say NOT_SUPPORTED.
        if not writer and (generated or self.is_read_only(key)):
            raise CmapError(CsErrorCode.ACCESS, f"key {_show(key)} is read-only")
        if generated:
            raise CmapError(CsErrorCode.NOT_SUPPORTED, f"key {_show(key)} is generated, not stored")

    def _store(self, key: str, value: TypedValue) -> None:
        old = self._values.get(key)
        if old is None:
            validate_key_name(key)
        elif old == value:
            return  # icmap: an unchanged value is not written and notifies nobody
        self._values[key] = value
        if old is None:
            bisect.insort(self._sorted_keys, key)
            self._notify(TrackEvent.ADD, key, value, None)
        else:
            self._notify(TrackEvent.MODIFY, key, value, old)

    # -- tracking -------------------------------------------------------------------

    def track_add(self, key: str, track_type: int, owner: Hashable = None) -> int:
        """Watch ``key`` (or every key starting with it, with TrackType.PREFIX) for the
        events in ``track_type``; returns the track handle (a u64, never 0).

        An empty key with PREFIX watches every key. Unknown flag bits give
        CS_ERR_INVALID_PARAM, as icmap.
        """
        if isinstance(track_type, bool) or not isinstance(track_type, int):
            raise CmapError(CsErrorCode.INVALID_PARAM, f"bad track type {track_type!r}")
        if track_type < 0 or track_type & ~_ALL_TRACK_BITS:
            raise CmapError(CsErrorCode.INVALID_PARAM, f"unknown track type bits {track_type:#x}")
        handle = self._next_track_handle
        self._next_track_handle += 1
        self._tracks[handle] = _Track(key, TrackType(track_type), owner)
        return handle

    def track_delete(self, handle: int, owner: Hashable = None) -> None:
        """Stop a track. CS_ERR_BAD_HANDLE if it does not exist or, when ``owner`` is
        given, belongs to another owner (a client sees only its own tracks)."""
        track = self._tracks.get(handle)
        if track is None or (owner is not None and track.owner != owner):
            raise CmapError(CsErrorCode.BAD_HANDLE, f"no track with handle {handle!r}")
        del self._tracks[handle]

    def track_delete_owner(self, owner: Hashable) -> int:
        """Stop every track of ``owner`` (a client that went away); returns how many."""
        handles = [h for h, track in self._tracks.items() if track.owner == owner]
        for handle in handles:
            del self._tracks[handle]
        return len(handles)

    def _notify(
        self, event: TrackEvent, key: str, new: TypedValue | None, old: TypedValue | None
    ) -> None:
        flag = _EVENT_FLAG[event]
        # dict order is track_add order: deterministic, no set iteration.
        for handle, track in self._tracks.items():
            if track.track_type & flag and track.matches(key):
                self._pending.append(Notification(handle, track.owner, event, key, new, old))

    def drain_notifications(self) -> tuple[Notification, ...]:
        """The notifications queued since the last drain, oldest first."""
        batch = tuple(self._pending)
        self._pending.clear()
        return batch
