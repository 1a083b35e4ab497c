"""corosync's stats map (``stats.*``) and the ``runtime.members.*`` keys.

:class:`StatsMap` turns the daemon's live counters -- the knet handle, the Totem node,
the IPC servers -- into the keys and value types corosync 3.1.7 shows in its stats map
(corosync reference 3.2, compared with ``corosync-cmapctl -m stats`` of a real
corosync). :meth:`StatsMap.refresh` writes them into the stats store (the executive
calls it before answering a client reading that map: the stats are generated on
read) and deletes the keys of connections, links and nodes that have gone.

Clearing (``stats.clear.{totem,knet,ipc,schedmiss,all}``): knet and totem keep their
counters and are not ours to reset, so :meth:`StatsMap.clear` records a baseline and
counters are shown relative to it. Gauges are not cleared (link state, MTU, queue
levels, active connections). Neither are knet's latency figures: its min/max/average
cannot be recomputed from a baseline and its sample count saturates at the ping
precision; corosync's libknet zeroes them instead.

The stats store (:func:`make_stats_store`) is read-only for clients except
``stats.clear.*``. A client's write there is stored like any set; the executive reacts
to it (a track on ``stats.clear.`` reaching ``on_foreign_notification``, or at the
latest at the next :meth:`StatsMap.refresh`, which applies and deletes every written
``stats.clear.*`` key, so a get of one says CS_ERR_NOT_EXIST as in corosync).

What we show differently from corosync, and why:

* ``stats.srp.*``: only the counters Totem has an equivalent for (see
  :data:`SRP_KEYS`); the others are left out rather than shown as 0. ``mcast_rx``
  counts messages delivered (each once) where corosync counts every mcast received;
  ``rx_msg_dropped`` counts messages of another ring that were ignored.
* ``stats.pg.msg_queue_avail`` is the number of full-size packets the process-group
  send queue can still take (our queue is measured in bytes, corosync's in messages);
  ``stats.pg.msg_reserved`` is left out (we have no reservations).
* ``stats.knet.node<N>.link<L>.tx_{data,ping,pong,pmtu}_errors`` are left out: our
  knet counts send errors per link only (``tx_total_errors``). The retry counters are
  0: our knet never retries a send or a receive.
* The local node: our knet has no host for it (Totem delivers to itself without the
  network) while corosync shows its loopback link. We show, as corosync does, one
  ``stats.knet.node<local>.link<L>`` per local link (``local_links``) that is always
  enabled and connected with the loopback MTU 65535 and ``up_count`` 1, and whose
  traffic counters are 0: nothing of ours ever crosses it.
* ``stats.ipcs.service<S>.<pid>.<ptr>``: ``<ptr>`` is the connection id in hex
  (corosync prints its connection's address); ``sent`` counts events sent after
  waiting for room (corosync: queued messages sent later); ``recv_retries`` is 0 (the
  server waits for readability, it never retries a receive).

:class:`MembersTracker` keeps ``runtime.members.<nodeid>.{ip,join_count,status}`` in
the configuration map on each regular configuration; ``config_version`` is written by
the cmap service's sync (as in corosync, where cmap.c writes it), not here.
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from corosync_executive._cmap_store import (
    CmapError,
    CmapStore,
    TypedValue,
    ValueType,
)
from knet import KnetError

if TYPE_CHECKING:
    from corosync_executive._config_validate import Config
    from corosync_executive._ipc_server import IpcConnection, IpcServer
    from knet import KnetHandle, LinkStatus
    from totem import TotemNode

__all__ = [
    "CLEAR_TARGETS",
    "LOOPBACK_MTU",
    "SCHEDMISS_SLOTS",
    "SERVICE_IDS",
    "SRP_KEYS",
    "MembersTracker",
    "StatsMap",
    "handle_clear_write",
    "make_stats_store",
    "read_procname",
]

#: What ``stats.clear.<what>`` may name.
CLEAR_TARGETS: Final = ("totem", "knet", "ipc", "schedmiss", "all")
CLEAR_PREFIX: Final = "stats.clear."
#: corosync's service ids (``corosync_service_types``), by IPC service name.
SERVICE_IDS: Final[Mapping[str, int]] = {
    "cmap": 0,
    "cfg": 1,
    "cpg": 2,
    "quorum": 3,
    "pload": 4,
    "votequorum": 5,
    "mon": 6,
    "wd": 7,
}
#: The MTU corosync shows for its loopback link to the local node.
LOOPBACK_MTU: Final = 65535
#: ``stats.schedmiss.<0..9>``: the last ten scheduling misses, 0 the newest.
SCHEDMISS_SLOTS: Final = 10

_UINT32_MAX: Final = (1 << 32) - 1
_UINT64_MAX: Final = (1 << 64) - 1
_FORMATS: Final = {
    ValueType.UINT8: struct.Struct("=B"),
    ValueType.UINT32: struct.Struct("=I"),
    ValueType.INT32: struct.Struct("=i"),
    ValueType.UINT64: struct.Struct("=Q"),
}
_MASKS: Final = {
    ValueType.UINT8: 0xFF,
    ValueType.UINT32: _UINT32_MAX,
    ValueType.UINT64: _UINT64_MAX,
}


def _int(vtype: ValueType, value: int) -> TypedValue:
    """An integer value, wrapped around to the type's width as C counters do."""
    if vtype is ValueType.INT32:
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    else:
        value &= _MASKS[vtype]
    return TypedValue(vtype, _FORMATS[vtype].pack(value))


