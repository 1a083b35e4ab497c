"""The service framework: one shape for every service of the executive.

A service (cmap, cfg, and what later issues add: cpg, quorum, votequorum...) is a
subclass of :class:`Service`. The daemon knows services only through this shape:

* **library side** -- ``ipc_name`` names its libqb IPC socket (None: no socket);
  :meth:`Service.lib_init` / :meth:`Service.lib_exit` run when a client connects and
  goes away, :meth:`Service.lib_handle` answers one request (an async function: it may
  wait, e.g. for its own totem message to come back);
* **executive side** -- messages a service multicasts through totem with
  :meth:`ServiceContext.mcast` come back, in agreed order on every member, to
  :meth:`Service.exec_deliver` of the same service on each node;
* **membership** -- :meth:`Service.confchg` sees every transitional and regular
  configuration, in order with the messages;
* **synchronisation** -- a service with ``has_sync = True`` takes part in the sync
  engine after each new ring: ``sync_init``, ``sync_process`` until it returns True,
  then (after every member's barrier) ``sync_activate``; ``sync_abort`` when a new
  ring interrupts;
* **lifetime** -- :meth:`Service.run` is a task started with the daemon (most services
  need none), :meth:`Service.stop` is called when the daemon stops.

Exec messages carry a 4-byte envelope: the service id and the function id (u16 each,
big endian), as corosync's ``(service << 16) | function`` message id.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar, Protocol

import attrs

from corosync import MalformedMessage

if TYPE_CHECKING:
    from corosync_executive._cmap_store import CmapStore, Notification
    from corosync_executive._config_validate import Config
    from corosync_executive._ipc_server import IpcConnection
    from totem import ConfigurationChange, Guarantee, RingId

__all__ = [
    "MAX_SERVICES",
    "ExecMessage",
    "Service",
    "ServiceContext",
    "decode_exec_message_untrusted",
    "encode_exec_message",
]

MAX_SERVICES = 64
"""Service ids are 0..63, as corosync's."""
MAX_FUNCTIONS = 64
_ENVELOPE = struct.Struct(">HH")


@attrs.frozen
class ExecMessage:
    """One service message as delivered by totem."""

    sender: int
    service_id: int
    function_id: int
    payload: bytes


def encode_exec_message(service_id: int, function_id: int, payload: bytes) -> bytes:
    """The envelope plus ``payload``."""
    if not 0 <= service_id < MAX_SERVICES or not 0 <= function_id < MAX_FUNCTIONS:
        raise ValueError(f"exec message id {service_id}.{function_id} is out of range")
    return _ENVELOPE.pack(service_id, function_id) + payload


def decode_exec_message_untrusted(sender: int, data: bytes) -> ExecMessage:
    """Split a delivered totem message; raises :class:`MalformedMessage`."""
    if len(data) < _ENVELOPE.size:
        raise MalformedMessage(f"exec message of {len(data)} bytes has no envelope")
    service_id, function_id = _ENVELOPE.unpack_from(data)
    if service_id >= MAX_SERVICES or function_id >= MAX_FUNCTIONS:
        raise MalformedMessage(f"exec message id {service_id}.{function_id} is out of range")
    return ExecMessage(sender, service_id, function_id, bytes(data[_ENVELOPE.size :]))


class ServiceContext(Protocol):
    """What the daemon offers every service."""

    @property
    def local_nodeid(self) -> int: ...

    @property
    def config(self) -> Config:
        """The configuration in force (replaced by a reload)."""
        ...

    @property
    def cmap(self) -> CmapStore:
        """The configuration/runtime map (write with ``writer=True``)."""
        ...

    @property
    def members(self) -> tuple[int, ...]:
        """The members of the current regular configuration."""
        ...

    @property
    def ring_id(self) -> RingId | None: ...

    def mcast(
        self, service_id: int, function_id: int, payload: bytes, guarantee: Guarantee
    ) -> None:
        """Queue a message for every member's ``exec_deliver`` (this node's too).
        Raises :class:`corosync.CsError` TRY_AGAIN while the totem queue is full."""
        ...

    def cmap_changed(self) -> None:
        """Send the cmap track notifications of writes the service made."""
        ...


class Service:
    """Base class of services: every hook does nothing until overridden."""

    #: corosync's service name, e.g. ``corosync_cfg`` (internal_configuration.service.N.name)
    name: ClassVar[str] = ""
    #: the service id (0..63), corosync's for the services it has
    service_id: ClassVar[int] = -1
    #: the IPC socket name, e.g. ``cfg``; None for a service without a library
    ipc_name: ClassVar[str | None] = None
    #: True when the service takes part in the sync engine
    has_sync: ClassVar[bool] = False
    #: the version corosync shows in internal_configuration.service.N.ver
    version: ClassVar[int] = 0

    _ctx: ServiceContext | None = None

    def attach(self, ctx: ServiceContext) -> None:
        """Called once by the daemon before anything else."""
        self._ctx = ctx

    @property
    def ctx(self) -> ServiceContext:
        if self._ctx is None:
            raise RuntimeError(f"service {self.name} is not attached to a daemon")
        return self._ctx

    # ---------------------------------------------------------------- library side

    def lib_init(self, conn: IpcConnection) -> None:
        """A client connected to ``ipc_name``."""

    def lib_exit(self, conn: IpcConnection) -> None:
        """A client went away: drop what it held."""

    async def lib_handle(
        self, conn: IpcConnection, request_id: int, message: bytes
    ) -> bytes | None:
        """Answer one whole request message; raise :class:`corosync.MalformedMessage`
        for bytes that cannot be decoded (the IPC server answers INVALID_PARAM)."""
        raise MalformedMessage(f"service {self.name} has no library requests")

    # ---------------------------------------------------------------- executive side

    def exec_deliver(self, message: ExecMessage) -> None:
        """A message of this service, delivered by totem in agreed order.
        The payload is untrusted: a bad one is logged and dropped, never raised."""

    def confchg(self, change: ConfigurationChange) -> None:
        """A transitional or regular configuration, in order with the messages."""

    # ---------------------------------------------------------------- sync engine

    def sync_init(
        self,
        transitional: tuple[int, ...],
        members: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """A new ring: start synchronising (only with ``has_sync``)."""

    def sync_process(self) -> bool:
        """Do (more of) the synchronisation; True when this node's part is done."""
        return True

    def sync_activate(self) -> None:
        """Every member finished: the synchronised state is now in force."""

    def sync_abort(self) -> None:
        """A newer ring interrupted the synchronisation."""

    # ---------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """The service's own task, if it needs one (cancelled when the daemon stops)."""

    def cmap_notification(self, note: Notification) -> None:
        """A change seen by a track the service added to cmap with itself as owner."""

    def config_reloaded(self, old: Config, new: Config) -> None:
        """A reload replaced the configuration (after cmap was updated)."""

    def stop(self) -> None:
        """The daemon is stopping."""
