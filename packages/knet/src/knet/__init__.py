"""knet: redundant, encrypted, monitored multi-link datagram transport.

Up to 8 UDP links per host (IPv4 and IPv6), heartbeats with link up/down and
automatic failover, passive/active/round-robin link policies, fragmentation of
payloads up to 64 KiB, de-duplication, path MTU discovery, 32 channels, access
control, compression, and authenticated encryption with rolling key change and
replay protection.

Two layers: :class:`KnetCore`, a sans-IO state machine (time passed in, outputs
drained in batches), and :func:`open_handle`, a trio driver around it. See
docs/knet.md for the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knet._compress import CompressionConfig, CompressionModel
from knet._core import HostStatus, KnetCore, LinkStatus, TxFilter
from knet._crypto import KEY_MAX_BYTES, KEY_MIN_BYTES, Cipher, CryptoConfig
from knet._errors import ConfigError, CryptoError, HostError, KnetError, LinkError
from knet._events import (
    Datagram,
    DataMtuChanged,
    DataReceived,
    Event,
    HostReachable,
    HostUnreachable,
    LinkDown,
    LinkDownReason,
    LinkUp,
    LogLevel,
    LogRecord,
    Output,
)
from knet._keys import generate_authkey, read_authkey
from knet._options import (
    DEFAULT_PING_INTERVAL_MS,
    DEFAULT_PING_PRECISION,
    DEFAULT_PING_TIMEOUT_MS,
    DEFAULT_PMTUD_INTERVAL_S,
    DEFAULT_PONG_COUNT,
    MAX_CHANNELS,
    MAX_HOST_ID,
    MAX_LINKS,
    MAX_PAYLOAD,
    Address,
    LinkOptions,
    LinkPolicy,
)
from knet._wire import WIRE_VERSION

if TYPE_CHECKING:
    from knet._trio import KnetHandle, new_instance_id, open_handle

# The trio driver is loaded on first use, so ``import knet._core`` (the sans-IO core)
# and knet.testing never import trio or socket.
_DRIVER_NAMES = frozenset({"KnetHandle", "new_instance_id", "open_handle"})


def __getattr__(name: str) -> Any:
    if name in _DRIVER_NAMES:
        from knet import _trio

        value = getattr(_trio, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'knet' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PING_INTERVAL_MS",
    "DEFAULT_PING_PRECISION",
    "DEFAULT_PING_TIMEOUT_MS",
    "DEFAULT_PMTUD_INTERVAL_S",
    "DEFAULT_PONG_COUNT",
    "KEY_MAX_BYTES",
    "KEY_MIN_BYTES",
    "MAX_CHANNELS",
    "MAX_HOST_ID",
    "MAX_LINKS",
    "MAX_PAYLOAD",
    "WIRE_VERSION",
    "Address",
    "Cipher",
    "CompressionConfig",
    "CompressionModel",
    "ConfigError",
    "CryptoConfig",
    "CryptoError",
    "DataMtuChanged",
    "DataReceived",
    "Datagram",
    "Event",
    "HostError",
    "HostReachable",
    "HostStatus",
    "HostUnreachable",
    "KnetCore",
    "KnetError",
    "KnetHandle",
    "LinkDown",
    "LinkDownReason",
    "LinkError",
    "LinkOptions",
    "LinkPolicy",
    "LinkStatus",
    "LinkUp",
    "LogLevel",
    "LogRecord",
    "Output",
    "TxFilter",
    "generate_authkey",
    "new_instance_id",
    "open_handle",
    "read_authkey",
]