def _since(current: int, base: int | None) -> int:
    """A counter relative to its baseline; a counter below its baseline was reset
    (a link re-created), so it counts from its own zero."""
    if base is None or current < base:
        return current
    return current - base


# ---------------------------------------------------------------- key catalogues

#: corosync's ``stats.srp.<name>`` we can fill: name -> (type, Totem counters summed).
SRP_KEYS: Final[Mapping[str, tuple[ValueType, tuple[str, ...]]]] = {
    "orf_token_rx": (ValueType.UINT64, ("tokens_received",)),
    "mcast_tx": (ValueType.UINT64, ("messages_originated", "recovery_messages_sent")),
    "mcast_retx": (ValueType.UINT64, ("retransmits_sent",)),
    "mcast_rx": (ValueType.UINT64, ("messages_delivered",)),
    "gather_entered": (ValueType.UINT64, ("gather_entered",)),
    "operational_entered": (ValueType.UINT64, ("configurations",)),
    "rx_msg_dropped": (ValueType.UINT64, ("foreign_ignored",)),
}

_LINK_TRAFFIC = tuple(
    f"{direction}_{kind}_{unit}"
    for direction in ("tx", "rx")
    for kind in ("data", "ping", "pong", "pmtu", "total")
    for unit in ("packets", "bytes")
)
#: Link counters shown relative to the clear baseline: name -> cmap type.
_LINK_COUNTERS: Final[Mapping[str, ValueType]] = {
    **dict.fromkeys(_LINK_TRAFFIC, ValueType.UINT64),
    "tx_total_errors": ValueType.UINT64,
    "up_count": ValueType.UINT32,
    "down_count": ValueType.UINT32,
}
#: Always 0 (our knet never retries): name -> cmap type.
_LINK_RETRIES: Final[Mapping[str, ValueType]] = {
    "rx_total_retries": ValueType.UINT64,
    **{f"tx_{kind}_retries": ValueType.UINT32 for kind in ("data", "ping", "pong", "pmtu")},
}

