"""Tests of the Totem core (``TotemCore``): ring formation, ordering, safe delivery,
retransmission, flow control, membership changes, persistence, robustness.

The harness ``Net`` below connects N cores by an in-process datagram queue in virtual
time (nanoseconds), with optional loss, cuts and a drop filter per pair. It is small
and explicit on purpose: every test reads the packets and events it produced.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import random
import struct
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totem import (
    MAX_PAYLOAD,
    ConfigurationChange,
    ConfKind,
    Delivered,
    Guarantee,
    LogRecord,
    MembState,
    MemoryRingStore,
    MessageTooLarge,
    QueueFull,
    RingId,
    TotemConfig,
    TotemCore,
    TotemError,
)
from totem._srp import QUEUE_MAX
from totem._wire import (
    CommitToken,
    Join,
    Mcast,
    MessageType,
    RingMessage,
    Token,
    decode_message_untrusted,
    encode_commit,
    encode_join,
    encode_mcast,
    encode_ring_message,
    encode_token,
)

MS = 1_000_000
SECOND = 1_000_000_000
AGREED = Guarantee.AGREED
SAFE = Guarantee.SAFE

# --------------------------------------------------------------------------- harness


def kind(data: bytes) -> int:
    """The message type of an encoded totem packet (second header byte)."""
    return data[1]


class Net:
    """TotemCore nodes on an in-process network, in virtual time.

    A packet from ``a`` to ``b`` arrives ``delay[(a, b)]`` (default ``delay_ns``) later,
    unless the pair is in ``blocked``, loses it (``loss[(a, b)]``, drawn from the seeded
    rng) or ``drop(a, b, data)`` returns True. Per node the harness records ``timeline``
    (time, event), ``logs`` (time, record) and ``received`` (time, data); ``sent`` holds
    every packet any node sent as (time, source, target, data), target 0 = everyone.
    """

    def __init__(
        self,
        nodes: Iterable[int] = (),
        *,
        config: TotemConfig | None = None,
        node_count: int | None = None,
        seed: int = 0,
        delay_ns: int = 100_000,
        variant: str = "correct",
    ) -> None:
        node_list = sorted(nodes)
        self.config = config or TotemConfig()
        self.node_count = node_count or max(2, len(node_list))
        self.variant = variant
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.delay_ns = delay_ns
        self.delay: dict[tuple[int, int], int] = {}
        self.loss: dict[tuple[int, int], float] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.drop: Callable[[int, int, bytes], bool] | None = None
        self.cores: dict[int, TotemCore] = {}
        self.stores: dict[int, MemoryRingStore] = {}
        self.timeline: dict[int, list[tuple[int, Delivered | ConfigurationChange]]] = {}
        self.logs: dict[int, list[tuple[int, LogRecord]]] = {}
        self.received: dict[int, list[tuple[int, bytes]]] = {}
        self.sent: list[tuple[int, int, int, bytes]] = []
        self._queue: list[tuple[int, int, int, bytes]] = []
        self._order = 0
        for node in node_list:
            self.add(node)

    # ------------------------------------------------------------------ nodes

    def add(self, node: int, *, store: MemoryRingStore | None = None) -> TotemCore:
        """Create and start node ``node`` (its ring store survives crashes)."""
        if store is not None:
            self.stores[node] = store
        core = TotemCore(
            node,
            config=self.config,
            node_count=self.node_count,
            rng=random.Random(self.seed * 7919 + node),
            store=self.stores.setdefault(node, MemoryRingStore()),
            variant=self.variant,
        )
        self.cores[node] = core
        for log in (self.timeline, self.logs, self.received):
            log.setdefault(node, [])
        core.start(self.now)
        self.flush(node)
        return core

    def crash(self, node: int) -> None:
        """The node dies silently: no leave, and it receives nothing any more."""
        del self.cores[node]

    def leave(self, node: int) -> None:
        """The node leaves cleanly, then is gone."""
        self.cores[node].leave(self.now)
        self.flush(node)
        del self.cores[node]

    def mcast(self, node: int, payload: bytes, guarantee: Guarantee = AGREED) -> None:
        self.cores[node].mcast(payload, guarantee, self.now)
        self.flush(node)

    # ------------------------------------------------------------------ network

    def cut(self, side_a: Iterable[int], side_b: Iterable[int]) -> None:
        """Partition: nothing passes between the two sides, either way."""
        for a in side_a:
            for b in side_b:
                self.blocked |= {(a, b), (b, a)}

    def set_loss(self, probability: float) -> None:
        """The same loss probability on every pair of nodes."""
        for a in self.cores:
            for b in self.cores:
                if a != b:
                    self.loss[(a, b)] = probability

    def flush(self, node: int) -> None:
        core = self.cores.get(node)
        if core is None:
            return
        out = core.drain()
        self.timeline[node].extend((self.now, event) for event in out.events)
        self.logs[node].extend((self.now, log) for log in out.logs)
        for packet in out.packets:
            self.sent.append((self.now, node, packet.target, packet.data))
            targets = [packet.target] if packet.target else sorted(set(self.cores) - {node})
            for target in targets:
                self._transmit(node, target, packet.data)

    def _transmit(self, source: int, target: int, data: bytes) -> None:
        pair = (source, target)
        if pair in self.blocked:
            return
        if self.drop is not None and self.drop(source, target, data):
            return
        if pair in self.loss and self.rng.random() < self.loss[pair]:
            return
        self._order += 1
        arrival = self.now + self.delay.get(pair, self.delay_ns)
        heapq.heappush(self._queue, (arrival, self._order, target, data))

    def inject(self, target: int, data: bytes) -> None:
        """Hand ``data`` to a node now, as if it came from the network."""
        core = self.cores[target]
        self.received[target].append((self.now, data))
        core.receive(data, self.now)
        self.flush(target)

    # ------------------------------------------------------------------ time

    def step(self, limit: int) -> bool:
        """Handle the earliest packet or timer due at or before ``limit``."""
        packet_at = self._queue[0][0] if self._queue else None
        timer_at, timer_node = None, 0
        for node in sorted(self.cores):
            deadline = self.cores[node].next_deadline()
            if deadline is not None and (timer_at is None or deadline < timer_at):
                timer_at, timer_node = deadline, node
        if timer_at is not None and (packet_at is None or timer_at < packet_at):
            if timer_at > limit:
                return False
            self.now = max(self.now, timer_at)
            self.cores[timer_node].handle_timeouts(self.now)
            self.flush(timer_node)
            return True
        if packet_at is None or packet_at > limit:
            return False
        arrival, _order, target, data = heapq.heappop(self._queue)
        self.now = max(self.now, arrival)
        if target in self.cores:
            self.inject(target, data)
        return True

    def run_for(self, duration_ns: int) -> None:
        end = self.now + duration_ns
        while self.step(end):
            pass
        self.now = end

    def run_until(self, condition: Callable[[], bool], timeout_ns: int = 60 * SECOND) -> int:
        """Run until ``condition()`` holds; returns the virtual time that took."""
        start = self.now
        while not condition():
            if not self.step(start + timeout_ns):
                raise AssertionError(f"not reached within {timeout_ns / MS:.0f} ms")
        return self.now - start

    # ------------------------------------------------------------------ views

    # ``since``: only what happened strictly after that virtual time.

    def delivered(self, node: int, since: int = -1) -> list[Delivered]:
        return [e for t, e in self.timeline[node] if isinstance(e, Delivered) and t > since]

    def payloads(self, node: int) -> list[bytes]:
        return [e.payload for e in self.delivered(node)]

    def confs(self, node: int, since: int = -1) -> list[ConfigurationChange]:
        return [
            e for t, e in self.timeline[node] if isinstance(e, ConfigurationChange) and t > since
        ]

    def log_events(self, node: int, since: int = -1) -> list[str]:
        return [log.event for t, log in self.logs[node] if t > since]

    def delivered_everywhere(self, payload: bytes, nodes: Iterable[int] | None = None) -> bool:
        return all(payload in self.payloads(n) for n in (nodes or self.cores))

    def one_ring(self, nodes: Iterable[int] | None = None) -> bool:
        """The given nodes (default: all) are OPERATIONAL on one ring of exactly them."""
        wanted = tuple(sorted(nodes if nodes is not None else self.cores))
        cores = [self.cores[n] for n in wanted]
        return all(
            c.state is MembState.OPERATIONAL
            and c.members == wanted
            and c.ring_id == cores[0].ring_id
            for c in cores
        )

    def packets(self, mtype: MessageType, since: int = -1) -> list[tuple[int, int, int, bytes]]:
        return [p for p in self.sent if p[0] > since and kind(p[3]) == mtype]


def formed(nodes: Iterable[int], **kwargs: object) -> Net:
    """A network whose nodes have formed one ring."""
    net = Net(nodes, **kwargs)  # type: ignore[arg-type]
    net.run_until(net.one_ring)
    return net


# --------------------------------------------------------------------------- (1) rings


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_nodes_form_one_ring_represented_by_the_lowest_id(count: int) -> None:
    """N nodes started together form one ring; rep = lowest id, seq a multiple of 4."""
    nodes = [10 + 3 * i for i in range(count)]  # ids need not be 1..N
    net = formed(nodes)
    ring = net.cores[nodes[0]].ring_id
    assert ring.rep == min(nodes)
    assert ring.seq % 4 == 0
    for node in nodes:
        core = net.cores[node]
        assert (core.ring_id, core.members, core.state) == (
            ring,
            tuple(nodes),
            MembState.OPERATIONAL,
        )
        last = net.confs(node)[-1]
        assert (last.kind, last.ring_id, last.members) == (ConfKind.REGULAR, ring, tuple(nodes))


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_ring_seq_grows_by_four_per_ring_and_prints_as_hex(count: int) -> None:
    """Every new ring has seq = previous + 4, printed rep.seq in hex (1.4, 1.8, 1.c)."""
    net = formed(range(1, count + 1))
    # Started together: each node first forms its singleton ring (seq 4), then they merge.
    expected = "1.4" if count == 1 else "1.8"
    assert str(net.cores[1].ring_id) == expected
    assert f"A new membership ({expected}) was formed." in " ".join(net.log_events(1))
    net.run_for(SECOND)
    if count > 1:
        net.crash(count)
        net.run_until(lambda: net.one_ring(range(1, count)))
        assert str(net.cores[1].ring_id) == "1.c"
    else:
        net.add(2)
        net.run_until(net.one_ring)
        assert str(net.cores[1].ring_id) == "1.8"  # both at 4 (1.4 and 2.4): 4 + 4
    for node in net.cores:
        seqs = [c.ring_id.seq for c in net.confs(node) if c.kind is ConfKind.REGULAR]
        assert seqs[0] == 4  # its singleton ring
        assert all(later - earlier == 4 for earlier, later in itertools.pairwise(seqs))
    assert str(RingId(seq=0x11, rep=0x1F)) == "1f.11"


# --------------------------------------------------------------------------- (2) agreed order


def test_agreed_order_is_the_same_everywhere_including_self_delivery() -> None:
    """Messages from every node are delivered in one order at every node, its own included."""
    nodes = [1, 2, 3, 4, 5]
    net = formed(nodes)
    sent = {n: [f"{n}:{i}".encode() for i in range(20)] for n in nodes}
    rng = random.Random(3)
    for i in range(20):
        for node in rng.sample(nodes, len(nodes)):
            net.mcast(node, sent[node][i])
        net.run_for(rng.randrange(0, 2 * MS))
    net.run_until(lambda: all(len(net.payloads(n)) == 100 for n in nodes))
    net.run_for(100 * MS)
    reference = net.delivered(1)
    assert len(reference) == 100
    for node in nodes:
        got = net.delivered(node)
        assert [(d.sender, d.payload, d.seq) for d in got] == [
            (d.sender, d.payload, d.seq) for d in reference
        ]
        own = [d.payload for d in got if d.sender == node]
        assert own == sent[node]  # self-delivery, in sending order
    assert [d.seq for d in reference] == sorted(d.seq for d in reference)
    assert {d.ring_id for d in reference} == {net.cores[1].ring_id}
    assert all(d.payload.startswith(b"%d:" % d.sender) for d in reference)


def test_a_single_node_delivers_its_own_messages() -> None:
    """A singleton ring orders and delivers its own messages."""
    net = formed([7])
    for i in range(5):
        net.mcast(7, b"solo %d" % i, SAFE if i % 2 else AGREED)
    net.run_until(lambda: len(net.payloads(7)) == 5)
    assert net.payloads(7) == [b"solo %d" % i for i in range(5)]
    assert [d.guarantee for d in net.delivered(7)] == [AGREED, SAFE, AGREED, SAFE, AGREED]


# --------------------------------------------------------------------------- (3) safe delivery


def drop_first_copy_to(net: Net, node: int, payload: bytes) -> list[int]:
    """Make the network drop the first multicast of ``payload`` to ``node``; returns the
    list that records when that happened."""
    dropped: list[int] = []

    def drop(_source: int, target: int, data: bytes) -> bool:
        if target != node or kind(data) != MessageType.MCAST or dropped:
            return False
        message, _ = decode_message_untrusted(data)
        if isinstance(message, Mcast) and message.payload == payload:
            dropped.append(net.now)
            return True
        return False

    net.drop = drop
    return dropped


def arrival_at(net: Net, node: int, payload: bytes) -> int:
    """When ``node`` first received a multicast carrying ``payload``."""
    for when, data in net.received[node]:
        if kind(data) == MessageType.MCAST:
            message, _ = decode_message_untrusted(data)
            if isinstance(message, Mcast) and message.payload == payload:
                return when
    raise AssertionError("never received")


def delivery_time(net: Net, node: int, payload: bytes) -> int:
    return next(
        t for t, e in net.timeline[node] if isinstance(e, Delivered) and e.payload == payload
    )


@pytest.mark.parametrize("variant", ["correct", "deliver_safe_early"])
def test_safe_message_waits_until_every_member_holds_it(variant: str) -> None:
    """A SAFE message lost to one node is delivered by the others only after the
    retransmission reached it; the deliver_safe_early variant breaks exactly that."""
    net = formed([1, 2, 3], variant=variant)
    net.run_for(SECOND)
    dropped = drop_first_copy_to(net, 3, b"safe")
    net.mcast(2, b"safe", SAFE)
    net.run_until(lambda: net.delivered_everywhere(b"safe"))
    assert dropped, "the first copy to node 3 was dropped"
    held_by_3 = arrival_at(net, 3, b"safe")  # the retransmitted copy
    assert held_by_3 > dropped[0]
    assert sum(net.cores[n].stats["retransmits_sent"] for n in (1, 2)) >= 1
    early = [n for n in (1, 2) if delivery_time(net, n, b"safe") < held_by_3]
    if variant == "correct":
        assert early == []
        assert [d.guarantee for d in net.delivered(1)] == [SAFE]
    else:
        assert early == [1, 2]


def test_agreed_message_does_not_wait_for_a_member_that_lacks_it() -> None:
    """The same loss with an AGREED message: the others deliver before node 3 holds it
    (so the SAFE test above measures the guarantee, not the network)."""
    net = formed([1, 2, 3])
    net.run_for(SECOND)
    drop_first_copy_to(net, 3, b"agreed")
    net.mcast(2, b"agreed")
    net.run_until(lambda: net.delivered_everywhere(b"agreed"))
    held_by_3 = arrival_at(net, 3, b"agreed")
    assert all(delivery_time(net, n, b"agreed") < held_by_3 for n in (1, 2))


def test_safe_messages_keep_the_agreed_order() -> None:
    """SAFE and AGREED messages mixed are delivered in one order everywhere."""
    net = formed([1, 2, 3])
    for i in range(30):
        net.mcast(1 + i % 3, b"m%d" % i, SAFE if i % 3 == 0 else AGREED)
    net.run_until(lambda: all(len(net.payloads(n)) == 30 for n in (1, 2, 3)))
    assert net.payloads(1) == net.payloads(2) == net.payloads(3)
    seqs = [d.seq for d in net.delivered(1)]
    assert seqs == sorted(seqs)


# --------------------------------------------------------------------------- (4) retransmission


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_everything_is_delivered_under_20_percent_loss(seed: int) -> None:
    """With 20% loss on every pair, all messages reach all nodes in one order, thanks to
    retransmissions (their counters move)."""
    nodes = [1, 2, 3]
    net = formed(nodes, config=TotemConfig(token=200), seed=seed)
    net.set_loss(0.2)
    for i in range(100):
        for node in nodes:
            net.mcast(node, b"%d:%d" % (node, i), SAFE if i % 10 == 0 else AGREED)
    net.run_until(lambda: all(len(net.payloads(n)) == 300 for n in nodes), 120 * SECOND)
    assert net.payloads(1) == net.payloads(2) == net.payloads(3)
    for node in nodes:
        assert [p for p in net.payloads(node) if p.startswith(b"%d:" % node)] == [
            b"%d:%d" % (node, i) for i in range(100)
        ]
    total = {
        k: sum(net.cores[n].stats[k] for n in nodes)
        for k in ("retransmits_sent", "retransmit_requests")
    }
    assert total["retransmit_requests"] > 0
    assert total["retransmits_sent"] > 0


def test_skip_retransmission_variant_never_fills_holes() -> None:
    """Without answers to retransmit requests a lost message is never delivered there."""
    net = formed([1, 2, 3], variant="skip_retransmission")
    drop_first_copy_to(net, 3, b"lost")
    net.mcast(2, b"lost")
    net.run_for(2 * SECOND)
    assert net.delivered_everywhere(b"lost", [1, 2])
    assert b"lost" not in net.payloads(3)
    assert net.cores[3].stats["retransmit_requests"] > 0


def test_a_lost_token_is_retransmitted_without_a_new_ring() -> None:
    """One lost token is sent again, byte for byte, token_retransmit ms later by the same
    node; the ring goes on without a reconfiguration."""
    net = formed([1, 2, 3])
    net.run_for(SECOND)
    ring = net.cores[1].ring_id
    dropped: list[tuple[int, int, int, bytes]] = []

    def drop(source: int, target: int, data: bytes) -> bool:
        if kind(data) == MessageType.TOKEN and not dropped:
            dropped.append((net.now, source, target, data))
            return True
        return False

    net.drop = drop
    net.mcast(2, b"after loss")
    net.run_until(lambda: net.delivered_everywhere(b"after loss"))
    assert dropped
    lost_at, source, target, data = dropped[0]
    resent = [t for t, s, d, again in net.sent if (s, d, again) == (source, target, data)]
    assert resent[0] == lost_at
    assert resent[1] - lost_at == net.cores[source].timers.token_retransmit * MS
    assert all(net.cores[n].ring_id == ring for n in (1, 2, 3))
    assert all(net.cores[n].stats["token_lost"] == 0 for n in (1, 2, 3))


def test_a_lost_commit_token_is_retransmitted_by_the_hop_that_lost_it() -> None:
    """A commit token lost between nodes 2 and 3 is sent again by node 2 although node 1
    keeps retransmitting it to node 2: the ring forms without a token timeout."""
    net = Net([1, 2, 3])
    dropped: list[int] = []

    def drop(source: int, target: int, data: bytes) -> bool:
        if kind(data) == MessageType.COMMIT and (source, target) == (2, 3) and not dropped:
            dropped.append(net.now)
            return True
        return False

    net.drop = drop
    took = net.run_until(net.one_ring)
    assert dropped
    resent = [t for t, s, d, data in net.sent if (s, d, kind(data)) == (2, 3, MessageType.COMMIT)]
    assert resent[1] - resent[0] == net.cores[2].timers.token_retransmit * MS
    assert took < net.cores[1].timers.token * MS
    assert all("commit token lost; gathering again" not in net.log_events(n) for n in (1, 2, 3))


# --------------------------------------------------------------------------- (5) flow control


def test_flow_control_limits_messages_per_token_and_per_rotation() -> None:
    """max_messages=5 per token receipt and window_size=10 per rotation, from the packets."""
    nodes = [1, 2, 3]
    net = formed(nodes, config=TotemConfig(max_messages=5, window_size=10))
    start = len(net.sent)
    for i in range(100):
        for node in nodes:
            net.mcast(node, b"%d:%d" % (node, i))
    net.run_until(lambda: all(len(net.payloads(n)) == 300 for n in nodes))
    # Multicasts a node sends before it passes the token were originated on that receipt.
    pending = dict.fromkeys(nodes, 0)
    holdings: list[int] = []
    for _t, source, _target, data in net.sent[start:]:
        if kind(data) == MessageType.MCAST:
            pending[source] += 1
        elif kind(data) == MessageType.TOKEN:
            holdings.append(pending[source])
            pending[source] = 0
    assert sum(holdings) == 300
    assert max(holdings) == 5
    rotations = [sum(holdings[i : i + len(nodes)]) for i in range(len(holdings))]
    assert max(rotations) == 10


def test_max_messages_alone_bounds_one_token_receipt() -> None:
    """With a wide window, one node with a long queue still sends max_messages per token."""
    net = formed([1, 2], config=TotemConfig(max_messages=3, window_size=50))
    start = len(net.sent)
    for i in range(30):
        net.mcast(2, b"%d" % i)
    net.run_until(lambda: len(net.payloads(1)) == 30)
    counts: list[int] = []
    count = 0
    for _t, source, _target, data in net.sent[start:]:
        if source == 2 and kind(data) == MessageType.MCAST:
            count += 1
        elif source == 2 and kind(data) == MessageType.TOKEN:
            counts.append(count)
            count = 0
    assert max(counts) == 3
    assert sum(counts) == 30


# --------------------------------------------------------------------------- (6) token loss


def test_token_loss_forms_a_new_configuration_after_token_plus_consensus() -> None:
    """A crashed node is dropped after about token + consensus, with corosync's log line."""
    net = formed([1, 2, 3])  # 3 nodes: token 3650, consensus 4380, hold 685
    net.run_for(5 * SECOND)
    timers = net.cores[1].timers
    crashed_at = net.now
    net.crash(3)
    took = net.run_until(lambda: net.one_ring([1, 2]))
    low = (timers.token + timers.consensus - timers.hold - 5) * MS
    high = (timers.token + timers.consensus + 50) * MS
    assert low <= took <= high, took / MS
    message = (
        "A processor failed, forming new configuration: token timed out (3650ms), "
        "waiting 4380ms for consensus."
    )
    assert any(message in net.log_events(n, crashed_at) for n in (1, 2))
    assert any(
        "Token has not been received in 2737 ms" in net.log_events(n, crashed_at) for n in (1, 2)
    )
    assert sum(net.cores[n].stats["token_lost"] for n in (1, 2)) >= 1


