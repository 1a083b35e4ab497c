"""totem: Totem single-ring ordering and membership with extended virtual synchrony.

The protocol is a sans-IO core (:class:`TotemCore`) with the process-group layer above
it (:class:`ProcessGroups`); :func:`open_node` runs both over a :class:`Transport`
(:class:`UdpTransport`, :class:`KnetTransport`, or :class:`MemoryNetwork` in tests)
with trio. The driver and the transports are loaded on first use, so ``import totem``
imports neither trio nor socket nor knet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from totem._config import EffectiveConfig, TotemConfig
from totem._errors import (
    ConfigError,
    InvalidGroupName,
    MalformedMessage,
    MessageTooLarge,
    QueueFull,
    TotemError,
)
from totem._events import ConfigurationChange, ConfKind, Delivered, Guarantee, RingId
from totem._pg import GroupMessage, ProcessGroups, QueueLevel
from totem._srp import (
    MAX_PAYLOAD,
    LogRecord,
    MembState,
    MemoryRingStore,
    MessageSource,
    Output,
    Packet,
    RingStore,
    TotemCore,
)
from totem._store import FileRingStore

if TYPE_CHECKING:
    from totem._knet_adapter import KnetTransport as KnetTransport
    from totem._transport import LossyTransport, MemoryNetwork, MemoryTransport, Transport
    from totem._trio import TotemNode, open_node
    from totem._udp import UdpTransport

# Loaded on first use: the driver and transports need trio (and socket), the knet
# adapter needs knet, and the sans-IO core must import without any of them.
_LAZY = {
    "Transport": "totem._transport",
    "MemoryNetwork": "totem._transport",
    "MemoryTransport": "totem._transport",
    "LossyTransport": "totem._transport",
    "UdpTransport": "totem._udp",
    "KnetTransport": "totem._knet_adapter",
    "TotemNode": "totem._trio",
    "open_node": "totem._trio",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'totem' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


# KnetTransport is left out of __all__ on purpose: ``from totem import *`` must work
# without knet installed.
__all__ = [
    "MAX_PAYLOAD",
    "ConfKind",
    "ConfigError",
    "ConfigurationChange",
    "Delivered",
    "EffectiveConfig",
    "FileRingStore",
    "GroupMessage",
    "Guarantee",
    "InvalidGroupName",
    "LogRecord",
    "LossyTransport",
    "MalformedMessage",
    "MembState",
    "MemoryNetwork",
    "MemoryRingStore",
    "MemoryTransport",
    "MessageSource",
    "MessageTooLarge",
    "Output",
    "Packet",
    "ProcessGroups",
    "QueueFull",
    "QueueLevel",
    "RingId",
    "RingStore",
    "TotemConfig",
    "TotemCore",
    "TotemError",
    "TotemNode",
    "Transport",
    "UdpTransport",
    "open_node",
]