#: ``stats.knet.handle.<name>`` counters -> our knet's HandleStats name.
_HANDLE_COUNTERS: Final[Mapping[str, str]] = {
    "tx_uncompressed_packets": "tx_uncompressed_packets",
    "tx_compressed_packets": "tx_compressed_packets",
    "tx_compressed_original_bytes": "tx_compressed_original_bytes",
    "tx_compressed_size_bytes": "tx_compressed_size_bytes",
    "rx_compressed_packets": "rx_compressed_packets",
    "rx_compressed_original_bytes": "rx_compressed_original_bytes",
    "rx_compressed_size_bytes": "rx_compressed_size_bytes",
    "tx_crypt_packets": "tx_crypt_packets",
    "tx_crypt_byte_overhead": "tx_crypt_byte_overhead",
    "rx_crypt_packets": "rx_crypt_packets",
}
#: ``stats.knet.handle.<prefix>_{min,max,ave}`` -> (our timing prefix, its sample counter).
_HANDLE_TIMES: Final[Mapping[str, tuple[str, str]]] = {
    "tx_compress_time": ("tx_compress_time", "tx_compressed_packets"),
    "rx_compress_time": ("rx_decompress_time", "rx_compressed_packets"),
    "tx_crypt_time": ("tx_crypt_time", "tx_crypt_packets"),
    "rx_crypt_time": ("rx_crypt_time", "rx_crypt_packets"),
}

#: Per-connection IPC counters: corosync's name -> (type, IpcConnection attribute).
_IPC_COUNTERS: Final[Mapping[str, tuple[ValueType, str]]] = {
    "requests": (ValueType.UINT64, "requests"),
    "responses": (ValueType.UINT64, "responses"),
    "dispatched": (ValueType.UINT64, "events_sent"),
    "invalid_request": (ValueType.UINT64, "invalid_requests"),
    "overload": (ValueType.UINT64, "overloads"),
    "send_retries": (ValueType.UINT64, "send_retries"),
    "sent": (ValueType.UINT32, "delayed_events"),
    "flow_control_count": (ValueType.UINT64, "flow_control_count"),
}


# ---------------------------------------------------------------- the stats store


def make_stats_store() -> CmapStore:
    """An empty stats map: every key read-only for clients (CS_ERR_ACCESS) except
    those under ``stats.clear.``, which clients may write as in corosync."""
    store = CmapStore(read_only_defaults=False)
    store.set_read_only("", prefix=True)
    store.set_writable_prefix(CLEAR_PREFIX)
    return store


def handle_clear_write(key: str) -> str | None:
    """What a client's write of ``key`` asks to clear (one of :data:`CLEAR_TARGETS`),
    or None when it is no ``stats.clear.*`` trigger."""
    if not key.startswith(CLEAR_PREFIX):
        return None
    what = key[len(CLEAR_PREFIX) :]
    return what if what in CLEAR_TARGETS else None


def read_procname(pid: int) -> str:
    """The command name of ``pid`` (``/proc/<pid>/comm``, at most 15 characters, as
    corosync shows it); empty when the process cannot be read (gone, other pid
    namespace)."""
    try:
        with open(f"/proc/{int(pid)}/comm", "rb") as comm:
            raw = comm.read(64)
    except (OSError, ValueError):
        return ""
    name = raw.rstrip(b"\n").split(b"\0", 1)[0].decode("utf-8", "replace")
    # The key's value must be a cmap string: printable and without NULs.
    return "".join(c if c.isprintable() else "?" for c in name)


# ---------------------------------------------------------------- StatsMap


@attrs.define
class _Baselines:
    """Counter values at the last clear; counters are shown relative to them. Each
    part remembers the object it was taken from: a new knet handle or Totem node
    starts from zero anyway."""

    totem_source: object = None
    totem: dict[str, int] = attrs.Factory(dict)
    knet_source: object = None
    links: dict[tuple[int, int], dict[str, int]] = attrs.Factory(dict)
    handle: dict[str, int] = attrs.Factory(dict)
    ipc_closed: int = 0
    connections: dict[tuple[int, int], dict[str, int]] = attrs.Factory(dict)


