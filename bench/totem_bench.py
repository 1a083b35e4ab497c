"""Totem benchmark: simulator speed, ordered throughput over knet, membership times.

Usage (from the repository root)::

    .venv/bin/python bench/totem_bench.py                 # everything (about 1.5 minutes)
    .venv/bin/python bench/totem_bench.py --quick         # smoke run (about 10 s)
    .venv/bin/python bench/totem_bench.py --sizes 1KiB --duration 5 --senders 1
    .venv/bin/python bench/totem_bench.py --skip-real     # only the simulator

Three parts:

(a) **Simulator speed**: :class:`totem.testing.Simulation` runs 5 and 16 nodes with
    application load (``--sim-rate`` messages per simulated second), once on a
    healthy network and once with the seed's swarm of faults (loss, partitions,
    crashes, ...). ``sim s / wall s`` is simulated seconds per wall-clock second.

(b) **Ordered throughput on real sockets**: 3 nodes, *each its own process*
    (``bench/totem_bench_node.py``; the machine has 2 cores, one trio loop per node is
    what a deployment runs), each a knet handle with crypto on (knet's default cipher,
    AEGIS-256) and two links to every peer on loopback (link 0 on
    127.0.0.N, link 1 on 127.0.1.N, passive policy), and a Totem node with the
    process-group layer (totempg packing and fragmentation) over a ``KnetTransport``;
    agreed delivery, corosync's default timers.
    In a cell the sending node(s) multicast ``size``-byte messages to a group for
    ``--duration`` seconds with flow control: at most ``window`` messages of their own
    not yet delivered back to them (``--window``, default 4 MiB / size within 16..4096),
    and nothing while the send queue's level (``ProcessGroups.queue_level()``) is HIGH
    or CRITICAL; a sender yields to its node's other tasks every 64 messages. Payloads
    carry the cell tag, a counter and the send time. ``senders`` = 1: node 1 sends,
    nodes 2 and 3 only receive; ``senders`` = 3: every node sends. ``msgs/s`` and
    ``MB/s``: messages (payload bytes) of the cell delivered at the slowest node during
    the sending window, per second. ``p50``/``p99``: mcast to self-delivery at the
    senders, under that load (``load``) and with one message in flight from node 1
    (``idle``: the ring is otherwise idle, so this includes the representative's token
    hold). ``cpu``: CPU seconds per second of the busiest node process (1.0 = a whole
    core). ``order``: every node delivered the cell's messages in one order.

(c) **Membership times** on the same kind of 3-process cluster, idle: from spawning the
    processes to the last node's regular configuration with all 3 members, and from
    ``SIGKILL`` of node 3 to the survivors' regular configuration without it (the later
    of the two survivors), with corosync's default timers (3 nodes:
    token 3650 ms, consensus 4380 ms) and with ``token: 1000`` (1650 / 1980 ms). The
    reference column is corosync 3.1.7 measured on this kind of machine (3 nodes, 2
    links, aes256). Each timer setting runs on ``--repeat`` fresh clusters (the median
    is printed, and every run); the ring id files live in a temporary directory.

Every address is on loopback. Times across processes use ``time.monotonic_ns()``. The
machine's load average is printed at the start and the end: the numbers of (b) depend on
having the two cores to ourselves.

Debugging and profiling aids (environment of the node processes):
``TOTEM_BENCH_DEBUG=1`` logs debug records to each node's stderr log (kept only while the
run lasts; failures print the tail); ``TOTEM_BENCH_PROFILE=DIR`` runs every node under
cProfile and writes ``DIR/node<id>-<pid>.prof`` when it exits (a killed node writes none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _src in ("packages/knet/src", "packages/totem/src"):
    if str(ROOT / _src) not in sys.path:
        sys.path.insert(0, str(ROOT / _src))

from totem import TotemConfig  # noqa: E402
from totem.testing._sim import Fault, SimConfig, Simulation  # noqa: E402

NODE_SCRIPT = Path(__file__).resolve().parent / "totem_bench_node.py"
NODES = 3
VICTIM = 3
DEFAULT_SIZES = (64, 1024, 65536)
QUICK_SIZES = (64, 1024)
MAX_SIZE = 1 << 20  # the process-group layer's largest message
#: Default messages in flight per sender: 4 MiB worth, 16..4096. Below 4096 the small
#: sizes are limited by the window (Little's law: window / latency); above, only latency
#: grows. The process-group send queue (4 MiB, HIGH at 60 %) bounds large sizes anyway.
WINDOW_BYTES = 4 << 20
WINDOW_MIN, WINDOW_MAX = 16, 4096
STEP_TIMEOUT_S = 60.0
#: corosync 3.1.7 on this kind of machine (3 nodes, 2 links, aes256), seconds.
COROSYNC_START = 2.8
COROSYNC_KILL_DEFAULT = 8.0
COROSYNC_KILL_TOKEN_1000 = 3.7
SECOND = 1_000_000_000


# ====================================================================== (a) simulator


@dataclass
class SimRow:
    nodes: int
    faults: str
    rate: float
    sim_s: float
    wall_s: float
    delivered: int

    @property
    def speed(self) -> float:
        return self.sim_s / self.wall_s if self.wall_s else 0.0


def measure_sim(nodes: int, faulty: bool, seconds: float, rate: float, seed: int) -> SimRow:
    half = int(seconds * SECOND / 2)
    config = SimConfig(
        nodes=nodes,
        faults=frozenset(Fault) if faulty else frozenset(),
        safety_ns=half,
        liveness_ns=half,
        message_rate=rate,
    )
    started = time.perf_counter()
    result = Simulation(seed, config).run()
    wall = time.perf_counter() - started
    return SimRow(
        nodes=nodes,
        faults="swarm" if faulty else "none",
        rate=rate,
        sim_s=result.sim_seconds,
        wall_s=wall,
        delivered=result.coverage.get("messages_delivered", 0),
    )


# ====================================================================== cluster of processes


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


class Cluster:
    """``NODES`` node processes; their JSON reports are collected by reader threads."""

    def __init__(self, token: int | None, workdir: Path) -> None:
        self.token = token
        self.workdir = workdir
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.log: dict[int, list[dict[str, Any]]] = {n: [] for n in range(1, NODES + 1)}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.spawned_ns = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        ports = {
            f"{node}.{link}": free_port(f"127.0.{link}.{node}")
            for node in range(1, NODES + 1)
            for link in (0, 1)
        }
        key = os.urandom(256).hex()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(
                None,
                [
                    str(ROOT / "packages" / "knet" / "src"),
                    str(ROOT / "packages" / "totem" / "src"),
                    env.get("PYTHONPATH"),
                ],
            )
        )
        self.spawned_ns = time.monotonic_ns()
        for node in range(1, NODES + 1):
            command = [
                sys.executable,
                str(NODE_SCRIPT),
                "--node-id",
                str(node),
                "--nodes",
                str(NODES),
                "--ports",
                json.dumps(ports),
                "--key",
                key,
                "--state-dir",
                str(self.workdir),
            ]
            if self.token is not None:
                command += ["--token", str(self.token)]
            stderr = (self.workdir / f"node{node}.log").open("ab")
            proc = subprocess.Popen(  # our own node script
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
            )
            stderr.close()
            self.procs[node] = proc
            thread = threading.Thread(target=self._read, args=(node, proc), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, node: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put((node, json.loads(line)))
        self.events.put((node, {"ev": "exit"}))

    def send(self, node: int, **command: Any) -> None:
        proc = self.procs[node]
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(command).encode() + b"\n")
        proc.stdin.flush()

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = STEP_TIMEOUT_S) -> Any:
        """Collect reports until ``predicate()`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            try:
                node, event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.log[node].append(event)
            if event["ev"] == "exit" and node in self.procs and self.procs[node].poll() is None:
                pass

    def of(self, node: int, report: str, **match: Any) -> list[dict[str, Any]]:
        """``node``'s reports named ``report`` whose fields equal ``match``."""
        return [
            e
            for e in self.log[node]
            if e["ev"] == report and all(e.get(k) == v for k, v in match.items())
        ]

    def regular_with(self, node: int, members: list[int], after_ns: int = 0) -> int | None:
        """Time of ``node``'s first regular configuration with exactly ``members``."""
        for event in self.of(node, "conf", kind="REGULAR"):
            if event["members"] == members and event["t"] >= after_ns:
                return int(event["t"])
        return None

    def kill(self, node: int) -> int:
        proc = self.procs[node]
        killed = time.monotonic_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return killed

    def stop(self) -> None:
        for node, proc in self.procs.items():
            if proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    self.send(node, cmd="leave")
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for proc in self.procs.values():
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if proc.stdout is not None:
                proc.stdout.close()

    def tail_logs(self, lines: int = 15) -> str:
        out = []
        for node in self.procs:
            path = self.workdir / f"node{node}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- node {node} stderr (last {lines} lines)")
                out.extend(text)
        return "\n".join(out)


# ====================================================================== (b) throughput


@dataclass
class LoadRow:
    size: int
    senders: int
    window: int
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    load_p50_ms: float = float("nan")
    load_p99_ms: float = float("nan")
    idle_p50_ms: float = float("nan")
    idle_p99_ms: float = float("nan")
    cpu: float = float("nan")
    order_ok: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def window_for(size: int) -> int:
    return max(WINDOW_MIN, min(WINDOW_MAX, WINDOW_BYTES // size))


class CellRunner:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.tag = 0

    def run(
        self, *, mode: str, size: int, senders: list[int], duration: float, window: int
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Run one cell; returns (sent report per sender, receive report per node)."""
        cluster = self.cluster
        self.tag += 1
        tag = self.tag
        start_ns = time.monotonic_ns() + 200_000_000
        for node in range(1, NODES + 1):
            cluster.send(
                node,
                cmd="cell",
                tag=tag,
                mode=mode,
                size=size,
                start_ns=start_ns,
                duration_ns=int(duration * SECOND),
                send=node in senders,
                window=window,
            )

        def sent_reports() -> dict[int, dict[str, Any]] | None:
            found = {n: cluster.of(n, "sent", tag=tag) for n in senders}
            if all(found.values()):
                return {n: events[-1] for n, events in found.items()}
            return None

        sent = cluster.wait(sent_reports, f"the senders of cell {tag}", duration + STEP_TIMEOUT_S)
        expect = {str(n): sent[n]["sent"] for n in senders}
        for node in range(1, NODES + 1):
            cluster.send(node, cmd="report", tag=tag, expect=expect)

        def reports() -> dict[int, dict[str, Any]] | None:
            found = {n: cluster.of(n, "report", tag=tag) for n in range(1, NODES + 1)}
            if all(found.values()):
                return {n: events[-1] for n, events in found.items()}
            return None

        received = cluster.wait(reports, f"the reports of cell {tag}")
        return sent, received


def measure_load(
    runner: CellRunner, size: int, senders: int, duration: float, idle: float, window: int
) -> LoadRow:
    row = LoadRow(size=size, senders=senders, window=window)
    sender_ids = list(range(1, senders + 1))
    sent, received = runner.run(
        mode="load", size=size, senders=sender_ids, duration=duration, window=window
    )
    expected = {str(n): sent[n]["sent"] for n in sender_ids}
    slowest = min(received.values(), key=lambda r: r["in_window"])
    row.msgs_per_s = slowest["in_window"] / duration
    row.mb_per_s = slowest["in_window_bytes"] / duration / 1e6
    p50s = [s["lat_us"].get("p50") for s in sent.values() if s["lat_us"]]
    p99s = [s["lat_us"].get("p99") for s in sent.values() if s["lat_us"]]
    if p50s:
        row.load_p50_ms = statistics.median(p50s) / 1000
        row.load_p99_ms = max(p99s) / 1000
    row.cpu = max(r["cpu_s"] for r in received.values()) / duration
    complete = all(
        {k: v for k, v in r["counts"].items() if k in expected} == expected
        for r in received.values()
    )
    one_order = len({r["order"] for r in received.values()}) == 1
    row.order_ok = complete and one_order and not any(r["out_of_order"] for r in received.values())
    row.extra = {
        "sent": expected,
        "stats": {n: r["stats"] for n, r in received.items()},
    }
    if idle > 0:
        idle_sent, _ = runner.run(mode="idle", size=size, senders=[1], duration=idle, window=1)
        lat = idle_sent[1]["lat_us"]
        if lat:
            row.idle_p50_ms = lat["p50"] / 1000
            row.idle_p99_ms = lat["p99"] / 1000
    return row


# ====================================================================== (c) membership


@dataclass
class MembershipRow:
    timers: str
    start_s: float = float("nan")
    kill_s: float = float("nan")
    kill_each_s: dict[int, float] = field(default_factory=dict)
    error: str | None = None


def timers_label(token: int | None) -> str:
    config = TotemConfig() if token is None else TotemConfig(token=token)
    eff = config.effective(NODES)
    name = "defaults" if token is None else f"token {token}"
    return f"{name} (T={eff.token}, cons={eff.consensus})"


def start_cluster(cluster: Cluster) -> float:
    """Spawn the nodes; seconds until every node has a regular 3-node configuration."""
    everyone = list(range(1, NODES + 1))
    cluster.start()
    cluster.wait(
        lambda: all(cluster.regular_with(n, everyone) for n in everyone),
        "the first 3-node membership",
    )
    formed = max(cluster.regular_with(n, everyone) or 0 for n in everyone)
    return (formed - cluster.spawned_ns) / SECOND


def measure_kill(cluster: Cluster, row: MembershipRow, settle: float) -> None:
    survivors = [n for n in range(1, NODES + 1) if n != VICTIM]
    time.sleep(settle)  # an idle, stable ring
    killed = cluster.kill(VICTIM)
    cluster.wait(
        lambda: all(cluster.regular_with(n, survivors, killed) for n in survivors),
        "the survivors' membership",
    )
    row.kill_each_s = {
        n: ((cluster.regular_with(n, survivors, killed) or killed) - killed) / SECOND
        for n in survivors
    }
    row.kill_s = max(row.kill_each_s.values())


# ====================================================================== output


def format_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


SIM_HEADER = (
    f"{'nodes':>5}  {'faults':<6} {'load msg/s':>10}  {'sim s':>6} {'wall s':>7}  "
    f"{'sim s / wall s':>14}  {'delivered/wall s':>16}"
)
LOAD_HEADER = (
    f"{'payload':>8} {'senders':>7} {'window':>6}  {'msgs/s':>8} {'MB/s':>7}  "
    f"{'load p50 ms':>11} {'load p99 ms':>11}  {'idle p50 ms':>11} {'idle p99 ms':>11}  "
    f"{'cpu':>4}  {'order'}"
)
MEMBERSHIP_HEADER = f"{'measurement':<36} {'timers':<32} {'ours s':>7}  {'corosync 3.1.7 s':>16}"


def format_sim(row: SimRow) -> str:
    return (
        f"{row.nodes:>5}  {row.faults:<6} {row.rate:>10.0f}  {row.sim_s:>6.1f} {row.wall_s:>7.2f}  "
        f"{row.speed:>14.2f}  {row.delivered / row.wall_s:>16.0f}"
    )


def format_load(row: LoadRow) -> str:
    head = f"{format_size(row.size):>8} {row.senders:>7} {row.window:>6}  "
    if row.error:
        return head + f"FAILED: {row.error}"
    return head + (
        f"{row.msgs_per_s:>8.0f} {row.mb_per_s:>7.2f}  "
        f"{fmt(row.load_p50_ms, '11.1f')} {fmt(row.load_p99_ms, '11.1f')}  "
        f"{fmt(row.idle_p50_ms, '11.2f')} {fmt(row.idle_p99_ms, '11.2f')}  "
        f"{fmt(row.cpu, '4.2f')}  {'ok' if row.order_ok else 'BAD'}"
    )


def format_membership(rows: list[MembershipRow], token: int | None) -> list[str]:
    label = timers_label(token)
    failed = [row.error for row in rows if row.error]
    good = [row for row in rows if not row.error]
    start_ref = f"{COROSYNC_START:.1f}" if token is None else "-"
    kill_ref = COROSYNC_KILL_DEFAULT if token is None else COROSYNC_KILL_TOKEN_1000
    kill_ref_text = f"{kill_ref:.1f}" if token in (None, 1000) else "-"
    lines = []
    for what, values, reference in (
        ("start -> 3-node membership", [row.start_s for row in good], start_ref),
        ("kill -9 -> 2-node membership", [row.kill_s for row in good], kill_ref_text),
    ):
        median = statistics.median(values) if values else float("nan")
        detail = f"   (runs: {' '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
        lines.append(f"{what:<36} {label:<32} {fmt(median, '7.2f')}  {reference:>16}" + detail)
    if good:
        spread = max(max(r.kill_each_s.values()) - min(r.kill_each_s.values()) for r in good)
        lines.append(f"{'':<36} {'':<32} survivors of each kill within {spread:.3f} s")
    lines.extend(f"{'':<36} {label:<32} FAILED: {error}" for error in failed)
    return lines


# ====================================================================== main


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in text.split(","):
        number, factor = item.strip().lower().replace(" ", ""), 1
        for suffix, multiplier in (("mib", 1 << 20), ("kib", 1024), ("k", 1024), ("b", 1)):
            if number.endswith(suffix):
                number, factor = number[: -len(suffix)], multiplier
                break
        try:
            size = int(number) * factor
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a payload size: {item!r}") from None
        if not 32 <= size <= MAX_SIZE:
            raise argparse.ArgumentTypeError(
                f"payload size must be 32..{MAX_SIZE} bytes, got {size}"
            )
        sizes.append(size)
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short cells, 64 B and 1 KiB, token 1000"
    )
    parser.add_argument("--sizes", type=parse_sizes, help="payload sizes (default 64,1KiB,64KiB)")
    parser.add_argument(
        "--duration", type=float, help="seconds of sending per throughput cell (default 3)"
    )
    parser.add_argument(
        "--senders",
        type=lambda text: [int(x) for x in text.split(",")],
        help="sending nodes per cell, 1..3, comma-separated (default 1,3)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="messages in flight per sender (default: 4 MiB / size, 16..4096)",
    )
    parser.add_argument("--skip-real", action="store_true", help="only the simulator (a)")
    parser.add_argument("--skip-sim", action="store_true", help="skip the simulator (a)")
    parser.add_argument(
        "--sim-seconds", type=float, help="simulated seconds per simulator run (default 20)"
    )
    parser.add_argument(
        "--sim-rate", type=float, default=1000.0, help="simulated load, messages/s (all nodes)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")
    parser.add_argument(
        "--repeat", type=int, help="clusters per timer setting for (c) (default 3, quick 1)"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 0.5 if args.quick else 3.0
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.senders is None:
        args.senders = [1] if args.quick else [1, 3]
    if any(not 1 <= s <= NODES for s in args.senders):
        parser.error(f"--senders must be 1..{NODES}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.sim_seconds is None:
        args.sim_seconds = 2.0 if args.quick else 20.0
    return args


def print_legend(args: argparse.Namespace) -> None:
    command = " ".join(["bench/totem_bench.py", *sys.argv[1:]])
    print(
        f"totem benchmark: {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start; "
        f"command: {command}"
    )
    print()


def run_sim(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print("(a) simulator speed (one process, virtual time)")
    print(SIM_HEADER)
    rows = []
    for nodes in (5, 16):
        for faulty in (False, True):
            row = measure_sim(nodes, faulty, args.sim_seconds, args.sim_rate, args.seed)
            rows.append(row)
            print(format_sim(row), flush=True)
    results["sim"] = [row.__dict__ | {"speed": row.speed} for row in rows]
    print()


def run_real(args: argparse.Namespace, results: dict[str, Any]) -> bool:
    """(b) and (c). Returns False if something failed."""
    ok = True
    workroot = Path(tempfile.mkdtemp(prefix="totem-bench-"))
    # The throughput cells run on the first cluster (corosync's default timers; token
    # 1000 with --quick, which measures only that), before its kill measurement.
    timer_settings: list[int | None] = [1000] if args.quick else [None, 1000]
    membership: dict[int | None, list[MembershipRow]] = {t: [] for t in timer_settings}
    load_rows: list[LoadRow] = []
    idle = 0.25 if args.quick else 1.0
    try:
        for repeat in range(args.repeat):
            for index, token in enumerate(timer_settings):
                workdir = workroot / f"cluster{repeat}.{index}"
                workdir.mkdir()
                cluster = Cluster(token, workdir)
                row = MembershipRow(timers_label(token))
                membership[token].append(row)
                try:
                    row.start_s = start_cluster(cluster)
                    if repeat == 0 and index == 0:
                        ok = run_load_cells(cluster, args, token, idle, load_rows) and ok
                        time.sleep(1.0)  # let the ring go idle before the kill
                    measure_kill(cluster, row, settle=0.5 if args.quick else 2.0)
                except TimeoutError as exc:
                    row.error = str(exc)
                    ok = False
                    print(cluster.tail_logs(), file=sys.stderr)
                finally:
                    cluster.stop()
        runs = f"{args.repeat} runs each, median" if args.repeat > 1 else "1 run"
        print(f"(c) membership: 3 node processes (as in (b)), idle ring, SIGKILL of node 3; {runs}")
        print(MEMBERSHIP_HEADER)
        for token, rows in membership.items():
            for line in format_membership(rows, token):
                print(line)
        print()
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    results["load"] = [row.__dict__ for row in load_rows]
    results["membership"] = [
        {"token": token, **row.__dict__} for token, rows in membership.items() for row in rows
    ]
    return ok


def run_load_cells(
    cluster: Cluster,
    args: argparse.Namespace,
    token: int | None,
    idle: float,
    load_rows: list[LoadRow],
) -> bool:
    print(
        "(b) agreed delivery over knet on loopback: 3 node processes, 2 links, "
        f"crypto on, {timers_label(token)}, {args.duration:g} s per cell"
    )
    print(LOAD_HEADER)
    ok = True
    runner = CellRunner(cluster)
    for size in args.sizes:
        for senders in args.senders:
            window = args.window or window_for(size)
            try:
                load = measure_load(runner, size, senders, args.duration, idle, window)
            except TimeoutError as exc:
                load = LoadRow(size, senders, window, error=str(exc))
                ok = False
            if not load.error and not load.order_ok:
                ok = False
            load_rows.append(load)
            print(format_load(load), flush=True)
    print()
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_legend(args)
    results: dict[str, Any] = {}
    if not args.skip_sim:
        run_sim(args, results)
    ok = True
    if not args.skip_real:
        ok = run_real(args, results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        print(json.dumps(results, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
