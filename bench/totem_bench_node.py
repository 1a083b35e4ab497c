"""One Totem node of bench/totem_bench.py, run as its own process.

Not meant to be run by hand: ``bench/totem_bench.py`` starts one of these per node and
talks to it with JSON lines (commands on stdin, reports on stdout; logs go to stderr).

The node runs a knet handle (crypto on, two links to every peer: link 0 on 127.0.0.N,
link 1 on 127.0.1.N, ports chosen by the parent) and a :class:`totem.TotemNode` with the
process-group layer over a :class:`totem.KnetTransport`, joined to the group
``bench``. Knet's heartbeat timers are derived from the effective token as corosync
does: ``ping_interval = T / 4``, ``ping_timeout = T / 2``, ``pong_count = 2``.

Reports (one JSON object per line, ``"ev"`` names it; times are
``time.monotonic_ns()``, one clock for every process on Linux):

* ``{"ev": "up", "t": ...}`` once the Totem node runs;
* ``{"ev": "conf", "t", "kind", "ring", "members", "left", "joined"}`` for every
  configuration change;
* ``{"ev": "sent", "tag", "sent", "lat": [...]}`` when a sender finished a cell and
  every message of it came back (self-delivery latencies in µs, sampled);
* ``{"ev": "report", "tag", ...}`` the receive side of a cell (see :func:`_report`).

Commands: ``{"cmd": "cell", "tag", "mode": "load"|"idle", "size", "start_ns",
"duration_ns", "send", "window"}`` and ``{"cmd": "report", "tag", "expect": {sender:
count}}``; ``{"cmd": "leave"}`` leaves the ring and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import struct
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
for _src in ("packages/knet/src", "packages/totem/src"):
    if str(_ROOT / _src) not in sys.path:
        sys.path.insert(0, str(_ROOT / _src))

import structlog  # noqa: E402
import trio  # noqa: E402

import knet  # noqa: E402
from totem import (  # noqa: E402
    ConfigurationChange,
    FileRingStore,
    GroupMessage,
    KnetTransport,
    QueueLevel,
    TotemConfig,
    open_node,
)

GROUP = b"bench"
#: Every payload starts with: cell tag, sender's message counter, send time (ns).
STAMP = struct.Struct(">IQQ")
MAX_LATENCY_SAMPLES = 20_000
#: A sender yields to its other tasks (the node's reader: the token) every BURST mcasts.
BURST = 64


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Cell:
    """What this node sees of one measurement cell."""

    def __init__(self, spec: dict[str, Any], node_id: int) -> None:
        self.spec = spec
        self.tag: int = spec["tag"]
        self.start_ns: int = spec["start_ns"]
        self.end_ns: int = spec["start_ns"] + spec["duration_ns"]
        self.counts: dict[int, int] = {}  # sender -> messages delivered here
        self.in_window = 0  # messages delivered within [start, end]
        self.in_window_bytes = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.order = hashlib.blake2b(digest_size=8)  # (sender, counter) in delivery order
        self.out_of_order = 0
        self.highest: dict[int, int] = {}
        self.node_id = node_id
        self.latencies: list[int] = []  # own messages: ns from mcast to self-delivery
        self.outstanding = 0
        self.wake = trio.Event()
        self.cpu_start = cpu_seconds()
        self.cpu_end: float | None = None

    def delivered(self, message: GroupMessage, now: int) -> None:
        _tag, counter, sent_ns = STAMP.unpack_from(message.payload)
        sender = message.sender
        self.counts[sender] = self.counts.get(sender, 0) + 1
        if counter <= self.highest.get(sender, 0):
            self.out_of_order += 1
        self.highest[sender] = counter
        self.order.update(struct.pack(">IQ", sender, counter))
        if self.start_ns <= now <= self.end_ns:
            self.in_window += 1
            self.in_window_bytes += len(message.payload)
        if self.first_ns is None:
            self.first_ns = now
        self.last_ns = now
        if sender == self.node_id:
            if len(self.latencies) < MAX_LATENCY_SAMPLES:
                self.latencies.append(now - sent_ns)
            self.outstanding -= 1
            self.wake.set()


class BenchNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node_id: int = args.node_id
        self.cells: dict[int, Cell] = {}
        self.node: Any = None

    async def run(self) -> None:
        args = self.args
        ports: dict[str, int] = json.loads(args.ports)
        crypto = knet.CryptoConfig(key=bytes.fromhex(args.key))
        config = TotemConfig() if args.token is None else TotemConfig(token=args.token)
        token = config.effective(args.nodes).token
        link_options = knet.LinkOptions(
            ping_interval_ms=max(1, token // 4), ping_timeout_ms=max(1, token // 2), pong_count=2
        )
        peers = [n for n in range(1, args.nodes + 1) if n != self.node_id]
        async with knet.open_handle(self.node_id, crypto=crypto) as handle:
            for peer in peers:
                handle.add_host(peer)
                for link in (0, 1):
                    handle.set_link(
                        peer,
                        link,
                        local=(f"127.0.{link}.{self.node_id}", ports[f"{self.node_id}.{link}"]),
                        remote=(f"127.0.{link}.{peer}", ports[f"{peer}.{link}"]),
                        options=link_options,
                    )
            store = FileRingStore(Path(args.state_dir) / f"ringid_{self.node_id}")
            async with open_node(
                self.node_id,
                KnetTransport(handle),
                node_count=args.nodes,
                config=config,
                store=store,
                groups=True,
            ) as node:
                self.node = node
                node.join(GROUP)
                emit(ev="up", t=time.monotonic_ns(), token=token)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._events, nursery)
                    await self._commands(nursery)
                    nursery.cancel_scope.cancel()
        emit(ev="bye", t=time.monotonic_ns(), knet=_knet_counters(handle))

    async def _events(self, nursery: trio.Nursery) -> None:
        cells = self.cells
        clock = time.monotonic_ns
        async for event in self.node.events():
            now = clock()
            if isinstance(event, GroupMessage):
                tag = STAMP.unpack_from(event.payload)[0]
                cell = cells.get(tag)
                if cell is not None:
                    cell.delivered(event, now)
            elif isinstance(event, ConfigurationChange):
                emit(
                    ev="conf",
                    t=now,
                    kind=event.kind.name,
                    ring=[event.ring_id.seq, event.ring_id.rep],
                    members=list(event.members),
                    left=list(event.left),
                    joined=list(event.joined),
                )

    async def _commands(self, nursery: trio.Nursery) -> None:
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                return  # the parent went away
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                kind = command["cmd"]
                if kind == "cell":
                    cell = Cell(command, self.node_id)
                    self.cells[cell.tag] = cell
                    nursery.start_soon(self._cpu_window, cell)
                    if command["send"]:
                        nursery.start_soon(self._send, cell)
                elif kind == "report":
                    nursery.start_soon(self._report, command)
                elif kind == "leave":
                    return

    async def _send(self, cell: Cell) -> None:
        spec = cell.spec
        node = self.node
        groups = self.node.groups
        padding = bytes(max(0, spec["size"] - STAMP.size))
        window = spec["window"] if spec["mode"] == "load" else 1
        clock = time.monotonic_ns
        await trio.sleep(max(0.0, (cell.start_ns - clock()) / 1e9))
        counter = 0
        with trio.move_on_after(max(0.0, (cell.end_ns - clock()) / 1e9)):
            while True:
                while cell.outstanding < window and groups.queue_level() < QueueLevel.HIGH:
                    counter += 1
                    node.mcast_group((GROUP,), STAMP.pack(cell.tag, counter, clock()) + padding)
                    cell.outstanding += 1
                    if counter % BURST == 0:
                        await trio.lowlevel.checkpoint()
                cell.wake = trio.Event()
                await cell.wake.wait()
        # Wait (bounded) until every message sent came back to us.
        with trio.move_on_after(60):
            while cell.outstanding > 0:
                cell.wake = trio.Event()
                await cell.wake.wait()
        lat = sorted(cell.latencies)
        emit(ev="sent", tag=cell.tag, sent=counter, lat_us=_percentiles(lat))

    async def _cpu_window(self, cell: Cell) -> None:
        """CPU time this process used during the cell's sending window."""
        clock = time.monotonic_ns
        await trio.sleep(max(0.0, (cell.start_ns - clock()) / 1e9))
        cell.cpu_start = cpu_seconds()
        await trio.sleep(max(0.0, (cell.end_ns - clock()) / 1e9))
        cell.cpu_end = cpu_seconds()

    async def _report(self, command: dict[str, Any]) -> None:
        cell = self.cells[command["tag"]]
        expect = {int(k): v for k, v in command["expect"].items()}
        with trio.move_on_after(60):
            while cell.cpu_end is None or any(cell.counts.get(s, 0) < n for s, n in expect.items()):
                await trio.sleep(0.01)
        emit(
            ev="report",
            tag=cell.tag,
            counts={str(k): v for k, v in cell.counts.items()},
            in_window=cell.in_window,
            in_window_bytes=cell.in_window_bytes,
            first_ns=cell.first_ns,
            last_ns=cell.last_ns,
            order=cell.order.hexdigest(),
            out_of_order=cell.out_of_order,
            cpu_s=(cell.cpu_end if cell.cpu_end is not None else cpu_seconds()) - cell.cpu_start,
            stats={k: v for k, v in self.node.stats.items() if v},
        )
        del self.cells[cell.tag]