# --------------------------------------------------------------------------- (7) clean leave


def test_clean_leave_reforms_well_before_the_token_timeout() -> None:
    """After a LEAVE the others reform in a few ms, with no token-loss log."""
    net = formed([1, 2, 3])
    net.run_for(5 * SECOND)
    left_at = net.now
    net.leave(3)
    took = net.run_until(lambda: net.one_ring([1, 2]))
    assert took < 100 * MS  # the token timeout is 3650 ms
    for node in (1, 2):
        assert not any("token timed out" in e for e in net.log_events(node, left_at))
        assert net.cores[node].stats["leaves_received"] == 1
        assert net.confs(node)[-1].left == (3,)


def test_a_node_that_left_is_stopped() -> None:
    """After leave() a core sends LEAVE twice, then ignores input and refuses mcast."""
    net = formed([1, 2])
    core = net.cores[2]
    since = net.now - 1
    net.leave(2)
    assert len(net.packets(MessageType.LEAVE, since)) == 2
    assert core.state is MembState.STOPPED
    assert core.next_deadline() is None
    with pytest.raises(TotemError):
        core.mcast(b"late")
    core.receive(encode_join(Join(1, 4, frozenset({1}), frozenset())), net.now)
    assert not core.drain()


# --------------------------------------------------------------------------- (8) failed to receive


