"""The cmap service: IpcServer's ``cmap`` endpoint backed by a :class:`CmapStore`.

Every request of the cmap catalogue (libqb-ipc.md 5.1) is answered as corosync's
``exec/cmap.c`` answers it: the call's own response, full size, with the error code
set (a GET that fails is a 40-byte reply; an ITER_NEXT past the end says
CS_ERR_NO_SECTIONS). A request that cannot be decoded raises
:class:`corosync.MalformedMessage`, which the IPC server turns into corosync's bare
INVALID_PARAM reply. Clients write through ``writer=False``, so read-only keys answer
CS_ERR_ACCESS.

Per connection, as cmap.c's ``cmap_conn_info``: the current map (SET_CURRENT_MAP:
the configuration map or the read-only stats map, a separate :class:`CmapStore` that
later code fills), iterator handles and track handles (one counter from 1 per
connection, shared by both; corosync's are opaque hdb handles). A track lives in the
map that was current when it was added. Changes are queued as notifications
by the stores; :meth:`CmapService.dispatch_notifications` drains them and sends each
to the connection that owns the track as a notify event. It runs after every request;
code of the executive that writes a store calls it too.

Differences from corosync, on purpose:

* an iterator walks a snapshot of the key names taken at ITER_INIT and skips keys
  deleted since (corosync's trie iterator is live and would also show keys added);
* a GET whose buffer (``value_len``) is larger than the client's message size is
  answered with the value in a reply cut to that size (corosync would try to
  allocate the buffer);
* tracks in the stats map see the executive's writes to the stats store, not a
  timer that polls generated values (corosync's stats map polls its tracked keys);
* a key name that is not UTF-8 makes the request malformed (bare INVALID_PARAM),
  where corosync would look it up as bytes;
* a connection holds at most :data:`MAX_ITERATORS` iterators and
  :data:`MAX_TRACKS` tracks (CS_ERR_NO_RESOURCES beyond), so one client cannot
  exhaust the daemon's memory.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import structlog

from corosync import CsErrorCode
from corosync.ipc import (
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
    CmapNotifyEvent,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapSetRequest,
    CmapSetResponse,
    CmapTrackAddRequest,
    CmapTrackAddResponse,
    CmapTrackDeleteRequest,
    CmapTrackDeleteResponse,
    CmapTrackType,
    decode_cmap_request_untrusted,
)
from corosync.ipc._cmap_msgs import CmapRequest
from corosync_executive._cmap_store import CmapError, CmapStore, Notification, ValueType
from corosync_executive._config_validate import Config
from corosync_executive._ipc_server import IpcConnection, IpcServer
from corosync_executive._service import ExecMessage, Service
from totem import Guarantee

__all__ = [
    "BLACKBOX_KEYS",
    "MAX_ITERATORS",
    "MAX_TRACKS",
    "CmapService",
    "CmapServiceStats",
    "load_config_into_cmap",
]

MAX_ITERATORS = 1024
"""Open iterators one connection may hold (corosync: unbounded)."""
MAX_TRACKS = 4096
"""Tracks one connection may hold (corosync: unbounded)."""
_RESPONSE_GET_FIXED = 40  # res_lib_cmap_get without its value
_CONFIG_VERSION = struct.Struct(">Q")

#: The trigger keys corosync sets to "no" when its services are ready (main.c).
BLACKBOX_KEYS: tuple[str, ...] = (
    "runtime.blackbox.dump_flight_data",
    "runtime.blackbox.dump_state",
)


def load_config_into_cmap(store: CmapStore, config: Config) -> int:
    """Put a validated configuration into ``store`` as the executive (``writer=True``):
    every key of ``config.cmap_keys()`` (the file's keys and ``runtime.config.*``) and
    the runtime keys corosync sets at startup (:data:`BLACKBOX_KEYS`). Returns the
    number of keys written."""
    written = 0
    for key, value in sorted(config.cmap_keys().items()):
        store.set(key, value.type, value.value, writer=True)
        written += 1
    for key in BLACKBOX_KEYS:
        store.set(key, ValueType.STRING, "no", writer=True)
        written += 1
    return written


@attrs.define
class CmapServiceStats:
    """Counters of the cmap service."""

    requests: int = 0
    events_sent: int = 0
    events_dropped: int = 0  # the client's event backlog was full or it had gone


@attrs.define(eq=False)
class _Iter:
    store: CmapStore
    keys: Iterator[str]


@attrs.define(eq=False)
class _Track:
    map: CmapMap
    store_handle: int
    inst_handle: int


@attrs.define(eq=False)
class _Session:
    """What one connection holds (cmap.c's ``cmap_conn_info``); the owner of its tracks
    in the stores (compared by identity)."""

    conn: IpcConnection
    map: CmapMap = CmapMap.DEFAULT
    iters: dict[int, _Iter] = attrs.Factory(dict)
    tracks: dict[int, _Track] = attrs.Factory(dict)
    by_store_handle: dict[tuple[CmapMap, int], _Track] = attrs.Factory(dict)
    handles: Iterator[int] = attrs.Factory(lambda: itertools.count(1))


class CmapService(Service):
    """The cmap library handlers over a configuration store and a stats store.

    ``store`` is the configuration map; ``stats_store`` the stats map (a fresh one,
    every key read-only for clients, when not given). ``on_foreign_notification``
    receives notifications of tracks that are not a client's (the executive's own),
    which draining would otherwise swallow. ``refresh_stats`` is called before a
    request of a client whose current map is the stats map is answered: the stats are
    generated on read.

    In the daemon it is the service ``corosync_cmap`` (id 0) and takes part in the sync
    engine as corosync's does: after each new ring every member multicasts its
    ``totem.config_version``; the values land in ``runtime.members.<id>.config_version``,
    and a node that joins others for the first time with a different non-zero config
    version calls ``on_config_version_mismatch`` (the daemon exits, as corosync).
    """

    name = "corosync_cmap"
    service_id = 0
    ipc_name = "cmap"
    has_sync = True
    version = 0

    def __init__(
        self,
        store: CmapStore,
        stats_store: CmapStore | None = None,
        *,
        on_foreign_notification: Callable[[Notification], None] | None = None,
        refresh_stats: Callable[[], None] | None = None,
        on_config_version_mismatch: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self._refresh_stats = refresh_stats
        self._on_mismatch = on_config_version_mismatch
        self._received_versions: dict[int, int] = {}
        self._first_sync = True
        if stats_store is None:
            stats_store = CmapStore(read_only_defaults=False)
            stats_store.set_read_only("", prefix=True)  # the stats map is read-only
        self.stats_store = stats_store
        self._on_foreign = on_foreign_notification
        self._sessions: dict[int, _Session] = {}
        self.stats = CmapServiceStats()
        self._log = structlog.get_logger("cmap").bind(subsystem="CMAP")

    def _store_of(self, cmap_map: CmapMap) -> CmapStore:
        return self.stats_store if cmap_map is CmapMap.STATS else self.store

    # ------------------------------------------------------------ IPC hooks

    def make_server(self, **kwargs: Any) -> IpcServer:
        """An :class:`IpcServer` for the ``cmap`` socket wired to this service
        (``kwargs`` as IpcServer's: prefix, authorize, runtime_dir, transport...)."""
        return IpcServer(
            "cmap",
            self.handle,
            on_connect=self.on_connect,
            on_disconnect=self.on_disconnect,
            **kwargs,
        )

    def on_connect(self, conn: IpcConnection) -> None:
        """A client connected (cmap_lib_init_fn): start its session."""
        self._session(conn)

    def on_disconnect(self, conn: IpcConnection) -> None:
        """A client went away (cmap_lib_exit_fn): drop its iterators and tracks."""
        session = self._sessions.pop(conn.id, None)
        if session is None:
            return
        session.iters.clear()
        for cmap_map in (CmapMap.DEFAULT, CmapMap.STATS):
            self._store_of(cmap_map).track_delete_owner(session)
        session.tracks.clear()
        session.by_store_handle.clear()

    @property
    def session_count(self) -> int:
        """Connections with a session now."""
        return len(self._sessions)

    def open_handles(self, conn: IpcConnection) -> tuple[int, int]:
        """(iterators, tracks) the connection holds now."""
        session = self._sessions.get(conn.id)
        return (0, 0) if session is None else (len(session.iters), len(session.tracks))

    def _session(self, conn: IpcConnection) -> _Session:
        session = self._sessions.get(conn.id)
        if session is None:
            session = self._sessions[conn.id] = _Session(conn)
        return session

    async def handle(self, conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        """IpcServer's request handler: one whole request in, the whole response out."""
        del request_id  # decoding reads it from the header
        return self.respond(conn, message)

    # The service framework's names for the same hooks.
    def lib_init(self, conn: IpcConnection) -> None:
        self.on_connect(conn)

    def lib_exit(self, conn: IpcConnection) -> None:
        self.on_disconnect(conn)

    async def lib_handle(self, conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        return await self.handle(conn, request_id, message)

    # ------------------------------------------------------------ sync (config_version)

    def sync_init(
        self,
        transitional: tuple[int, ...],
        members: tuple[int, ...],
        ring_id: object,
    ) -> None:
        del transitional, members, ring_id
        self._received_versions = {}
        version = self._config_version()
        self.ctx.mcast(self.service_id, 0, _CONFIG_VERSION.pack(version), Guarantee.AGREED)

    def sync_process(self) -> bool:
        return True  # the barrier follows our message in the agreed order

    def exec_deliver(self, message: ExecMessage) -> None:
        if message.function_id != 0 or len(message.payload) != _CONFIG_VERSION.size:
            self._log.warning(
                "malformed cmap exec message dropped",
                sender=message.sender,
                function=message.function_id,
            )
            return
        (version,) = _CONFIG_VERSION.unpack(message.payload)
        self._received_versions[message.sender] = version
        key = f"runtime.members.{message.sender}.config_version"
        self.store.set(key, ValueType.UINT64, version, writer=True)
        self.dispatch_notifications()

    def sync_activate(self) -> None:
        first, self._first_sync = self._first_sync, False
        mine = self._config_version()
        others = {
            node: version
            for node, version in self._received_versions.items()
            if node != self.ctx.local_nodeid
        }
        if not first or not others or mine == 0:
            return
        highest = max(others.values())
        if highest != mine and self._on_mismatch is not None:
            self._on_mismatch(
                f"Received config version ({highest}) is different than my config version "
                f"({mine})! Exiting"
            )

    def _config_version(self) -> int:
        try:
            _, value = self.store.get("totem.config_version")
        except CmapError:
            return 0
        return value if isinstance(value, int) else 0

    def respond(self, conn: IpcConnection, message: bytes) -> bytes:
        """The response to one whole request message of ``conn`` (synchronous; raises
        :class:`corosync.MalformedMessage` for a request that cannot be decoded)."""
        request = decode_cmap_request_untrusted(message)
        self.stats.requests += 1
        session = self._session(conn)
        if session.map is CmapMap.STATS and self._refresh_stats is not None:
            self._refresh_stats()
        try:
            return self._answer(session, request)
        finally:
            # corosync calls the notify functions inside the write, before replying.
            self.dispatch_notifications()

    # ------------------------------------------------------------ requests

    def _answer(self, session: _Session, request: CmapRequest) -> bytes:
        store = self._store_of(session.map)
        if isinstance(request, CmapSetRequest):
            code = _run(lambda: store.set_encoded(request.key, request.value_type, request.value))
            return CmapSetResponse(error=code).encode()
        if isinstance(request, CmapDeleteRequest):
            code = _run(lambda: store.delete(request.key))
            return CmapDeleteResponse(error=code).encode()
        if isinstance(request, CmapGetRequest):
            return self._get(session, store, request)
        if isinstance(request, CmapAdjustIntRequest):
            code = _run(lambda: store.adjust(request.key, request.step))
            return CmapAdjustIntResponse(error=code).encode()
        if isinstance(request, CmapIterInitRequest):
            return self._iter_init(session, store, request.prefix)
        if isinstance(request, CmapIterNextRequest):
            return self._iter_next(session, request.iter_handle)
        if isinstance(request, CmapIterFinalizeRequest):
            if session.iters.pop(request.iter_handle, None) is None:
                return CmapIterFinalizeResponse(error=CsErrorCode.BAD_HANDLE).encode()
            return CmapIterFinalizeResponse().encode()
        if isinstance(request, CmapTrackAddRequest):
            return self._track_add(session, store, request)
        if isinstance(request, CmapTrackDeleteRequest):
            return self._track_delete(session, request.track_handle)
        assert isinstance(request, CmapSetCurrentMapRequest)
        session.map = CmapMap(request.map)
        return CmapSetCurrentMapResponse().encode()

    def _get(self, session: _Session, store: CmapStore, request: CmapGetRequest) -> bytes:
        try:
            value = store.get_typed(request.key)
        except CmapError as exc:
            return CmapGetResponse(error=exc.code).encode(buffer_len=0)
        size = len(value.data)
        if request.value_len == 0:
            response = CmapGetResponse(value_type=value.type, value_len=size)
            return response.encode(buffer_len=0)
        if request.value_len < size:
            # icmap_get: the client's buffer must hold the whole value.
            return CmapGetResponse(error=CsErrorCode.INVALID_PARAM).encode(buffer_len=0)
        room = max(session.conn.max_msg_size - _RESPONSE_GET_FIXED, size)
        response = CmapGetResponse(value_type=value.type, value_len=size, value=value.data)
        return response.encode(buffer_len=min(request.value_len, room))

    def _iter_init(self, session: _Session, store: CmapStore, prefix: str) -> bytes:
        if len(session.iters) >= MAX_ITERATORS:
            return CmapIterInitResponse(error=CsErrorCode.NO_RESOURCES).encode()
        keys = [key for key, _ in store.iterate(prefix)]
        handle = next(session.handles)
        session.iters[handle] = _Iter(store, iter(keys))
        return CmapIterInitResponse(iter_handle=handle).encode()

    def _iter_next(self, session: _Session, handle: int) -> bytes:
        it = session.iters.get(handle)
        if it is None:
            return CmapIterNextResponse(error=CsErrorCode.BAD_HANDLE).encode()
        for key in it.keys:
            try:
                value = it.store.get_typed(key)
            except CmapError:
                continue  # deleted since ITER_INIT
            return CmapIterNextResponse(
                key=key, value_len=len(value.data), value_type=value.type
            ).encode()
        return CmapIterNextResponse(error=CsErrorCode.NO_SECTIONS).encode()

    def _track_add(
        self, session: _Session, store: CmapStore, request: CmapTrackAddRequest
    ) -> bytes:
        if len(session.tracks) >= MAX_TRACKS:
            return CmapTrackAddResponse(error=CsErrorCode.NO_RESOURCES).encode()
        try:
            store_handle = store.track_add(request.key, int(request.track_type), session)
        except CmapError as exc:
            return CmapTrackAddResponse(error=exc.code).encode()
        handle = next(session.handles)
        track = _Track(session.map, store_handle, request.track_inst_handle)
        session.tracks[handle] = track
        session.by_store_handle[(session.map, store_handle)] = track
        return CmapTrackAddResponse(track_handle=handle).encode()

    def _track_delete(self, session: _Session, handle: int) -> bytes:
        track = session.tracks.pop(handle, None)
        if track is None:
            return CmapTrackDeleteResponse(error=CsErrorCode.BAD_HANDLE).encode()
        del session.by_store_handle[(track.map, track.store_handle)]
        self._store_of(track.map).track_delete(track.store_handle, session)
        return CmapTrackDeleteResponse(track_inst_handle=track.inst_handle).encode()

    # ------------------------------------------------------------ notifications

    def dispatch_notifications(self) -> int:
        """Drain both stores' notifications and send each client's as a notify event;
        the others go to ``on_foreign_notification``. Returns the events queued."""
        sent = 0
        for cmap_map in (CmapMap.DEFAULT, CmapMap.STATS):
            for note in self._store_of(cmap_map).drain_notifications():
                owner = note.owner
                if not isinstance(owner, _Session):
                    if self._on_foreign is not None:
                        self._on_foreign(note)
                    continue
                if self._send(owner, cmap_map, note):
                    sent += 1
        return sent

    def _send(self, session: _Session, cmap_map: CmapMap, note: Notification) -> bool:
        track = session.by_store_handle.get((cmap_map, note.track_handle))
        if track is None or self._sessions.get(session.conn.id) is not session:
            return False  # deleted or disconnected meanwhile
        new, old = note.new_value, note.old_value
        event = CmapNotifyEvent(
            track_inst_handle=track.inst_handle,
            key=note.key,
            event=CmapTrackType(int(note.event)),
            new_value_type=None if new is None else new.type,
            new_value=b"" if new is None else new.data,
            old_value_type=None if old is None else old.type,
            old_value=b"" if old is None else old.data,
        )
        if session.conn.send_event(event.encode()):
            self.stats.events_sent += 1
            return True
        self.stats.events_dropped += 1
        self._log.debug("cmap_event_dropped", conn=session.conn.id, key=note.key)
        return False


def _run(operation: Callable[[], None]) -> CsErrorCode:
    """The cs_error_t of one store write."""
    try:
        operation()
    except CmapError as exc:
        return exc.code
    return CsErrorCode.OK
