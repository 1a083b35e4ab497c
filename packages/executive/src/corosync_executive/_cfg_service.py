"""The cfg service (``corosync_cfg``, id 1, socket ``cfg``): administration of a node.

Library requests (reference/libqb-ipc.md 5.5), answered as corosync 3.1.7 answers them:

* LOCAL_GET, NODESTATUSGET (FAILED_OPERATION for a node the backend does not know,
  NOT_SUPPORTED for a status version other than 1), GET_NODE_ADDRS (node 0 is this
  node; NOT_EXIST for an unknown one), RINGSTATUSGET (corosync 3's legacy strings: one
  entry per link, ``"<link> <local address>"`` and one character per node as
  ``cfgtool -sb`` prints them), RINGREENABLE (NOT_SUPPORTED, as with knet);
* RELOAD_CONFIG: multicast SAFE; every node reloads its own file when it delivers the
  message and the requesting client is answered with the result of *its* node;
* REOPEN_LOG_FILES: this node only;
* KILLNODE: NOT_EXIST unless the target is a member; otherwise multicast, and the
  target leaves (:meth:`CfgBackend.killed`);
* TRACKSTART / TRACKSTOP / TRYSHUTDOWN / REPLYTOSHUTDOWN: the shutdown agreement. A
  REQUEST (or REGARDLESS) round sends a TESTSHUTDOWN event to every tracking client but
  the requester and waits for their REPLYTOSHUTDOWN, at most ``cfg.shutdown_timeout``
  ms (u32 in cmap, default 5000); unanswered counts as NO. Any NO refuses a REQUEST
  (BUSY); REGARDLESS and IMMEDIATE (which asks nobody) go ahead. A client that leaves
  or stops tracking during a round counts as YES. A second round while one is being
  decided gets EXIST. Going ahead multicasts SHUTDOWN: every node logs "Node N was shut
  down by sysadmin" and the sender's backend leaves (:meth:`CfgBackend.shutdown_now`).

Executive messages (:mod:`._cfg_exec`) come back through :meth:`CfgService.exec_deliver`;
a malformed one is logged and dropped. CRYPTO_RECONFIG carries the phases of a rolling
key change between the daemons (:meth:`CfgService.send_crypto_phase`).

Differences from corosync, on purpose:

* REPLYTOSHUTDOWN from a client that was not asked is refused with ACCESS (corosync
  counts it, so one client could vote many times);
* no TIMEOUT event is sent to the tracking clients when a round expires (libcfg would
  run their shutdown callback once more);
* TRYSHUTDOWN with unknown flags behaves as REQUEST, as corosync.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from typing import Protocol

import attrs
import structlog
import trio

from corosync import CsError, CsErrorCode, MalformedMessage
from corosync.ipc import (
    CFG_INTERFACE_NAME_MAX_LEN,
    CFG_INTERFACE_STATUS_MAX_LEN,
    CFG_MAX_LINKS,
    CFG_NODE_STATUS_V1,
    CfgGetNodeAddrsRequest,
    CfgGetNodeAddrsResponse,
    CfgKillNodeRequest,
    CfgKillNodeResponse,
    CfgLocalGetRequest,
    CfgLocalGetResponse,
    CfgNodeStatus,
    CfgNodeStatusGetRequest,
    CfgNodeStatusGetResponse,
    CfgReloadConfigRequest,
    CfgReloadConfigResponse,
    CfgReopenLogFilesRequest,
    CfgReopenLogFilesResponse,
    CfgReplyToShutdownRequest,
    CfgReplyToShutdownResponse,
    CfgRingReenableRequest,
    CfgRingReenableResponse,
    CfgRingStatusGetRequest,
    CfgRingStatusGetResponse,
    CfgShutdownFlags,
    CfgTestShutdownEvent,
    CfgTrackStartRequest,
    CfgTrackStartResponse,
    CfgTrackStopRequest,
    CfgTrackStopResponse,
    CfgTryShutdownRequest,
    CfgTryShutdownResponse,
    decode_cfg_request_untrusted,
)
from corosync_executive._cfg_exec import (
    CfgExecFunction,
    decode_cfg_crypto_phase_untrusted,
    decode_cfg_empty_untrusted,
    decode_cfg_killnode_untrusted,
    decode_cfg_reload_token_untrusted,
    encode_cfg_crypto_phase,
    encode_cfg_killnode,
    encode_cfg_reload_token,
)
from corosync_executive._cmap_store import CmapError, ValueType
from corosync_executive._ipc_server import IpcConnection
from corosync_executive._service import ExecMessage, Service
from totem import Guarantee

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT_MS",
    "SHUTDOWN_TIMEOUT_KEY",
    "CfgBackend",
    "CfgService",
    "CfgServiceStats",
]

SHUTDOWN_TIMEOUT_KEY = "cfg.shutdown_timeout"
"""cmap key (u32, milliseconds) bounding the wait for the tracking clients' answers."""
DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000