def test_a_node_that_cannot_receive_is_taken_out() -> None:
    """A node that gets no MCAST packets says FAILED TO RECEIVE after fail_recv_const
    rotations and the others reform without it."""
    fail_recv_const = 10
    net = formed([1, 2, 3], config=TotemConfig(fail_recv_const=fail_recv_const))
    net.drop = lambda _s, target, data: target == 3 and kind(data) == MessageType.MCAST
    tokens_before = net.cores[3].stats["tokens_received"]
    for i in range(20):
        net.mcast(1, b"m%d" % i)
    took = net.run_until(lambda: net.one_ring([1, 2]))
    victim = net.cores[3]
    assert "FAILED TO RECEIVE" in net.log_events(3)
    assert victim.stats["failed_to_receive"] == 1
    rotations = victim.stats["tokens_received"] - tokens_before
    assert fail_recv_const < rotations <= fail_recv_const + 10
    for node in (1, 2):
        assert net.confs(node)[-1].left == (3,)
        assert net.payloads(node) == [b"m%d" % i for i in range(20)]

    # Control: the same network with corosync's fail_recv_const keeps node 3 that long.
    control = formed([1, 2, 3])
    control.drop = net.drop
    for i in range(20):
        control.mcast(1, b"m%d" % i)
    control.run_for(took)
    assert control.one_ring([1, 2, 3])
    assert "FAILED TO RECEIVE" not in control.log_events(3)


