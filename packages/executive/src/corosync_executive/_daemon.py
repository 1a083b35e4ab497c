"""The daemon: config -> cmap -> knet + totem -> sync engine -> services -> IPC.

:class:`Daemon` composes the parts and is the only place that knows all of them. It
is the :class:`ServiceContext` of every service and the :class:`CfgBackend` of the cfg
service. :meth:`Daemon.run` runs until a signal, ``cfgtool -H``, ``cfgtool -k`` or an
error stops it, and returns the exit status (0 after a clean leave).

Exec messages of services travel in the totem process group ``exec``; the sync
engine's in ``sync``. Both are in one agreed order.
"""

from __future__ import annotations

import enum
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

import attrs
import structlog
import trio

import knet
import totem
from corosync import CsError, CsErrorCode, MalformedMessage
from corosync.ipc import CfgLinkStatus, CfgNodeStatus, Credentials
from corosync_executive._cfg_service import CfgService
from corosync_executive._cmap_service import CmapService, load_config_into_cmap
from corosync_executive._cmap_store import (
    CmapError,
    CmapStore,
    Notification,
    TrackType,
    ValueType,
)
from corosync_executive._config_parser import ConfigError
from corosync_executive._config_validate import Config
from corosync_executive._ipc_server import (
    IpcServer,
    IpcServerError,
    Transport,
    check_credentials,
)
from corosync_executive._local import ConfigSource, resolve_address
from corosync_executive._logging import BLACKBOX_FILE_NAME, Blackbox, LogSystem
from corosync_executive._pload_service import PloadService
from corosync_executive._reload import (
    ReloadFailure,
    apply_plan_to_cmap,
    begin_reload,
    finish_reload,
    read_key,
    reload_config_file,
)
from corosync_executive._service import (
    MAX_SERVICES,
    ExecMessage,
    Service,
    decode_exec_message_untrusted,
    encode_exec_message,
)
from corosync_executive._stats_map import MembersTracker, StatsMap, make_stats_store
from corosync_executive._sync import SyncEngine

__all__ = ["DEFAULT_STATE_DIR", "Daemon", "ExitStatus", "crypto_config_of", "ring_store"]

DEFAULT_STATE_DIR = "/var/lib/pycorosync"
_EXEC_GROUP = b"exec"
_SYNC_GROUP = b"sync"
_SYNC_TICK = 0.05  # seconds
#: totem keys that, set in cmap at run time, re-derive this node's timers (corosync's
#: totemconfig "volatile" keys)
_VOLATILE_TOTEM_KEYS = frozenset(
    field.name
    for field in attrs.fields(totem.TotemConfig)
    if field.name != "cancel_token_hold_on_retransmit"
)
_SHUTDOWN_GRACE = 0.2  # seconds for pending IPC replies before a requested shutdown
_CRYPTO_ACTIVATE = 1
_CRYPTO_CLEANUP = 2


class ExitStatus(enum.IntEnum):
    """corosync's exit codes (exec/util.h) that the daemon uses."""

    OK = 0
    LOG_CONFIG = 7
    MAIN_CONFIG = 8
    INIT_SERVICES = 13
    FATAL = 15
    DIR_NOT_PRESENT = 16
    ACQUIRE_LOCK = 17
    ALREADY_RUNNING = 18
    STORE_RINGID = 21
    KILLED = 255


class _Stop(Exception):
    """Leave the totem block like a crash (killed, fatal): no clean leave."""


def ring_store(state_dir: str, nodeid: int) -> totem.FileRingStore:
    """Where this node's ring sequence number survives restarts (corosync's
    ``<state_dir>/ringid_<nodeid>``)."""
    return totem.FileRingStore(os.path.join(state_dir, f"ringid_{nodeid}"))


def crypto_config_of(config: Config, *, key: bytes | None = None) -> knet.CryptoConfig | None:
    """knet's crypto from the ``totem`` crypto settings and the key (read from the
    config's key or key file unless given; None: no crypto). Raises ConfigError naming
    the key file when it cannot be read or is invalid."""
    crypto = config.crypto
    if not crypto.enabled:
        return None
    if key is None:
        key = read_key(crypto)
    try:
        return knet.CryptoConfig(key=key)
    except knet.KnetError as exc:
        where = "totem.key" if crypto.key is not None else crypto.keyfile
        raise ConfigError(f"Invalid key in {where}: {exc}") from None


