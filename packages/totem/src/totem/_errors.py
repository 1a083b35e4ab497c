"""Exceptions raised to the local caller of totem.

API misuse raises a :class:`TotemError` subclass. Anything that comes from the network
is untrusted and never raises out of the protocol layers: decoders raise
:class:`MalformedMessage` internally, and the layer counts and drops the input.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidGroupName",
    "MalformedMessage",
    "MessageTooLarge",
    "QueueFull",
    "TotemError",
]


class TotemError(Exception):
    """Base class of every error totem raises to its caller."""


class ConfigError(TotemError, ValueError):
    """An option has a value totem cannot use (out of range, wrong type)."""


class MessageTooLarge(TotemError, ValueError):
    """A message is larger than the configured maximum message size."""


class QueueFull(TotemError):
    """The send queue is full: try again later (corosync's CS_ERR_TRY_AGAIN)."""


class InvalidGroupName(TotemError, ValueError):
    """A group name or list of group names cannot be used (empty, too long, too many)."""


class MalformedMessage(Exception):
    """A totem message from the network could not be decoded. Internal: never leaves
    the layer that decodes it."""
