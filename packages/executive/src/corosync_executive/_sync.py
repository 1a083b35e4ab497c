"""The sync engine (corosync's exec/sync.c): bring the services' state in line after
every new ring, one service at a time, before they serve again.

After a regular configuration each member multicasts the ids of its services that
take part (SERVICE_LIST). When every member's list has arrived, the union, sorted, is
the order. For each service: ``sync_init``, then ``sync_process`` until it reports
done (the service exchanges its state with its own exec messages meanwhile), then a
BARRIER; when every member's barrier for that service arrived, ``sync_activate`` and
the next service. A newer ring aborts the run (``sync_abort``); messages of an older
ring are ignored. All of it travels in totem's agreed order, so every member sees the
same sequence.

The engine is sans-IO: :meth:`SyncEngine.send` is a callable given to it, inputs are
method calls; the daemon drives it.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence

import attrs
import structlog

from corosync import MalformedMessage
from corosync_executive._service import Service
from totem import RingId

__all__ = ["SyncEngine", "SyncMessage", "SyncMessageKind", "decode_sync_message_untrusted"]


class SyncMessageKind(enum.IntEnum):
    SERVICE_LIST = 1
    BARRIER = 2


_HEADER = struct.Struct(">BQIH")  # kind, ring seq, ring representative, count/service id


@attrs.frozen
class SyncMessage:
    kind: SyncMessageKind
    ring_id: RingId
    #: SERVICE_LIST: the sender's service ids; BARRIER: the one service it finished
    services: tuple[int, ...]

    def encode(self) -> bytes:
        if self.kind is SyncMessageKind.BARRIER:
            (service,) = self.services
            return _HEADER.pack(self.kind, self.ring_id.seq, self.ring_id.rep, service)
        head = _HEADER.pack(self.kind, self.ring_id.seq, self.ring_id.rep, len(self.services))
        return head + bytes(self.services)


def decode_sync_message_untrusted(data: bytes) -> SyncMessage:
    """Decode a sync message; raises :class:`MalformedMessage`."""
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"sync message of {len(data)} bytes is too short")
    raw_kind, seq, rep, count = _HEADER.unpack_from(data)
    try:
        kind = SyncMessageKind(raw_kind)
    except ValueError:
        raise MalformedMessage(f"unknown sync message kind {raw_kind}") from None
    rest = data[_HEADER.size :]
    if kind is SyncMessageKind.BARRIER:
        if rest:
            raise MalformedMessage("sync barrier with trailing bytes")
        if count >= 64:
            raise MalformedMessage(f"sync barrier for service id {count}")
        return SyncMessage(kind, RingId(seq, rep), (count,))
    if len(rest) != count:
        raise MalformedMessage(f"sync service list says {count} services, has {len(rest)}")
    services = tuple(rest)
    if any(service >= 64 for service in services):
        raise MalformedMessage("sync service list names a service id above 63")
    return SyncMessage(kind, RingId(seq, rep), services)


class _Phase(enum.Enum):
    IDLE = "idle"
    LISTS = "collecting service lists"
    PROCESS = "processing"
    BARRIER = "waiting for barriers"


class SyncEngine:
    """Runs the services' sync after each ring; ``send`` multicasts one encoded
    :class:`SyncMessage` (agreed order) to every member, this node included."""

    def __init__(self, services: Sequence[Service], send: Callable[[bytes], None]) -> None:
        self._services = {service.service_id: service for service in services if service.has_sync}
        self._send = send
        self._phase = _Phase.IDLE
        self._ring: RingId | None = None
        self._members: tuple[int, ...] = ()
        self._transitional: tuple[int, ...] = ()
        self._lists: dict[int, tuple[int, ...]] = {}
        self._order: list[int] = []
        self._current: int | None = None  # index into _order
        self._barriers: set[int] = set()
        self._log = structlog.get_logger("sync").bind(subsystem="MAIN")
        self.completed_rings = 0
        self.malformed = 0
        self.stale = 0

    @property
    def in_progress(self) -> bool:
        """True from a new ring until every service is synchronised."""
        return self._phase is not _Phase.IDLE

    @property
    def ring_id(self) -> RingId | None:
        return self._ring

    def start(
        self,
        transitional: tuple[int, ...],
        members: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """A regular configuration was installed: (re)start the sync for it."""
        self.abort()
        self._ring = ring_id
        self._members = members
        self._transitional = transitional
        self._lists = {}
        self._order = []
        self._current = None
        self._barriers = set()
        self._phase = _Phase.LISTS
        self._log.debug(
            f"Sync members[{len(members)}]: {' '.join(map(str, members))}",
        )
        mine = tuple(sorted(self._services))
        self._send(SyncMessage(SyncMessageKind.SERVICE_LIST, ring_id, mine).encode())

    def abort(self) -> None:
        """Stop the run in progress (a new ring is coming)."""
        if self._phase in (_Phase.PROCESS, _Phase.BARRIER) and self._current is not None:
            service = self._services.get(self._order[self._current])
            if service is not None:
                service.sync_abort()
        self._phase = _Phase.IDLE

    def deliver(self, sender: int, data: bytes) -> None:
        """A sync message delivered by totem (untrusted)."""
        try:
            message = decode_sync_message_untrusted(data)
        except MalformedMessage as exc:
            self.malformed += 1
            self._log.warning("malformed sync message dropped", sender=sender, reason=str(exc))
            return
        if message.ring_id != self._ring or self._phase is _Phase.IDLE:
            self.stale += 1
            return
        if sender not in self._members:
            self.stale += 1
            return
        if message.kind is SyncMessageKind.SERVICE_LIST:
            if self._phase is _Phase.LISTS:
                self._lists[sender] = message.services
                if set(self._lists) >= set(self._members):
                    self._order = sorted({sid for ids in self._lists.values() for sid in ids})
                    self._begin_service(0)
            return
        # BARRIER
        if self._current is None or message.services[0] != self._order[self._current]:
            self.stale += 1
            return
        self._barriers.add(sender)
        if self._phase is _Phase.BARRIER and self._barriers >= set(self._members):
            self._activate_current()

    def process(self) -> None:
        """Let the current service do its work (call after every delivery batch)."""
        if self._phase is not _Phase.PROCESS or self._current is None or self._ring is None:
            return
        service_id = self._order[self._current]
        service = self._services.get(service_id)
        if service is None or service.sync_process():
            self._phase = _Phase.BARRIER
            self._send(SyncMessage(SyncMessageKind.BARRIER, self._ring, (service_id,)).encode())
            # Barriers of faster members may have arrived already.
            if self._barriers >= set(self._members):
                self._activate_current()

    def _begin_service(self, index: int) -> None:
        assert self._ring is not None
        self._barriers = set()
        if index >= len(self._order):
            self._phase = _Phase.IDLE
            self._current = None
            self.completed_rings += 1
            self._log.info("Completed service synchronization, ready to provide service.")
            return
        self._current = index
        self._phase = _Phase.PROCESS
        service = self._services.get(self._order[index])
        if service is not None:
            service.sync_init(self._transitional, self._members, self._ring)
        self.process()

    def _activate_current(self) -> None:
        assert self._current is not None
        service = self._services.get(self._order[self._current])
        if service is not None:
            service.sync_activate()
        self._begin_service(self._current + 1)
