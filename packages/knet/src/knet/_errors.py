"""Exceptions raised to the local caller of knet.

API misuse raises a :class:`KnetError` subclass. Anything that comes from the network
is untrusted and never raises out of the core: decoders raise :class:`MalformedPacket`
internally, and the core counts, logs and drops the packet.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CryptoError",
    "HostError",
    "KnetError",
    "LinkError",
    "MalformedPacket",
]


class KnetError(Exception):
    """Base class of every error knet raises to its caller."""


class ConfigError(KnetError, ValueError):
    """An option has a value knet cannot use (out of range, wrong type, bad address)."""


class HostError(KnetError):
    """A host id is out of range, already known, or not known."""


class LinkError(KnetError):
    """A link id is out of range, already configured, not configured, or mismatched."""


class CryptoError(KnetError):
    """A key or crypto configuration cannot be used (size, cipher, slot in use)."""


class MalformedPacket(Exception):
    """A datagram from the network could not be decoded. Internal: never leaves the core."""
