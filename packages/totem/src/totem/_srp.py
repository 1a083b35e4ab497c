"""The Totem single-ring protocol: ordering and membership, as a sans-IO state machine.

One :class:`TotemCore` is one node. Inputs take ``now`` (integer nanoseconds):
``start``, ``mcast``, ``receive``, ``handle_timeouts``, ``leave``. Outputs are drained as
one :class:`Output` batch: packets to send (``target`` 0 = to every node), application
events (:class:`Delivered` and :class:`ConfigurationChange`, in the agreed order), and
log records. Randomness (``send_join`` jitter) comes from the injected ``random.Random``;
the ring sequence number is persisted through the injected :class:`RingStore`.

States (corosync's): OPERATIONAL, GATHER, COMMIT, RECOVERY::

    start ──> GATHER ──consensus──> COMMIT ──commit token twice around──> RECOVERY
                ^  ^                  │                                      │
                │  └──join/timeout────┘           old-ring messages re-sent, │
                │                                 transitional + regular conf│
                └─token loss, join, merge, leave, FAILED TO RECEIVE── OPERATIONAL <─┘

Theory of operation, briefly. In OPERATIONAL a token circulates over the members in
node id order. Its holder re-sends what others asked for (``rtr``), originates new
messages with ``seq = ++token.seq`` within the flow-control allowance, lowers
``token.aru`` to what it holds, and asks for what it misses. A message is delivered
(agreed order) once it and every lower seq are held. The token also carries the
minimum ``aru`` over one whole rotation (``rotation_min_aru``), which the
representative publishes as ``safe_aru``: everything up to it is held by every member,
which makes SAFE delivery and the end of recovery exact.

Membership: a node that loses the token (or hears a foreign ring, a join, or a leave)
enters GATHER and multicasts JOINs with its proc and failed sets until every live
member sent identical sets (consensus); the lowest id then sends the commit token twice
around (COMMIT, then RECOVERY). In RECOVERY each node re-sends, encapsulated in the new
ring, the old-ring messages some survivor of its old ring may lack; when every such
message is held by every member, each node installs: it delivers the rest of the old
ring's messages, the TRANSITIONAL configuration (old-ring survivors), the messages that
EVS allows after a hole, then the REGULAR configuration.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from totem._config import EffectiveConfig, TotemConfig
from totem._errors import MalformedMessage, MessageTooLarge, QueueFull, TotemError
from totem._events import ConfigurationChange, ConfKind, Delivered, Guarantee, RingId
from totem._wire import (
    MAX_RTR,
    CommitEntry,
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

__all__ = [
    "MAX_PAYLOAD",
    "LogRecord",
    "MembState",
    "MemoryRingStore",
    "MessageSource",
    "Output",
    "Packet",
    "RingStore",
    "TotemCore",
]

MAX_PAYLOAD = 65536 - 128  #: largest totem message payload (the packet must fit knet)

#: Protocol variants: the correct protocol and deliberately broken ones for checker tests.
VARIANTS = frozenset(
    {
        "correct",
        "deliver_across_hole",  # delivers old-ring messages after a hole from anyone
        "drop_transitional",  # never delivers the transitional configuration
        "skip_retransmission",  # never answers retransmit requests
        "reuse_ring_id",  # forgets the persisted ring seq across restarts
        "deliver_safe_early",  # delivers SAFE messages like AGREED ones
    }
)
QUEUE_MAX = 16384  #: messages in flight on a ring (corosync's sort queue size)
#: Token counters (token_seq, seq, fcc, backlog, ...) are u32 on the wire: a ring whose
#: token reaches this is renewed (a new ring restarts them at 0) long before they wrap.
_COUNTER_LIMIT = 1 << 31
#: Ring seqs are u64 and grow by 4 per ring: anything this high is garbage, and adopting
#: it would overflow the next ring id.
_RING_SEQ_LIMIT = 1 << 62
_MS = 1_000_000
_SELF_DELAY_NS = 1_000  # a message to ourselves is processed 1 µs later, never recursively


class MembState(enum.Enum):
    OPERATIONAL = 1
    GATHER = 2
    COMMIT = 3
    RECOVERY = 4
    STOPPED = 5  #: after leave()


class _Timer(enum.Enum):
    TOKEN_LOSS = "token_loss"  # noqa: S105
    TOKEN_RETRANSMIT = "token_retransmit"  # noqa: S105
    TOKEN_WARNING = "token_warning"  # noqa: S105
    HOLD = "hold"
    JOIN = "join"
    CONSENSUS = "consensus"
    MERGE_DETECT = "merge_detect"
    SELF = "self"


@attrs.frozen(slots=True)
class Packet:
    """A message to send: to node ``target``, or to every node when ``target`` is 0."""

    target: int
    data: bytes


@attrs.frozen(slots=True)
class LogRecord:
    level: str  #: "error", "warning", "notice", "info", "debug"
    event: str
    fields: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Output:
    packets: tuple[Packet, ...] = ()
    events: tuple[Delivered | ConfigurationChange, ...] = ()
    logs: tuple[LogRecord, ...] = ()
    #: Messages this node originated (assigned a seq on the ring) since the last drain,
    #: as ``(position, record)``: ``position`` is how many of ``events`` came before it.
    #: This is what the EVS history calls a send.
    originated: tuple[tuple[int, Delivered], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.packets or self.events or self.logs or self.originated)


class RingStore(Protocol):
    """Where the highest ring sequence number survives a restart (corosync's
    ``ringid_<nodeid>`` file), so that a restarted node never reuses a ring id."""

    def load(self) -> int: ...

    def save(self, ring_seq: int) -> None: ...


class MemoryRingStore:
    """A ring store in memory (for the simulator: it survives simulated crashes)."""

    def __init__(self, ring_seq: int = 0) -> None:
        self.ring_seq = ring_seq

    def load(self) -> int:
        return self.ring_seq

    def save(self, ring_seq: int) -> None:
        self.ring_seq = ring_seq


class MessageSource(Protocol):
    """Where the core takes new messages from when it holds the token."""

    def take(self, max_count: int, max_bytes: int) -> list[tuple[bytes, Guarantee]]: ...

    def pending(self) -> int: ...


class _FifoSource:
    def __init__(self) -> None:
        self.queue: deque[tuple[bytes, Guarantee]] = deque()

    def take(self, max_count: int, max_bytes: int) -> list[tuple[bytes, Guarantee]]:
        queue = self.queue
        return [queue.popleft() for _ in range(min(max_count, len(queue)))]

    def pending(self) -> int:
        return len(self.queue)


class _Ring:
    """Receive state of one ring: the messages held, aru, high received, delivered."""

    __slots__ = (
        "aru",
        "freed",
        "high_delivered",
        "high_received",
        "members",
        "messages",
        "missing",
        "ring_id",
        "safe_aru",
    )

    def __init__(self, ring_id: RingId, members: tuple[int, ...]) -> None:
        self.ring_id = ring_id
        self.members = members
        self.messages: dict[int, Mcast] = {}
        self.aru = 0
        self.high_received = 0
        self.high_delivered = 0
        self.freed = 0  # every seq up to here was delivered and dropped from memory
        self.safe_aru = 0  # every member is known to hold every seq up to here
        self.missing: dict[int, int] = {}  # seq -> token receipts it has been missing

    def store(self, message: Mcast) -> bool:
        """Keep a message; False if it is a duplicate or outside the window."""
        seq = message.seq
        if seq <= self.freed or seq in self.messages or seq > self.aru + QUEUE_MAX:
            return False
        self.messages[seq] = message
        self.high_received = max(self.high_received, seq)
        self.missing.pop(seq, None)
        aru = self.aru
        while aru + 1 in self.messages:
            aru += 1
        self.aru = aru
        return True

    def holds(self, seq: int) -> bool:
        return seq <= self.freed or seq in self.messages


class TotemCore:
    """One Totem node. See the module docstring for the protocol."""

    def __init__(
        self,
        node_id: int,
        *,
        config: TotemConfig | None = None,
        node_count: int = 2,
        rng: random.Random,
        store: RingStore | None = None,
        source: MessageSource | None = None,
        max_payload: int = MAX_PAYLOAD,
        variant: str = "correct",
    ) -> None:
        if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 < node_id < 1 << 32:
            raise TotemError(f"node id must be an integer 1..2^32-1, got {node_id!r}")
        self.node_id = node_id
        self.config = config or TotemConfig()
        self.timers: EffectiveConfig = self.config.effective(node_count)
        self._rng = rng
        self._store = store or MemoryRingStore()
        self._fifo = _FifoSource()
        self._source: MessageSource = source or self._fifo
        self.max_payload = max_payload
        if variant not in VARIANTS:
            raise TotemError(f"unknown protocol variant {variant!r}; known: {sorted(VARIANTS)}")
        # Deliberately broken variants exist only so tests can prove the EVS checkers
        # catch them (see totem.testing); "correct" is the protocol.
        self._variant = variant

        self.state = MembState.GATHER
        self._started = False
        self._max_ring_seq = 0 if variant == "reuse_ring_id" else self._store.load()
        self.ring_id = RingId(self._max_ring_seq, node_id)
        self.members: tuple[int, ...] = (node_id,)
        self._ring = _Ring(self.ring_id, self.members)
        self._had_regular = False

        # GATHER / COMMIT
        self._proc: set[int] = {node_id}
        self._failed: set[int] = set()
        self._consensus: set[int] = set()
        self._commit_ring_id: RingId | None = None
        self._last_commit_passed: tuple[RingId, int] | None = None  # (ring id, token_seq)
        self._failed_to_receive = False

        # RECOVERY
        self._old_ring: _Ring | None = None
        self._old_members: tuple[int, ...] = ()
        self._trans_members: tuple[int, ...] = ()
        self._recovery_queue: deque[Mcast] = deque()
        self._install_seq: int | None = None
        self._token_started = False

        # token handling
        self._last_token_seq = -1
        self._last_token: tuple[int, bytes] | None = None
        self._held_token: Token | None = None
        self._my_last_fcc = 0
        self._my_last_backlog = 0
        self._my_last_recovery = 0
        self._last_token_aru = -1
        self._aru_count = 0
        self._rep_last_seq = -1
        self._seen_idle = False
        self._hold_cancel_sent = False

        self._deadlines: dict[_Timer, int] = {}
        self._self_inbox: deque[bytes] = deque()
        self._now = 0
        self._packets: list[Packet] = []
        self._events: list[Delivered | ConfigurationChange] = []
        self._logs: list[LogRecord] = []
        self._originated: list[tuple[int, Delivered]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "tokens_received",
                "messages_originated",
                "messages_delivered",
                "retransmits_sent",
                "retransmit_requests",
                "recovery_messages_sent",
                "gather_entered",
                "token_lost",
                "merge_detected",
                "commit_tokens",
                "configurations",
                "transitional_with_gaps",
                "failed_to_receive",
                "leaves_received",
                "malformed",
                "foreign_ignored",
            ),
            0,
        )

    # ================================================================ public API

    def start(self, now: int) -> None:
        """Begin: enter GATHER to find the other nodes (a singleton ring forms if
        nobody answers within consensus)."""
        if self._started:
            raise TotemError("already started")
        self._started = True
        self._now = now
        self._enter_gather(now, "startup")
        self._check_consensus(now)  # alone for now: a singleton ring, merged later

    def reconfigure(self, config: TotemConfig, node_count: int) -> EffectiveConfig:
        """Change the totem options at runtime (corosync's reload of ``totem.*``): every
        timer takes its new value the next time it is armed; window and message limits
        apply from the next token. Returns the new effective values."""
        timers = config.effective(node_count)  # raises ConfigError before changing anything
        self.config = config
        self.timers = timers
        return timers

    def mcast(self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, now: int = 0) -> None:
        """Queue ``payload`` for ordered delivery to every member (and to us)."""
        if self._source is not self._fifo:
            raise TotemError("this core takes its messages from a custom MessageSource")
        if self.state is MembState.STOPPED:
            raise TotemError("this node has left the ring")
        if len(payload) > self.max_payload:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes exceeds the maximum of {self.max_payload}"
            )
        if len(self._fifo.queue) >= QUEUE_MAX:
            raise QueueFull(f"{QUEUE_MAX} messages are waiting to be sent; try again later")
        self._fifo.queue.append((bytes(payload), Guarantee(guarantee)))
        self.messages_available(now)

    def messages_available(self, now: int) -> None:
        """Tell the core its message source has something new (cancels a token hold)."""
        self._now = max(self._now, now)
        if self._held_token is not None:
            self._forward_held_token(self._now)
        elif self.state is MembState.OPERATIONAL and self._seen_idle and not self._hold_cancel_sent:
            # The representative is probably holding the token: ask it to let go.
            self._hold_cancel_sent = True
            self._broadcast(
                encode_ring_message(MessageType.HOLD_CANCEL, self.node_id, self.ring_id)
            )

    def receive(self, data: bytes, now: int) -> None:
        """Handle one packet from the network. Bad packets are counted and dropped."""
        self._now = max(self._now, now)
        if self.state is MembState.STOPPED or not self._started:
            return
        try:
            message, target = decode_message_untrusted(data)
        except MalformedMessage as exc:
            self.stats["malformed"] += 1
            self._log("debug", "malformed totem message dropped", reason=str(exc))
            return
        if target not in (0, self.node_id):
            return
        if message.sender == self.node_id and not isinstance(message, CommitToken | Token):
            return  # our own multicast echoed back by a transport
        self._dispatch(message, now)

    def receive_many(self, packets: Iterable[bytes], now: int) -> None:
        for data in packets:
            self.receive(data, now)

    def leave(self, now: int) -> None:
        """Leave cleanly: tell the others (they reform at once), then stop."""
        self._now = max(self._now, now)
        if self.state is MembState.STOPPED:
            return
        packet = encode_ring_message(MessageType.LEAVE, self.node_id, self.ring_id)
        self._broadcast(packet)
        self._broadcast(packet)  # twice: a single lost datagram must not cost a token timeout
        self._log("notice", "leaving the ring", ring_id=str(self.ring_id))
        self.state = MembState.STOPPED
        self._deadlines.clear()
        self._held_token = None

    def handle_timeouts(self, now: int) -> None:
        self._now = max(self._now, now)
        for timer, deadline in sorted(self._deadlines.items(), key=lambda kv: (kv[1], kv[0].value)):
            if deadline > now or self._deadlines.get(timer) != deadline:
                continue
            del self._deadlines[timer]
            self._fire(timer, now)

    def next_deadline(self) -> int | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def drain(self) -> Output:
        if not (self._packets or self._events or self._logs or self._originated):
            return _EMPTY
        out = Output(
            tuple(self._packets), tuple(self._events), tuple(self._logs), tuple(self._originated)
        )
        self._packets.clear()
        self._events.clear()
        self._logs.clear()
        self._originated.clear()
        return out

    @property
    def safe_aru(self) -> int:
        return self._ring.safe_aru

    @property
    def pending(self) -> int:
        return self._source.pending()

    # ================================================================ dispatch

    def _dispatch(self, message: object, now: int) -> None:
        if isinstance(message, Token):
            self._on_token(message, now)
        elif isinstance(message, Mcast):
            self._on_mcast(message, now)
        elif isinstance(message, Join):
            self._on_join(message, now)
        elif isinstance(message, CommitToken):
            self._on_commit(message, now)
        elif isinstance(message, RingMessage):
            if message.type is MessageType.MERGE_DETECT:
                self._on_merge_detect(message, now)
            elif message.type is MessageType.LEAVE:
                self._on_leave(message, now)
            else:
                self._on_hold_cancel(message, now)

    def _fire(self, timer: _Timer, now: int) -> None:
        if timer is _Timer.SELF:
            while self._self_inbox:
                self.receive_self(self._self_inbox.popleft(), now)
        elif timer is _Timer.TOKEN_LOSS:
            self._on_token_loss(now)
        elif timer is _Timer.TOKEN_RETRANSMIT:
            if self._last_token is not None and self.state in (
                MembState.OPERATIONAL,
                MembState.RECOVERY,
                MembState.COMMIT,
            ):
                target, data = self._last_token
                self._unicast(target, data)
                self._set_timer(_Timer.TOKEN_RETRANSMIT, now + self.timers.token_retransmit * _MS)
        elif timer is _Timer.TOKEN_WARNING:
            self._log(
                "notice",
                f"Token has not been received in {self.timers.token_warning} ms",
            )
        elif timer is _Timer.HOLD:
            self._forward_held_token(now)
        elif timer is _Timer.JOIN and self.state is MembState.GATHER:
            self._send_join(now)
        elif timer is _Timer.CONSENSUS:
            self._on_consensus_timeout(now)
        elif timer is _Timer.MERGE_DETECT and self._is_operational_rep():
            self._broadcast(
                encode_ring_message(MessageType.MERGE_DETECT, self.node_id, self.ring_id)
            )
            self._set_timer(_Timer.MERGE_DETECT, now + self.timers.merge * _MS)

    def _is_operational_rep(self) -> bool:
        return self.state is MembState.OPERATIONAL and self.node_id == self.members[0]

    def receive_self(self, data: bytes, now: int) -> None:
        """A unicast we sent to ourselves (singleton ring, or rep forwarding to self)."""
        if self.state is MembState.STOPPED:
            return
        message, _target = decode_message_untrusted(data)
        self._dispatch(message, now)

    # ================================================================ messages

    def _on_mcast(self, message: Mcast, now: int) -> None:
        ring = self._ring
        if message.ring_id == ring.ring_id:
            self._deadlines.pop(_Timer.TOKEN_RETRANSMIT, None)  # the ring is alive
            if not ring.store(message):
                return
            if message.encapsulated and self._old_ring is not None:
                self._recover_into_old_ring(message)
            if self.state is MembState.OPERATIONAL:
                self._deliver_ready()
            return
        # Anything else is ignored, a late message of our old ring included: what the
        # old ring delivers at install must be the same at every survivor, so after
        # entering RECOVERY it only grows through the survivors' recovery messages.
        self.stats["foreign_ignored"] += 1

    def _recover_into_old_ring(self, message: Mcast) -> None:
        old = self._old_ring
        assert old is not None
        if message.orig_ring_id != old.ring_id:
            return
        if message.encapsulated == 1:
            original = Mcast(
                message.orig_sender,
                old.ring_id,
                message.orig_seq,
                message.orig_guarantee,
                message.payload,
            )
        else:
            original = Mcast(
                message.orig_sender,
                old.ring_id,
                message.orig_seq,
                Guarantee.AGREED,
                b"",
                2,
                old.ring_id,
            )
        old.store(original)

    def _on_merge_detect(self, message: RingMessage, now: int) -> None:
        if self.state is not MembState.OPERATIONAL:
            return
        if message.ring_id == self.ring_id or message.sender in self.members:
            return
        self.stats["merge_detected"] += 1
        self._log(
            "info",
            "another ring detected; merging",
            other_ring=str(message.ring_id),
            from_node=message.sender,
        )
        self._proc.add(message.sender)
        self._enter_gather(now, "merge")

    def _on_leave(self, message: RingMessage, now: int) -> None:
        sender = message.sender
        if sender not in self.members and sender not in self._proc:
            return
        if sender in self._failed:
            return
        self.stats["leaves_received"] += 1
        self._log("notice", "node left the ring cleanly", node=sender)
        self._failed.add(sender)
        if self.state is MembState.GATHER:
            self._consensus = {self.node_id}
            self._send_join(now)
            self._check_consensus(now)
        else:
            self._enter_gather(now, "leave")

    def _on_hold_cancel(self, message: RingMessage, now: int) -> None:
        if message.ring_id == self.ring_id and self._held_token is not None:
            self._forward_held_token(now)

    # ================================================================ token

    def _on_token(self, token: Token, now: int) -> None:
        if self.state not in (MembState.OPERATIONAL, MembState.RECOVERY):
            return
        if token.ring_id != self.ring_id or token.token_seq <= self._last_token_seq:
            return
        ring = self._ring
        if token.seq > ring.aru + QUEUE_MAX or token.aru > token.seq:
            self.stats["malformed"] += 1
            return
        if (
            max(
                token.token_seq,
                token.seq,
                token.fcc,
                token.backlog,
                token.recovery_pending,
                token.idle_rotations,
            )
            >= _COUNTER_LIMIT
        ):
            self._log("notice", "token counters near their limit; forming a new ring")
            self._enter_gather(now, "token counters exhausted")
            return
        self._last_token_seq = token.token_seq
        self.stats["tokens_received"] += 1
        timers = self.timers
        self._deadlines.pop(_Timer.TOKEN_RETRANSMIT, None)
        self._set_timer(_Timer.TOKEN_LOSS, now + timers.token * _MS)
        if timers.token_warning:
            self._set_timer(_Timer.TOKEN_WARNING, now + timers.token_warning * _MS)
        is_rep = self.node_id == self.members[0]
        if is_rep:
            # Every member lowered rotation_min_aru to its aru during the last rotation.
            token.safe_aru = max(token.safe_aru, token.rotation_min_aru)
        if token.safe_aru > ring.safe_aru:
            ring.safe_aru = min(token.safe_aru, ring.aru)

        # Flow control: this node's share of the window for this rotation.
        fcc_others = max(0, token.fcc - self._my_last_fcc)
        backlog_others = max(0, token.backlog - self._my_last_backlog)
        my_backlog = (
            len(self._recovery_queue)
            if self.state is MembState.RECOVERY
            else self._source.pending()
        )
        allowed = min(timers.max_messages, max(0, timers.window_size - fcc_others))
        total_backlog = backlog_others + my_backlog
        if total_backlog > timers.window_size and my_backlog:
            allowed = min(allowed, max(1, timers.window_size * my_backlog // total_backlog))
        if token.seq - token.aru + allowed > QUEUE_MAX:
            allowed = max(0, QUEUE_MAX - (token.seq - token.aru))

        sent = 0
        # 1. Answer retransmit requests.
        still_wanted: list[int] = []
        for seq in token.rtr:
            message = ring.messages.get(seq)
            if message is not None and sent < allowed and self._variant != "skip_retransmission":
                self._broadcast(encode_mcast(message))
                self.stats["retransmits_sent"] += 1
                sent += 1
            elif seq > ring.freed:  # at or below ``freed`` every member holds it
                still_wanted.append(seq)
        # 2. Originate: old-ring messages in recovery, new messages when operational.
        new_count = 0
        if self.state is MembState.RECOVERY:
            while self._recovery_queue and sent < allowed:
                old = self._recovery_queue.popleft()
                token.seq += 1
                self._originate(
                    Mcast(
                        self.node_id,
                        self.ring_id,
                        token.seq,
                        Guarantee.AGREED,
                        old.payload,
                        2 if old.encapsulated else 1,
                        old.ring_id,
                        old.sender,
                        old.seq,
                        old.guarantee,
                    )
                )
                self.stats["recovery_messages_sent"] += 1
                sent += 1
        elif allowed > sent:
            for payload, guarantee in self._source.take(allowed - sent, self.max_payload):
                token.seq += 1
                self._originate(Mcast(self.node_id, self.ring_id, token.seq, guarantee, payload))
                self._originated.append(
                    (
                        len(self._events),
                        Delivered(self.node_id, payload, guarantee, self.ring_id, token.seq),
                    )
                )
                self.stats["messages_originated"] += 1
                sent += 1
                new_count += 1
        if new_count:
            self._hold_cancel_sent = False

        # 3. Bookkeeping carried by the token.
        token.fcc = fcc_others + sent
        self._my_last_fcc = sent
        my_backlog = (
            len(self._recovery_queue)
            if self.state is MembState.RECOVERY
            else self._source.pending()
        )
        token.backlog = backlog_others + my_backlog
        self._my_last_backlog = my_backlog
        recovery_left = len(self._recovery_queue)
        token.recovery_pending = (
            max(0, token.recovery_pending - self._my_last_recovery) + recovery_left
        )
        self._my_last_recovery = recovery_left

        if ring.aru < token.aru or token.aru_addr in (self.node_id, 0):
            token.aru = ring.aru
            token.aru_addr = 0 if token.aru == token.seq else self.node_id
        if self.state is MembState.OPERATIONAL and self._failed_to_receive_check(token):
            # Our aru still counts in this rotation: without it the representative
            # would take messages we lack as held by every member (SAFE delivery).
            if is_rep:
                token.rotation_min_aru = ring.aru
            else:
                token.rotation_min_aru = min(token.rotation_min_aru, ring.aru)
            self._forward(token, now)
            self._enter_gather(now, "failed to receive")
            return

        # 4. Ask for what we miss (after miss_count_const receipts of the token).
        wanted = set(still_wanted)
        missing = ring.missing
        for seq in range(ring.aru + 1, min(token.seq, ring.aru + 4 * MAX_RTR) + 1):
            if seq in ring.messages:
                continue
            count = missing.get(seq, 0) + 1
            missing[seq] = count
            if count >= timers.miss_count_const and seq not in wanted:
                still_wanted.append(seq)
                wanted.add(seq)
                self.stats["retransmit_requests"] += 1
                missing[seq] = 0
        token.rtr = still_wanted[:MAX_RTR]

        if is_rep:
            token.rotation_min_aru = ring.aru
            if token.seq == self._rep_last_seq and not token.rtr:
                token.idle_rotations += 1
            else:
                token.idle_rotations = 0
            self._rep_last_seq = token.seq
        else:
            token.rotation_min_aru = min(token.rotation_min_aru, ring.aru)
        self._seen_idle = token.idle_rotations >= timers.seqno_unchanged_const

        # 5. Deliver, free, and maybe finish recovery.
        if self.state is MembState.OPERATIONAL:
            self._deliver_ready()
            self._free(ring)
        elif self._recovery_done(token):
            self._install(now)
            self._deliver_ready()

        # 6. Pass the token on (the representative holds it while the ring is idle).
        if (
            is_rep
            and self.state is MembState.OPERATIONAL
            and self._seen_idle
            and not self._source.pending()
            and not token.rtr
        ):
            self._held_token = token
            self._set_timer(_Timer.HOLD, now + timers.hold * _MS)
            if _Timer.MERGE_DETECT not in self._deadlines:
                self._set_timer(_Timer.MERGE_DETECT, now)
            return
        self._forward(token, now)

    def _failed_to_receive_check(self, token: Token) -> bool:
        if token.aru_addr == self.node_id and token.aru == self._last_token_aru:
            self._aru_count += 1
        else:
            self._aru_count = 0
        self._last_token_aru = token.aru
        if self._aru_count > self.timers.fail_recv_const:
            self.stats["failed_to_receive"] += 1
            self._log("warning", "FAILED TO RECEIVE")
            self._failed_to_receive = True
            return True
        return False

    def _recovery_done(self, token: Token) -> bool:
        if token.token_seq < len(self.members):
            return False  # the token has not yet visited everyone once
        if self._install_seq is None and token.recovery_pending == 0:
            self._install_seq = token.seq
        return self._install_seq is not None and self._ring.safe_aru >= self._install_seq

    def _originate(self, message: Mcast) -> None:
        self._ring.store(message)
        self._broadcast(encode_mcast(message))

    def _forward(self, token: Token, now: int) -> None:
        members = self.members
        target = members[(members.index(self.node_id) + 1) % len(members)]
        token.sender = self.node_id
        token.token_seq += 1
        data = encode_token(token, target)
        self._last_token = (target, data)
        self._unicast(target, data)
        if target != self.node_id:
            self._set_timer(_Timer.TOKEN_RETRANSMIT, now + self.timers.token_retransmit * _MS)

    def _forward_held_token(self, now: int) -> None:
        token = self._held_token
        self._held_token = None
        self._deadlines.pop(_Timer.HOLD, None)
        if token is not None and self.state is MembState.OPERATIONAL:
            self._forward(token, now)

    def _on_token_loss(self, now: int) -> None:
        if self.state in (MembState.OPERATIONAL, MembState.RECOVERY):
            self.stats["token_lost"] += 1
            self._log(
                "notice",
                f"A processor failed, forming new configuration: token timed out "
                f"({self.timers.token}ms), waiting {self.timers.consensus}ms for consensus.",
            )
            self._enter_gather(now, "token loss")
        elif self.state is MembState.COMMIT:
            self._log("notice", "commit token lost; gathering again")
            self._enter_gather(now, "commit token loss")

    # ================================================================ delivery

    def _deliver_ready(self) -> None:
        ring = self._ring
        messages = ring.messages
        seq = ring.high_delivered
        safe_aru = ring.safe_aru
        while seq < ring.aru:
            message = messages[seq + 1]
            if not message.encapsulated:
                unsafe = message.guarantee is Guarantee.SAFE and seq + 1 > safe_aru
                if unsafe and self._variant != "deliver_safe_early":
                    break
                self._deliver(message, ring.ring_id)
            seq += 1
        ring.high_delivered = seq

    def _deliver(self, message: Mcast, ring_id: RingId) -> None:
        self.stats["messages_delivered"] += 1
        self._events.append(
            Delivered(message.sender, message.payload, message.guarantee, ring_id, message.seq)
        )

    def _free(self, ring: _Ring) -> None:
        upto = min(ring.safe_aru, ring.high_delivered)
        if upto - ring.freed < 64:
            return
        for seq in range(ring.freed + 1, upto + 1):
            ring.messages.pop(seq, None)
            ring.missing.pop(seq, None)
        ring.freed = upto

    # ================================================================ membership

    def _enter_gather(self, now: int, reason: str) -> None:
        if self.state is MembState.RECOVERY and self._old_ring is not None:
            # Recovery did not finish: our regular configuration is still the old ring.
            self._ring = self._old_ring
            self.ring_id = self._old_ring.ring_id
            self.members = self._old_members
            self._old_ring = None
            self._recovery_queue.clear()
        self.stats["gather_entered"] += 1
        self.state = MembState.GATHER
        self._held_token = None
        for timer in (
            _Timer.TOKEN_LOSS,
            _Timer.TOKEN_RETRANSMIT,
            _Timer.TOKEN_WARNING,
            _Timer.HOLD,
            _Timer.MERGE_DETECT,
        ):
            self._deadlines.pop(timer, None)
        self._proc |= set(self.members) | {self.node_id}
        if self._failed_to_receive:
            # We cannot receive from the others: form a ring of our own; they will
            # see themselves in our failed list and drop us (corosync's behaviour).
            self._failed |= self._proc - {self.node_id}
            self._failed_to_receive = False
        self._failed.discard(self.node_id)
        self._consensus = {self.node_id}
        self._log("debug", "entering GATHER", reason=reason)
        delay = self._rng.randint(0, self.timers.send_join) * _MS if self.timers.send_join else 0
        if delay:
            self._set_timer(_Timer.JOIN, now + delay)
        else:
            self._send_join(now)
        self._set_timer(_Timer.CONSENSUS, now + self.timers.consensus * _MS)

    def _send_join(self, now: int) -> None:
        join = Join(
            self.node_id,
            self._max_ring_seq,
            frozenset(self._proc),
            frozenset(self._failed),
        )
        self._broadcast(encode_join(join))
        self._set_timer(_Timer.JOIN, now + self.timers.join * _MS)

    def _on_join(self, join: Join, now: int) -> None:
        sender = join.sender
        if self.state is MembState.STOPPED:
            return
        if join.ring_seq >= _RING_SEQ_LIMIT:
            self.stats["malformed"] += 1
            return
        self._max_ring_seq = max(self._max_ring_seq, join.ring_seq)
        stale = join.ring_seq < self.ring_id.seq and sender in self.members
        if self.state is MembState.COMMIT and self._commit_ring_id is not None:
            stale = stale or (join.ring_seq < self._commit_ring_id.seq and sender in self._proc)
        if self.state is not MembState.GATHER:
            if stale or sender in self._failed:
                return
            if self.node_id in join.failed and sender not in self.members:
                return  # it gave up on us and is not in our ring: nothing to reform
            self._enter_gather(now, "join received")
        if sender in self._failed:
            return
        changed = False
        if self.node_id in join.failed:
            # The sender thinks we failed: we cannot agree with it.
            self._failed.add(sender)
            changed = True
        else:
            new_proc = self._proc | join.proc
            new_failed = (self._failed | join.failed) - {self.node_id}
            if new_proc != self._proc or new_failed != self._failed:
                self._proc, self._failed = new_proc, new_failed
                changed = True
        if changed:
            self._consensus = {self.node_id}
            self._send_join(now)
            self._set_timer(_Timer.CONSENSUS, now + self.timers.consensus * _MS)
        if join.proc == self._proc and join.failed == self._failed and sender not in self._failed:
            self._consensus.add(sender)
        self._check_consensus(now)

    def _check_consensus(self, now: int) -> None:
        if self.state is not MembState.GATHER:
            return
        live = self._proc - self._failed
        if not live <= self._consensus:
            return
        if min(live) != self.node_id:
            return  # the lowest id creates the commit token
        members = tuple(sorted(live))
        ring_id = RingId(self._max_ring_seq + 4, self.node_id)
        commit = CommitToken(self.node_id, ring_id, 0, 1, [CommitEntry(node) for node in members])
        self.stats["commit_tokens"] += 1
        self._on_commit(commit, now)

    def _on_consensus_timeout(self, now: int) -> None:
        if self.state is not MembState.GATHER:
            return
        silent = (self._proc - self._failed) - self._consensus
        if silent:
            self._log("info", "no consensus; marking silent nodes failed", failed=sorted(silent))
            self._failed |= silent
        self._consensus = {self.node_id}
        self._send_join(now)
        self._set_timer(_Timer.CONSENSUS, now + self.timers.consensus * _MS)
        self._check_consensus(now)

    def _on_commit(self, commit: CommitToken, now: int) -> None:
        members = commit.members
        if self.node_id not in members or list(members) != sorted(members):
            return
        if commit.ring_id.seq >= _RING_SEQ_LIMIT or commit.token_seq >= _COUNTER_LIMIT:
            self.stats["malformed"] += 1
            return
        me = members.index(self.node_id)
        entry = commit.entries[me]
        passed = self._last_commit_passed
        if passed is not None and commit.ring_id == passed[0] and commit.token_seq > passed[1]:
            # It came around. A copy the predecessor retransmitted (a lower token_seq)
            # is no sign that ours got through: it must not stop our retransmissions.
            self._deadlines.pop(_Timer.TOKEN_RETRANSMIT, None)
        is_rep = me == 0
        if commit.round == 1 and not entry.filled:
            if self.state is not MembState.GATHER:
                return
            if members != tuple(sorted(self._proc - self._failed)):
                return
            if commit.ring_id.seq <= self._max_ring_seq and commit.ring_id.rep != self.node_id:
                return
            if commit.ring_id.seq <= self._store.load() and self._variant != "reuse_ring_id":
                return
            entry.filled = True
            entry.old_ring_id = self.ring_id
            entry.aru = self._ring.aru
            entry.high_delivered = self._ring.high_delivered
            entry.high_received = self._ring.high_received
            self._max_ring_seq = max(self._max_ring_seq, commit.ring_id.seq)
            self._store.save(commit.ring_id.seq)
            self._commit_ring_id = commit.ring_id
            self.state = MembState.COMMIT
            for timer in (_Timer.JOIN, _Timer.CONSENSUS):
                self._deadlines.pop(timer, None)
            self._set_timer(_Timer.TOKEN_LOSS, now + self.timers.token * _MS)
            self._pass_commit(commit, me)
            return
        # Later visits. Duplicated datagrams must not repeat a step: each branch is
        # taken once per ring because it changes the state it requires.
        if self.state is MembState.COMMIT and (
            not entry.filled or entry.old_ring_id != self._ring.ring_id
        ):
            return  # our own entry is not what we wrote in round 1: not our commit token
        if commit.round == 1 and is_rep:
            if self.state is not MembState.COMMIT or commit.ring_id != self._commit_ring_id:
                return
            if not all(e.filled for e in commit.entries):
                return
            commit.round = 2
            self._enter_recovery(commit, now)
            self._pass_commit(commit, me)
        elif commit.round == 2 and not is_rep:
            if self.state is not MembState.COMMIT or commit.ring_id != self._commit_ring_id:
                return
            self._enter_recovery(commit, now)
            self._pass_commit(commit, me)
        elif commit.round == 2 and is_rep:
            if self.state is not MembState.RECOVERY or commit.ring_id != self.ring_id:
                return
            if self._last_token_seq >= 0 or self._token_started:
                return
            # Both rounds done: start the new ring's token.
            self._token_started = True
            token = Token(self.node_id, self.ring_id, token_seq=0)
            self._on_token(token, now)

    def _pass_commit(self, commit: CommitToken, my_index: int) -> None:
        members = commit.members
        target = members[(my_index + 1) % len(members)]
        commit.sender = self.node_id
        commit.token_seq += 1
        self._last_commit_passed = (commit.ring_id, commit.token_seq)
        data = encode_commit(commit, target)
        self._unicast(target, data)
        if target != self.node_id:
            # Retransmitted like the token until the ring shows progress: a lost commit
            # token would otherwise cost a whole token timeout and a new gather.
            self._last_token = (target, data)
            self._set_timer(_Timer.TOKEN_RETRANSMIT, self._now + self.timers.token_retransmit * _MS)

    def _enter_recovery(self, commit: CommitToken, now: int) -> None:
        old_ring = self._ring
        old_ring_id = old_ring.ring_id
        survivors = [e for e in commit.entries if e.old_ring_id == old_ring_id]
        self._old_ring = old_ring
        self._old_members = self.members
        self._trans_members = tuple(e.node for e in survivors)
        low_aru = min(e.aru for e in survivors)
        self._recovery_queue = deque(
            old_ring.messages[seq]
            for seq in range(low_aru + 1, old_ring.high_received + 1)
            if seq in old_ring.messages
        )
        self.state = MembState.RECOVERY
        self.ring_id = commit.ring_id
        self.members = commit.members
        self._ring = _Ring(self.ring_id, self.members)
        self._install_seq = None
        self._token_started = False
        self._last_token_seq = -1
        self._my_last_fcc = self._my_last_backlog = self._my_last_recovery = 0
        self._last_token_aru = -1
        self._aru_count = 0
        self._rep_last_seq = -1
        self._seen_idle = False
        self._set_timer(_Timer.TOKEN_LOSS, now + self.timers.token * _MS)
        self._log(
            "debug",
            "entering RECOVERY",
            ring_id=str(self.ring_id),
            members=list(self.members),
            recovery_messages=len(self._recovery_queue),
        )

    def _install(self, now: int) -> None:
        """Finish recovery: deliver the old ring's rest, the transitional and the
        regular configuration (EVS), and become OPERATIONAL."""
        old = self._old_ring
        assert old is not None
        old_members = self._old_members
        trans = self._trans_members
        previous: RingId | None = old.ring_id if self._had_regular else None
        if self._had_regular:
            messages = old.messages
            drop_transitional = self._variant == "drop_transitional"
            seq = old.high_delivered
            # In the old regular configuration: up to the first hole, and never a SAFE
            # message that was not yet known to be held by every old member.
            while seq + 1 in messages or seq + 1 <= old.freed:
                message = messages.get(seq + 1)
                if message is not None and not message.encapsulated:
                    if message.guarantee is Guarantee.SAFE and seq + 1 > old.safe_aru:
                        break
                    self._deliver(message, old.ring_id)
                seq += 1
            if not drop_transitional:
                self._events.append(
                    ConfigurationChange(
                        ConfKind.TRANSITIONAL,
                        self.ring_id,
                        previous,
                        trans,
                        tuple(sorted(set(old_members) - set(trans))),
                        (),
                    )
                )
            # In the transitional configuration: what is left. After a hole, only
            # messages from transitional members: their causal predecessors are held.
            hole = False
            trans_set = set(trans)
            for later in sorted(s for s in messages if s > seq):
                if later != seq + 1:
                    hole = True
                seq = later
                message = messages[later]
                if message.encapsulated:
                    continue
                if (
                    hole
                    and message.sender not in trans_set
                    and self._variant != "deliver_across_hole"
                ):
                    continue
                self._deliver(message, old.ring_id)
            if hole:
                self.stats["transitional_with_gaps"] += 1
        self.stats["configurations"] += 1
        self._events.append(
            ConfigurationChange(
                ConfKind.REGULAR,
                self.ring_id,
                previous,
                self.members,
                tuple(sorted(set(old_members) - set(self.members))) if self._had_regular else (),
                tuple(sorted(set(self.members) - set(old_members)))
                if self._had_regular
                else self.members,
            )
        )
        joined = sorted(set(self.members) - set(old_members)) if self._had_regular else []
        left = sorted(set(old_members) - set(self.members)) if self._had_regular else []
        if not self._had_regular:
            joined = list(self.members)  # corosync: the first ring's members all joined
        self._log(
            "notice",
            f"A new membership ({self.ring_id}) was formed. Members"
            + (f" joined: {' '.join(map(str, joined))}" if joined else "")
            + (f" left: {' '.join(map(str, left))}" if left else ""),
            ring_id=str(self.ring_id),
            members=list(self.members),
        )
        self._had_regular = True
        self._old_ring = None
        self._recovery_queue.clear()
        self.state = MembState.OPERATIONAL
        self._proc = set(self.members)
        self._failed = set()
        self._consensus = set()
        self._commit_ring_id = None
        if self.node_id == self.members[0]:
            self._set_timer(_Timer.MERGE_DETECT, now + self.timers.merge * _MS)

    # ================================================================ plumbing

    def _broadcast(self, data: bytes) -> None:
        self._packets.append(Packet(0, data))

    def _unicast(self, target: int, data: bytes) -> None:
        if target == self.node_id:
            self._self_inbox.append(data)
            if _Timer.SELF not in self._deadlines:
                self._set_timer(_Timer.SELF, self._now + _SELF_DELAY_NS)
        else:
            self._packets.append(Packet(target, data))

    def _set_timer(self, timer: _Timer, deadline: int) -> None:
        self._deadlines[timer] = deadline

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self._logs.append(LogRecord(level, event, {"node": self.node_id, **fields}))


_EMPTY = Output()