# --------------------------------------------------------------------------- (9) partition/merge


def test_partition_forms_two_rings_and_healing_merges_them() -> None:
    """A split gives two rings; after healing, one ring, with transitional then regular
    configurations and the right left/joined lists at every node."""
    nodes = [1, 2, 3, 4]
    net = formed(nodes, config=TotemConfig(token=1000))
    net.run_for(SECOND)
    whole = net.cores[1].ring_id
    split_at = net.now
    net.cut([1, 2], [3, 4])
    net.run_until(lambda: net.one_ring([1, 2]) and net.one_ring([3, 4]))
    left_ring, right_ring = net.cores[1].ring_id, net.cores[3].ring_id
    assert (left_ring.rep, right_ring.rep) == (1, 3)
    for side, other in (((1, 2), (3, 4)), ((3, 4), (1, 2))):
        for node in side:
            trans, reg = net.confs(node, split_at)
            assert (trans.kind, trans.members, trans.left, trans.joined) == (
                ConfKind.TRANSITIONAL,
                side,
                other,
                (),
            )
            assert (reg.kind, reg.members, reg.left, reg.joined) == (
                ConfKind.REGULAR,
                side,
                other,
                (),
            )
            assert trans.previous_ring_id == reg.previous_ring_id == whole
    net.mcast(1, b"left side")
    net.mcast(4, b"right side")
    net.run_for(SECOND)
    assert net.delivered_everywhere(b"left side", [1, 2])
    assert not any(b"left side" in net.payloads(n) for n in (3, 4))

    healed_at = net.now
    net.blocked.clear()
    took = net.run_until(net.one_ring)
    merged = net.cores[1].ring_id
    assert took < 2 * SECOND  # merge detection, not a timeout
    assert merged.seq > max(left_ring.seq, right_ring.seq)
    for side, other, old in (((1, 2), (3, 4), left_ring), ((3, 4), (1, 2), right_ring)):
        for node in side:
            trans, reg = net.confs(node, healed_at)
            assert (trans.kind, trans.members, trans.left, trans.joined) == (
                ConfKind.TRANSITIONAL,
                side,
                (),
                (),
            )
            assert (reg.kind, reg.members, reg.left, reg.joined) == (
                ConfKind.REGULAR,
                (1, 2, 3, 4),
                (),
                other,
            )
            assert trans.ring_id == reg.ring_id == merged
            assert trans.previous_ring_id == reg.previous_ring_id == old
    assert sum(net.cores[n].stats["merge_detected"] for n in nodes) >= 1


