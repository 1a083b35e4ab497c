"""cfg: the blocking client of corosync's configuration and administration service.

Like corosync's ``cfg.h``: :func:`initialize` connects to the ``cfg`` IPC service (of
pycorosync or a real corosync 3). A :class:`CfgHandle` reads the local node id, the
knet status of each node and link, the nodes' addresses; asks every node to reload
its corosync.conf, reopens the log files, kills a node, and shuts this node down
(:meth:`CfgHandle.try_shutdown`) with the agreement of the clients that track
shutdown (:meth:`CfgHandle.trackstart`): they are asked through their
``shutdown_callback``, run from :meth:`CfgHandle.dispatch`, and answer with
:meth:`CfgHandle.reply_to_shutdown`. Every failure raises :class:`corosync.CsError`
with the server's error code.

For trio, :func:`open_cfg` yields an :class:`AsyncCfgHandle` with the same operations
as coroutines (``corosync/_cfg_trio.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

import attrs

from corosync._errors import CsError, CsErrorCode, MalformedMessage
from corosync._handle import ServiceHandle
from corosync.ipc._cfg_msgs import (
    CfgGetNodeAddrsRequest,
    CfgGetNodeAddrsResponse,
    CfgKillNodeRequest,
    CfgKillNodeResponse,
    CfgLinkStatus,
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
    CfgRequest,
    CfgRingReenableRequest,
    CfgRingReenableResponse,
    CfgRingStatusGetRequest,
    CfgRingStatusGetResponse,
    CfgShutdownFlags,
    CfgShutdownReply,
    CfgTrackStartRequest,
    CfgTrackStartResponse,
    CfgTrackStopRequest,
    CfgTrackStopResponse,
    CfgTryShutdownRequest,
    CfgTryShutdownResponse,
    _CfgResponseBase,
    decode_cfg_event_untrusted,
    decode_cfg_response_untrusted,
)
from corosync.ipc._client import IpcClient

__all__ = [
    "AsyncCfgHandle",
    "CfgDispatchFlags",
    "CfgHandle",
    "CfgLinkStatus",
    "CfgNodeAddrs",
    "CfgNodeStatus",
    "CfgShutdownCallback",
    "CfgShutdownFlags",
    "CfgShutdownReply",
    "initialize",
    "open_cfg",
]

_R = TypeVar("_R", bound=_CfgResponseBase)


class CfgDispatchFlags(enum.IntEnum):
    """``cs_dispatch_flags_t``: how much :meth:`CfgHandle.dispatch` processes."""

    ONE = 1
    """Wait for one event and process it."""
    ALL = 2
    """Process every event already waiting; never wait."""
    BLOCKING = 3
    """Process events until :meth:`CfgHandle.finalize` (from a callback or thread)."""
    ONE_NONBLOCKING = 4
    """Process one event if one waits; never wait."""


@attrs.frozen
class CfgNodeAddrs:
    """A node's addresses in link order (``corosync_cfg_get_node_addrs``), all of one
    ``family``: ``socket.AF_INET`` or ``socket.AF_INET6``."""

    family: int
    addresses: tuple[str, ...]


CfgShutdownCallback = Callable[["CfgHandle", int], None]
"""``callback(handle, flags)``: another process asks to shut this node down (only
after :meth:`CfgHandle.trackstart`). ``flags`` is the request's
:class:`CfgShutdownFlags` (an int if the server sent a value it does not name). Answer
with :meth:`CfgHandle.reply_to_shutdown`; not answering counts as NO when the
server's ``cfg.shutdown_timeout`` expires."""


