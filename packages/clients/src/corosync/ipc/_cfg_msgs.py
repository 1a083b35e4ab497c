"""Wire formats of the cfg service (socket ``cfg``): every request, response and event.

Layouts follow corosync 3.1.7's ``ipc_cfg.h`` on Linux (reference/libqb-ipc.md 5.5),
native byte order, header first. Each request record's :meth:`encode` gives the whole
message and :func:`decode_cfg_request_untrusted` reads one (the server side). Responses
are matched to requests by order, so a client names the response it expects:
``decode_cfg_response_untrusted(message, CfgLocalGetResponse)``; the one event,
TESTSHUTDOWN, is read with :func:`decode_cfg_event_untrusted`.

Error replies: corosync answers a failed call with the call's own response (its full
size, ``error`` set) or, for a request it could not parse, with a bare 24-byte header of
id 0. Callers look at ``error`` first, so a decoded response whose ``error`` is not OK
carries only defaults in its other fields.

Strings (link addresses, the legacy ring status, a kill reason) are NUL-terminated C
strings in fixed-size fields; decoders stop at the first NUL and reject a field
without one.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from typing import Any, ClassVar, TypeAlias, TypeVar

import attrs

from corosync._errors import CsError, CsErrorCode, MalformedMessage
from corosync.ipc._headers import (
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    decode_dispatch_header_untrusted,
    decode_request_header_untrusted,
)
from corosync.ipc._message import (
    ResponseBase,
    check_unsigned,
    decode_response_untrusted,
    encode_request,
    encode_response,
)

__all__ = [
    "CFG_ADDRESS_SIZE",
    "CFG_INTERFACE_NAME_MAX_LEN",
    "CFG_INTERFACE_STATUS_MAX_LEN",
    "CFG_MAX_HOST_LEN",
    "CFG_MAX_INTERFACES",
    "CFG_MAX_LINKS",
    "CFG_NODE_STATUS_V1",
    "CFG_REASON_MAXLEN",
    "CfgGetNodeAddrsRequest",
    "CfgGetNodeAddrsResponse",
    "CfgKillNodeRequest",
    "CfgKillNodeResponse",
    "CfgLinkStatus",
    "CfgLocalGetRequest",
    "CfgLocalGetResponse",
    "CfgNodeStatus",
    "CfgNodeStatusGetRequest",
    "CfgNodeStatusGetResponse",
    "CfgReloadConfigRequest",
    "CfgReloadConfigResponse",
    "CfgReopenLogFilesRequest",
    "CfgReopenLogFilesResponse",
    "CfgReplyToShutdownRequest",
    "CfgReplyToShutdownResponse",
    "CfgRequest",
    "CfgRequestId",
    "CfgResponse",
    "CfgResponseId",
    "CfgRingReenableRequest",
    "CfgRingReenableResponse",
    "CfgRingStatusGetRequest",
    "CfgRingStatusGetResponse",
    "CfgShutdownFlags",
    "CfgShutdownReply",
    "CfgTestShutdownEvent",
    "CfgTrackStartRequest",
    "CfgTrackStartResponse",
    "CfgTrackStopRequest",
    "CfgTrackStopResponse",
    "CfgTryShutdownRequest",
    "CfgTryShutdownResponse",
    "decode_cfg_event_untrusted",
    "decode_cfg_request_untrusted",
    "decode_cfg_response_untrusted",
]

CFG_MAX_LINKS = 8
"""Links in a node status (``CFG_MAX_LINKS``, knet's maximum)."""
CFG_MAX_HOST_LEN = 256
"""Size of each address string field of a link status, NUL included."""
CFG_MAX_INTERFACES = 16
"""Entries of the legacy ring status answer."""
CFG_INTERFACE_NAME_MAX_LEN = 128
CFG_INTERFACE_STATUS_MAX_LEN = 512
CFG_NODE_STATUS_V1 = 1
"""The only ``corosync_cfg_node_status_version_t`` corosync 3.1 knows."""
CFG_REASON_MAXLEN = 255
"""Longest kill reason in bytes (``cs_name_t`` keeps a NUL after it)."""
CFG_ADDRESS_SIZE = 16
"""Bytes per address of GET_NODE_ADDRS (``TOTEMIP_ADDRLEN``); IPv4 uses the first 4."""

_U32 = struct.Struct("=I")
_U32_PADDED = struct.Struct("=I4x")
_U8_PADDED = struct.Struct("=B7x")
_NODESTATUS_REQ_BODY = struct.Struct("=I4xI4x")
_KILL_BODY = struct.Struct(f"=I4xH{CFG_REASON_MAXLEN + 1}s6x")  # cs_name_t at 24, padded
_LINK = struct.Struct(f"=BBBxI{CFG_MAX_HOST_LEN}s{CFG_MAX_HOST_LEN}s")
_NODE_HEAD = struct.Struct("=II6B2x")
_NODE_STATUS_SIZE = _NODE_HEAD.size + CFG_MAX_LINKS * _LINK.size
_RING_NAMES = CFG_MAX_INTERFACES * CFG_INTERFACE_NAME_MAX_LEN
_RING_STATUS = CFG_MAX_INTERFACES * CFG_INTERFACE_STATUS_MAX_LEN
_RING_BODY = struct.Struct(f"=I4x{_RING_NAMES}s{_RING_STATUS}s")
_ADDRS_HEAD = struct.Struct("=II")

assert _LINK.size == 520
assert _NODE_STATUS_SIZE == 4176
assert REQUEST_HEADER_SIZE + _KILL_BODY.size == 288
assert RESPONSE_HEADER_SIZE + _RING_BODY.size == 10272


class CfgRequestId(enum.IntEnum):
    """``hdr.id`` of cfg requests (``MESSAGE_REQ_CFG_*``)."""

    RINGSTATUSGET = 0
    RINGREENABLE = 1
    KILLNODE = 2
    TRYSHUTDOWN = 3
    REPLYTOSHUTDOWN = 4
    GET_NODE_ADDRS = 5
    LOCAL_GET = 6
    RELOAD_CONFIG = 7
    REOPEN_LOG_FILES = 8
    NODESTATUSGET = 9
    TRACKSTART = 10
    TRACKSTOP = 11


class CfgResponseId(enum.IntEnum):
    """``hdr.id`` of cfg responses and the event (``MESSAGE_RES_CFG_*``): a numbering of
    its own, with gaps where corosync 1 had calls that are gone."""

    RINGSTATUSGET = 0
    RINGREENABLE = 1
    TRACKSTART = 2
    TRACKSTOP = 3
    KILLNODE = 8
    TRYSHUTDOWN = 9
    TESTSHUTDOWN = 10
    GET_NODE_ADDRS = 11
    LOCAL_GET = 12
    REPLYTOSHUTDOWN = 13
    RELOAD_CONFIG = 14
    REOPEN_LOG_FILES = 15
    NODESTATUSGET = 16


class CfgShutdownFlags(enum.IntEnum):
    """``corosync_cfg_shutdown_flags_t``: how TRYSHUTDOWN treats the tracking clients."""

    REQUEST = 0
    """Ask every tracking client; any NO (or no answer in time) refuses."""
    REGARDLESS = 1
    """Ask every tracking client, then shut down whatever they answer."""
    IMMEDIATE = 2
    """Shut down at once without asking."""


class CfgShutdownReply(enum.IntEnum):
    """``corosync_cfg_shutdown_reply_flags_t``: a tracking client's answer."""

    NO = 0
    YES = 1


# ----------------------------------------------------------------- field helpers


def _c_string(raw: bytes, what: str) -> str:
    end = raw.find(b"\0")
    if end < 0:
        raise MalformedMessage(f"{what} is not NUL-terminated")
    return raw[:end].decode("utf-8", errors="backslashreplace")


def _encode_c_string(value: str, size: int, what: str) -> bytes:
    raw = value.encode()
    if b"\0" in raw or len(raw) >= size:
        raise ValueError(f"{what} must be under {size} bytes without NUL")
    return raw


# ----------------------------------------------------------------- node status


@attrs.frozen
class CfgLinkStatus:
    """``corosync_knet_link_status_v1`` (520 bytes): one knet link to a node, as this
    node sees it. ``src_ipaddr``/``dst_ipaddr`` are the link's two ends as text."""

    enabled: bool = False
    connected: bool = False
    dynconnected: bool = False
    mtu: int = 0
    src_ipaddr: str = ""
    dst_ipaddr: str = ""

    def encode(self) -> bytes:
        check_unsigned("mtu", self.mtu, 32)
        return _LINK.pack(
            int(self.enabled),
            int(self.connected),
            int(self.dynconnected),
            self.mtu,
            _encode_c_string(self.src_ipaddr, CFG_MAX_HOST_LEN, "src_ipaddr"),
            _encode_c_string(self.dst_ipaddr, CFG_MAX_HOST_LEN, "dst_ipaddr"),
        )


def _decode_link(data: bytes, offset: int) -> CfgLinkStatus:
    enabled, connected, dyn, mtu, src, dst = _LINK.unpack_from(data, offset)
    return CfgLinkStatus(
        enabled=bool(enabled),
        connected=bool(connected),
        dynconnected=bool(dyn),
        mtu=mtu,
        src_ipaddr=_c_string(src, "link src_ipaddr"),
        dst_ipaddr=_c_string(dst, "link dst_ipaddr"),
    )


def _pad_links(links: Any) -> tuple[CfgLinkStatus, ...]:
    result = tuple(links)
    if len(result) > CFG_MAX_LINKS:
        raise ValueError(f"a node has at most {CFG_MAX_LINKS} links, not {len(result)}")
    return result + (CfgLinkStatus(),) * (CFG_MAX_LINKS - len(result))


@attrs.frozen
class CfgNodeStatus:
    """``corosync_cfg_node_status_v1`` (4176 bytes): a node as this node's knet sees it.

    ``link_status`` always holds :data:`CFG_MAX_LINKS` entries, by link number (shorter
    sequences are padded with disabled links). The local node has one link of its own,
    link 0, to itself.
    """

    nodeid: int
    reachable: bool = False
    remote: bool = False
    external: bool = False
    onwire_min: int = 0
    onwire_max: int = 0
    onwire_ver: int = 0
    link_status: tuple[CfgLinkStatus, ...] = attrs.field(default=(), converter=_pad_links)
    version: int = CFG_NODE_STATUS_V1

    def encode(self) -> bytes:
        check_unsigned("nodeid", self.nodeid, 32)
        check_unsigned("version", self.version, 32)
        for name in ("onwire_min", "onwire_max", "onwire_ver"):
            check_unsigned(name, getattr(self, name), 8)
        head = _NODE_HEAD.pack(
            self.version,
            self.nodeid,
            int(self.reachable),
            int(self.remote),
            int(self.external),
            self.onwire_min,
            self.onwire_max,
            self.onwire_ver,
        )
        return head + b"".join(link.encode() for link in self.link_status)


def _decode_node_status(data: bytes, offset: int) -> CfgNodeStatus:
    version, nodeid, reachable, remote, external, omin, omax, over = _NODE_HEAD.unpack_from(
        data, offset
    )
    links = tuple(
        _decode_link(data, offset + _NODE_HEAD.size + i * _LINK.size) for i in range(CFG_MAX_LINKS)
    )
    return CfgNodeStatus(
        nodeid=nodeid,
        reachable=bool(reachable),
        remote=bool(remote),
        external=bool(external),
        onwire_min=omin,
        onwire_max=omax,
        onwire_ver=over,
        link_status=links,
        version=version,
    )


# ---------------------------------------------------------------------- requests


@attrs.frozen
class CfgRingStatusGetRequest:
    """RINGSTATUSGET (16 bytes): the legacy per-link status strings."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.RINGSTATUSGET

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


@attrs.frozen
class CfgRingReenableRequest:
    """RINGREENABLE (16 bytes): a corosync 2 call; knet has nothing to re-enable."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.RINGREENABLE

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


@attrs.frozen
class CfgKillNodeRequest:
    """KILLNODE (288 bytes): make ``nodeid`` leave, logging ``reason`` there."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.KILLNODE
    nodeid: int
    reason: str = ""

    def encode(self) -> bytes:
        check_unsigned("nodeid", self.nodeid, 32)
        raw = self.reason.encode()
        if len(raw) > CFG_REASON_MAXLEN:
            raise CsError(
                CsErrorCode.NAME_TOO_LONG,
                f"kill reason of {len(raw)} bytes, at most {CFG_REASON_MAXLEN}",
            )
        if b"\0" in raw:
            raise CsError(CsErrorCode.INVALID_PARAM, "kill reason contains NUL")
        # libcfg counts the NUL in cs_name_t.length.
        return encode_request(self.REQUEST_ID, _KILL_BODY.pack(self.nodeid, len(raw) + 1, raw))


@attrs.frozen
class CfgTryShutdownRequest:
    """TRYSHUTDOWN (24 bytes). ``flags`` is kept as a plain int: a server must answer
    values it does not know."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.TRYSHUTDOWN
    flags: int = CfgShutdownFlags.REQUEST

    def encode(self) -> bytes:
        check_unsigned("flags", self.flags, 32)
        return encode_request(self.REQUEST_ID, _U32_PADDED.pack(self.flags))


@attrs.frozen
class CfgReplyToShutdownRequest:
    """REPLYTOSHUTDOWN (24 bytes): a tracking client's answer (0 NO, anything else YES)."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.REPLYTOSHUTDOWN
    response: int = CfgShutdownReply.YES

    def encode(self) -> bytes:
        check_unsigned("response", self.response, 32)
        return encode_request(self.REQUEST_ID, _U32_PADDED.pack(self.response))


@attrs.frozen
class CfgGetNodeAddrsRequest:
    """GET_NODE_ADDRS (24 bytes); nodeid 0 means the local node."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.GET_NODE_ADDRS
    nodeid: int

    def encode(self) -> bytes:
        check_unsigned("nodeid", self.nodeid, 32)
        return encode_request(self.REQUEST_ID, _U32_PADDED.pack(self.nodeid))


@attrs.frozen
class CfgLocalGetRequest:
    """LOCAL_GET (16 bytes): the local node id."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.LOCAL_GET

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


@attrs.frozen
class CfgReloadConfigRequest:
    """RELOAD_CONFIG (16 bytes): every node re-reads its corosync.conf."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.RELOAD_CONFIG

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


@attrs.frozen
class CfgReopenLogFilesRequest:
    """REOPEN_LOG_FILES (16 bytes)."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.REOPEN_LOG_FILES

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


@attrs.frozen
class CfgNodeStatusGetRequest:
    """NODESTATUSGET (32 bytes): ``version`` must be :data:`CFG_NODE_STATUS_V1`."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.NODESTATUSGET
    nodeid: int
    version: int = CFG_NODE_STATUS_V1

    def encode(self) -> bytes:
        check_unsigned("nodeid", self.nodeid, 32)
        check_unsigned("version", self.version, 32)
        return encode_request(self.REQUEST_ID, _NODESTATUS_REQ_BODY.pack(self.nodeid, self.version))


@attrs.frozen
class CfgTrackStartRequest:
    """TRACKSTART (24 bytes): ask to be consulted on shutdown (TESTSHUTDOWN events).
    corosync ignores ``track_flags``."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.TRACKSTART
    track_flags: int = 0

    def encode(self) -> bytes:
        check_unsigned("track_flags", self.track_flags, 8)
        return encode_request(self.REQUEST_ID, _U8_PADDED.pack(self.track_flags))


@attrs.frozen
class CfgTrackStopRequest:
    """TRACKSTOP (16 bytes)."""

    REQUEST_ID: ClassVar[CfgRequestId] = CfgRequestId.TRACKSTOP

    def encode(self) -> bytes:
        return encode_request(self.REQUEST_ID, b"")


CfgRequest: TypeAlias = (
    CfgRingStatusGetRequest
    | CfgRingReenableRequest
    | CfgKillNodeRequest
    | CfgTryShutdownRequest
    | CfgReplyToShutdownRequest
    | CfgGetNodeAddrsRequest
    | CfgLocalGetRequest
    | CfgReloadConfigRequest
    | CfgReopenLogFilesRequest
    | CfgNodeStatusGetRequest
    | CfgTrackStartRequest
    | CfgTrackStopRequest
)

_BARE_REQUESTS: dict[CfgRequestId, CfgRequest] = {
    CfgRequestId.RINGSTATUSGET: CfgRingStatusGetRequest(),
    CfgRequestId.RINGREENABLE: CfgRingReenableRequest(),
    CfgRequestId.LOCAL_GET: CfgLocalGetRequest(),
    CfgRequestId.RELOAD_CONFIG: CfgReloadConfigRequest(),
    CfgRequestId.REOPEN_LOG_FILES: CfgReopenLogFilesRequest(),
    CfgRequestId.TRACKSTOP: CfgTrackStopRequest(),
}
_REQUEST_SIZES = {
    CfgRequestId.KILLNODE: 288,
    CfgRequestId.TRYSHUTDOWN: 24,
    CfgRequestId.REPLYTOSHUTDOWN: 24,
    CfgRequestId.GET_NODE_ADDRS: 24,
    CfgRequestId.NODESTATUSGET: 32,
    CfgRequestId.TRACKSTART: 24,
}


def decode_cfg_request_untrusted(message: bytes) -> CfgRequest:
    """One whole cfg request as a client sent it. Raises MalformedMessage for an unknown
    id, a size that does not match the id, or a kill reason without its NUL; corosync
    answers those with INVALID_PARAM."""
    header = decode_request_header_untrusted(message)
    try:
        msg_id = CfgRequestId(header.id)
    except ValueError:
        raise MalformedMessage(f"unknown cfg request id {header.id}") from None
    bare = _BARE_REQUESTS.get(msg_id)
    expected = REQUEST_HEADER_SIZE if bare is not None else _REQUEST_SIZES[msg_id]
    if header.size != expected:
        raise MalformedMessage(f"cfg {msg_id.name} of {header.size} bytes, expected {expected}")
    if bare is not None:
        return bare
    off = REQUEST_HEADER_SIZE
    if msg_id is CfgRequestId.KILLNODE:
        nodeid, _length, reason = _KILL_BODY.unpack_from(message, off)
        return CfgKillNodeRequest(nodeid, _c_string(reason, "kill reason"))
    if msg_id is CfgRequestId.NODESTATUSGET:
        nodeid, version = _NODESTATUS_REQ_BODY.unpack_from(message, off)
        return CfgNodeStatusGetRequest(nodeid, version)
    if msg_id is CfgRequestId.TRACKSTART:
        return CfgTrackStartRequest(_U8_PADDED.unpack_from(message, off)[0])
    (value,) = _U32_PADDED.unpack_from(message, off)
    if msg_id is CfgRequestId.TRYSHUTDOWN:
        return CfgTryShutdownRequest(value)
    if msg_id is CfgRequestId.REPLYTOSHUTDOWN:
        return CfgReplyToShutdownRequest(value)
    return CfgGetNodeAddrsRequest(value)


# --------------------------------------------------------------------- responses


class _CfgResponseBase(ResponseBase):
    """Shared decoding of cfg responses; subclasses with a body override
    :meth:`_from_body`."""

    SERVICE = "cfg"
    RESPONSE_ID: ClassVar[CfgResponseId]


@attrs.frozen
class CfgRingReenableResponse(_CfgResponseBase):
    """Answer to RINGREENABLE (24 bytes)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.RINGREENABLE
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgTrackStartResponse(_CfgResponseBase):
    """Answer to TRACKSTART (24 bytes, id 2)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.TRACKSTART
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgTrackStopResponse(_CfgResponseBase):
    """Answer to TRACKSTOP (24 bytes, id 3)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.TRACKSTOP
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgKillNodeResponse(_CfgResponseBase):
    """Answer to KILLNODE (24 bytes)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.KILLNODE
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgTryShutdownResponse(_CfgResponseBase):
    """Answer to TRYSHUTDOWN (24 bytes): OK, BUSY (vetoed) or EXIST (one in progress)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.TRYSHUTDOWN
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgReplyToShutdownResponse(_CfgResponseBase):
    """Answer to REPLYTOSHUTDOWN (24 bytes)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.REPLYTOSHUTDOWN
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgReloadConfigResponse(_CfgResponseBase):
    """Answer to RELOAD_CONFIG (24 bytes): this node's own reload result."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.RELOAD_CONFIG
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgReopenLogFilesResponse(_CfgResponseBase):
    """Answer to REOPEN_LOG_FILES (24 bytes)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.REOPEN_LOG_FILES
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        return encode_response(self.RESPONSE_ID, self.error, b"")


@attrs.frozen
class CfgLocalGetResponse(_CfgResponseBase):
    """Answer to LOCAL_GET (32 bytes)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.LOCAL_GET
    error: CsErrorCode = CsErrorCode.OK
    local_nodeid: int = 0

    def encode(self) -> bytes:
        check_unsigned("local_nodeid", self.local_nodeid, 32)
        return encode_response(self.RESPONSE_ID, self.error, _U32_PADDED.pack(self.local_nodeid))

    @classmethod
    def _from_body(cls, message: bytes) -> CfgLocalGetResponse:
        if len(message) != 32:
            raise MalformedMessage(f"cfg LOCAL_GET response of {len(message)} bytes, expected 32")
        return cls(local_nodeid=_U32.unpack_from(message, RESPONSE_HEADER_SIZE)[0])


@attrs.frozen
class CfgNodeStatusGetResponse(_CfgResponseBase):
    """Answer to NODESTATUSGET (4200 bytes). corosync 3.1.7 answers a failed call
    (FAILED_OPERATION for a node knet does not know, NOT_SUPPORTED for a version other
    than 1) with 32 bytes: the header and 8 of the status; so does :meth:`encode`
    when ``status`` is None."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.NODESTATUSGET
    error: CsErrorCode = CsErrorCode.OK
    status: CfgNodeStatus | None = None

    def encode(self) -> bytes:
        body = self.status.encode() if self.status is not None else bytes(8)
        return encode_response(self.RESPONSE_ID, self.error, body)

    @classmethod
    def _from_body(cls, message: bytes) -> CfgNodeStatusGetResponse:
        expected = RESPONSE_HEADER_SIZE + _NODE_STATUS_SIZE
        if len(message) != expected:
            raise MalformedMessage(
                f"cfg NODESTATUSGET response of {len(message)} bytes, expected {expected}"
            )
        return cls(status=_decode_node_status(message, RESPONSE_HEADER_SIZE))


def _address_bytes(family: int, address: str) -> bytes:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    wanted = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    if wanted != family:
        raise ValueError(f"{address} is not of address family {family}")
    return ip.packed.ljust(CFG_ADDRESS_SIZE, b"\0")


def _address_text(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


@attrs.frozen
class CfgGetNodeAddrsResponse(_CfgResponseBase):
    """Answer to GET_NODE_ADDRS (32 + 16 per address): the node's addresses in link
    order, all of one ``family`` (``AF_INET`` or ``AF_INET6``), as text here."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.GET_NODE_ADDRS
    error: CsErrorCode = CsErrorCode.OK
    family: int = 0
    addresses: tuple[str, ...] = ()

    def encode(self) -> bytes:
        if self.addresses and self.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"address family {self.family} is not AF_INET or AF_INET6")
        check_unsigned("family", self.family, 32)
        raw = b"".join(_address_bytes(self.family, a) for a in self.addresses)
        return encode_response(
            self.RESPONSE_ID, self.error, _ADDRS_HEAD.pack(self.family, len(self.addresses)) + raw
        )

    @classmethod
    def _from_body(cls, message: bytes) -> CfgGetNodeAddrsResponse:
        head_end = RESPONSE_HEADER_SIZE + _ADDRS_HEAD.size
        if len(message) < head_end:
            raise MalformedMessage(
                f"cfg GET_NODE_ADDRS response of {len(message)} bytes, at least {head_end}"
            )
        family, count = _ADDRS_HEAD.unpack_from(message, RESPONSE_HEADER_SIZE)
        if len(message) != head_end + count * CFG_ADDRESS_SIZE:
            raise MalformedMessage(
                f"cfg GET_NODE_ADDRS response of {len(message)} bytes for {count} addresses"
            )
        if count and family not in (socket.AF_INET, socket.AF_INET6):
            raise MalformedMessage(f"cfg GET_NODE_ADDRS address family {family} is unknown")
        addresses = tuple(
            _address_text(family, message[off : off + CFG_ADDRESS_SIZE])
            for off in range(head_end, len(message), CFG_ADDRESS_SIZE)
        )
        return cls(family=family, addresses=addresses)