def _percentiles(sorted_ns: list[int]) -> dict[str, float]:
    if not sorted_ns:
        return {}

    def pick(q: float) -> float:
        return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000

    return {"p50": pick(0.5), "p99": pick(0.99), "n": len(sorted_ns)}


def _knet_counters(handle: Any) -> dict[str, Any]:
    try:
        stats = handle.stats()
    except Exception:  # best effort: the handle may be closed
        return {}
    return {k: v for k, v in stats.items() if isinstance(v, int) and v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--ports", required=True, help='JSON {"node.link": port}')
    parser.add_argument("--key", required=True, help="the knet authkey, hex")
    parser.add_argument("--token", type=int, default=None, help="totem.token (ms)")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # info and up; TOTEM_BENCH_DEBUG=1 in the environment logs debug records too
        wrapper_class=structlog.make_filtering_bound_logger(
            10 if os.environ.get("TOTEM_BENCH_DEBUG") else 20
        ),
    )
    profile_dir = os.environ.get("TOTEM_BENCH_PROFILE")
    if not profile_dir:
        trio.run(BenchNode(args).run)
        return
    import cProfile  # a profiling aid only

    profiler = cProfile.Profile()
    try:
        profiler.runcall(trio.run, BenchNode(args).run)
    finally:
        profiler.dump_stats(Path(profile_dir) / f"node{args.node_id}-{os.getpid()}.prof")


if __name__ == "__main__":
    main()
