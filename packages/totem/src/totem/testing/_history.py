"""The recorded history of a run, as the EVS checkers consume it.

One flat list of events in the order they happened (virtual time, then a tie-break
sequence), each naming the node it happened at. The simulator records it from the
cores' outputs (never from logs); a real-socket test can record the same from its
drivers. Configuration ids:

* a regular configuration is named by its ring id: ``("R", ring_id)``;
* a transitional one by the old and the new regular ring: ``("T", old_ring_id, new_ring_id)``
  — nodes coming from different old rings install different transitional
  configurations before the same new ring.

A message is identified by a ``MsgId`` ``(sender node, sender's counter)`` that the
workload puts in the payload. ``Send`` is recorded when Totem *originates* the message
(assigns its sequence number), which always happens in a regular configuration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs

from totem._events import ConfKind, RingId

__all__ = [
    "Conf",
    "ConfEvent",
    "ConfId",
    "Crash",
    "Deliver",
    "Event",
    "History",
    "MsgId",
    "Recover",
    "Send",
    "regular_conf_id",
    "transitional_conf_id",
]

MsgId = tuple[int, int]
ConfId = tuple[object, ...]


def regular_conf_id(ring_id: RingId) -> ConfId:
    return ("R", ring_id)


def transitional_conf_id(old_ring_id: RingId | None, new_ring_id: RingId) -> ConfId:
    return ("T", old_ring_id, new_ring_id)


@attrs.frozen(slots=True)
class Conf:
    """A configuration as installed at one node."""

    id: ConfId
    kind: ConfKind
    members: frozenset[int]

    @property
    def is_regular(self) -> bool:
        return self.kind is ConfKind.REGULAR


@attrs.frozen(slots=True)
class Send:
    node: int
    msg: MsgId
    payload: bytes
    safe: bool = False
    time: int = 0


@attrs.frozen(slots=True)
class Deliver:
    node: int
    msg: MsgId
    sender: int
    payload: bytes
    safe: bool = False
    time: int = 0


@attrs.frozen(slots=True)
class ConfEvent:
    node: int
    conf: Conf
    time: int = 0


@attrs.frozen(slots=True)
class Crash:
    node: int
    time: int = 0


@attrs.frozen(slots=True)
class Recover:
    """A crashed node starts again (a new incarnation; its ring id store survived)."""

    node: int
    time: int = 0


Event = Send | Deliver | ConfEvent | Crash | Recover


@attrs.define
class History:
    """Events of a run in the order they happened."""

    events: list[Event] = attrs.field(factory=list)

    def append(self, event: Event) -> None:
        self.events.append(event)

    def nodes(self) -> list[int]:
        return sorted({e.node for e in self.events})

    def at(self, node: int) -> list[Event]:
        """The events of one node, in order."""
        return [e for e in self.events if e.node == node]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def of(cls, events: Sequence[Event]) -> History:
        return cls(list(events))
