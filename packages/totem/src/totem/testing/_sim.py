"""The deterministic simulator: Totem nodes on a faulty network, in virtual time.

One seed drives a whole run (FoundationDB / TigerBeetle VOPR style). The seed draws a
"swarm" scenario — each fault kind is on or off, with an intensity, per seed — then the
run has a *safety* phase under those faults and a *liveness* phase with the network
healed and every node up. The recorded :class:`History` feeds the EVS checkers.

Fault kinds (:class:`Fault`; the values are the names ``pycorosync-sim --faults`` takes):

* ``loss``, ``duplicate``, ``reorder`` (delay jitter): per packet, on every path
  (``packets_reordered`` counts packets that overtook a later one on their path);
* ``partition``: the nodes split into 2 or 3 (non-empty) groups that cannot hear each
  other, for 0.5-6 s, then heal (merges follow);
* ``asymmetric``: partitions that block a random quarter of the *directed* pairs
  instead, so A hears B while B does not hear A (a new partition of either kind
  replaces the one in force);
* ``crash``: a node stops dead and restarts 0.5-8 s later as a new incarnation (its
  ring id store survives, so it must not reuse a ring id);
* ``leave``: a node leaves cleanly through ``TotemCore.leave()`` (the others reform
  without waiting for a token timeout), stops, and starts again 0.5-8 s later; the
  history records the end of that incarnation like a crash;
* ``pause``: a node's process stops for 0.1-3 s and then handles everything at once
  (its clock jumps);
* ``deaf``: for 1-6 s a node receives no multicast (broadcast) packet while unicasts
  (the token, the commit token) still reach it, so its aru stops while the token keeps
  turning: the FAILED TO RECEIVE rule must take it out of the ring.

The simulator runs Totem with a 1000 ms token (consensus 1200 ms) and
``fail_recv_const`` 250 instead of corosync's 2500 rotations, so that runs of a few
tens of simulated seconds reach timeouts and FAILED TO RECEIVE.

Determinism: all randomness comes from ``random.Random(seed)``-derived streams, events
are ordered by (time, sequence), and the trace hash covers every packet and every
application event, so a run replays exactly and running a seed twice must give the
same hash.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import heapq
import random
import struct
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable

import attrs

from totem._config import TotemConfig
from totem._events import ConfigurationChange, ConfKind, Delivered, Guarantee
from totem._srp import MembState, MemoryRingStore, TotemCore
from totem.testing._history import (
    Conf,
    ConfEvent,
    Crash,
    Deliver,
    History,
    Recover,
    Send,
    regular_conf_id,
    transitional_conf_id,
)

__all__ = ["FAULT_KINDS", "Fault", "SimConfig", "SimResult", "Simulation", "run_seed"]

_MS = 1_000_000
_SECOND = 1_000_000_000
_PAYLOAD = struct.Struct(">IQ")  # sender node, sender's message counter


class Fault(enum.Enum):
    LOSS = "loss"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    PARTITION = "partition"
    ASYMMETRIC = "asymmetric"
    CRASH = "crash"
    PAUSE = "pause"
    LEAVE = "leave"
    DEAF = "deaf"


FAULT_KINDS = frozenset(Fault)


@attrs.frozen(kw_only=True)
class SimConfig:
    """What a run simulates. Unset fault intensities are drawn from the seed."""

    nodes: int = 5
    faults: frozenset[Fault] = FAULT_KINDS
    safety_ns: int = 20 * _SECOND
    liveness_ns: int = 30 * _SECOND
    totem: TotemConfig = attrs.field(
        factory=lambda: TotemConfig(
            token=1000, consensus=1200, join=50, merge=200, fail_recv_const=250
        )
    )
    message_rate: float = 200.0  #: application messages per simulated second (all nodes)
    safe_fraction: float = 0.2  #: share of messages sent with SAFE delivery
    variant: str = "correct"


@attrs.frozen
class SimResult:
    seed: int
    config: SimConfig
    history: History
    trace_hash: str
    coverage: dict[str, int]
    trace_tail: tuple[str, ...]
    live_nodes: tuple[int, ...]
    sim_seconds: float


#: The intensities a seed draws from, per fault kind (swarm testing).
_FAULT_DRAWS: tuple[tuple[Fault, str, tuple[float, ...]], ...] = (
    (Fault.LOSS, "loss", (0.0, 0.01, 0.05, 0.1, 0.2)),
    (Fault.DUPLICATE, "duplicate", (0.0, 0.01, 0.05)),
    (Fault.REORDER, "jitter_ns", (0, 500_000, 5_000_000)),
    (Fault.PARTITION, "partition_rate", (0.0, 0.1, 0.3)),
    (Fault.ASYMMETRIC, "asymmetric_rate", (0.0, 0.1, 0.3)),
    (Fault.CRASH, "crash_rate", (0.0, 0.05, 0.15)),
    (Fault.PAUSE, "pause_rate", (0.0, 0.05, 0.2)),
    (Fault.LEAVE, "leave_rate", (0.0, 0.05, 0.15)),
    (Fault.DEAF, "deaf_rate", (0.0, 0.05, 0.15)),
)


@attrs.define
class _Scenario:
    """The fault parameters drawn for one seed (swarm testing)."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay_ns: int = 200_000
    jitter_ns: int = 0
    partition_rate: float = 0.0  #: partitions per simulated second
    asymmetric_rate: float = 0.0
    crash_rate: float = 0.0
    pause_rate: float = 0.0
    leave_rate: float = 0.0
    deaf_rate: float = 0.0

    @classmethod
    def draw(cls, rng: random.Random, faults: frozenset[Fault]) -> _Scenario:
        scenario = cls()
        scenario.delay_ns = rng.randint(50_000, 2_000_000)
        # One draw per enabled fault kind, always in this order: a seed's scenario
        # must not change when another kind is switched off.
        for fault, attribute, choices in _FAULT_DRAWS:
            if fault in faults:
                setattr(scenario, attribute, rng.choice(choices))
        return scenario