@attrs.define
class _KnetLink:
    local: tuple[str, int]
    remote: tuple[str, int]
    options: knet.LinkOptions


class Daemon:
    """One pycorosync node. Build it with a validated :class:`Config`, run :meth:`run`."""

    def __init__(
        self,
        source: ConfigSource,
        config: Config,
        *,
        ipc_prefix: str = "",
        runtime_dir: str = "/dev/shm",  # noqa: S108 - where libqb puts its files
        state_dir: str | None = None,
        log_system: LogSystem | None = None,
        blackbox: Blackbox | None = None,
        handle_signals: bool = True,
        notify_socket: str | None = None,
        extra_services: Sequence[Service] = (),
    ) -> None:
        self.source = source
        self._config = config
        self.ipc_prefix = ipc_prefix
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir or config.system.state_dir or DEFAULT_STATE_DIR
        self.log_system = log_system
        self.blackbox = blackbox
        self._handle_signals = handle_signals
        self._notify_socket = notify_socket
        self._log = structlog.get_logger("main").bind(subsystem="MAIN")
        self._exit = ExitStatus.OK
        self._stop = trio.Event()
        self._leave_cleanly = True
        self.cmap = CmapStore()
        self.stats_store = make_stats_store()
        self.handle: knet.KnetHandle | None = None
        self.node: totem.TotemNode | None = None
        self.servers: dict[str, IpcServer] = {}
        self._knet_hosts: set[int] = set()
        self._knet_links: dict[tuple[int, int], _KnetLink] = {}
        self._key: bytes | None = None  # the authkey in use (a reload compares it)
        self._crypto_slot = 0  # the knet slot our packets are sealed with (0: none)
        self._crypto_pending: tuple[int, knet.CryptoConfig | None] | None = None
        self._crypto_cleanups: set[int] = set()
        self._members: tuple[int, ...] = ()
        self._transitional: tuple[int, ...] = ()
        self._ring_id: totem.RingId | None = None
        self.cmap_service = CmapService(
            self.cmap,
            self.stats_store,
            on_foreign_notification=self._on_cmap_notification,
            refresh_stats=self._refresh_stats,
            on_config_version_mismatch=self._fatal,
        )
        self.cfg_service = CfgService(self)
        self.pload_service = PloadService(self.cmap)
        self.services: tuple[Service, ...] = (
            self.cmap_service,
            self.cfg_service,
            self.pload_service,
            *extra_services,
        )
        self._by_id: dict[int, Service] = {}
        for service in self.services:
            if service.service_id in self._by_id or not 0 <= service.service_id < MAX_SERVICES:
                raise ValueError(
                    f"service {service.name}: id {service.service_id} is taken or invalid"
                )
            self._by_id[service.service_id] = service
        self.sync = SyncEngine(self.services, self._send_sync)
        self.members_tracker = MembersTracker(self.cmap)
        self.stats_map = StatsMap(
            local_nodeid=config.local_nodeid,
            nodeids=lambda: tuple(node.nodeid for node in self._config.nodes),
            handle=lambda: self.handle,
            node=lambda: self.node,
            servers=lambda: tuple(self.servers.values()),
        )
        self.ready = trio.Event()
        self._sync_started = trio.Event()  # wakes the sync ticker
        self._exec_counter_keys: dict[tuple[int, int, str], str] = {}
        self._nursery: trio.Nursery | None = None

    # ================================================================ ServiceContext

    @property
    def local_nodeid(self) -> int:
        return self._config.local_nodeid

    @property
    def config(self) -> Config:
        return self._config

    @property
    def members(self) -> tuple[int, ...]:
        return self._members

    @property
    def ring_id(self) -> totem.RingId | None:
        return self._ring_id

    def mcast(
        self, service_id: int, function_id: int, payload: bytes, guarantee: totem.Guarantee
    ) -> None:
        node = self.node
        if node is None or node.closed:
            raise CsError(CsErrorCode.TRY_AGAIN, "totem is not running")
        data = encode_exec_message(service_id, function_id, payload)
        try:
            node.mcast_group([_EXEC_GROUP], data, guarantee)
        except totem.QueueFull:
            raise CsError(CsErrorCode.TRY_AGAIN, "totem send queue is full") from None
        self._count_exec(service_id, function_id, "tx")

    def cmap_changed(self) -> None:
        self.cmap_service.dispatch_notifications()

    # ================================================================ CfgBackend

    def node_status(self, nodeid: int) -> CfgNodeStatus | None:
        node = self._config.node_by_id(nodeid)
        if node is None:
            return None
        links: list[CfgLinkStatus] = []
        local = self._config.local_node
        handle = self.handle
        if nodeid == self.local_nodeid:
            # As corosync: the local node has one loopback link, link 0, to itself.
            address = local.addresses[0].address if local.addresses else "127.0.0.1"
            links.append(
                CfgLinkStatus(
                    enabled=True,
                    connected=True,
                    dynconnected=False,  # a static link, as the remote ones below
                    mtu=handle.data_mtu if handle is not None else 0,
                    src_ipaddr=address,
                    dst_ipaddr=address,
                )
            )
            links.extend(CfgLinkStatus() for _ in range(knet.MAX_LINKS - 1))
            return CfgNodeStatus(
                nodeid=nodeid,
                reachable=True,
                onwire_min=1,
                onwire_max=1,
                onwire_ver=1,
                link_status=tuple(links),
            )
        reachable = False
        for link_id in range(knet.MAX_LINKS):
            if handle is None or (nodeid, link_id) not in self._knet_links:
                links.append(CfgLinkStatus())
                continue
            status = handle.link_status(nodeid, link_id)
            links.append(
                CfgLinkStatus(
                    enabled=status.enabled,
                    connected=status.connected,
                    # libknet sets it only on links with a dynamic remote address
                    # (learnt from the first packet); nodelist links are static, so
                    # corosync-cfgtool -n never says "dynconnected" for them.
                    dynconnected=False,
                    mtu=status.data_mtu,
                    src_ipaddr=status.local.ip,
                    dst_ipaddr=status.remote.ip,
                )
            )
        if handle is not None and nodeid in self._knet_hosts:
            reachable = handle.host_status(nodeid).reachable
        return CfgNodeStatus(
            nodeid=nodeid,
            reachable=reachable,
            onwire_min=1,
            onwire_max=1,
            onwire_ver=1,
            link_status=tuple(links),
        )

    def node_addresses(self, nodeid: int) -> tuple[str, ...] | None:
        node = self._config.node_by_id(nodeid)
        if node is None:
            return None
        return tuple(
            str(address.ip) if address.ip is not None else address.address
            for address in sorted(node.addresses, key=lambda a: a.link)
        )

    def reload_local(self) -> tuple[CsErrorCode, str]:
        return self._reload()

    def reopen_log_files(self) -> None:
        if self.log_system is not None:
            self.log_system.reopen()

    def killed(self, by_nodeid: int, reason: str) -> None:
        self._log.error(f"Killed by node {by_nodeid} : {reason}")
        self._stop_now(ExitStatus.KILLED, cleanly=False)

    def shutdown_now(self) -> None:
        self._log.info("Node was shut down by sysadmin")
        nursery = self._nursery
        if nursery is None:
            self.request_stop()
            return

        async def stop_after_replies() -> None:
            # The cfg reply to the client that asked is still to be written.
            await trio.sleep(_SHUTDOWN_GRACE)
            self.request_stop()

        nursery.start_soon(stop_after_replies)

    def crypto_reconfig(self, sender: int, phase: int) -> None:
        handle = self.handle
        if handle is None or self._crypto_pending is None:
            return
        new_slot, new_config = self._crypto_pending
        if phase == _CRYPTO_ACTIVATE and sender == self.local_nodeid:
            handle.use_crypto_config(new_slot if new_config is not None else 0)
            self._log.info("crypto: the new key is in use for sending", slot=new_slot)
            self._send_crypto_phase(_CRYPTO_CLEANUP)
        elif phase == _CRYPTO_CLEANUP:
            self._crypto_cleanups.add(sender)
            self._finish_crypto_change()

    def _finish_crypto_change(self) -> None:
        """Drop the old key once every member sends with the new one (its CLEANUP)."""
        handle = self.handle
        if handle is None or self._crypto_pending is None:
            return
        if not self._crypto_cleanups >= set(self._members):
            return
        new_slot, new_config = self._crypto_pending
        if self._crypto_slot:
            handle.set_crypto_config(self._crypto_slot, None)
        if new_config is not None:
            handle.set_rx_clear_traffic(False)
        self._crypto_slot = new_slot if new_config is not None else 0
        self._crypto_pending = None
        self._crypto_cleanups = set()
        self._log.info("crypto: key change complete; the old key is gone")

    # ================================================================ running

    def request_stop(self) -> None:
        """Leave the ring cleanly and exit 0 (SIGTERM, SIGINT, cfgtool -H)."""
        self._stop_now(ExitStatus.OK, cleanly=True)

    def _stop_now(self, status: ExitStatus, *, cleanly: bool) -> None:
        if not self._stop.is_set():
            self._exit = status
            self._leave_cleanly = cleanly
            self._stop.set()

    def _fatal(self, message: str) -> None:
        self._log.error(message)
        self._stop_now(ExitStatus.FATAL, cleanly=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> int:
        """Run the node; returns the exit status. ``task_status.started()`` once the
        IPC sockets accept clients."""
        config = self._config
        self._log.info(
            "Corosync Cluster Engine (pycorosync) starting up",
            nodeid=config.local_nodeid,
            config=config.file,
        )
        load_config_into_cmap(self.cmap, config)
        self._write_service_keys()
        self._key = read_key(config.crypto) if config.crypto.enabled else None
        crypto = crypto_config_of(config, key=self._key)
        store = ring_store(self.state_dir, config.local_nodeid)
        try:
            async with knet.open_handle(
                config.local_nodeid,
                crypto=crypto,
                compression=config.compression,
                pmtud_interval_s=config.knet_pmtud_interval,
            ) as handle:
                self.handle = handle
                self._crypto_slot = 1 if crypto is not None else 0
                if config.knet_mtu:
                    handle.set_manual_mtu(config.knet_mtu)
                self._apply_knet(config)
                transport = totem.KnetTransport(handle, channel=0)
                async with totem.open_node(
                    config.local_nodeid,
                    transport,
                    node_count=len(config.nodes),
                    config=config.totem,
                    store=store,
                    groups=True,
                ) as node:
                    self.node = node
                    node.join(_EXEC_GROUP)
                    node.join(_SYNC_GROUP)
                    await self._serve(node, task_status)
                    if not self._leave_cleanly:
                        raise _Stop
                self._log.info("left the ring cleanly")
        except* _Stop:  # wrapped in an ExceptionGroup by the nurseries it crossed
            pass
        finally:
            self.node = None
            self.handle = None
            for service in self.services:
                service.stop()
        if self._exit is ExitStatus.OK:
            self._log.info("Corosync Cluster Engine exiting normally")
        else:
            self._log.error(f"Corosync Cluster Engine exiting with status {int(self._exit)}")
        return int(self._exit)

    async def _serve(
        self,
        node: totem.TotemNode,
        task_status: trio.TaskStatus[None],
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._pump_totem, node)
            nursery.start_soon(self._sync_ticker)
            if self._handle_signals:
                nursery.start_soon(self._watch_signals)
            for service in self.services:
                service.attach(self)
                nursery.start_soon(service.run)
            transport: Transport = (
                "socket" if self._config.system.qb_ipc_type == "socket" else "shm"
            )
            for service in self.services:
                if service.ipc_name is None:
                    continue
                server = IpcServer(
                    service.ipc_name,
                    service.lib_handle,
                    prefix=self.ipc_prefix,
                    authorize=self._authorize,
                    runtime_dir=self.runtime_dir,
                    on_connect=service.lib_init,
                    on_disconnect=service.lib_exit,
                    transport=transport,
                )
                self.servers[service.ipc_name] = server
                try:
                    await nursery.start(server.serve)
                except IpcServerError as exc:
                    self._log.error(f"Cannot start IPC: {exc}")
                    self._stop_now(ExitStatus.ALREADY_RUNNING, cleanly=False)
                    nursery.cancel_scope.cancel()
                    return
            self._track_triggers()
            self._notify("READY=1\nSTATUS=pycorosync is running")
            self.ready.set()
            task_status.started()
            await self._stop.wait()
            self._notify("STOPPING=1")
            nursery.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self._log.info(f"Received {signal.Signals(signum).name}, leaving the cluster")
                self.request_stop()

    # ---------------------------------------------------------------- totem events

    async def _pump_totem(self, node: totem.TotemNode) -> None:
        async for event in node.events():
            if isinstance(event, totem.ConfigurationChange):
                self._on_confchg(event)
            elif isinstance(event, totem.GroupMessage):
                if _SYNC_GROUP in event.groups:
                    self.sync.deliver(event.sender, event.payload)
                elif _EXEC_GROUP in event.groups:
                    self._deliver_exec(event.sender, event.payload)
            self.sync.process()
            self.cmap_service.dispatch_notifications()

    async def _sync_ticker(self) -> None:
        """A service may need more sync_process calls than messages arrive (corosync
        calls it on every token); tick it while a sync runs, sleep otherwise."""
        while True:
            await self._sync_started.wait()
            while self.sync.in_progress:
                await trio.sleep(_SYNC_TICK)
                self.sync.process()
                self.cmap_service.dispatch_notifications()
            self._sync_started = trio.Event()

    def _on_confchg(self, change: totem.ConfigurationChange) -> None:
        if change.kind is totem.ConfKind.TRANSITIONAL:
            self._transitional = change.members
        else:
            self._members = change.members
            self._ring_id = change.ring_id
            self.members_tracker.update(self._config, change.members, change.joined, change.left)
            # A member that left will send no CLEANUP: the others may be all we wait for.
            self._finish_crypto_change()
        for service in self.services:
            service.confchg(change)
        if change.kind is totem.ConfKind.REGULAR:
            self.sync.start(self._transitional, change.members, change.ring_id)
            self._sync_started.set()

    def _deliver_exec(self, sender: int, data: bytes) -> None:
        try:
            message: ExecMessage = decode_exec_message_untrusted(sender, data)
        except MalformedMessage as exc:  # a peer's garbage is dropped, never raised
            self._log.warning("malformed exec message dropped", sender=sender, reason=str(exc))
            return
        service = self._by_id.get(message.service_id)
        if service is None:
            self._log.debug("exec message for an unknown service", service=message.service_id)
            return
        self._count_exec(message.service_id, message.function_id, "rx")
        try:
            service.exec_deliver(message)
        except Exception:
            self._log.exception("service failed on an exec message", service=service.name)

    def _send_sync(self, payload: bytes) -> None:
        node = self.node
        if node is None or node.closed:
            return
        node.mcast_group([_SYNC_GROUP], payload, totem.Guarantee.AGREED)

    def _count_exec(self, service_id: int, function_id: int, direction: str) -> None:
        key = self._exec_counter_keys.get((service_id, function_id, direction))
        if key is None:
            service = self._by_id.get(service_id)
            if service is None:
                return
            short = service.name.removeprefix("corosync_")
            key = f"runtime.services.{short}.{function_id}.{direction}"
            self._exec_counter_keys[service_id, function_id, direction] = key
        try:
            self.cmap.inc(key, writer=True)
        except CmapError:  # the first message of this function
            self.cmap.set(key, ValueType.UINT64, 1, writer=True)

    # ---------------------------------------------------------------- knet configuration

    def _apply_knet(self, config: Config) -> None:
        """Make the knet hosts and links what ``config`` says (at start and reload)."""
        handle = self.handle
        assert handle is not None
        local = config.local_node
        wanted_hosts = {node.nodeid: node for node in config.nodes if node.nodeid != local.nodeid}
        wanted_links: dict[tuple[int, int], _KnetLink] = {}
        for link in config.links:
            mine = local.address(link.linknumber)
            if mine is None or mine.ip is None:
                continue
            for nodeid, node in wanted_hosts.items():
                theirs = node.address(link.linknumber)
                if theirs is None or theirs.ip is None:
                    continue
                wanted_links[(nodeid, link.linknumber)] = _KnetLink(
                    (str(mine.ip), link.mcastport), (str(theirs.ip), link.mcastport), link.options
                )
        for key in sorted(set(self._knet_links) - set(wanted_links)):
            handle.clear_link(*key)
            del self._knet_links[key]
        for nodeid in sorted(self._knet_hosts - set(wanted_hosts)):
            handle.remove_host(nodeid)
            self._knet_hosts.discard(nodeid)
            self._log.info(f"removed node {nodeid} from knet")
        for nodeid in sorted(set(wanted_hosts) - self._knet_hosts):
            handle.add_host(nodeid, name=wanted_hosts[nodeid].name, policy=config.link_mode)
            self._knet_hosts.add(nodeid)
        for nodeid in sorted(self._knet_hosts):
            handle.set_host_policy(nodeid, config.link_mode)
        for key, wanted in sorted(wanted_links.items()):
            current = self._knet_links.get(key)
            if current == wanted:
                continue
            if current is not None and (current.local, current.remote) == (
                wanted.local,
                wanted.remote,
            ):
                handle.set_link_options(*key, wanted.options)
            else:
                if current is not None:
                    handle.clear_link(*key)
                handle.set_link(
                    *key, local=wanted.local, remote=wanted.remote, options=wanted.options
                )
            self._knet_links[key] = wanted

    # ---------------------------------------------------------------- reload

    def _reload(self) -> tuple[CsErrorCode, str]:
        old = self._config
        begin_reload(self.cmap)
        hostname, addresses = self.source.identity()
        result = reload_config_file(
            self.source.path,
            hostname=hostname,
            local_addresses=addresses,
            resolve_address=resolve_address,
            current=old,
            current_key=self._key,
        )
        if isinstance(result, ReloadFailure):
            self._log.error(f"Config reload failed: {result.message}")
            finish_reload(self.cmap, result.code, result.message)
            return result.code, result.message
        plan = result
        for key, message in plan.rejected:
            self._log.error(message, key=key)
        new = plan.config
        try:
            crypto = (
                crypto_config_of(new, key=plan.new_key) if plan.crypto_changed is not None else None
            )
            # The token timeout depends on the number of nodes too.
            resized = len(new.nodes) != len(old.nodes)
            if (plan.totem_changed is not None or resized) and self.node is not None:
                self.node.reconfigure(new.totem, len(new.nodes))
        except (ConfigError, totem.TotemError) as exc:
            message = str(exc)
            self._log.error(f"Config reload failed: {message}")
            finish_reload(self.cmap, CsErrorCode.INVALID_PARAM, message)
            return CsErrorCode.INVALID_PARAM, message
        apply_plan_to_cmap(self.cmap, plan)
        self._config = new
        if plan.new_key is not None:
            self._key = plan.new_key
        if self.handle is not None:
            if plan.knet_changed is not None:
                self.handle.set_compression(new.compression)
                self.handle.set_pmtud_interval(new.knet_pmtud_interval)
                self.handle.set_manual_mtu(new.knet_mtu or None)
            self._apply_knet(new)
        if plan.logging_changed is not None and self.log_system is not None:
            self.log_system.reconfigure(plan.logging_changed)
        if plan.crypto_changed is not None:
            self._start_crypto_change(crypto)
        for service in self.services:
            service.config_reloaded(old, new)
        finish_reload(self.cmap, CsErrorCode.OK, "")
        self._log.info("Config reload complete")
        return CsErrorCode.OK, ""

    def _start_crypto_change(self, crypto: knet.CryptoConfig | None) -> None:
        """Phase 0 of the rolling key change: the new key in the other slot, received
        from now on; sending switches when our ACTIVATE is safe at every member."""
        handle = self.handle
        if handle is None:
            return
        new_slot = 2 if self._crypto_slot == 1 else 1
        handle.set_crypto_config(new_slot, crypto)
        if crypto is None:
            handle.set_rx_clear_traffic(True)
        self._crypto_pending = (new_slot, crypto)
        self._crypto_cleanups = set()
        self._send_crypto_phase(_CRYPTO_ACTIVATE)

    def _send_crypto_phase(self, phase: int) -> None:
        try:
            self.cfg_service.send_crypto_phase(phase)
        except CsError as exc:
            self._log.error("crypto: could not send a key change phase", error=str(exc))

    # ---------------------------------------------------------------- cmap details

    def _write_service_keys(self) -> None:
        for service in self.services:
            prefix = f"internal_configuration.service.{service.service_id}"
            self.cmap.set(f"{prefix}.name", ValueType.STRING, service.name, writer=True)
            self.cmap.set(f"{prefix}.ver", ValueType.UINT32, service.version, writer=True)
            short = service.name.removeprefix("corosync_")
            self.cmap.set(
                f"runtime.services.{short}.service_id",
                ValueType.UINT16,
                service.service_id,
                writer=True,
            )

    def _track_triggers(self) -> None:
        """Our own tracks: the blackbox triggers. (Writes to stats.clear.* are applied
        by the stats map when it refreshes, before the next read.)"""
        for key in ("runtime.blackbox.dump_flight_data", "runtime.blackbox.dump_state"):
            self.cmap.track_add(key, int(TrackType.ADD | TrackType.MODIFY), self)
        every_change = TrackType.ADD | TrackType.MODIFY | TrackType.DELETE | TrackType.PREFIX
        self.cmap.track_add("totem.", int(every_change), self)

    def _on_cmap_notification(self, note: Notification) -> None:
        if isinstance(note.owner, Service):
            note.owner.cmap_notification(note)
            return
        if note.owner is not self:
            return
        if note.key == "runtime.blackbox.dump_flight_data":
            self.dump_blackbox()
        elif note.key.removeprefix("totem.") in _VOLATILE_TOTEM_KEYS:
            self._retime_totem(note.key)

    def _retime_totem(self, key: str) -> None:
        """A totem timer key changed in cmap (cmapctl -s totem.token u32 5000): as
        corosync, recompute every derived timer on this node only."""
        node = self.node
        if node is None or node.closed:
            return
        values: dict[str, Any] = {}  # field name -> int (every volatile field is an int)
        for name in sorted(_VOLATILE_TOTEM_KEYS):
            try:
                _, value = self.cmap.get(f"totem.{name}")
            except CmapError:
                continue  # absent: the default, as when the file does not set it
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                values[name] = value
            else:
                self._log.error(f"{key}: totem.{name} must be a non-negative integer; ignored")
                return
        try:
            config = totem.TotemConfig(**values)
            timers = node.reconfigure(config, len(self._config.nodes))
        except (TypeError, ValueError, totem.TotemError) as exc:
            self._log.error(f"{key}: the totem timers were not changed: {exc}")
            return
        for name, value in timers.as_runtime_keys().items():
            if name != "token_warning":  # corosync publishes the percentage there
                self.cmap.set(f"runtime.config.totem.{name}", ValueType.UINT32, value, writer=True)
        self._log.info(
            f"{key} changed: totem timers recomputed on this node "
            f"(token {timers.token} ms, consensus {timers.consensus} ms)"
        )

    def dump_blackbox(self) -> str | None:
        """Write the flight recorder to ``<state_dir>/fdata``; its path, or None."""
        if self.blackbox is None:
            return None
        path = os.path.join(self.state_dir, BLACKBOX_FILE_NAME)
        try:
            self.blackbox.dump(path)
        except OSError as exc:
            self._log.error("could not write the blackbox", path=path, error=str(exc))
            return None
        self._log.info("blackbox written", path=path)
        return path

    def _refresh_stats(self) -> None:
        self.stats_map.refresh(self.stats_store)

    # ---------------------------------------------------------------- IPC access

    def _authorize(self, creds: Credentials | None) -> int:
        uids: set[int] = set()
        gids: set[int] = set()
        for key, _ in self.cmap.iterate("uidgid."):
            parts = key.split(".")
            kind, number = parts[-2], parts[-1]
            if not number.isdigit():
                continue
            if kind == "uid":
                uids.add(int(number))
            elif kind == "gid":
                gids.add(int(number))
        return check_credentials(creds, allowed_uids=uids, allowed_gids=gids)

    # ---------------------------------------------------------------- systemd

    def _notify(self, state: str) -> None:
        """sd_notify(3): one datagram to $NOTIFY_SOCKET when systemd runs us."""
        path = self._notify_socket
        if not path:
            return
        address = "\0" + path[1:] if path.startswith("@") else path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.send(state.encode())
        except OSError as exc:
            self._log.warning("sd_notify failed", socket=path, error=str(exc))
