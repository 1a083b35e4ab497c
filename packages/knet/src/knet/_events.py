"""What a knet core reports to its user: events, outgoing datagrams, log records.

Everything here is immutable. The core returns them in one :class:`Output` batch from
``drain()``; the trio driver sends the datagrams, hands data to channels and forwards
events and log records.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from knet._options import Address

__all__ = [
    "DataMtuChanged",
    "DataReceived",
    "Datagram",
    "Event",
    "HostReachable",
    "HostUnreachable",
    "LinkDown",
    "LinkDownReason",
    "LinkUp",
    "LogLevel",
    "LogRecord",
    "Output",
]


@attrs.frozen(slots=True)
class Datagram:
    """One UDP datagram the driver must send from ``local`` to ``remote``."""

    local: Address
    remote: Address
    data: bytes


@attrs.frozen(slots=True)
class DataReceived:
    """A whole application payload arrived from ``src_host`` on ``channel``."""

    src_host: int
    channel: int
    payload: bytes


@attrs.frozen(slots=True)
class HostReachable:
    """``host_id`` has at least one connected link again (or for the first time)."""

    host_id: int


@attrs.frozen(slots=True)
class HostUnreachable:
    """``host_id`` has no connected link left: data to it is dropped until one comes up."""

    host_id: int


@attrs.frozen(slots=True)
class LinkUp:
    """The link received ``pong_count`` good pongs in a row and carries traffic."""

    host_id: int
    link_id: int


class LinkDownReason(enum.Enum):
    TIMEOUT = "no pong within the adjusted ping timeout"
    DISABLED = "link disabled locally"
    REMOVED = "link configuration cleared"


@attrs.frozen(slots=True)
class LinkDown:
    """The link stopped carrying traffic."""

    host_id: int
    link_id: int
    reason: LinkDownReason


@attrs.frozen(slots=True)
class DataMtuChanged:
    """The largest payload a single datagram carries changed (minimum over links)."""

    data_mtu: int
    previous: int


Event = DataReceived | HostReachable | HostUnreachable | LinkUp | LinkDown | DataMtuChanged


class LogLevel(enum.IntEnum):
    ERROR = 0
    WARNING = 1
    INFO = 2
    DEBUG = 3
    TRACE = 4


@attrs.frozen(slots=True)
class LogRecord:
    """A structured log line: the driver hands it to structlog (subsystem ``knet``)."""

    level: LogLevel
    event: str
    fields: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Output:
    """Everything the core produced since the last ``drain()``."""

    datagrams: tuple[Datagram, ...] = ()
    events: tuple[Event, ...] = ()
    logs: tuple[LogRecord, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.datagrams or self.events or self.logs)