class CfgHandle(ServiceHandle):
    """One connection to the cfg service; create it with :func:`initialize`.

    Calls may come from several threads; :meth:`dispatch` may run in one of them.
    """

    SERVICE = "cfg"

    def __init__(self, client: IpcClient, shutdown_callback: CfgShutdownCallback | None) -> None:
        super().__init__(client)
        self._shutdown_callback = shutdown_callback

    # -------------------------------------------------------------- requests

    def _call(self, request: CfgRequest, expected: type[_R]) -> _R:
        return self._exchange(
            request.encode(),
            lambda raw: decode_cfg_response_untrusted(raw, expected),
            lambda: _describe(request),
        )

    def local_get(self) -> int:
        """The local node id (``corosync_cfg_local_get``)."""
        return self._call(CfgLocalGetRequest(), CfgLocalGetResponse).local_nodeid

    def node_status_get(self, nodeid: int) -> CfgNodeStatus:
        """The knet view of ``nodeid`` from this node: reachable, and each link's state,
        addresses and MTU (``corosync_cfg_node_status_get``, version 1)."""
        response = self._call(CfgNodeStatusGetRequest(nodeid), CfgNodeStatusGetResponse)
        if response.status is None:
            raise CsError(CsErrorCode.MESSAGE_ERROR, "cfg NODESTATUSGET gave no status")
        return response.status

    def ring_status_get(self) -> tuple[tuple[str, str], ...]:
        """The legacy (name, status) string of each link (``corosync_cfg_ring_status_get``)."""
        return self._call(CfgRingStatusGetRequest(), CfgRingStatusGetResponse).interfaces

    def ring_reenable(self) -> None:
        """corosync 2's ``corosync_cfg_ring_reenable``: nothing to do with knet."""
        self._call(CfgRingReenableRequest(), CfgRingReenableResponse)

    def get_node_addrs(self, nodeid: int) -> CfgNodeAddrs:
        """The addresses of ``nodeid`` (0: this node), in link order. NOT_EXIST for a
        node the server does not know."""
        response = self._call(CfgGetNodeAddrsRequest(nodeid), CfgGetNodeAddrsResponse)
        return CfgNodeAddrs(response.family, response.addresses)

    def kill_node(self, nodeid: int, reason: str) -> None:
        """Make ``nodeid`` log ``reason`` and exit (``corosync_cfg_kill_node``).
        NOT_EXIST for a node that is not a member; NAME_TOO_LONG for a reason over
        255 bytes."""
        self._call(CfgKillNodeRequest(nodeid, reason), CfgKillNodeResponse)

    def try_shutdown(self, flags: CfgShutdownFlags = CfgShutdownFlags.REQUEST) -> None:
        """Shut this node's daemon down cleanly (``corosync_cfg_try_shutdown``). With
        REQUEST the tracking clients are asked first and the answer may take up to the
        server's ``cfg.shutdown_timeout``: BUSY when one said no (or did not answer),
        EXIST when another shutdown is being decided."""
        self._call(CfgTryShutdownRequest(int(CfgShutdownFlags(flags))), CfgTryShutdownResponse)

    def reply_to_shutdown(self, reply: CfgShutdownReply) -> None:
        """Answer a shutdown request (``corosync_cfg_replyto_shutdown``); ACCESS when no
        shutdown is being decided."""
        self._call(
            CfgReplyToShutdownRequest(int(CfgShutdownReply(reply))), CfgReplyToShutdownResponse
        )

    def trackstart(self) -> None:
        """Be asked (through the shutdown callback) before this node shuts down."""
        self._call(CfgTrackStartRequest(0), CfgTrackStartResponse)

    def trackstop(self) -> None:
        """Stop being asked; a shutdown being decided counts this client as a yes."""
        self._call(CfgTrackStopRequest(), CfgTrackStopResponse)

    def reload_config(self) -> None:
        """Make every node re-read its corosync.conf (``corosync_cfg_reload_config``);
        returns when this node has, raising its error if its reload failed."""
        self._call(CfgReloadConfigRequest(), CfgReloadConfigResponse)

    def reopen_log_files(self) -> None:
        """Make this node's daemon reopen its log files (after a log rotation)."""
        self._call(CfgReopenLogFilesRequest(), CfgReopenLogFilesResponse)

    # ---------------------------------------------------------------- events

    def dispatch(self, flags: CfgDispatchFlags = CfgDispatchFlags.ALL) -> int:
        """Run the shutdown callback for waiting events (``corosync_cfg_dispatch``);
        returns how many events were processed."""
        flags = CfgDispatchFlags(flags)
        count = 0
        while not self._finalized:
            if flags in (CfgDispatchFlags.ONE, CfgDispatchFlags.BLOCKING):
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
            flags_of_request = self.decode_event(raw)
            if flags_of_request is not None and self._shutdown_callback is not None:
                self._shutdown_callback(self, flags_of_request)
            if flags in (CfgDispatchFlags.ONE, CfgDispatchFlags.ONE_NONBLOCKING):
                break
        return count

    @staticmethod
    def decode_event(raw: bytes) -> int | None:
        """The shutdown flags of one TESTSHUTDOWN event, or None for one that only
        says a round is over (corosync sends TIMEOUT events then; libcfg would call
        the callback for those too)."""
        try:
            event = decode_cfg_event_untrusted(raw)
        except MalformedMessage as exc:
            raise CsError(CsErrorCode.MESSAGE_ERROR, f"bad cfg event: {exc}") from None
        if event.error is not CsErrorCode.OK:
            return None
        try:
            return CfgShutdownFlags(event.flags)
        except ValueError:
            return event.flags


def _describe(request: CfgRequest) -> str:
    name = type(request).__name__.removeprefix("Cfg").removesuffix("Request")
    nodeid = getattr(request, "nodeid", None)
    return f"cfg {name}" if nodeid is None else f"cfg {name} of node {nodeid}"


def initialize(
    *,
    prefix: str = "",
    timeout: float | None = 10.0,
    shutdown_callback: CfgShutdownCallback | None = None,
) -> CfgHandle:
    """Connect to the cfg service (``corosync_cfg_initialize``).

    ``prefix`` is prepended to the IPC socket name (pycorosync's option for several
    daemons on one host; a real corosync has none). ``timeout`` bounds the handshake.
    ``shutdown_callback`` is run by :meth:`CfgHandle.dispatch` for shutdown requests
    (after :meth:`CfgHandle.trackstart`).
    """
    client = IpcClient.connect("cfg", prefix=prefix, timeout=timeout)
    return CfgHandle(client, shutdown_callback)


# The trio API wraps the blocking handle above (and is imported after it for that reason).
from corosync._cfg_trio import AsyncCfgHandle, open_cfg  # noqa: E402