class StatsMap:
    """The stats map of one daemon, generated from its live parts.

    Every source is a callable, so the daemon can hand over parts that come and go
    (a knet handle replaced, IPC servers started later, nodes added by a reload):

    * ``local_nodeid``: this node's id;
    * ``handle``: the knet handle, or None (no ``stats.knet.*`` then);
    * ``node``: the Totem node, or None (no ``stats.srp.*``/``stats.pg.*``);
    * ``servers``: the :class:`IpcServer` s, as a mapping service id -> server, or
      just the servers, numbered by :data:`SERVICE_IDS` (corosync's ids) from their
      service name;
    * ``nodeids``: the configured node ids (their knet links are shown);
    * ``local_links``: the link numbers of the local node (see the module doc);
    * ``procname``: pid -> process name (:func:`read_procname`), read once per
      connection.
    """

    def __init__(
        self,
        *,
        local_nodeid: int,
        handle: Callable[[], KnetHandle | None] = lambda: None,
        node: Callable[[], TotemNode | None] = lambda: None,
        servers: Callable[[], Mapping[int, IpcServer] | Iterable[IpcServer]] = tuple,
        nodeids: Callable[[], Iterable[int]] = tuple,
        local_links: Callable[[], Iterable[int]] = lambda: (0,),
        procname: Callable[[int], str] = read_procname,
    ) -> None:
        self.local_nodeid = local_nodeid
        self._knet = handle
        self._totem = node
        self._servers = servers
        self._node_ids = nodeids
        self._local_links = local_links
        self._procname = procname
        self._procnames: dict[tuple[int, int], str] = {}
        self._base = _Baselines()
        self._schedmiss: deque[tuple[int, float]] = deque(maxlen=SCHEDMISS_SLOTS)

    # ------------------------------------------------------------ the daemon's calls

    def refresh(self, store: CmapStore) -> None:
        """Bring ``store`` up to date: apply pending ``stats.clear.*`` writes, write
        every stats key as it is now (unchanged values are not rewritten, so tracks
        see only real changes), delete the keys that no longer exist."""
        self.apply_clear_writes(store)
        current = self.snapshot()
        for key, _ in store.iterate("stats."):
            if key not in current:
                with contextlib.suppress(CmapError):
                    store.delete(key, writer=True)
        for key, value in current.items():
            store.set_typed(key, value, writer=True)

    def apply_clear_writes(self, store: CmapStore) -> tuple[str, ...]:
        """Run the clears that clients asked for by writing ``stats.clear.*`` keys,
        and delete those keys (unknown names are deleted without effect). Returns
        what was cleared, in key order."""
        done: list[str] = []
        for key, _ in store.iterate(CLEAR_PREFIX):
            what = handle_clear_write(key)
            if what is not None:
                self.clear(what)
                done.append(what)
            with contextlib.suppress(CmapError):
                store.delete(key, writer=True)
        return tuple(done)

    def clear(self, what: str) -> None:
        """corosync's ``stats.clear.<what>``: counters of that part count from 0 again
        (``all``: every part). Raises ValueError for an unknown part."""
        if what not in CLEAR_TARGETS:
            raise ValueError(f"cannot clear {what!r}: one of {', '.join(CLEAR_TARGETS)}")
        if what in ("totem", "all"):
            self._clear_totem()
        if what in ("knet", "all"):
            self._clear_knet()
        if what in ("ipc", "all"):
            self._clear_ipc()
        if what in ("schedmiss", "all"):
            self._schedmiss.clear()

    def record_schedmiss(self, timestamp_ms: int, delay_ms: float) -> None:
        """Note that the main loop ran ``delay_ms`` late at ``timestamp_ms`` (ms since
        the epoch); the last :data:`SCHEDMISS_SLOTS` show as ``stats.schedmiss.*``."""
        self._schedmiss.appendleft((int(timestamp_ms), float(delay_ms)))

    def snapshot(self) -> dict[str, TypedValue]:
        """Every stats key with its value as of now, in no particular order."""
        out: dict[str, TypedValue] = {}
        self._srp_keys(out)
        self._knet_keys(out)
        self._ipc_keys(out)
        for slot, (timestamp, delay) in enumerate(self._schedmiss):
            out[f"stats.schedmiss.{slot}.timestamp"] = _int(ValueType.UINT64, timestamp)
            out[f"stats.schedmiss.{slot}.delay"] = TypedValue.of(ValueType.FLOAT, delay)
        return out

    # ------------------------------------------------------------ totem

    def _srp_counters(self, node: TotemNode) -> dict[str, int]:
        stats = node.stats
        return {
            name: sum(stats.get(counter, 0) for counter in counters)
            for name, (_, counters) in SRP_KEYS.items()
            if any(counter in stats for counter in counters)
        }

    def _clear_totem(self) -> None:
        node = self._totem()
        self._base.totem_source = node
        self._base.totem = {} if node is None else self._srp_counters(node)

    def _srp_keys(self, out: dict[str, TypedValue]) -> None:
        node = self._totem()
        if node is None:
            return
        base = self._base.totem if node is self._base.totem_source else {}
        for name, value in self._srp_counters(node).items():
            vtype = SRP_KEYS[name][0]
            out[f"stats.srp.{name}"] = _int(vtype, _since(value, base.get(name)))
        groups = node.groups
        if groups is not None:
            room = max(0, groups.queue_capacity - groups.queued_bytes)
            out["stats.pg.msg_queue_avail"] = _int(
                ValueType.UINT32, min(room // groups.max_packet, _UINT32_MAX)
            )

    # ------------------------------------------------------------ knet

    def _remote_links(self, handle: KnetHandle) -> Iterable[tuple[int, int, LinkStatus]]:
        """(node, link, LinkStatus) of every configured remote node's knet links."""
        for node in sorted(set(self._node_ids())):
            if node == self.local_nodeid:
                continue
            try:
                link_ids = handle.host_status(node).link_ids
            except KnetError:
                continue  # not (or no longer) a knet host
            for link in link_ids:
                with contextlib.suppress(KnetError):
                    yield node, link, handle.link_status(node, link)

    def _clear_knet(self) -> None:
        handle = self._knet()
        self._base.knet_source = handle
        self._base.links = {}
        self._base.handle = {}
        if handle is None:
            return
        for node, link, status in self._remote_links(handle):
            self._base.links[node, link] = {name: status.stats[name] for name in _LINK_COUNTERS}
        handle_stats = handle.stats()
        self._base.handle = {name: handle_stats[ours] for name, ours in _HANDLE_COUNTERS.items()}

    def _knet_keys(self, out: dict[str, TypedValue]) -> None:
        handle = self._knet()
        if handle is None:
            return
        same = handle is self._base.knet_source
        for link in sorted(set(self._local_links())):
            self._loopback_keys(out, f"stats.knet.node{self.local_nodeid}.link{link}.")
        for node, link, status in self._remote_links(handle):
            base = self._base.links.get((node, link), {}) if same else {}
            self._link_keys(out, f"stats.knet.node{node}.link{link}.", status, base)
        stats = handle.stats()
        base = self._base.handle if same else {}
        for name, ours in _HANDLE_COUNTERS.items():
            out[f"stats.knet.handle.{name}"] = _int(
                ValueType.UINT64, _since(stats[ours], base.get(name))
            )
        for name, (ours, samples) in _HANDLE_TIMES.items():
            sampled = stats[samples] > 0
            out[f"stats.knet.handle.{name}_min"] = _int(
                ValueType.UINT64, stats[f"{ours}_min_us"] if sampled else _UINT64_MAX
            )
            out[f"stats.knet.handle.{name}_max"] = _int(ValueType.UINT64, stats[f"{ours}_max_us"])
            out[f"stats.knet.handle.{name}_ave"] = _int(ValueType.UINT64, stats[f"{ours}_ave_us"])

    @staticmethod
    def _link_keys(
        out: dict[str, TypedValue], prefix: str, status: LinkStatus, base: Mapping[str, int]
    ) -> None:
        stats: Mapping[str, Any] = status.stats
        out[prefix + "enabled"] = _int(ValueType.UINT8, int(status.enabled))
        out[prefix + "connected"] = _int(ValueType.UINT8, int(status.connected))
        out[prefix + "mtu"] = _int(ValueType.UINT32, status.data_mtu)
        for name, vtype in _LINK_COUNTERS.items():
            out[prefix + name] = _int(vtype, _since(stats[name], base.get(name)))
        for name, vtype in _LINK_RETRIES.items():
            out[prefix + name] = _int(vtype, 0)
        samples = stats["latency_samples"]
        out[prefix + "latency_samples"] = _int(ValueType.UINT32, samples)
        out[prefix + "latency_min"] = _int(
            ValueType.UINT32, stats["latency_min_us"] if samples else _UINT32_MAX
        )
        out[prefix + "latency_max"] = _int(ValueType.UINT32, stats["latency_max_us"])
        out[prefix + "latency_ave"] = _int(ValueType.UINT32, stats["latency_ave_us"])

    @staticmethod
    def _loopback_keys(out: dict[str, TypedValue], prefix: str) -> None:
        out[prefix + "enabled"] = _int(ValueType.UINT8, 1)
        out[prefix + "connected"] = _int(ValueType.UINT8, 1)
        out[prefix + "mtu"] = _int(ValueType.UINT32, LOOPBACK_MTU)
        for name, vtype in {**_LINK_COUNTERS, **_LINK_RETRIES}.items():
            out[prefix + name] = _int(vtype, 0)
        out[prefix + "up_count"] = _int(ValueType.UINT32, 1)
        out[prefix + "latency_samples"] = _int(ValueType.UINT32, 0)
        out[prefix + "latency_min"] = _int(ValueType.UINT32, _UINT32_MAX)
        out[prefix + "latency_max"] = _int(ValueType.UINT32, 0)
        out[prefix + "latency_ave"] = _int(ValueType.UINT32, 0)

    # ------------------------------------------------------------ IPC

    def _ipc_servers(self) -> dict[int, IpcServer]:
        servers = self._servers()
        if isinstance(servers, Mapping):
            return dict(servers)
        out: dict[int, IpcServer] = {}
        for server in servers:
            service_id = SERVICE_IDS.get(server.service_name)
            if service_id is not None:
                out[service_id] = server
        return out

    def _connections(self, servers: Mapping[int, IpcServer]) -> Iterable[tuple[int, IpcConnection]]:
        for service_id in sorted(servers):
            for conn in servers[service_id].connections:
                if not conn.closed:
                    yield service_id, conn

    @staticmethod
    def _closed_total(servers: Mapping[int, IpcServer]) -> int:
        """Connections accepted and gone, over every server (they never un-accept)."""
        return sum(server.stats.accepted - len(server.connections) for server in servers.values())

    def _clear_ipc(self) -> None:
        servers = self._ipc_servers()
        self._base.ipc_closed = self._closed_total(servers)
        self._base.connections = {
            (service_id, conn.id): {
                name: getattr(conn, attr) for name, (_, attr) in _IPC_COUNTERS.items()
            }
            for service_id, conn in self._connections(servers)
        }

    def _ipc_keys(self, out: dict[str, TypedValue]) -> None:
        servers = self._ipc_servers()
        live: set[tuple[int, int]] = set()
        for service_id, conn in self._connections(servers):
            ident = (service_id, conn.id)
            live.add(ident)
            pid = conn.credentials.pid
            name = self._procnames.get(ident)
            if name is None:
                name = self._procnames[ident] = self._procname(pid)
            prefix = f"stats.ipcs.service{service_id}.{pid}.{conn.id:#x}."
            base = self._base.connections.get(ident, {})
            out[prefix + "procname"] = TypedValue.of(ValueType.STRING, name)
            for key, (vtype, attr) in _IPC_COUNTERS.items():
                out[prefix + key] = _int(vtype, _since(getattr(conn, attr), base.get(key)))
            queued = conn.pending_events
            out[prefix + "queued"] = _int(ValueType.UINT32, queued)
            out[prefix + "queueing"] = _int(ValueType.INT32, int(queued > 0))
            out[prefix + "recv_retries"] = _int(ValueType.UINT64, 0)
            out[prefix + "flow_control"] = _int(ValueType.UINT32, conn.flow_control)
        # Forget what belongs to connections that have gone.
        for ident in set(self._procnames) - live:
            del self._procnames[ident]
        for ident in set(self._base.connections) - live:
            del self._base.connections[ident]
        out["stats.ipcs.global.active"] = _int(ValueType.UINT64, len(live))
        out["stats.ipcs.global.closed"] = _int(
            ValueType.UINT64, _since(self._closed_total(servers), self._base.ipc_closed)
        )


# ---------------------------------------------------------------- runtime.members


def _member_ip(config: Config, nodeid: int) -> str | None:
    """corosync's ``r(<link>) ip(<address>) `` per link of ``nodeid`` (trailing space
    included), or None for a node the configuration does not list."""
    for node in config.nodes:
        if node.nodeid == nodeid:
            parts = [
                f"r({addr.link}) ip({addr.ip if addr.ip is not None else addr.address}) "
                for addr in sorted(node.addresses, key=lambda a: a.link)
            ]
            return "".join(parts)
    return None


class MembersTracker:
    """Keeps ``runtime.members.<nodeid>.{ip,join_count,status}`` in the configuration
    map, as corosync's main.c does on each regular configuration.

    A node that joins gets ``status`` "joined", its ``join_count`` (u32) raised by one
    (1 the first time) and its ``ip`` from the configuration's addresses; a node that
    leaves gets ``status`` "left" and keeps its other keys. A member not yet marked
    "joined" counts as joining even when absent from ``joined`` (the first
    configuration after start). The caller sends the track notifications afterwards
    (``ServiceContext.cmap_changed``).
    """

    def __init__(self, store: CmapStore) -> None:
        self.store = store

    def update(
        self,
        config: Config,
        members: Iterable[int],
        joined: Iterable[int],
        left: Iterable[int],
    ) -> None:
        """Record one regular configuration: its ``members`` and the nodes that
        ``joined`` and ``left`` it (``config`` gives the nodes' addresses)."""
        members = set(members)
        joining = set(joined) | {node for node in members if self.status(node) != "joined"}
        for node in sorted(set(left) - members):
            prefix = f"runtime.members.{node}."
            self.store.set(prefix + "status", ValueType.STRING, "left", writer=True)
        for node in sorted(joining):
            prefix = f"runtime.members.{node}."
            ip = _member_ip(config, node)
            if ip is not None:
                self.store.set(prefix + "ip", ValueType.STRING, ip, writer=True)
            count = (self._join_count(node) + 1) & _UINT32_MAX  # a u32, as C wraps
            self.store.set(prefix + "join_count", ValueType.UINT32, count, writer=True)
            self.store.set(prefix + "status", ValueType.STRING, "joined", writer=True)

    def status(self, nodeid: int) -> str | None:
        """``runtime.members.<nodeid>.status``, None if the node was never seen."""
        try:
            _, value = self.store.get(f"runtime.members.{nodeid}.status")
        except CmapError:
            return None
        return value if isinstance(value, str) else None

    def _join_count(self, nodeid: int) -> int:
        try:
            vtype, value = self.store.get(f"runtime.members.{nodeid}.join_count")
        except CmapError:
            return 0
        return value if vtype is ValueType.UINT32 and isinstance(value, int) else 0
