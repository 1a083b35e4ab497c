"""What Totem needs below it: the :class:`Transport` protocol, and transports for tests.

Totem sends small datagrams (tokens, joins, commit tokens) and large ones (multicast
messages of up to :attr:`Transport.max_datagram` bytes) to one node or to every node,
and needs to know nothing else about the network: no connections, no ordering, no
reliability (Totem retransmits and orders), no delivery to itself. A transport that
loses, duplicates or reorders datagrams is fine; one that delivers a datagram to the
wrong node or changes its bytes is not (Totem has no checksum of its own; use knet's
crypto, or trust the network).

Transports here:

* :class:`MemoryNetwork` / :class:`MemoryTransport`: an in-process network for trio
  tests, with per-direction loss drawn from a seeded ``random.Random`` and cuts;
* :class:`LossyTransport`: wraps any transport and drops a fraction of what it sends
  (loss injection on real sockets);
* ``totem.UdpTransport`` (plain UDP, ``totem._udp``) and ``totem.KnetTransport`` (over
  a knet handle, ``totem._knet_adapter``, needs knet).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import trio

from totem._errors import ConfigError, TotemError

__all__ = ["DEFAULT_BATCH", "LossyTransport", "MemoryNetwork", "MemoryTransport", "Transport"]

#: Datagrams a transport hands over per ``receive_batch`` by default (knet's driver too).
DEFAULT_BATCH = 256


@runtime_checkable
class Transport(Protocol):
    """A datagram service between the configured nodes of one cluster.

    ``node_id``
        This node's id (1..2^32-1), the id Totem runs as.
    ``max_datagram``
        The largest ``data`` :meth:`send` accepts. The driver derives the largest
        totem message payload from it (it keeps 128 bytes for totem's headers).
    ``send(target, data)``
        Send ``data`` to node ``target``, or to every *other* configured node when
        ``target`` is 0. Never blocks and never raises for network trouble: a datagram
        that cannot go out now (full buffers, unknown target, unreachable peer) is
        dropped (and counted where the transport keeps statistics), like a lost one;
        so is a datagram sent on a closed transport. Only caller misuse raises
        (``data`` longer than ``max_datagram``).
    ``await receive_batch(max_count)``
        Wait until at least one datagram arrived, then return it together with every
        other one that is already waiting, at most ``max_count``, as
        ``(source node id, data)`` pairs in arrival order. Returning a batch lets the
        driver hand many datagrams to the core per wake-up (draining a socket without
        blocking is several times faster than one ``await`` per datagram). An empty
        batch means the transport was closed and nothing more will come. Only one task
        may call it at a time. ``source`` is what the transport knows of the sender
        (an authenticated knet host id, or the id configured for the source address);
        Totem itself relies on the sender field inside the message.

    Datagrams from unknown or unconfigured senders must never be returned.
    """

    @property
    def node_id(self) -> int: ...

    @property
    def max_datagram(self) -> int: ...

    def send(self, target: int, data: bytes) -> None: ...

    async def receive_batch(
        self, max_count: int = DEFAULT_BATCH
    ) -> Sequence[tuple[int, bytes]]: ...


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a probability 0..1, got {value!r}")
    return float(value)


def _check_node_id(node_id: object) -> int:
    if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 < node_id < 1 << 32:
        raise ConfigError(f"node id must be an integer 1..2^32-1, got {node_id!r}")
    return node_id


class MemoryNetwork:
    """An in-process datagram network between :class:`MemoryTransport` endpoints.

    Every attached transport is a configured node; a broadcast (target 0) goes to every
    attached node but the sender. Delivery is immediate (into the receiver's queue;
    the receiving task picks it up at its next turn). Loss is per direction, drawn from
    the seeded ``rng``: ``loss`` is the default for every direction, ``set_loss(a, b,
    p)`` overrides the direction a -> b. ``cut(a, b)`` drops everything between ``a``
    and ``b`` (both directions) until ``restore(a, b)``. A receiver whose queue holds
    ``capacity`` datagrams drops further ones (counted in ``stats["overflow"]``).
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        loss: float = 0.0,
        max_datagram: int = 65536,
        capacity: int = 65536,
    ) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._loss = _check_probability("loss", loss)
        if max_datagram < 1 or capacity < 1:
            raise ConfigError("max_datagram and capacity must be at least 1")
        self.max_datagram = max_datagram
        self._capacity = capacity
        self._endpoints: dict[int, trio.MemorySendChannel[tuple[int, bytes]]] = {}
        self._path_loss: dict[tuple[int, int], float] = {}
        self._cut: set[tuple[int, int]] = set()
        #: ``sent`` datagrams handed to the network (per copy for a broadcast),
        #: ``delivered``, ``lost`` (loss), ``cut`` (dropped by a cut), ``overflow``
        #: (receiver's queue full), ``unknown_target`` (no such node attached).
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "delivered", "lost", "cut", "overflow", "unknown_target"), 0
        )

    def transport(self, node_id: int) -> MemoryTransport:
        """Attach node ``node_id`` and return its transport (raises :class:`TotemError`
        if that id is attached already; close the old transport first to restart)."""
        node_id = _check_node_id(node_id)
        if node_id in self._endpoints:
            raise TotemError(f"node {node_id} is already attached to this network")
        send, receive = trio.open_memory_channel[tuple[int, bytes]](math.inf)
        self._endpoints[node_id] = send
        return MemoryTransport(self, node_id, receive)

    @property
    def node_ids(self) -> tuple[int, ...]:
        """The attached nodes, sorted."""
        return tuple(sorted(self._endpoints))

    def set_loss(self, source: int, target: int, loss: float) -> None:
        """Lose datagrams from ``source`` to ``target`` with probability ``loss``."""
        self._path_loss[(source, target)] = _check_probability("loss", loss)

    def cut(self, a: int, b: int) -> None:
        """Drop every datagram between ``a`` and ``b``, both directions."""
        self._cut |= {(a, b), (b, a)}

    def restore(self, a: int, b: int) -> None:
        """Undo :meth:`cut` between ``a`` and ``b``."""
        self._cut -= {(a, b), (b, a)}

    def isolate(self, node: int) -> None:
        """Cut ``node`` from every other attached node."""
        for other in self.node_ids:
            if other != node:
                self.cut(node, other)

    def heal(self) -> None:
        """Restore every cut."""
        self._cut.clear()

    def _send(self, source: int, target: int, data: bytes) -> None:
        if target == 0:
            for node in sorted(self._endpoints):
                if node != source:
                    self._deliver(source, node, data)
        elif target == source:
            return  # Totem never sends to itself through the transport
        else:
            self._deliver(source, target, data)

    def _deliver(self, source: int, target: int, data: bytes) -> None:
        stats = self.stats
        stats["sent"] += 1
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            stats["unknown_target"] += 1
            return
        if (source, target) in self._cut:
            stats["cut"] += 1
            return
        loss = self._path_loss.get((source, target), self._loss)
        if loss and self._rng.random() < loss:
            stats["lost"] += 1
            return
        if endpoint.statistics().current_buffer_used >= self._capacity:
            stats["overflow"] += 1
            return
        endpoint.send_nowait((source, data))
        stats["delivered"] += 1

    def _detach(self, node_id: int) -> None:
        endpoint = self._endpoints.pop(node_id, None)
        if endpoint is not None:
            endpoint.close()


