"""Limits, defaults and validated option records of a knet handle, host and link.

Defaults are libknet's (see docs/knet.md for the table and for the values corosync
derives from its token timeout). Times are given in milliseconds at the API, like
libknet and corosync.conf, and kept as integer nanoseconds inside the core.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable

import attrs

from knet._errors import ConfigError

__all__ = [
    "DEFAULT_DEFRAG_BUFFERS",
    "DEFAULT_PING_INTERVAL_MS",
    "DEFAULT_PING_PRECISION",
    "DEFAULT_PING_TIMEOUT_MS",
    "DEFAULT_PMTUD_INTERVAL_S",
    "DEFAULT_PONG_COUNT",
    "DEFAULT_PRIORITY",
    "MAX_CHANNELS",
    "MAX_HOST_ID",
    "MAX_LINKS",
    "MAX_PAYLOAD",
    "Address",
    "LinkOptions",
    "LinkPolicy",
    "make_address",
]

MAX_HOST_ID = 65535
MAX_LINKS = 8
MAX_CHANNELS = 32
MAX_PAYLOAD = 65536

DEFAULT_PING_INTERVAL_MS = 1000
DEFAULT_PING_TIMEOUT_MS = 2000
DEFAULT_PING_PRECISION = 2048
DEFAULT_PONG_COUNT = 5
DEFAULT_PRIORITY = 1
DEFAULT_PMTUD_INTERVAL_S = 60
DEFAULT_DEFRAG_BUFFERS = 32

_MS = 1_000_000

_Validator = Callable[[object, object, int], None]


class LinkPolicy(enum.Enum):
    """How a host's data is spread over its connected links."""

    PASSIVE = "passive"  #: highest-priority connected link; lowest link id on ties
    ACTIVE = "active"  #: every connected link; the receiver de-duplicates
    RR = "rr"  #: round-robin over the connected links

    @classmethod
    def from_name(cls, name: str) -> LinkPolicy:
        try:
            return cls(name.lower())
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise ConfigError(f"unknown link policy {name!r}; valid policies: {valid}") from None


@attrs.frozen(slots=True, cache_hash=True)  # a dict key on every packet: hash once
class Address:
    """A UDP endpoint: a canonical IP address text and a port."""

    ip: str
    port: int

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.ip else 4

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.family == 6 else f"{self.ip}:{self.port}"


def make_address(value: Address | tuple[str, int] | str, *, what: str = "address") -> Address:
    """Validate and canonicalise an endpoint given as ``Address``, ``(ip, port)`` or
    ``"ip:port"`` / ``"[ipv6]:port"``. Raises :class:`ConfigError` naming the problem."""
    if isinstance(value, Address):
        ip_text, port = value.ip, value.port
    elif isinstance(value, tuple) and len(value) >= 2:
        ip_text, port = value[0], value[1]
    elif isinstance(value, str):
        ip_text, port = _split_host_port(value, what)
    else:
        raise ConfigError(f"{what}: expected (ip, port) or 'ip:port', got {value!r}")
    if not isinstance(ip_text, str):
        raise ConfigError(f"{what}: IP address must be text, got {ip_text!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{what}: port must be an integer 1..65535, got {port!r}")
    try:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    except ValueError:
        raise ConfigError(f"{what}: {ip_text!r} is not an IPv4 or IPv6 address") from None
    if ip.is_multicast or ip.is_unspecified:
        raise ConfigError(f"{what}: {ip} cannot be a link endpoint (multicast or unspecified)")
    return Address(ip.compressed, port)


def _split_host_port(text: str, what: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
    else:
        host, sep, rest = text.rpartition(":")
    if not sep or not rest.isdigit():
        raise ConfigError(f"{what}: expected 'ip:port' or '[ipv6]:port', got {text!r}")
    return host, int(rest)


def _positive_ms(name: str) -> _Validator:
    def check(_instance: object, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer number of ms, got {value!r}")

    return check


def _in_range(name: str, low: int, high: int) -> _Validator:
    def check(_instance: object, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{name} must be an integer {low}..{high}, got {value!r}")

    return check


@attrs.frozen(slots=True, kw_only=True)
class LinkOptions:
    """Heartbeat and priority options of one link (libknet defaults).

    corosync derives ``ping_interval = token / (pong_count * 2)`` and
    ``ping_timeout = token / pong_count`` with ``pong_count = 2``; see docs/knet.md.
    """

    priority: int = attrs.field(default=DEFAULT_PRIORITY, validator=_in_range("priority", 0, 255))
    ping_interval_ms: int = attrs.field(
        default=DEFAULT_PING_INTERVAL_MS, validator=_positive_ms("ping_interval_ms")
    )
    ping_timeout_ms: int = attrs.field(
        default=DEFAULT_PING_TIMEOUT_MS, validator=_positive_ms("ping_timeout_ms")
    )
    ping_precision: int = attrs.field(
        default=DEFAULT_PING_PRECISION, validator=_in_range("ping_precision", 1, 1 << 20)
    )
    pong_count: int = attrs.field(
        default=DEFAULT_PONG_COUNT, validator=_in_range("pong_count", 1, 255)
    )

    @property
    def ping_interval_ns(self) -> int:
        return self.ping_interval_ms * _MS

    @property
    def ping_timeout_ns(self) -> int:
        return self.ping_timeout_ms * _MS
