"""cmap: the blocking client of corosync's configuration and statistics database.

Like corosync's ``cmap.h``: :func:`initialize` connects to the ``cmap`` IPC service
(of pycorosync or a real corosync 3) and selects the map, the configuration
(:attr:`CmapMap.DEFAULT`) or the read-only statistics (:attr:`CmapMap.STATS`). A
:class:`CmapHandle` gets, sets, deletes, increments and iterates keys and tracks
changes; notifications reach their callbacks from :meth:`CmapHandle.dispatch`, which
an application calls when :meth:`CmapHandle.fileno` is readable. Every failure raises
:class:`corosync.CsError` with corosync's error code.

Both libqb IPC transports are spoken (SHM, corosync's default, and SOCKET); the server
chooses. For trio, :func:`open_cmap` yields an :class:`AsyncCmapHandle` with the same
operations as coroutines (``corosync/_cmap_trio.py``).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs

from corosync._errors import CsError, CsErrorCode, MalformedMessage
from corosync._handle import ServiceHandle
from corosync.ipc._client import IpcClient
from corosync.ipc._cmap_msgs import (
    CmapAdjustIntRequest,
    CmapAdjustIntResponse,
    CmapDeleteRequest,
    CmapDeleteResponse,
    CmapGetRequest,
    CmapGetResponse,
    CmapIterFinalizeRequest,
    CmapIterFinalizeResponse,
    CmapIterInitRequest,
    CmapIterInitResponse,
    CmapIterNextRequest,
    CmapIterNextResponse,
    CmapMap,
    CmapRequest,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapSetRequest,
    CmapSetResponse,
    CmapTrackAddRequest,
    CmapTrackAddResponse,
    CmapTrackDeleteRequest,
    CmapTrackDeleteResponse,
    CmapTrackType,
    CmapValue,
    CmapValueType,
    _CmapResponseBase,
    decode_cmap_notify_event_untrusted,
    decode_cmap_response_untrusted,
    decode_cmap_value_untrusted,
    encode_cmap_value,
)

__all__ = [
    "AsyncCmapHandle",
    "CmapDispatchFlags",
    "CmapHandle",
    "CmapIterEntry",
    "CmapMap",
    "CmapNotification",
    "CmapTrackCallback",
    "CmapTrackType",
    "CmapTypedValue",
    "CmapValue",
    "CmapValueType",
    "initialize",
    "open_cmap",
]

_R = TypeVar("_R", bound=_CmapResponseBase)

# A value may grow between the length query and the fetch: retry a few times.
_GET_ATTEMPTS = 8
#: Bytes the first GET offers for the value: one round trip for every value this small.
GET_GUESS = 256


class CmapDispatchFlags(enum.IntEnum):
    """``cs_dispatch_flags_t``: how much :meth:`CmapHandle.dispatch` processes."""

    ONE = 1
    """Wait for one event and process it."""
    ALL = 2
    """Process every event already waiting; never wait."""
    BLOCKING = 3
    """Process events until :meth:`CmapHandle.finalize` (from a callback or thread)."""
    ONE_NONBLOCKING = 4
    """Process one event if one waits; never wait."""


@attrs.frozen
class CmapTypedValue:
    """A value with its cmap type (what ``cmap_get`` returns)."""

    value_type: CmapValueType
    value: CmapValue


@attrs.frozen
class CmapIterEntry:
    """One key of an iteration: its name, type and length in bytes (a STRING's length
    counts its NUL), as ``cmap_iter_next`` gives them."""

    key: str
    value_type: CmapValueType
    value_len: int


@attrs.frozen
class CmapNotification:
    """A tracked change: ``event`` is ADD, MODIFY or DELETE; the value that does not
    exist (old of ADD, new of DELETE) is None. ``track_handle`` is what
    :meth:`CmapHandle.track_add` returned."""

    track_handle: int
    event: CmapTrackType
    key: str
    new_value: CmapTypedValue | None
    old_value: CmapTypedValue | None


CmapTrackCallback = Callable[[CmapNotification], None]
"""Called from :meth:`CmapHandle.dispatch` for every change a track reports."""


@attrs.define
class _Track:
    track_handle: int
    callback: CmapTrackCallback


def _typed(value_type: CmapValueType | None, data: bytes) -> CmapTypedValue | None:
    if value_type is None:
        return None
    return CmapTypedValue(value_type, decode_cmap_value_untrusted(value_type, data))


class CmapHandle(ServiceHandle):
    """One connection to the cmap service; create it with :func:`initialize`.

    Calls may come from several threads; :meth:`dispatch` may run in one of them.
    """

    SERVICE = "cmap"

    def __init__(self, client: IpcClient, cmap_map: CmapMap) -> None:
        super().__init__(client)
        self._map = cmap_map
        self._inst_ids = itertools.count(1)
        self._tracks: dict[int, _Track] = {}  # by our track_inst_handle
        self._tracks_lock = threading.Lock()

    @property
    def map(self) -> CmapMap:
        """The map this handle works on."""
        return self._map

    @property
    def fd(self) -> int:
        """Same as :meth:`fileno`."""
        return self.fileno()

    # -------------------------------------------------------------- requests

    def _call(self, request: CmapRequest, expected: type[_R]) -> _R:
        return self._exchange(
            request.encode(),
            lambda raw: decode_cmap_response_untrusted(raw, expected),
            lambda: _describe(request),
        )

    def get_typed(self, key: str) -> CmapTypedValue:
        """The value of ``key`` with its type. NOT_EXIST when there is no such key.

        Most values are small: the first request offers a :data:`GET_GUESS`-byte buffer
        and is answered with the value in one round trip; a larger value answers
        INVALID_PARAM, and then its size is asked first (as ``corosync-cmapctl``)."""
        try:
            return self._typed(key, self._call(CmapGetRequest(key, GET_GUESS), CmapGetResponse))
        except CsError as exc:
            if exc.code is not CsErrorCode.INVALID_PARAM:
                raise
        for _ in range(_GET_ATTEMPTS):
            probe = self._call(CmapGetRequest(key, 0), CmapGetResponse)
            # A value that grew since the probe answers INVALID_PARAM: probe again.
            try:
                full = self._call(CmapGetRequest(key, probe.value_len), CmapGetResponse)
            except CsError as exc:
                if exc.code is CsErrorCode.INVALID_PARAM:
                    continue
                raise
            return self._typed(key, full)
        raise CsError(CsErrorCode.TRY_AGAIN, f"value of {key!r} kept changing while read")

    @staticmethod
    def _typed(key: str, response: CmapGetResponse) -> CmapTypedValue:
        if response.value_type is None:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"cmap GET {key!r} gave no type")
        try:
            value = decode_cmap_value_untrusted(response.value_type, response.value)
        except MalformedMessage as exc:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"bad value of {key!r}: {exc}") from None
        return CmapTypedValue(response.value_type, value)

    def get(self, key: str) -> CmapValue:
        """The value of ``key`` (int, float, str or bytes)."""
        return self.get_typed(key).value

    def set(self, key: str, value: CmapValue, value_type: CmapValueType) -> None:
        """Store ``value`` as ``value_type`` (``cmap_set``): the type is explicit, as an
        int could be any of eight. ACCESS for read-only keys; INVALID_PARAM for a value
        that does not fit the type."""
        try:
            raw = encode_cmap_value(CmapValueType(value_type), value)
        except ValueError as exc:
            raise CsError(CsErrorCode.INVALID_PARAM, f"cannot set {key!r}: {exc}") from None
        self._call(CmapSetRequest(key, CmapValueType(value_type), raw), CmapSetResponse)

    def delete(self, key: str) -> None:
        """Remove ``key``. NOT_EXIST when there is no such key."""
        self._call(CmapDeleteRequest(key), CmapDeleteResponse)

    def inc(self, key: str) -> None:
        """Add one to an integer key (wrapping as in C)."""
        self._call(CmapAdjustIntRequest(key, 1), CmapAdjustIntResponse)

    def dec(self, key: str) -> None:
        """Subtract one from an integer key (wrapping as in C)."""
        self._call(CmapAdjustIntRequest(key, -1), CmapAdjustIntResponse)

    def iterate(self, prefix: str = "") -> Iterator[CmapIterEntry]:
        """The keys starting with ``prefix`` in sorted order, with type and length.

        The server-side iterator is released when the generator finishes or is closed.
        """
        init = self._call(CmapIterInitRequest(prefix), CmapIterInitResponse)
        try:
            while True:
                try:
                    entry = self._call(CmapIterNextRequest(init.iter_handle), CmapIterNextResponse)
                except CsError as exc:
                    if exc.code is CsErrorCode.NO_SECTIONS:
                        return
                    raise
                if entry.value_type is None:
                    raise CsError(CsErrorCode.MESSAGE_ERROR, "cmap ITER_NEXT gave no type")
                yield CmapIterEntry(entry.key, entry.value_type, entry.value_len)
        finally:
            if not self._finalized and not self._client.closed:
                # A gone connection or a forgotten iterator leaks nothing.
                with contextlib.suppress(CsError):
                    self._call(CmapIterFinalizeRequest(init.iter_handle), CmapIterFinalizeResponse)

    # -------------------------------------------------------------- tracking

    def track_add(self, key: str, track_type: CmapTrackType, callback: CmapTrackCallback) -> int:
        """Report changes of ``key`` (or of every key under it with PREFIX) to
        ``callback`` during :meth:`dispatch`; returns the track handle."""
        track_type = CmapTrackType(track_type)
        if not track_type & (CmapTrackType.ADD | CmapTrackType.MODIFY | CmapTrackType.DELETE):
            raise CsError(
                CsErrorCode.INVALID_PARAM, "track_type names no event (ADD/MODIFY/DELETE)"
            )
        inst = next(self._inst_ids)
        # Registered before the request: an event may come before the response.
        with self._tracks_lock:
            self._tracks[inst] = _Track(0, callback)
        try:
            response = self._call(CmapTrackAddRequest(key, track_type, inst), CmapTrackAddResponse)
        except BaseException:
            with self._tracks_lock:
                del self._tracks[inst]
            raise
        with self._tracks_lock:
            self._tracks[inst].track_handle = response.track_handle
        return response.track_handle

    def track_delete(self, track_handle: int) -> None:
        """Stop a track; BAD_HANDLE for one that this handle does not have."""
        with self._tracks_lock:
            inst = next(
                (i for i, t in self._tracks.items() if t.track_handle == track_handle), None
            )
        if inst is None:
            raise CsError(CsErrorCode.BAD_HANDLE, f"no track with handle {track_handle}")
        self._call(CmapTrackDeleteRequest(track_handle), CmapTrackDeleteResponse)
        with self._tracks_lock:
            self._tracks.pop(inst, None)

    def dispatch(self, flags: CmapDispatchFlags = CmapDispatchFlags.ALL) -> int:
        """Run the callbacks of waiting notifications (``cmap_dispatch``); returns how
        many events were processed."""
        flags = CmapDispatchFlags(flags)
        count = 0
        while not self._finalized:
            if flags in (CmapDispatchFlags.ONE, CmapDispatchFlags.BLOCKING):
                timeout: float | None = None
            else:
                timeout = 0
            try:
                raw = self._client.receive_event(timeout)
            except CsError:
                if self.finalized:
                    break  # finalize() from another thread ends a blocking dispatch
                raise
            if raw is None:
                break
            count += 1
            self._deliver(raw)
            if flags in (CmapDispatchFlags.ONE, CmapDispatchFlags.ONE_NONBLOCKING):
                break
        return count

    def _deliver(self, raw: bytes) -> None:
        try:
            event = decode_cmap_notify_event_untrusted(raw)
            notification_values = (
                _typed(event.new_value_type, event.new_value),
                _typed(event.old_value_type, event.old_value),
            )
        except MalformedMessage as exc:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"bad cmap event: {exc}") from None
        with self._tracks_lock:
            track = self._tracks.get(event.track_inst_handle)
        if track is None:
            return  # a late event of a deleted track
        track.callback(
            CmapNotification(
                track_handle=track.track_handle,
                event=event.event,
                key=event.key,
                new_value=notification_values[0],
                old_value=notification_values[1],
            )
        )


def _describe(request: CmapRequest) -> str:
    key = getattr(request, "key", None)
    if key is None:
        key = getattr(request, "prefix", None)
    name = type(request).__name__.removeprefix("Cmap").removesuffix("Request")
    return f"cmap {name} {key!r}" if key is not None else f"cmap {name}"


def initialize(
    map: CmapMap = CmapMap.DEFAULT,  # cmap_initialize_map's name
    *,
    prefix: str = "",
    timeout: float | None = 10.0,
) -> CmapHandle:
    """Connect to the cmap service and select ``map`` (``cmap_initialize_map``).

    ``prefix`` is prepended to the IPC socket name (pycorosync's option for several
    daemons on one host; a real corosync has none). ``timeout`` bounds the handshake.
    """
    cmap_map = CmapMap(map)
    client = IpcClient.connect("cmap", prefix=prefix, timeout=timeout)
    handle = CmapHandle(client, cmap_map)
    try:
        handle._call(CmapSetCurrentMapRequest(cmap_map), CmapSetCurrentMapResponse)
    except BaseException:
        handle.finalize()
        raise
    return handle


# The trio API wraps the blocking handle above (and is imported after it for that reason).
from corosync._cmap_trio import AsyncCmapHandle, open_cmap  # noqa: E402