class _Node:
    __slots__ = ("core", "counter", "incarnation", "paused_until", "store", "up")

    def __init__(self, store: MemoryRingStore) -> None:
        self.store = store
        self.core: TotemCore | None = None
        self.up = False
        self.incarnation = 0
        self.counter = 0
        self.paused_until = 0


class Simulation:
    """One seeded run. ``run()`` executes it and returns a :class:`SimResult`."""

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        master = random.Random(seed)
        self._net_rng = random.Random(master.getrandbits(64))
        self._fault_rng = random.Random(master.getrandbits(64))
        self._load_rng = random.Random(master.getrandbits(64))
        self._node_seed = master.getrandbits(64)
        self.scenario = _Scenario.draw(random.Random(master.getrandbits(64)), self.config.faults)
        self.now = 0
        self.nodes = {n: _Node(MemoryRingStore()) for n in range(1, self.config.nodes + 1)}
        self.history = History()
        self.coverage: Counter[str] = Counter()
        self._queue: list[tuple[int, int, int, Callable[[], None]]] = []
        self._seq = 0
        self._blocked: set[tuple[int, int]] = set()
        self._partition_number = 0  # which partition is in force (a heal ends only its own)
        self._deaf_until: dict[int, int] = {}  # node -> end of its multicast deafness
        self._link_sent: Counter[tuple[int, int]] = Counter()  # packets per (source, target)
        self._link_seen: dict[tuple[int, int], int] = {}  # highest packet number received
        self._hash = hashlib.blake2b(digest_size=16)
        self._trace: deque[str] = deque(maxlen=60)
        self._healed = False
        self._retired_stats: Counter[str] = Counter()

    # ---------------------------------------------------------------- scheduling

    def _at(self, when: int, action: Callable[[], None], node: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, node, action))

    def _trace_line(self, node: int, text: str) -> None:
        core = self.nodes[node].core if node in self.nodes else None
        state = core.state.name[:4] if core is not None else "DOWN"
        ring = str(core.ring_id) if core is not None else "-"
        line = f"{self.now / _MS:12.3f}ms n{node:<3} {state:4} ring={ring:<8} {text}"
        self._trace.append(line)
        self._hash.update(line.encode())

    # ---------------------------------------------------------------- nodes

    def _start_node(self, node: int) -> None:
        state = self.nodes[node]
        state.incarnation += 1
        rng = random.Random(self._node_seed ^ (node << 20) ^ state.incarnation)
        state.core = TotemCore(
            node,
            config=self.config.totem,
            node_count=self.config.nodes,
            rng=rng,
            store=state.store,
            variant=self.config.variant,
        )
        state.up = True
        state.paused_until = 0
        if state.incarnation > 1:
            self.history.append(Recover(node, self.now))
            self.coverage["restarts"] += 1
        state.core.start(self.now)
        self._trace_line(node, "start")
        self._flush(node)

    def _crash_node(self, node: int, how: str = "CRASH") -> None:
        state = self.nodes[node]
        if not state.up:
            return
        assert state.core is not None
        for key, value in state.core.stats.items():
            self._retired_stats[key] += value
        state.up = False
        state.core = None
        self.history.append(Crash(node, self.now))
        self.coverage["crashes" if how == "CRASH" else "leaves"] += 1
        self._trace_line(node, how)

    def _flush(self, node: int) -> None:
        state = self.nodes[node]
        core = state.core
        if core is None:
            return
        out = core.drain()
        if not out:
            return
        originated = list(out.originated)
        for index, event in enumerate((*out.events, None)):
            while originated and originated[0][0] == index:
                record = originated.pop(0)[1]
                self.history.append(
                    Send(
                        node,
                        _decode_msg_id(record.payload),
                        record.payload,
                        record.guarantee is Guarantee.SAFE,
                        self.now,
                    )
                )
            if event is None:
                break
            if isinstance(event, Delivered):
                self.history.append(
                    Deliver(
                        node,
                        _decode_msg_id(event.payload),
                        event.sender,
                        event.payload,
                        event.guarantee is Guarantee.SAFE,
                        self.now,
                    )
                )
                self._hash.update(b"D%d:%d:%d" % (node, event.sender, event.seq))
            else:
                self._record_conf(node, event)
        for log in out.logs:
            if log.level in ("notice", "warning"):
                self._trace_line(node, log.event)
        for packet in out.packets:
            self._hash.update(b"P%d>%d:" % (node, packet.target))
            self._hash.update(packet.data)
            targets: Iterable[int] = (
                [n for n in self.nodes if n != node] if packet.target == 0 else [packet.target]
            )
            for target in targets:
                self._transmit(node, target, packet.data, packet.target == 0)

    def _record_conf(self, node: int, change: ConfigurationChange) -> None:
        if change.kind is ConfKind.REGULAR:
            conf_id = regular_conf_id(change.ring_id)
        else:
            conf_id = transitional_conf_id(change.previous_ring_id, change.ring_id)
            if change.left:
                self.coverage["transitional_with_departures"] += 1
        conf = Conf(conf_id, change.kind, frozenset(change.members))
        self.history.append(ConfEvent(node, conf, self.now))
        self._trace_line(
            node, f"conf {change.kind.value} {change.ring_id} members={list(change.members)}"
        )

    # ---------------------------------------------------------------- network

    def _transmit(self, source: int, target: int, data: bytes, multicast: bool) -> None:
        scenario = self.scenario
        rng = self._net_rng
        if (source, target) in self._blocked:
            self.coverage["packets_blocked"] += 1
            return
        if multicast and self._deaf_until.get(target, 0) > self.now:
            self.coverage["packets_deafened"] += 1
            return
        if scenario.loss and rng.random() < scenario.loss:
            self.coverage["packets_lost"] += 1
            return
        self._link_sent[source, target] += 1
        number = self._link_sent[source, target]
        copies = 1
        if scenario.duplicate and rng.random() < scenario.duplicate:
            copies = 2
            self.coverage["packets_duplicated"] += 1
        for _ in range(copies):
            delay = scenario.delay_ns
            if scenario.jitter_ns:
                delay += rng.randrange(scenario.jitter_ns)
            self._at(
                self.now + delay,
                functools.partial(self._deliver_packet, target, data, source, number),
                target,
            )

    def _deliver_packet(self, node: int, data: bytes, source: int, number: int) -> None:
        state = self.nodes[node]
        if not state.up or state.core is None:
            return
        if state.paused_until > self.now:
            # The process is paused: it reads its socket when it wakes up.
            self._at(
                state.paused_until,
                functools.partial(self._deliver_packet, node, data, source, number),
                node,
            )
            return
        if number < self._link_seen.get((source, node), 0):
            self.coverage["packets_reordered"] += 1
        else:
            self._link_seen[source, node] = number
        state.core.receive(data, self.now)
        self._flush(node)

    # ---------------------------------------------------------------- faults & load

    def _schedule_faults(self, end: int) -> None:
        scenario = self.scenario
        rng = self._fault_rng
        for rate, action in (
            (scenario.partition_rate, self._partition),
            (scenario.asymmetric_rate, self._asymmetric_partition),
            (scenario.crash_rate, self._crash_random),
            (scenario.pause_rate, self._pause_random),
            (scenario.leave_rate, self._leave_random),
            (scenario.deaf_rate, self._deafen_random),
        ):
            if not rate:
                continue
            when = self.now
            while True:
                when += int(rng.expovariate(rate) * _SECOND)
                if when >= end:
                    break
                self._at(when, action)

    def _partition(self) -> None:
        if self._healed or len(self.nodes) < 2:
            return
        rng = self._fault_rng
        nodes = sorted(self.nodes)
        groups = rng.randint(2, min(3, len(nodes)))
        assignment = {n: rng.randrange(groups) for n in nodes}
        if len(set(assignment.values())) == 1:  # everybody drew the same group
            assignment[nodes[-1]] = (assignment[nodes[-1]] + 1) % groups
        blocked = {(a, b) for a in nodes for b in nodes if assignment[a] != assignment[b]}
        self.coverage["partitions"] += 1
        self._start_partition(blocked, f"PARTITION {assignment}")

    def _asymmetric_partition(self) -> None:
        if self._healed or len(self.nodes) < 2:
            return
        rng = self._fault_rng
        nodes = sorted(self.nodes)
        pairs = [(a, b) for a in nodes for b in nodes if a != b]
        blocked = set(rng.sample(pairs, k=max(1, len(pairs) // 4)))
        self.coverage["asymmetric_partitions"] += 1
        self._start_partition(blocked, f"ASYMMETRIC PARTITION {sorted(blocked)}")

    def _start_partition(self, blocked: set[tuple[int, int]], text: str) -> None:
        self._blocked = blocked
        self._partition_number += 1
        self._trace_line(min(self.nodes), text)
        duration = int(self._fault_rng.uniform(0.5, 6.0) * _SECOND)
        self._at(
            self.now + duration, functools.partial(self._heal_partition, self._partition_number)
        )

    def _heal_partition(self, number: int) -> None:
        if self._blocked and number == self._partition_number:
            self._blocked = set()
            self._trace_line(min(self.nodes), "partition healed")

    def _crash_random(self) -> None:
        if self._healed:
            return
        rng = self._fault_rng
        up = [n for n, s in sorted(self.nodes.items()) if s.up]
        if len(up) <= 1:
            return
        node = rng.choice(up)
        self._crash_node(node)
        downtime = int(rng.uniform(0.5, 8.0) * _SECOND)
        self._at(self.now + downtime, lambda: self._restart_if_down(node), node)

    def _leave_random(self) -> None:
        if self._healed:
            return
        rng = self._fault_rng
        up = [n for n, s in sorted(self.nodes.items()) if s.up]
        if len(up) <= 1:
            return
        node = rng.choice(up)
        core = self.nodes[node].core
        assert core is not None
        core.leave(self.now)
        self._flush(node)  # the LEAVE messages go out, then the process exits
        self._crash_node(node, "LEAVE")
        downtime = int(rng.uniform(0.5, 8.0) * _SECOND)
        self._at(self.now + downtime, lambda: self._restart_if_down(node), node)

    def _deafen_random(self) -> None:
        if self._healed:
            return
        rng = self._fault_rng
        up = [n for n, s in sorted(self.nodes.items()) if s.up]
        if not up:
            return
        node = rng.choice(up)
        duration = int(rng.uniform(1.0, 6.0) * _SECOND)
        self._deaf_until[node] = max(self._deaf_until.get(node, 0), self.now + duration)
        self.coverage["deaf_periods"] += 1
        self._trace_line(node, f"DEAF to multicast for {duration / _MS:.0f}ms")

    def _restart_if_down(self, node: int) -> None:
        if not self.nodes[node].up:
            self._start_node(node)

    def _pause_random(self) -> None:
        if self._healed:
            return
        rng = self._fault_rng
        up = [n for n, s in sorted(self.nodes.items()) if s.up]
        if not up:
            return
        node = rng.choice(up)
        duration = int(rng.uniform(0.1, 3.0) * _SECOND)
        state = self.nodes[node]
        state.paused_until = max(state.paused_until, self.now + duration)
        self.coverage["pauses"] += 1
        self._trace_line(node, f"PAUSE {duration / _MS:.0f}ms (clock jump)")

    def _schedule_load(self, start: int, end: int) -> None:
        rate = self.config.message_rate
        if rate <= 0:
            return
        rng = self._load_rng
        when = start
        while True:
            when += int(rng.expovariate(rate / 8) * _SECOND)  # bursts of ~8 messages
            if when >= end:
                break
            self._at(when, self._burst)

    def _burst(self) -> None:
        rng = self._load_rng
        up = [  # a paused process sends nothing either
            n
            for n, s in sorted(self.nodes.items())
            if s.up and s.core is not None and s.paused_until <= self.now
        ]
        if not up:
            return
        node = rng.choice(up)
        for _ in range(rng.randint(1, 16)):
            self._send(node, rng.random() < self.config.safe_fraction)

    def _send(self, node: int, safe: bool) -> None:
        state = self.nodes[node]
        core = state.core
        if core is None or core.state is MembState.STOPPED:
            return
        state.counter += 1
        payload = _PAYLOAD.pack(node, state.counter) + bytes(self._load_rng.randrange(0, 64))
        try:
            core.mcast(payload, Guarantee.SAFE if safe else Guarantee.AGREED, self.now)
        except Exception:  # queue full: the application would retry later
            self.coverage["send_refused"] += 1
            return
        self._flush(node)

    # ---------------------------------------------------------------- main loop

    def _run_until(self, end: int) -> None:
        queue = self._queue
        nodes = self.nodes
        while True:
            next_event = queue[0][0] if queue else None
            next_timer: int | None = None
            timer_node = 0
            for node, state in nodes.items():
                if state.up and state.core is not None:
                    deadline = state.core.next_deadline()
                    if deadline is not None:
                        deadline = max(deadline, state.paused_until)
                        if next_timer is None or deadline < next_timer:
                            next_timer, timer_node = deadline, node
            if next_timer is not None and (next_event is None or next_timer < next_event):
                if next_timer > end:
                    break
                self.now = max(self.now, next_timer)
                core = nodes[timer_node].core
                assert core is not None
                core.handle_timeouts(self.now)
                self._flush(timer_node)
                continue
            if next_event is None or next_event > end:
                break
            when, _seq, _node, action = heapq.heappop(queue)
            self.now = max(self.now, when)
            action()
        self.now = end

    def run(self) -> SimResult:
        config = self.config
        for node in sorted(self.nodes):
            self._at(
                self._fault_rng.randrange(0, 500 * _MS), functools.partial(self._start_node, node)
            )
        safety_end = config.safety_ns
        self._schedule_faults(safety_end)
        self._schedule_load(0, safety_end)
        self._run_until(safety_end)
        # Liveness: heal the network, bring every node back, settle, send, settle.
        self._healed = True
        self._blocked.clear()
        self._deaf_until.clear()
        self.scenario.loss = 0.0  # healed: packets are no longer lost
        for node in sorted(self.nodes):  # a pause in progress ends on its own (<= 3 s)
            if not self.nodes[node].up:
                self._start_node(node)
        self._trace_line(min(self.nodes), "=== liveness phase: network healed, all nodes up ===")
        settle = config.liveness_ns // 2
        self._run_until(self.now + settle)
        for node in sorted(self.nodes):
            for _ in range(3):
                self._send(node, False)
            self._send(node, True)
        self._run_until(self.now + config.liveness_ns - settle)
        coverage = Counter(self.coverage)
        coverage.update(self._retired_stats)
        for state in self.nodes.values():
            if state.core is not None:
                coverage.update(state.core.stats)
        live = tuple(n for n, s in sorted(self.nodes.items()) if s.up)
        return SimResult(
            seed=self.seed,
            config=config,
            history=self.history,
            trace_hash=self._hash.hexdigest(),
            coverage=dict(sorted(coverage.items())),
            trace_tail=tuple(self._trace),
            live_nodes=live,
            sim_seconds=self.now / _SECOND,
        )


def _decode_msg_id(payload: bytes) -> tuple[int, int]:
    node, counter = _PAYLOAD.unpack_from(payload)
    return (node, counter)


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    """Run one seed of the simulation."""
    return Simulation(seed, config).run()


def live_nodes_of(result: SimResult) -> Collection[int]:
    return result.live_nodes
