"""Payloads of the cfg service's executive messages (node to node, through totem).

The function ids are corosync's (reference 3.6); the payloads are our own, in network
byte order (members may differ in endianness), after the framework's envelope:

* ``RINGREENABLE`` (0) and ``SHUTDOWN`` (2): empty;
* ``KILLNODE`` (1): u32 target node id, u16 reason length, the reason (UTF-8, at most
  255 bytes);
* ``RELOAD_CONFIG`` (3): u64 token, so the requesting node can answer the waiting
  client (corosync carries the connection pointer instead);
* ``CRYPTO_RECONFIG`` (4): u32 phase of the rolling key change.

Decoders take untrusted bytes from the network and raise
:class:`corosync.MalformedMessage`.
"""

from __future__ import annotations

import enum
import struct

import attrs

from corosync import MalformedMessage

__all__ = [
    "CfgExecFunction",
    "CfgExecKillNode",
    "decode_cfg_crypto_phase_untrusted",
    "decode_cfg_empty_untrusted",
    "decode_cfg_killnode_untrusted",
    "decode_cfg_reload_token_untrusted",
    "encode_cfg_crypto_phase",
    "encode_cfg_killnode",
    "encode_cfg_reload_token",
]

REASON_MAXLEN = 255
_KILL_HEAD = struct.Struct(">IH")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class CfgExecFunction(enum.IntEnum):
    """Function ids of cfg executive messages (``MESSAGE_REQ_EXEC_CFG_*``)."""

    RINGREENABLE = 0
    KILLNODE = 1
    SHUTDOWN = 2
    RELOAD_CONFIG = 3
    CRYPTO_RECONFIG = 4


@attrs.frozen
class CfgExecKillNode:
    """KILLNODE: ``nodeid`` must leave, logging ``reason``."""

    nodeid: int
    reason: str


def encode_cfg_killnode(nodeid: int, reason: str) -> bytes:
    """The KILLNODE payload; the reason is cut to 255 bytes (on a character boundary)."""
    raw = reason.encode()[:REASON_MAXLEN].decode(errors="ignore").encode()
    return _KILL_HEAD.pack(nodeid, len(raw)) + raw


def decode_cfg_killnode_untrusted(payload: bytes) -> CfgExecKillNode:
    """A KILLNODE payload."""
    if len(payload) < _KILL_HEAD.size:
        raise MalformedMessage(f"cfg KILLNODE payload of {len(payload)} bytes, at least 6")
    nodeid, length = _KILL_HEAD.unpack_from(payload)
    if length > REASON_MAXLEN or len(payload) != _KILL_HEAD.size + length:
        raise MalformedMessage(
            f"cfg KILLNODE reason of {length} bytes in a payload of {len(payload)}"
        )
    reason = payload[_KILL_HEAD.size :].decode("utf-8", errors="backslashreplace")
    return CfgExecKillNode(nodeid, reason)


def encode_cfg_reload_token(token: int) -> bytes:
    """The RELOAD_CONFIG payload."""
    return _U64.pack(token)


def decode_cfg_reload_token_untrusted(payload: bytes) -> int:
    """A RELOAD_CONFIG payload: the requester's token."""
    if len(payload) != _U64.size:
        raise MalformedMessage(f"cfg RELOAD_CONFIG payload of {len(payload)} bytes, expected 8")
    token: int = _U64.unpack(payload)[0]
    return token


def encode_cfg_crypto_phase(phase: int) -> bytes:
    """The CRYPTO_RECONFIG payload."""
    return _U32.pack(phase)


def decode_cfg_crypto_phase_untrusted(payload: bytes) -> int:
    """A CRYPTO_RECONFIG payload: the phase."""
    if len(payload) != _U32.size:
        raise MalformedMessage(f"cfg CRYPTO_RECONFIG payload of {len(payload)} bytes, expected 4")
    phase: int = _U32.unpack(payload)[0]
    return phase


def decode_cfg_empty_untrusted(payload: bytes, function: CfgExecFunction) -> None:
    """The payload of a message that carries none (RINGREENABLE, SHUTDOWN)."""
    if payload:
        raise MalformedMessage(f"cfg {function.name} carries no payload, got {len(payload)} bytes")
