"""Deterministic in-process network for knet cores (virtual time, no sockets).

Use it to test code that embeds :class:`knet.KnetCore`, the way knet's own tests do::

    net = FakeNetwork(seed=1)
    a = net.add_core(1)
    b = net.add_core(2)
    ...configure hosts and links on a and b with now=net.now...
    net.run_for(5_000_000_000)  # five virtual seconds
    net.received(2)             # DataReceived events delivered to host 2

Every datagram is routed by its (local, remote) addresses: it arrives at the core that
has a link whose local address is the datagram's remote one. Per path you can set loss,
delay, duplication, an MTU (failing at the sender with EMSGSIZE, or silently dropped
further along), or cut it entirely (``block``).
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Callable

import attrs

from knet._core import KnetCore
from knet._events import Datagram, DataReceived, Event, LogRecord
from knet._options import Address

__all__ = ["FakeNetwork", "PathFaults"]

_EMSGSIZE = 90


@attrs.define
class PathFaults:
    """Faults on datagrams from ``local`` to ``remote`` (one direction)."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay_ns: int = 100_000
    jitter_ns: int = 0
    blocked: bool = False
    #: Largest IP packet; bigger datagrams fail at the sender with EMSGSIZE.
    mtu: int | None = None
    #: With ``mtu`` set: drop bigger datagrams silently (a router further along the
    #: path, no ICMP) instead of failing them at the sender with EMSGSIZE.
    silent_drop_over_mtu: bool = False


class FakeNetwork:
    """Cores connected by a simulated UDP network, driven in virtual time."""

    def __init__(self, seed: int = 0, *, start_ns: int = 1_000_000_000) -> None:
        self.rng = random.Random(seed)
        self.now = start_ns
        self.cores: dict[int, KnetCore] = {}
        self.faults: dict[tuple[Address, Address], PathFaults] = defaultdict(PathFaults)
        self.events: dict[int, list[Event]] = defaultdict(list)
        self.logs: dict[int, list[LogRecord]] = defaultdict(list)
        self.sent: list[tuple[int, Datagram]] = []
        #: Called with every datagram before routing; return False to drop it.
        self.tap: Callable[[int, Datagram], bool] | None = None
        self._queue: list[tuple[int, int, Address, Address, bytes]] = []
        self._seq = 0

    def add_core(self, host_id: int, **kwargs: object) -> KnetCore:
        core = KnetCore(host_id, rng=random.Random(self.rng.getrandbits(64)), **kwargs)  # type: ignore[arg-type]
        self.cores[host_id] = core
        self.flush()
        return core

    def path(
        self, local: Address | tuple[str, int], remote: Address | tuple[str, int]
    ) -> PathFaults:
        """The faults of one direction of a path (created on first use)."""
        return self.faults[(_addr(local), _addr(remote))]

    def block(
        self, a: Address | tuple[str, int], b: Address | tuple[str, int], blocked: bool = True
    ) -> None:
        """Cut (or restore) both directions between two endpoints."""
        self.path(a, b).blocked = blocked
        self.path(b, a).blocked = blocked

    def received(self, host_id: int) -> list[DataReceived]:
        return [e for e in self.events[host_id] if isinstance(e, DataReceived)]

    def flush(self) -> None:
        """Collect every core's output: queue datagrams, record events and logs."""
        for host_id in sorted(self.cores):
            core = self.cores[host_id]
            while True:
                out = core.drain()
                if not out:
                    break
                self.events[host_id].extend(out.events)
                self.logs[host_id].extend(out.logs)
                for datagram in out.datagrams:
                    self._route(host_id, core, datagram)

    def _route(self, host_id: int, core: KnetCore, datagram: Datagram) -> None:
        self.sent.append((host_id, datagram))
        if self.tap is not None and not self.tap(host_id, datagram):
            return
        faults = self.faults.get((datagram.local, datagram.remote)) or PathFaults()
        overhead = 48 if datagram.remote.family == 6 else 28
        if faults.mtu is not None and len(datagram.data) + overhead > faults.mtu:
            if not faults.silent_drop_over_mtu:
                core.report_send_error(datagram, _EMSGSIZE, faults.mtu, self.now)
            return
        if faults.blocked or (faults.loss and self.rng.random() < faults.loss):
            return
        copies = 2 if faults.duplicate and self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            delay = faults.delay_ns + (
                self.rng.randrange(faults.jitter_ns) if faults.jitter_ns else 0
            )
            self._seq += 1
            heapq.heappush(
                self._queue,
                (self.now + delay, self._seq, datagram.local, datagram.remote, datagram.data),
            )

    def inject(
        self, source: Address | tuple[str, int], destination: Address | tuple[str, int], data: bytes
    ) -> None:
        """Deliver a raw datagram now (for fuzzing and attack tests)."""
        self._deliver(_addr(source), _addr(destination), data)
        self.flush()

    def _deliver(self, source: Address, destination: Address, data: bytes) -> None:
        for host_id in sorted(self.cores):
            core = self.cores[host_id]
            if destination in core.local_endpoints():
                core.receive(destination, [(data, (source.ip, source.port))], self.now)

    def run_until(self, until_ns: int) -> None:
        """Advance virtual time to ``until_ns``, delivering datagrams and firing timers."""
        self.flush()
        while True:
            next_packet = self._queue[0][0] if self._queue else None
            deadlines = [d for c in self.cores.values() if (d := c.next_deadline()) is not None]
            next_timer = min(deadlines) if deadlines else None
            candidates = [t for t in (next_packet, next_timer) if t is not None]
            if not candidates or min(candidates) > until_ns:
                break
            self.now = max(self.now, min(candidates))
            while self._queue and self._queue[0][0] <= self.now:
                _, _, source, destination, data = heapq.heappop(self._queue)
                self._deliver(source, destination, data)
            for host_id in sorted(self.cores):
                core = self.cores[host_id]
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    core.handle_timeouts(self.now)
            self.flush()
        self.now = until_ns

    def run_for(self, duration_ns: int) -> None:
        self.run_until(self.now + duration_ns)


def _addr(value: Address | tuple[str, int]) -> Address:
    return value if isinstance(value, Address) else Address(value[0], value[1])
