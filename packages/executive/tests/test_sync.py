"""The sync engine: several engines over a fake totem bus (one agreed order)."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from corosync import MalformedMessage
from corosync_executive import Service, SyncEngine, decode_sync_message_untrusted
from corosync_executive._sync import SyncMessage, SyncMessageKind
from totem import RingId


class Recorder(Service):
    """A service that needs ``rounds`` calls of sync_process and records its hooks."""

    has_sync = True

    def __init__(self, service_id: int, log: list[str], node: int, rounds: int = 1) -> None:
        self.service_id = service_id  # type: ignore[misc]
        self.name = f"svc{service_id}"  # type: ignore[misc]
        self.log = log
        self.node = node
        self.rounds = rounds
        self.left = 0

    def sync_init(
        self, transitional: tuple[int, ...], members: tuple[int, ...], ring_id: RingId
    ) -> None:
        self.left = self.rounds
        self.log.append(f"{self.node}:init{self.service_id}")

    def sync_process(self) -> bool:
        self.left -= 1
        return self.left <= 0

    def sync_activate(self) -> None:
        self.log.append(f"{self.node}:activate{self.service_id}")

    def sync_abort(self) -> None:
        self.log.append(f"{self.node}:abort{self.service_id}")


class Bus:
    """Messages are delivered to every engine in one global order."""

    def __init__(self) -> None:
        self.queue: deque[tuple[int, bytes]] = deque()
        self.engines: dict[int, SyncEngine] = {}

    def sender(self, node: int):  # type: ignore[no-untyped-def]
        return lambda payload: self.queue.append((node, payload))

    def run(self) -> None:
        """Deliver everything; when the bus is idle, tick the engines (the daemon calls
        process() on a timer while a sync runs)."""
        for _ in range(1000):
            if self.queue:
                sender, payload = self.queue.popleft()
                for engine in self.engines.values():
                    engine.deliver(sender, payload)
                    engine.process()
            elif any(engine.in_progress for engine in self.engines.values()):
                for engine in self.engines.values():
                    engine.process()
            else:
                return


def make(
    nodes: tuple[int, ...], services: dict[int, list[int]], log: list[str], rounds: int = 1
) -> Bus:
    bus = Bus()
    for node in nodes:
        svcs = [Recorder(sid, log, node, rounds) for sid in services[node]]
        bus.engines[node] = SyncEngine(svcs, bus.sender(node))
    return bus


def test_every_member_activates_every_service_in_id_order() -> None:
    log: list[str] = []
    bus = make((1, 2, 3), {1: [2, 0], 2: [0, 2], 3: [0, 2]}, log, rounds=3)
    ring = RingId(4, 1)
    for engine in bus.engines.values():
        engine.start((), (1, 2, 3), ring)
    assert all(e.in_progress for e in bus.engines.values())
    bus.run()
    assert not any(e.in_progress for e in bus.engines.values())
    for node in (1, 2, 3):
        mine = [entry for entry in log if entry.startswith(f"{node}:")]
        assert mine == [f"{node}:init0", f"{node}:activate0", f"{node}:init2", f"{node}:activate2"]
    # No one activates service 0 before every member's barrier for it: all inits of 0
    # come before the first activation of 0.
    first_activate = log.index(next(e for e in log if e.endswith("activate0")))
    assert all(log.index(f"{n}:init0") < first_activate for n in (1, 2, 3))


def test_a_new_ring_aborts_and_old_messages_are_ignored() -> None:
    log: list[str] = []
    bus = make((1, 2), {1: [0], 2: [0]}, log, rounds=1)
    old, new = RingId(1, 1), RingId(2, 1)
    for engine in bus.engines.values():
        engine.start((), (1, 2), old)
    # Only node 1's service list goes out before the new ring.
    first = bus.queue.popleft()
    bus.queue.clear()
    bus.engines[1].deliver(*first)
    for engine in bus.engines.values():
        engine.start((1, 2), (1, 2), new)
    bus.queue.appendleft(first)  # a stale message of the old ring arrives late
    bus.run()
    assert not any(e.in_progress for e in bus.engines.values())
    assert bus.engines[1].stale >= 1
    assert log.count("1:activate0") == 1


def test_engine_without_services_completes_at_once() -> None:
    bus = make((1,), {1: []}, [])
    bus.engines[1].start((), (1,), RingId(1, 1))
    bus.run()
    assert not bus.engines[1].in_progress
    assert bus.engines[1].completed_rings == 1


def test_garbage_is_counted_not_raised() -> None:
    bus = make((1,), {1: [0]}, [])
    engine = bus.engines[1]
    engine.start((), (1,), RingId(1, 1))
    engine.deliver(1, b"\x07garbage")
    engine.deliver(1, b"")
    assert engine.malformed == 2
    bus.run()
    assert not engine.in_progress


def test_message_round_trip() -> None:
    for message in (
        SyncMessage(SyncMessageKind.SERVICE_LIST, RingId(9, 3), (0, 2, 5)),
        SyncMessage(SyncMessageKind.BARRIER, RingId(9, 3), (5,)),
    ):
        assert decode_sync_message_untrusted(message.encode()) == message


@given(st.binary(max_size=64))
def test_decoder_fuzz(data: bytes) -> None:
    try:
        message = decode_sync_message_untrusted(data)
    except MalformedMessage:
        return
    assert decode_sync_message_untrusted(message.encode()) == message