# --------------------------------------------------------------------------- (10) ring id store


@pytest.mark.parametrize("variant", ["correct", "reuse_ring_id"])
def test_restarted_node_never_reuses_a_ring_id(variant: str) -> None:
    """A node restarted with its ring store only installs rings with a higher seq than
    before; the reuse_ring_id variant forgets the store and installs an old id again."""
    net = formed([1, 2, 3], variant=variant)
    net.run_for(SECOND)
    before = [c.ring_id for c in net.confs(3)]
    assert net.stores[3].ring_seq == max(r.seq for r in before)
    restart_at = net.now
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]))
    net.add(3)  # same MemoryRingStore
    net.run_until(net.one_ring)
    after = [c.ring_id for c in net.confs(3, restart_at)]
    if variant == "correct":
        assert min(r.seq for r in after) > max(r.seq for r in before)
        assert str(after[0]) == "3.c"  # its singleton ring: stored 8 + 4
    else:
        assert set(after) & set(before)  # 3.4 again
        assert str(after[0]) == "3.4"


def test_ring_store_is_loaded_at_start_and_saved_at_commit() -> None:
    """A fresh node with a store holding 40 forms ring seq 44 and stores it."""
    store = MemoryRingStore(40)
    net = Net()
    net.add(5, store=store)
    net.run_until(lambda: net.cores[5].state is MembState.OPERATIONAL)
    assert net.cores[5].ring_id == RingId(seq=44, rep=5)
    assert store.ring_seq == 44


def test_single_node_restart_never_reuses_its_ring_id() -> None:
    """A lone node restarted twice gets 1.4, 1.8, 1.c."""
    net = formed([1])
    ids = [str(net.cores[1].ring_id)]
    for _ in range(2):
        net.crash(1)
        net.add(1)
        net.run_until(net.one_ring)
        ids.append(str(net.cores[1].ring_id))
    assert ids == ["1.4", "1.8", "1.c"]


# --------------------------------------------------------------------------- (11) conf changes


def transitions(
    net: Net, node: int, since: int
) -> list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    return [(c.kind.value, c.members, c.left, c.joined) for c in net.confs(node, since)]


def test_configuration_changes_on_join() -> None:
    """A node joining a ring: old members see trans(old) then reg(all) joined=[new]."""
    net = formed([1, 2])
    net.run_for(SECOND)
    since = net.now
    net.add(3)
    net.run_until(net.one_ring)
    for node in (1, 2):
        assert transitions(net, node, since) == [
            ("transitional", (1, 2), (), ()),
            ("regular", (1, 2, 3), (), (3,)),
        ]
    # The newcomer first formed its own singleton ring, then merged.
    assert transitions(net, 3, since) == [
        ("regular", (3,), (), (3,)),
        ("transitional", (3,), (), ()),
        ("regular", (1, 2, 3), (), (1, 2)),
    ]
    first = net.confs(3, since)[0]
    assert first.previous_ring_id is None


def test_configuration_changes_on_leave_and_crash() -> None:
    """Leave and crash both give trans(survivors, left=[gone]) then reg(survivors)."""
    net = formed([1, 2, 3, 4])
    since = net.now
    net.leave(4)
    net.run_until(lambda: net.one_ring([1, 2, 3]))
    for node in (1, 2, 3):
        assert transitions(net, node, since) == [
            ("transitional", (1, 2, 3), (4,), ()),
            ("regular", (1, 2, 3), (4,), ()),
        ]
    since = net.now
    net.crash(2)
    net.run_until(lambda: net.one_ring([1, 3]))
    for node in (1, 3):
        assert transitions(net, node, since) == [
            ("transitional", (1, 3), (2,), ()),
            ("regular", (1, 3), (2,), ()),
        ]


