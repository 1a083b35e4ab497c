"""What the Totem core reports: deliveries and configuration changes (EVS)."""

from __future__ import annotations

import enum

import attrs

__all__ = ["ConfKind", "ConfigurationChange", "Delivered", "Guarantee", "RingId"]


@attrs.frozen(slots=True, order=True)
class RingId:
    """A ring's identity: its sequence number (grows at every new ring, persisted) and
    its representative (the lowest node id of the ring). Ordered by ``seq`` first.
    Printed like corosync: ``rep.seq`` in hex (``1.9``)."""

    seq: int
    rep: int

    def __str__(self) -> str:
        return f"{self.rep:x}.{self.seq:x}"


class ConfKind(enum.Enum):
    REGULAR = "regular"
    TRANSITIONAL = "transitional"


class Guarantee(enum.IntEnum):
    """Delivery guarantee of a message (corosync's TOTEM_AGREED / TOTEM_SAFE)."""

    AGREED = 0  #: delivered once it and every lower seq are held, same order everywhere
    SAFE = 1  #: additionally, only once every member is known to hold it


@attrs.frozen(slots=True)
class ConfigurationChange:
    """A configuration the application must install, in order with the messages.

    A TRANSITIONAL configuration (the members of the old ring that move on together)
    comes first, then the REGULAR one (the new ring). ``ring_id`` is the new ring's id
    for both; ``previous_ring_id`` is the old regular ring (None at the first ring).
    """

    kind: ConfKind
    ring_id: RingId
    previous_ring_id: RingId | None
    members: tuple[int, ...]
    left: tuple[int, ...]
    joined: tuple[int, ...]


@attrs.frozen(slots=True)
class Delivered:
    """A message delivered to the application, in agreed (or safe) order."""

    sender: int
    payload: bytes
    guarantee: Guarantee
    ring_id: RingId  #: the ring the message was originated in
    seq: int  #: its sequence number in that ring