@attrs.frozen
class CfgRingStatusGetResponse(_CfgResponseBase):
    """Answer to RINGSTATUSGET (10272 bytes): up to 16 (name, status) string pairs,
    corosync 2's per-ring view; corosync 3 fills one per knet link."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.RINGSTATUSGET
    error: CsErrorCode = CsErrorCode.OK
    interfaces: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        if len(self.interfaces) > CFG_MAX_INTERFACES:
            raise ValueError(f"at most {CFG_MAX_INTERFACES} interfaces")
        names = b"".join(
            _encode_c_string(name, CFG_INTERFACE_NAME_MAX_LEN, "interface name").ljust(
                CFG_INTERFACE_NAME_MAX_LEN, b"\0"
            )
            for name, _ in self.interfaces
        )
        statuses = b"".join(
            _encode_c_string(status, CFG_INTERFACE_STATUS_MAX_LEN, "interface status").ljust(
                CFG_INTERFACE_STATUS_MAX_LEN, b"\0"
            )
            for _, status in self.interfaces
        )
        return encode_response(
            self.RESPONSE_ID, self.error, _RING_BODY.pack(len(self.interfaces), names, statuses)
        )

    @classmethod
    def _from_body(cls, message: bytes) -> CfgRingStatusGetResponse:
        if len(message) != 10272:
            raise MalformedMessage(
                f"cfg RINGSTATUSGET response of {len(message)} bytes, expected 10272"
            )
        count, names, statuses = _RING_BODY.unpack_from(message, RESPONSE_HEADER_SIZE)
        if count > CFG_MAX_INTERFACES:
            raise MalformedMessage(f"cfg RINGSTATUSGET says {count} interfaces, at most 16")
        interfaces = tuple(
            (
                _c_string(
                    names[i * CFG_INTERFACE_NAME_MAX_LEN : (i + 1) * CFG_INTERFACE_NAME_MAX_LEN],
                    "interface name",
                ),
                _c_string(
                    statuses[
                        i * CFG_INTERFACE_STATUS_MAX_LEN : (i + 1) * CFG_INTERFACE_STATUS_MAX_LEN
                    ],
                    "interface status",
                ),
            )
            for i in range(count)
        )
        return cls(interfaces=interfaces)


CfgResponse: TypeAlias = (
    CfgRingStatusGetResponse
    | CfgRingReenableResponse
    | CfgTrackStartResponse
    | CfgTrackStopResponse
    | CfgKillNodeResponse
    | CfgTryShutdownResponse
    | CfgGetNodeAddrsResponse
    | CfgLocalGetResponse
    | CfgReplyToShutdownResponse
    | CfgReloadConfigResponse
    | CfgReopenLogFilesResponse
    | CfgNodeStatusGetResponse
)

_R = TypeVar("_R", bound=_CfgResponseBase)


def decode_cfg_response_untrusted(message: bytes, expected: type[_R]) -> _R:
    """One whole response to the request the client sent last, decoded as ``expected``
    (e.g. :class:`CfgLocalGetResponse`). A response whose ``error`` is not OK may be a
    bare header of any id; only its error is kept."""
    return decode_response_untrusted(message, expected)


# ------------------------------------------------------------------------- event


@attrs.frozen
class CfgTestShutdownEvent:
    """TESTSHUTDOWN (res id 10, 32 bytes): "may this node shut down?" to a tracking
    client, which answers with REPLYTOSHUTDOWN. ``flags`` are the TRYSHUTDOWN's
    (kept as an int); ``error`` is OK (corosync sends TIMEOUT when a round expired)."""

    RESPONSE_ID: ClassVar[CfgResponseId] = CfgResponseId.TESTSHUTDOWN
    flags: int = CfgShutdownFlags.REQUEST
    error: CsErrorCode = CsErrorCode.OK

    def encode(self) -> bytes:
        check_unsigned("flags", self.flags, 32)
        return encode_response(self.RESPONSE_ID, self.error, _U32_PADDED.pack(self.flags))


def decode_cfg_event_untrusted(message: bytes) -> CfgTestShutdownEvent:
    """One whole dispatch event of the cfg service (TESTSHUTDOWN is the only one)."""
    header = decode_dispatch_header_untrusted(message)
    if header.id != CfgResponseId.TESTSHUTDOWN:
        raise MalformedMessage(f"unknown cfg event id {header.id}")
    if header.size != 32:
        raise MalformedMessage(f"cfg TESTSHUTDOWN event of {header.size} bytes, expected 32")
    try:
        error = CsErrorCode(header.error)
    except ValueError:
        raise MalformedMessage(f"event error {header.error} is not a cs_error_t") from None
    return CfgTestShutdownEvent(
        flags=_U32.unpack_from(message, RESPONSE_HEADER_SIZE)[0], error=error
    )