class MemoryTransport:
    """One node's end of a :class:`MemoryNetwork` (create it with
    ``network.transport(node_id)``). :meth:`close` detaches it: its queue ends and
    datagrams to it are dropped, and the id can be attached again (a restart)."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: int,
        inbox: trio.MemoryReceiveChannel[tuple[int, bytes]],
    ) -> None:
        self._network = network
        self._node_id = node_id
        self._inbox = inbox
        self.closed = False

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def max_datagram(self) -> int:
        return self._network.max_datagram

    def send(self, target: int, data: bytes) -> None:
        if len(data) > self._network.max_datagram:
            raise TotemError(
                f"datagram of {len(data)} bytes exceeds max_datagram ({self._network.max_datagram})"
            )
        if not self.closed:
            self._network._send(self._node_id, target, bytes(data))

    async def receive_batch(self, max_count: int = DEFAULT_BATCH) -> list[tuple[int, bytes]]:
        inbox = self._inbox
        try:
            batch = [await inbox.receive()]
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return []
        try:
            while len(batch) < max_count:
                batch.append(inbox.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        return batch

    def close(self) -> None:
        """Detach from the network (idempotent)."""
        if not self.closed:
            self.closed = True
            if self._network._endpoints.get(self._node_id) is not None:
                self._network._detach(self._node_id)

    def __enter__(self) -> MemoryTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LossyTransport:
    """Wraps a transport and drops each sent datagram with probability ``loss`` (drawn
    from ``rng``), to inject loss where the network has none (loopback). A broadcast is
    dropped or sent as a whole; everything else is delegated. ``dropped`` and ``sent``
    count the decisions."""

    def __init__(self, inner: Transport, loss: float, rng: random.Random) -> None:
        self.inner = inner
        self.loss = _check_probability("loss", loss)
        self._rng = rng
        self.dropped = 0
        self.sent = 0

    @property
    def node_id(self) -> int:
        return self.inner.node_id

    @property
    def max_datagram(self) -> int:
        return self.inner.max_datagram

    def send(self, target: int, data: bytes) -> None:
        if self.loss and self._rng.random() < self.loss:
            self.dropped += 1
            return
        self.sent += 1
        self.inner.send(target, data)

    async def receive_batch(self, max_count: int = DEFAULT_BATCH) -> Sequence[tuple[int, bytes]]:
        return await self.inner.receive_batch(max_count)