def test_transitional_always_precedes_its_regular_configuration() -> None:
    """At every node each transitional configuration is followed by the regular one of the
    same ring, and each regular one names the previous regular ring."""
    net = formed([1, 2, 3, 4])
    net.leave(4)
    net.run_until(lambda: net.one_ring([1, 2, 3]))
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]))
    net.add(3)
    net.run_until(net.one_ring)
    for node in (1, 2):
        confs = net.confs(node)
        previous = None
        for i, conf in enumerate(confs):
            assert conf.previous_ring_id == previous
            if conf.kind is ConfKind.TRANSITIONAL:
                following = confs[i + 1]
                assert following.kind is ConfKind.REGULAR
                assert following.ring_id == conf.ring_id
                assert set(conf.members) <= set(following.members)
            else:
                previous = conf.ring_id


def test_messages_of_the_old_ring_come_before_the_new_configuration() -> None:
    """Messages sent before a leave are delivered by every survivor before the
    transitional configuration (EVS: same messages, same place)."""
    net = formed([1, 2, 3])
    for i in range(10):
        net.mcast(1 + i % 3, b"x%d" % i)
    net.run_for(1 * MS)  # some are in flight when 3 leaves
    net.leave(3)
    net.run_until(lambda: net.one_ring([1, 2]))
    net.run_for(100 * MS)
    views = []
    for node in (1, 2):
        events = [e for _t, e in net.timeline[node]]
        cut = next(
            i for i, e in enumerate(events) if isinstance(e, ConfigurationChange) and e.left == (3,)
        )
        views.append([e.payload for e in events[:cut] if isinstance(e, Delivered)])
    assert views[0] == views[1]


# --------------------------------------------------------------------------- (12) hold


def idle_ring() -> Net:
    """Three nodes, formed, then idle long enough for the representative to hold."""
    net = formed([1, 2, 3])
    net.run_for(2 * SECOND)
    return net


