"""The trio driver: a thin shell that gives a :class:`TotemCore` a transport and a clock.

One task reads the transport in batches and hands each batch to the core; one timer
task sleeps until the core's next deadline (its cancel scope's deadline is moved after
every input). Whatever the core produces is dispatched at once: packets to the
transport, deliveries and configuration changes to the application's event channel (in
the core's order), log records to structlog (logger ``totem``, ``subsystem="TOTEM"``,
corosync's wording; corosync's NOTICE level is logged as info).

With ``groups`` the node runs the process-group layer (:class:`ProcessGroups`) as the
core's message source: the application multicasts to named groups with messages of up
to 1 MiB and receives :class:`GroupMessage` events. Without it the node is raw Totem:
:meth:`TotemNode.mcast` and :class:`Delivered` events.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
import trio

from totem._config import EffectiveConfig, TotemConfig
from totem._errors import ConfigError, TotemError
from totem._events import ConfigurationChange, Delivered, Guarantee, RingId
from totem._pg import MIN_PACKET, GroupMessage, ProcessGroups
from totem._srp import MAX_PAYLOAD, MembState, Output, RingStore, TotemCore
from totem._transport import DEFAULT_BATCH, Transport

__all__ = ["HEADROOM", "Event", "TotemNode", "open_node"]

#: Bytes of a transport datagram kept for totem's own headers (the rest is payload).
HEADROOM = 128
#: What :meth:`TotemNode.events` carries.
Event = Delivered | GroupMessage | ConfigurationChange
_LOG_METHODS = {
    "error": "error",
    "warning": "warning",
    "notice": "info",
    "info": "info",
    "debug": "debug",
}


class TotemNode:
    """A running Totem node. Create it with :func:`open_node`."""

    def __init__(
        self,
        core: TotemCore,
        transport: Transport,
        groups: ProcessGroups | None,
        *,
        max_batch: int,
    ) -> None:
        self.core = core
        self.transport = transport
        #: The process-group layer, or None for a raw node.
        self.groups = groups
        self._max_batch = max_batch
        self._events_in, self._events_out = trio.open_memory_channel[Event](math.inf)
        self._tasks_scope = trio.CancelScope()  # the reader and the timer
        self._timer_scope: trio.CancelScope | None = None
        self._due: int | None = None  # the core deadline the timer sleeps until (ns)
        self._clock = trio.lowlevel.current_clock().current_time
        self._log = structlog.get_logger("totem").bind(subsystem="TOTEM")
        self.closed = False

    # ---------------------------------------------------------------- sending

    def mcast(self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED) -> None:
        """Queue a raw totem message for ordered delivery to every member (and here);
        at most ``core.max_payload`` bytes. Not available with ``groups``."""
        if self.groups is not None:
            raise TotemError("this node runs process groups: use mcast_group()")
        self._check_open()
        self.core.mcast(payload, guarantee, self._now())
        self._after_input()

    def join(self, group: bytes) -> None:
        """Receive the messages of ``group`` from now on."""
        self._need_groups().join(group)

    def leave_group(self, group: bytes) -> None:
        """Stop receiving the messages of ``group``."""
        self._need_groups().leave(group)

    def mcast_group(
        self,
        groups: Sequence[bytes],
        payload: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
    ) -> None:
        """Queue ``payload`` (up to ``groups.max_message`` bytes, 1 MiB by default) for
        the members of ``groups``; it is packed with others or fragmented as needed."""
        pg = self._need_groups()
        self._check_open()
        pg.mcast(groups, payload, guarantee)
        self.core.messages_available(self._now())
        self._after_input()

    # ---------------------------------------------------------------- receiving

    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """The channel of :class:`Delivered` (raw) or :class:`GroupMessage` (groups)
        events and :class:`ConfigurationChange` s, in the agreed order. It is unbounded:
        read it. It ends when the node has stopped. Every call returns the same one."""
        return self._events_out

    # ---------------------------------------------------------------- status

    @property
    def node_id(self) -> int:
        return self.core.node_id

    @property
    def state(self) -> MembState:
        return self.core.state

    @property
    def ring_id(self) -> RingId:
        return self.core.ring_id

    @property
    def members(self) -> tuple[int, ...]:
        return self.core.members

    @property
    def timers(self) -> EffectiveConfig:
        return self.core.timers

    @property
    def stats(self) -> dict[str, int]:
        """The core's counters, the group layer's (prefixed ``pg_``), and
        ``events_queued`` (events not yet read by the application)."""
        stats = dict(self.core.stats)
        if self.groups is not None:
            stats.update({f"pg_{key}": value for key, value in self.groups.stats.items()})
        stats["events_queued"] = self._events_in.statistics().current_buffer_used
        return stats

    def reconfigure(self, config: TotemConfig, node_count: int) -> EffectiveConfig:
        """Change the totem options at runtime (see :meth:`TotemCore.reconfigure`)."""
        timers = self.core.reconfigure(config, node_count)
        self._after_input()
        return timers

    # ---------------------------------------------------------------- leaving

    async def leave(self) -> None:
        """Leave the ring cleanly: the others reform at once instead of waiting for
        the token timeout. The node stops; its event channel ends. Idempotent."""
        if self.closed:
            return
        self.core.leave(self._now())
        self._after_input()  # the LEAVE packets go out here (transport sends never block)
        await trio.lowlevel.checkpoint()
        self._close()

    # ---------------------------------------------------------------- plumbing

    def _now(self) -> int:
        return int(self._clock() * 1_000_000_000)

    def _check_open(self) -> None:
        if self.closed:
            raise TotemError("this node has stopped")

    def _need_groups(self) -> ProcessGroups:
        if self.groups is None:
            raise TotemError("open the node with groups=True to use process groups")
        return self.groups

    def _after_input(self) -> None:
        self._dispatch(self.core.drain())
        scope = self._timer_scope
        if scope is not None:
            deadline = self.core.next_deadline()
            if deadline != self._due:  # moving a trio deadline is not free: only if it moved
                self._due = deadline
                scope.deadline = math.inf if deadline is None else deadline / 1_000_000_000

    def _dispatch(self, out: Output) -> None:
        if not out or self.closed:
            return
        send = self.transport.send
        for packet in out.packets:
            send(packet.target, packet.data)
        emit = self._events_in.send_nowait
        pg = self.groups
        for event in out.events:
            if pg is None:
                emit(event)
            elif isinstance(event, Delivered):
                for message in pg.deliver(event):
                    emit(message)
            else:
                pg.configuration_change(event)
                emit(event)
        log = self._log
        for record in out.logs:
            getattr(log, _LOG_METHODS.get(record.level, "info"))(record.event, **record.fields)

    async def _run(self) -> None:
        with self._tasks_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._timer)

    async def _reader(self) -> None:
        receive_batch = self.transport.receive_batch
        receive = self.core.receive
        while True:
            batch = await receive_batch(self._max_batch)
            if not batch:
                return  # the transport was closed
            now = self._now()
            for _source, data in batch:
                receive(data, now)
            self._after_input()

    async def _timer(self) -> None:
        while True:
            self._due = deadline = self.core.next_deadline()
            with trio.CancelScope(
                deadline=math.inf if deadline is None else deadline / 1_000_000_000
            ) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = self._now()
            if self._due is not None:
                # The deadline passed, but seconds (float) -> ns may round just below
                # it: never hand the core a time before the deadline that woke us.
                now = max(now, self._due)
            self.core.handle_timeouts(now)
            self._dispatch(self.core.drain())

    def _close(self) -> None:
        self.closed = True
        self._tasks_scope.cancel()
        self._events_in.close()

    def __repr__(self) -> str:
        return f"<TotemNode {self.node_id} {self.state.name} ring {self.ring_id}>"


@asynccontextmanager
async def open_node(
    node_id: int,
    transport: Transport,
    *,
    node_count: int,
    config: TotemConfig | None = None,
    store: RingStore | None = None,
    groups: bool | ProcessGroups = False,
    rng: random.Random | None = None,
    max_batch: int = DEFAULT_BATCH,
) -> AsyncIterator[TotemNode]:
    """Run Totem node ``node_id`` over ``transport`` while the block runs.

    ``node_count`` is the number of configured nodes (corosync derives the token
    timeout from it); ``config`` the totem options (corosync's defaults); ``store``
    where the ring sequence number survives restarts (a :class:`FileRingStore` in
    production; in memory by default). ``groups=True`` runs the process-group layer
    (or pass your own :class:`ProcessGroups`, whose ``max_packet`` must fit the
    transport). ``rng`` draws the ``send_join`` jitter.

    The node starts gathering at once. Leaving the block normally leaves the ring
    cleanly (:meth:`TotemNode.leave`); leaving it by an exception or a cancellation
    just stops the node, like a crash: the others notice by the token timeout.
    """
    if transport.node_id != node_id:
        raise ConfigError(f"the transport runs as node {transport.node_id}, not {node_id}")
    max_payload = min(MAX_PAYLOAD, transport.max_datagram - HEADROOM)
    if max_payload < MIN_PACKET:
        raise ConfigError(f"the transport's max_datagram ({transport.max_datagram}) is too small")
    pg: ProcessGroups | None
    if isinstance(groups, ProcessGroups):
        pg = groups
        if pg.max_packet > max_payload:
            raise ConfigError(
                f"groups.max_packet ({pg.max_packet}) exceeds what the transport carries "
                f"({max_payload})"
            )
    else:
        pg = ProcessGroups(max_packet=max_payload) if groups else None
    core = TotemCore(
        node_id,
        config=config,
        node_count=node_count,
        rng=rng if rng is not None else random.Random(),
        store=store,
        source=pg,
        max_payload=max_payload,
    )
    async with trio.open_nursery() as nursery:
        node = TotemNode(core, transport, pg, max_batch=max_batch)
        core.start(node._now())
        node._dispatch(core.drain())
        nursery.start_soon(node._run)
        try:
            yield node
        except BaseException:
            node._close()  # a crash: no goodbye
            raise
        await node.leave()