class CfgBackend(Protocol):
    """What the cfg service needs from the daemon."""

    def node_status(self, nodeid: int) -> CfgNodeStatus | None:
        """knet's view of ``nodeid``; None when it is not a configured node."""
        ...

    def node_addresses(self, nodeid: int) -> tuple[str, ...] | None:
        """The configured IP addresses of ``nodeid`` in link order; None when it is not
        a configured node."""
        ...

    def reload_local(self) -> tuple[CsErrorCode, str]:
        """Re-read this node's own corosync.conf and apply it: the result code and, on
        failure, the message (also in ``config.reload_error_message``)."""
        ...

    def reopen_log_files(self) -> None:
        """Reopen the log files."""
        ...

    def killed(self, by_nodeid: int, reason: str) -> None:
        """``cfgtool -k`` on node ``by_nodeid`` asked this node to go: log
        "Killed by node X : reason" and exit with status 255."""
        ...

    def shutdown_now(self) -> None:
        """The shutdown was agreed: start a clean leave, then exit 0."""
        ...

    def crypto_reconfig(self, sender: int, phase: int) -> None:
        """Node ``sender`` reached ``phase`` of a rolling crypto key change."""
        ...


@attrs.define
class CfgServiceStats:
    """Counters of the cfg service."""

    requests: int = 0
    malformed_exec_messages: int = 0
    shutdown_rounds: int = 0
    reloads: int = 0


@attrs.define(eq=False)
class _ShutdownRound:
    """One TRYSHUTDOWN being decided (corosync's ``shutdown_con`` and counters)."""

    requester: int
    flags: int
    pending: set[int]
    yes: set[int] = attrs.Factory(set)
    no: set[int] = attrs.Factory(set)
    decided: trio.Event = attrs.Factory(trio.Event)

    @property
    def expected(self) -> set[int]:
        return self.pending | self.yes | self.no

    def vote(self, conn_id: int, yes: bool) -> None:
        self.pending.discard(conn_id)
        (self.no if yes else self.yes).discard(conn_id)
        (self.yes if yes else self.no).add(conn_id)
        if not self.pending:
            self.decided.set()


@attrs.define(eq=False)
class _PendingReload:
    conn_id: int
    result: CsErrorCode = CsErrorCode.LIBRARY
    done: trio.Event = attrs.Factory(trio.Event)