def test_idle_ring_representative_holds_the_token() -> None:
    """An idle ring passes a handful of tokens per second (the rep holds it for `hold` ms);
    the same ring with traffic passes thousands."""
    net = idle_ring()
    since = net.now
    net.run_for(SECOND)
    idle = len(net.packets(MessageType.TOKEN, since))
    hold_ms = net.cores[1].timers.hold
    assert 1 <= idle <= 3 * (1000 // hold_ms + 2)
    since = net.now
    for i in range(1000):
        net.mcast(2, b"%d" % i)
        net.run_for(MS)
    busy = len(net.packets(MessageType.TOKEN, since))
    assert busy > 100 * idle


@pytest.mark.parametrize("sender", [2, 1])
def test_held_token_is_released_at_once_for_a_new_message(sender: int) -> None:
    """While the rep holds the token, an mcast (HOLD_CANCEL from another node) is
    delivered everywhere within a few ms, not after the hold timer."""
    net = idle_ring()
    mark = net.now
    net.run_until(
        lambda: any(target == 1 for _t, _s, target, _d in net.packets(MessageType.TOKEN, mark))
    )
    net.run_for(2 * MS)
    assert not net.packets(MessageType.TOKEN, net.now - 1 * MS)  # the rep holds it
    since = net.now - 1
    net.mcast(sender, b"wake up")
    took = net.run_until(lambda: net.delivered_everywhere(b"wake up"))
    assert took < 5 * MS  # hold is 685 ms
    cancels = net.packets(MessageType.HOLD_CANCEL, since)
    assert [source for _t, source, _target, _d in cancels] == ([2] if sender == 2 else [])


# --------------------------------------------------------------------------- (13) errors


def make_core(node_id: int = 1, **kwargs: object) -> TotemCore:
    return TotemCore(node_id, rng=random.Random(0), **kwargs)  # type: ignore[arg-type]


def test_mcast_larger_than_max_payload_raises() -> None:
    """A payload over max_payload raises MessageTooLarge; exactly max_payload is fine."""
    core = make_core(max_payload=100)
    core.mcast(bytes(100))
    with pytest.raises(MessageTooLarge, match="101 bytes"):
        core.mcast(bytes(101))
    default = make_core()
    assert default.max_payload == MAX_PAYLOAD
    with pytest.raises(MessageTooLarge):
        default.mcast(bytes(MAX_PAYLOAD + 1))
    assert issubclass(MessageTooLarge, TotemError)


def test_more_than_queue_max_waiting_raises_queue_full() -> None:
    """QUEUE_MAX messages may wait; the next one raises QueueFull (try again later)."""
    core = make_core()
    for _ in range(QUEUE_MAX):
        core.mcast(b"")
    assert core.pending == QUEUE_MAX
    with pytest.raises(QueueFull):
        core.mcast(b"")
    assert issubclass(QueueFull, TotemError)


def test_start_twice_raises() -> None:
    """start() may be called once."""
    core = make_core()
    core.start(0)
    with pytest.raises(TotemError, match="already started"):
        core.start(1)


@pytest.mark.parametrize("node_id", [0, -1, 2**32, True, "1", 1.0])
def test_bad_node_id_raises(node_id: object) -> None:
    """A node id must be an integer 1..2^32-1."""
    with pytest.raises(TotemError, match="node id"):
        make_core(node_id)  # type: ignore[arg-type]


def test_unknown_variant_raises() -> None:
    """Only the known protocol variants can be chosen."""
    with pytest.raises(TotemError, match="variant"):
        make_core(variant="fast")


def test_mcast_with_a_custom_source_raises() -> None:
    """A core fed by a MessageSource does not take mcast() calls."""

    class Source:
        def take(self, max_count: int, max_bytes: int) -> list[tuple[bytes, Guarantee]]:
            return []

        def pending(self) -> int:
            return 0

    core = make_core(source=Source())
    with pytest.raises(TotemError, match="MessageSource"):
        core.mcast(b"x")


def test_input_before_start_is_ignored() -> None:
    """A core that has not started ignores packets and has no timers."""
    core = make_core()
    core.receive(encode_join(Join(2, 4, frozenset({2}), frozenset())), 0)
    assert not core.drain()
    assert core.next_deadline() is None


# --------------------------------------------------------------------------- (14) fuzz


def snapshots_by_state() -> tuple[dict[MembState, TotemCore], list[bytes]]:
    """Copies of node cores caught in every state, and every packet the run sent."""
    snaps: dict[MembState, TotemCore] = {}
    net = Net([1, 2, 3], config=TotemConfig(token=300), seed=5)
    net.set_loss(0.05)

    def grab() -> None:
        for core in net.cores.values():
            if core.state not in snaps:
                snaps[core.state] = copy.deepcopy(core)

    end = 6 * SECOND
    steps = 0
    while net.step(end):
        grab()
        steps += 1
        if steps % 5 == 0 and net.cores[2].state is MembState.OPERATIONAL:
            net.mcast(2, bytes(steps % 50), SAFE if steps % 2 else AGREED)
        if steps == 3000:
            net.cut([1], [2, 3])
        if steps == 5000:
            net.blocked.clear()
    net.set_loss(0.0)
    net.run_until(net.one_ring)
    net.run_for(2 * SECOND)  # idle: the representative holds the token
    net.mcast(2, b"wake")  # HOLD_CANCEL
    net.run_for(SECOND)
    leaver = copy.deepcopy(net.cores[3])
    leaver.leave(net.now)
    corpus = [data for _t, _s, _d, data in net.sent]
    corpus += [packet.data for packet in leaver.drain().packets]  # LEAVE
    snaps[MembState.STOPPED] = leaver
    return snaps, corpus


SNAPSHOTS, CORPUS = snapshots_by_state()
CORPUS_KINDS = {kind(data) for data in CORPUS}
EXTREME_U32 = [0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
EXTREME_U64 = [0, 4, 2**62, 2**63, 2**64 - 5, 2**64 - 1]


def test_fuzz_snapshots_cover_every_state_and_message_type() -> None:
    """The fuzz below starts from cores in all five states and mutates every packet type."""
    assert set(SNAPSHOTS) == set(MembState)
    assert set(MessageType) == CORPUS_KINDS


def run_garbage(core: TotemCore, packets: list[bytes], step_ns: int = 300_000) -> None:
    """Feed packets, then let the core's timers run for a while; nothing may raise."""
    now = core._now
    for data in packets:
        now += step_ns
        core.receive(data, now)
        core.handle_timeouts(now)
        core.drain()
    for _ in range(500):
        deadline = core.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        core.handle_timeouts(now)
        out = core.drain()
        for packet in out.packets:  # our own unicasts to ourselves, e.g. the commit token
            if packet.target == core.node_id:
                core.receive(packet.data, now)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """A recorded packet, mutated: byte flips, cuts, insertions, 32-bit field stomps."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "stomp"]))
        if op == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "stomp" and len(data) >= 4:
            at = draw(st.integers(0, len(data) - 4))
            struct.pack_into(">I", data, at, draw(st.sampled_from(EXTREME_U32)))
    return bytes(data)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A recorded packet decoded, one field set to an extreme value, encoded again:
    well-formed messages a broken or malicious peer could send."""
    while True:
        message, target = decode_message_untrusted(draw(st.sampled_from(CORPUS)))
        if not isinstance(message, Mcast) or not message.encapsulated:
            break
    u32 = st.sampled_from(EXTREME_U32)
    u64 = st.sampled_from(EXTREME_U64)
    if isinstance(message, Token):
        field = draw(
            st.sampled_from(
                [
                    "token_seq",
                    "seq",
                    "aru",
                    "aru_addr",
                    "backlog",
                    "fcc",
                    "recovery_pending",
                    "rotation_min_aru",
                    "safe_aru",
                    "idle_rotations",
                ]
            )
        )
        setattr(message, field, draw(u32))
        if draw(st.booleans()):
            message.rtr = draw(st.lists(u32.filter(bool), max_size=5))
        return encode_token(message, target)
    if isinstance(message, CommitToken):
        what = draw(st.sampled_from(["token_seq", "ring", "entry", "old_ring", "round"]))
        entry = draw(st.sampled_from(message.entries))
        if what == "token_seq":
            message.token_seq = draw(u32)
        elif what == "ring":
            message.ring_id = RingId(draw(u64), message.ring_id.rep)
        elif what == "entry":
            setattr(
                entry, draw(st.sampled_from(["aru", "high_delivered", "high_received"])), draw(u32)
            )
        elif what == "old_ring":
            entry.old_ring_id = RingId(draw(u64), draw(u32))
            entry.filled = draw(st.booleans())
        else:
            message.round = 3 - message.round
        return encode_commit(message, target)
    if isinstance(message, Join):
        nodes = st.frozensets(st.integers(1, 4), max_size=4)
        return encode_join(Join(message.sender, draw(u64), draw(nodes), draw(nodes)))
    if isinstance(message, Mcast):
        return encode_mcast(
            Mcast(
                message.sender,
                RingId(
                    draw(st.sampled_from([message.ring_id.seq, *EXTREME_U64])), message.ring_id.rep
                ),
                draw(u32.filter(bool)),
                draw(st.sampled_from(Guarantee)),
                message.payload,
            )
        )
    assert isinstance(message, RingMessage)
    return encode_ring_message(message.type, message.sender, RingId(draw(u64), draw(u32)))


FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("state", list(MembState), ids=lambda s: s.name)
@FUZZ_SETTINGS
@given(data=st.lists(st.binary(max_size=120), min_size=1, max_size=8))
def test_fuzz_random_bytes_are_counted_and_dropped(state: MembState, data: list[bytes]) -> None:
    """Random datagrams never raise out of receive(); undecodable ones are counted."""
    core = copy.deepcopy(SNAPSHOTS[state])
    before = core.stats["malformed"]
    undecodable = 0
    for packet in data:
        try:
            decode_message_untrusted(packet)
        except Exception:
            undecodable += 1
    run_garbage(core, data)
    if state is MembState.STOPPED:
        assert core.stats["malformed"] == before  # a stopped node ignores everything
    else:
        assert core.stats["malformed"] >= before + undecodable


@pytest.mark.parametrize("state", list(MembState), ids=lambda s: s.name)
@FUZZ_SETTINGS
@given(data=st.lists(mutations(), min_size=1, max_size=8))
def test_fuzz_mutated_packets_never_raise(state: MembState, data: list[bytes]) -> None:
    """Mutations of real packets never raise out of the core, in any state."""
    run_garbage(copy.deepcopy(SNAPSHOTS[state]), data)


@pytest.mark.parametrize("state", list(MembState), ids=lambda s: s.name)
@FUZZ_SETTINGS
@given(data=st.lists(hostile_messages(), min_size=1, max_size=6))
def test_fuzz_well_formed_hostile_messages_never_raise(state: MembState, data: list[bytes]) -> None:
    """Well-formed messages with extreme field values never raise out of the core."""
    run_garbage(copy.deepcopy(SNAPSHOTS[state]), data)


def last_packet_to(net: Net, node: int, mtype: MessageType) -> bytes:
    """The last packet of type ``mtype`` that ``node`` received."""
    return next(data for _t, data in reversed(net.received[node]) if kind(data) == mtype)


@pytest.mark.parametrize("field", ["token_seq", "fcc", "backlog", "idle_rotations"])
def test_token_counters_at_the_wire_limit_renew_the_ring(field: str) -> None:
    """A token whose 32-bit counters reach their limit (a very long-lived ring, or a
    forged token) makes the node start a new ring instead of overflowing the encoder."""
    net = formed([1, 2, 3])
    net.run_for(SECOND)
    old = net.cores[1].ring_id
    token, _target = decode_message_untrusted(last_packet_to(net, 2, MessageType.TOKEN))
    assert isinstance(token, Token)
    token.token_seq += 1  # the next token, not a duplicate
    setattr(token, field, 2**32 - 1)
    net.inject(2, encode_token(token, 2))
    assert "token counters near their limit; forming a new ring" in net.log_events(2)
    net.run_until(lambda: net.one_ring() and net.cores[1].ring_id.seq > old.seq)
    net.mcast(3, b"after renewal")
    net.run_until(lambda: net.delivered_everywhere(b"after renewal"))


def test_join_with_an_absurd_ring_seq_is_counted_and_ignored() -> None:
    """A join claiming ring seq 2^64-1 (which would overflow the next ring id) is dropped
    as malformed; the ring is not disturbed."""
    net = formed([1, 2, 3])
    ring = net.cores[1].ring_id
    net.inject(1, encode_join(Join(2, 2**64 - 1, frozenset({1, 2, 3}), frozenset())))
    assert net.cores[1].stats["malformed"] == 1
    net.mcast(1, b"still here")
    net.run_until(lambda: net.delivered_everywhere(b"still here"))
    assert all(net.cores[n].ring_id == ring for n in (1, 2, 3))


def test_commit_token_with_an_absurd_token_seq_is_ignored() -> None:
    """A commit token whose token_seq would overflow when passed on is dropped."""
    net = formed([1, 2])
    net.crash(2)
    net.run_until(lambda: net.cores[1].state is MembState.GATHER)
    commit, _ = decode_message_untrusted(last_packet_to(net, 1, MessageType.COMMIT))
    assert isinstance(commit, CommitToken)
    commit.token_seq = 2**32 - 1
    commit.ring_id = RingId(commit.ring_id.seq + 100, 1)
    for entry in commit.entries:
        entry.filled = False
    before = net.cores[1].stats["malformed"]
    net.inject(1, encode_commit(commit, 1))
    assert net.cores[1].stats["malformed"] == before + 1
    net.run_until(lambda: net.one_ring([1]))


@pytest.mark.parametrize("round_", [1, 2])
def test_commit_token_with_a_rewritten_own_entry_is_ignored(round_: int) -> None:
    """In COMMIT, a commit token whose entry for us is not what we wrote (corrupt or
    forged old ring ids) is ignored instead of crashing recovery; the ring still forms."""
    net = formed([1, 2, 3])
    net.leave(3)
    net.run_until(lambda: net.cores[2].state is MembState.COMMIT)
    assert net.cores[1].state is MembState.COMMIT  # 2's commit token is on its way to 1
    sent = [data for _t, s, _d, data in net.sent if s == 2 and kind(data) == MessageType.COMMIT]
    commit, _ = decode_message_untrusted(sent[-1])
    assert isinstance(commit, CommitToken)
    for entry in commit.entries:
        entry.filled = True
        entry.old_ring_id = RingId(999_999, 77)
    commit.round = round_
    node = 1 if round_ == 1 else 2  # where that round's commit token goes next
    net.inject(node, encode_commit(commit, node))
    assert net.cores[node].state is MembState.COMMIT
    net.run_until(lambda: net.one_ring([1, 2]))


def test_garbage_does_not_disturb_a_working_ring() -> None:
    """A ring keeps delivering while every node is fed random bytes between real packets."""
    net = formed([1, 2, 3])
    rng = random.Random(9)
    for i in range(50):
        net.mcast(1 + i % 3, b"real %d" % i)
        for node in (1, 2, 3):
            net.inject(node, rng.randbytes(rng.randrange(0, 60)))
        net.run_for(rng.randrange(0, 3 * MS))
    net.run_until(lambda: all(len(net.payloads(n)) == 50 for n in (1, 2, 3)))
    assert net.payloads(1) == net.payloads(2) == net.payloads(3)
    assert all(net.cores[n].stats["malformed"] > 0 for n in (1, 2, 3))
    assert all(net.cores[n].stats["configurations"] == 2 for n in (1, 2, 3))


# --------------------------------------------------------------------------- (15) determinism


def scripted_run(seed: int) -> Net:
    """Loss, messages, a crash and a restart: everything drawn from ``seed``."""
    net = Net([1, 2, 3, 4], config=TotemConfig(token=500), seed=seed)
    net.set_loss(0.1)
    rng = random.Random(seed)
    for step in range(300):
        node = rng.choice(sorted(net.cores))
        net.mcast(node, rng.randbytes(rng.randrange(1, 40)), SAFE if rng.random() < 0.3 else AGREED)
        net.run_for(rng.randrange(0, 20 * MS))
        if step == 100:
            net.crash(4)
        if step == 200:
            net.add(4)
    net.run_for(10 * SECOND)
    return net


def test_same_inputs_give_byte_identical_packets() -> None:
    """Two runs of the same seeded scenario send the same bytes at the same times and
    deliver the same events; another seed differs."""
    first, second = scripted_run(11), scripted_run(11)
    assert len(first.sent) > 500
    assert first.sent == second.sent
    assert first.timeline == second.timeline
    assert first.sent != scripted_run(12).sent