class CfgService(Service):
    """The cfg service over a :class:`CfgBackend` (the daemon)."""

    name = "corosync_cfg"
    service_id = 1
    ipc_name = "cfg"

    def __init__(self, backend: CfgBackend) -> None:
        self.backend = backend
        self.stats = CfgServiceStats()
        self._trackers: dict[int, IpcConnection] = {}
        self._round: _ShutdownRound | None = None
        self._reloads: dict[int, _PendingReload] = {}
        self._tokens = itertools.count(1)
        self._warned_senders: set[int] = set()
        self._log = structlog.get_logger("cfg").bind(subsystem="CFG")

    @property
    def tracker_count(self) -> int:
        """Connections tracking shutdown now."""
        return len(self._trackers)

    @property
    def shutdown_in_progress(self) -> bool:
        """True while a TRYSHUTDOWN waits for the tracking clients."""
        return self._round is not None

    # ---------------------------------------------------------------- library side

    def lib_exit(self, conn: IpcConnection) -> None:
        self._stop_tracking(conn)

    async def lib_handle(self, conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        del request_id  # decoding reads it from the header
        request = decode_cfg_request_untrusted(message)
        self.stats.requests += 1
        if isinstance(request, CfgLocalGetRequest):
            return CfgLocalGetResponse(local_nodeid=self.ctx.local_nodeid).encode()
        if isinstance(request, CfgNodeStatusGetRequest):
            return self._node_status(request).encode()
        if isinstance(request, CfgGetNodeAddrsRequest):
            return self._node_addrs(request.nodeid).encode()
        if isinstance(request, CfgRingStatusGetRequest):
            return self._ring_status().encode()
        if isinstance(request, CfgRingReenableRequest):
            return CfgRingReenableResponse(error=CsErrorCode.NOT_SUPPORTED).encode()
        if isinstance(request, CfgKillNodeRequest):
            return self._kill_node(conn, request).encode()
        if isinstance(request, CfgReloadConfigRequest):
            return (await self._reload_config(conn)).encode()
        if isinstance(request, CfgReopenLogFilesRequest):
            return self._reopen_log_files().encode()
        if isinstance(request, CfgTrackStartRequest):
            self._start_tracking(conn)
            return CfgTrackStartResponse().encode()
        if isinstance(request, CfgTrackStopRequest):
            self._stop_tracking(conn)
            return CfgTrackStopResponse().encode()
        if isinstance(request, CfgTryShutdownRequest):
            return (await self._try_shutdown(conn, request.flags)).encode()
        assert isinstance(request, CfgReplyToShutdownRequest)
        return self._reply_to_shutdown(conn, request.response).encode()

    def _node_status(self, request: CfgNodeStatusGetRequest) -> CfgNodeStatusGetResponse:
        if request.version != CFG_NODE_STATUS_V1:
            return CfgNodeStatusGetResponse(error=CsErrorCode.NOT_SUPPORTED)
        status = self.backend.node_status(request.nodeid)
        if status is None:
            # What corosync answers for a node knet does not know.
            return CfgNodeStatusGetResponse(error=CsErrorCode.FAILED_OPERATION)
        return CfgNodeStatusGetResponse(status=status)

    def _node_addrs(self, nodeid: int) -> CfgGetNodeAddrsResponse:
        if nodeid == 0:
            nodeid = self.ctx.local_nodeid
        configured = self.backend.node_addresses(nodeid) or ()
        family = 0
        addresses: list[str] = []
        for text in configured:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                self._log.warning(f"Address {text!r} of node {nodeid} is not an IP address")
                continue
            ip_family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            if family and ip_family != family:
                # The answer has one family for all (corosync's totem_ip_address list).
                self._log.warning(f"Address {text} of node {nodeid} is of another family")
                continue
            family = ip_family
            addresses.append(str(ip))
        if not addresses:
            return CfgGetNodeAddrsResponse(error=CsErrorCode.NOT_EXIST)
        return CfgGetNodeAddrsResponse(family=family, addresses=tuple(addresses))

    def _ring_status(self) -> CfgRingStatusGetResponse:
        local = self.ctx.local_nodeid
        nodeids = sorted({node.nodeid for node in self.ctx.config.nodes} | {local})
        statuses = {n: self.backend.node_status(n) for n in nodeids}
        others = [s for n, s in statuses.items() if n != local and s is not None]
        # The local node has one link, to itself: the links in use show at the others.
        reference = others[0] if others else statuses[local]
        if reference is None:
            return CfgRingStatusGetResponse()
        interfaces: list[tuple[str, str]] = []
        for link in range(CFG_MAX_LINKS):
            if not reference.link_status[link].enabled:
                continue
            name = f"{link} {reference.link_status[link].src_ipaddr}"
            chars = []
            for nodeid in nodeids:
                status = statuses[nodeid]
                if nodeid == local:
                    chars.append("n")
                elif status is None:
                    chars.append("0")
                else:
                    link_status = status.link_status[link]
                    chars.append(str(int(link_status.enabled) | int(link_status.connected) << 1))
            text = "".join(chars)
            if len(name) >= CFG_INTERFACE_NAME_MAX_LEN or len(text) >= CFG_INTERFACE_STATUS_MAX_LEN:
                return CfgRingStatusGetResponse(error=CsErrorCode.NAME_TOO_LONG)
            interfaces.append((name, text))
        return CfgRingStatusGetResponse(interfaces=tuple(interfaces[:16]))

    def _kill_node(self, conn: IpcConnection, request: CfgKillNodeRequest) -> CfgKillNodeResponse:
        if request.nodeid not in self.ctx.members:
            return CfgKillNodeResponse(error=CsErrorCode.NOT_EXIST)
        self._log.info(f"Node {request.nodeid} is asked to leave: {request.reason}", pid=_pid(conn))
        try:
            self.ctx.mcast(
                self.service_id,
                CfgExecFunction.KILLNODE,
                encode_cfg_killnode(request.nodeid, request.reason),
                Guarantee.SAFE,
            )
        except CsError as exc:
            return CfgKillNodeResponse(error=exc.code)
        return CfgKillNodeResponse()

    async def _reload_config(self, conn: IpcConnection) -> CfgReloadConfigResponse:
        token = next(self._tokens)
        pending = _PendingReload(conn.id)
        self._reloads[token] = pending
        try:
            try:
                self.ctx.mcast(
                    self.service_id,
                    CfgExecFunction.RELOAD_CONFIG,
                    encode_cfg_reload_token(token),
                    Guarantee.SAFE,
                )
            except CsError as exc:
                return CfgReloadConfigResponse(error=exc.code)
            # Answered when this node has delivered (and applied) its own message; a
            # client that goes meanwhile cancels this wait and is simply forgotten.
            await pending.done.wait()
            return CfgReloadConfigResponse(error=pending.result)
        finally:
            del self._reloads[token]

    def _reopen_log_files(self) -> CfgReopenLogFilesResponse:
        try:
            self.backend.reopen_log_files()
        except OSError as exc:
            self._log.error(f"Could not reopen the log files: {exc}")
            return CfgReopenLogFilesResponse(error=CsErrorCode.LIBRARY)
        self._log.info("Log files reopened")
        return CfgReopenLogFilesResponse()

    # -------------------------------------------------------------- shutdown round

    def _start_tracking(self, conn: IpcConnection) -> None:
        self._trackers[conn.id] = conn
        round_ = self._round
        if round_ is not None and conn.id != round_.requester and conn.id not in round_.expected:
            # A tracker that arrives during a round is asked too, as in corosync.
            round_.pending.add(conn.id)
            self._ask(conn, round_.flags)

    def _stop_tracking(self, conn: IpcConnection) -> None:
        if self._trackers.pop(conn.id, None) is None:
            return
        round_ = self._round
        if round_ is not None and conn.id in round_.expected:
            # One that leaves (or stops tracking) lets the shutdown happen.
            round_.vote(conn.id, yes=True)

    def _ask(self, conn: IpcConnection, flags: int) -> None:
        if not conn.send_event(CfgTestShutdownEvent(flags=flags).encode()):
            # It cannot be asked (gone or not reading): its silence counts as NO.
            self._log.debug(f"Could not ask client {conn.id} about the shutdown")

    def _shutdown_timeout(self) -> float:
        try:
            value_type, value = self.ctx.cmap.get(SHUTDOWN_TIMEOUT_KEY)
        except CmapError:
            return DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000
        if value_type is not ValueType.UINT32 or not isinstance(value, int):
            return DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000
        return value / 1000

    async def _try_shutdown(self, conn: IpcConnection, flags: int) -> CfgTryShutdownResponse:
        if flags == CfgShutdownFlags.IMMEDIATE:
            self._log.info("Immediate shutdown requested", pid=_pid(conn))
            return CfgTryShutdownResponse(error=self._send_shutdown())
        if self._round is not None:
            return CfgTryShutdownResponse(error=CsErrorCode.EXIST)
        asked = [c for cid, c in self._trackers.items() if cid != conn.id]
        if not asked:
            self._log.info("Shutdown requested; no client tracks it", pid=_pid(conn))
            return CfgTryShutdownResponse(error=self._send_shutdown())
        round_ = _ShutdownRound(conn.id, flags, {c.id for c in asked})
        self._round = round_
        self.stats.shutdown_rounds += 1
        self._log.info(f"Shutdown requested; asking {len(asked)} clients", pid=_pid(conn))
        try:
            for tracker in asked:
                self._ask(tracker, flags)
            with trio.move_on_after(self._shutdown_timeout()):
                await round_.decided.wait()
        finally:
            # Also when the requester went away: the round is abandoned.
            if self._round is round_:
                self._round = None
        silent = len(round_.pending)
        go = flags == CfgShutdownFlags.REGARDLESS or not (round_.no or round_.pending)
        self._log.info(
            f"Shutdown decision: {'go' if go else 'refused'} "
            f"(yes {len(round_.yes)}, no {len(round_.no)}, no answer {silent})"
        )
        if not go:
            return CfgTryShutdownResponse(error=CsErrorCode.BUSY)
        return CfgTryShutdownResponse(error=self._send_shutdown())

    def _reply_to_shutdown(self, conn: IpcConnection, response: int) -> CfgReplyToShutdownResponse:
        round_ = self._round
        if round_ is None or conn.id not in round_.expected:
            return CfgReplyToShutdownResponse(error=CsErrorCode.ACCESS)
        round_.vote(conn.id, yes=response != 0)
        return CfgReplyToShutdownResponse()

    def _send_shutdown(self) -> CsErrorCode:
        try:
            self.ctx.mcast(self.service_id, CfgExecFunction.SHUTDOWN, b"", Guarantee.SAFE)
        except CsError as exc:
            self._log.warning(f"Could not send the shutdown to the cluster: {exc}")
            return exc.code
        return CsErrorCode.OK

    # ---------------------------------------------------------------- executive side

    def send_crypto_phase(self, phase: int) -> None:
        """Multicast CRYPTO_RECONFIG ``phase`` (SAFE); every node's backend gets it
        through :meth:`CfgBackend.crypto_reconfig`. Raises CsError TRY_AGAIN while the
        totem queue is full."""
        self.ctx.mcast(
            self.service_id,
            CfgExecFunction.CRYPTO_RECONFIG,
            encode_cfg_crypto_phase(phase),
            Guarantee.SAFE,
        )

    def exec_deliver(self, message: ExecMessage) -> None:
        try:
            function = CfgExecFunction(message.function_id)
        except ValueError:
            self._malformed(message, f"unknown function {message.function_id}")
            return
        try:
            self._deliver(function, message)
        except MalformedMessage as exc:
            self._malformed(message, str(exc))

    def _deliver(self, function: CfgExecFunction, message: ExecMessage) -> None:
        sender, local = message.sender, self.ctx.local_nodeid
        if function is CfgExecFunction.RINGREENABLE:
            decode_cfg_empty_untrusted(message.payload, function)
        elif function is CfgExecFunction.KILLNODE:
            kill = decode_cfg_killnode_untrusted(message.payload)
            if kill.nodeid == local:
                self.backend.killed(sender, kill.reason)  # it logs "Killed by node ..."
            else:
                self._log.debug(f"Node {sender} asked node {kill.nodeid} to leave")
        elif function is CfgExecFunction.SHUTDOWN:
            decode_cfg_empty_untrusted(message.payload, function)
            self._log.info(f"Node {sender} was shut down by sysadmin")
            if sender == local:
                self.backend.shutdown_now()
        elif function is CfgExecFunction.RELOAD_CONFIG:
            self._deliver_reload(sender, decode_cfg_reload_token_untrusted(message.payload))
        else:
            phase = decode_cfg_crypto_phase_untrusted(message.payload)
            self.backend.crypto_reconfig(sender, phase)

    def _deliver_reload(self, sender: int, token: int) -> None:
        self.stats.reloads += 1
        self._log.info(f"Config reload requested by node {sender}")
        code, error = self.backend.reload_local()
        if code is not CsErrorCode.OK:
            self._log.error(f"Unable to reload config file: {error}")
        if sender != self.ctx.local_nodeid:
            return
        pending = self._reloads.get(token)
        if pending is not None:
            pending.result = code
            pending.done.set()

    def _malformed(self, message: ExecMessage, why: str) -> None:
        self.stats.malformed_exec_messages += 1
        # Once per sender at warning level: a broken peer must not flood the log.
        first = message.sender not in self._warned_senders
        self._warned_senders.add(message.sender)
        log = self._log.warning if first else self._log.debug
        log(f"Dropped a malformed cfg message from node {message.sender}: {why}")


def _pid(conn: IpcConnection) -> int:
    return conn.credentials.pid
