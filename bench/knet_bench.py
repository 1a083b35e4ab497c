"""knet throughput and latency on loopback, against a bare trio UDP socket pair.

Usage (from the repository root)::

    .venv/bin/python bench/knet_bench.py                  # full table, 2 s per cell
    .venv/bin/python bench/knet_bench.py --duration 5 --sizes 1KiB,64KiB --repeat 3
    .venv/bin/python bench/knet_bench.py --quick          # smoke run: 2 sizes, short cells

Every cell runs a sender and a receiver in two separate processes, each on its own
trio loop (one Python process would make both ends share one core). Payloads carry the
sender's ``time.monotonic_ns()``, one system-wide clock on Linux, so the receiving
application measures the one-way latency of every message it gets.

Rows:

* ``bare``: a trio UDP socket pair, the physical baseline. The sender calls ``sendto``
  in a loop (``wait_writable`` when the socket is full); the receiver waits with
  ``wait_readable`` and drains the socket without blocking, the pattern the knet
  driver uses. A payload larger than one datagram (64 KiB) is cut into equal chunks.
* ``knet``: two ``knet.open_handle`` hosts (ids 1 and 2), crypto off or on (knet's
  default cipher, AEGIS-256, or ``--cipher``), one link, or two links with the active
  policy (each message goes out on both links; the receiver de-duplicates). The
  receiving application drains its channel with ``receive_nowait`` and waits with
  ``receive``.

Each cell has two phases:

1. latency: one message in flight at a time (send, wait for the receiver's
   acknowledgement, send the next) for a quarter of ``--duration``: the one-way
   latency of an otherwise idle path (``p50``/``p99`` columns);
2. throughput: for ``--duration`` seconds the sender keeps up to ``window`` messages in
   flight. The receiver acknowledges the cumulative count of delivered messages over
   a separate loopback UDP control socket every ``window / 4`` messages and whenever
   it runs out of input. UDP drops what overflows a receive buffer, so without this
   the rate would measure drops; if no acknowledgement comes for 200 ms the sender
   counts the outstanding messages as lost and goes on (``loss %``). ``msgs/s`` and
   ``MB/s`` are payloads delivered to the receiving application per second, and
   ``load p50``/``load p99`` the one-way latency under that load (mostly queueing).

``tx cpu``/``rx cpu`` are the CPU microseconds (user + system) per message of the two
processes during phase 2, and ``ratio`` is knet msgs/s over bare msgs/s of the same
payload size in the same run. Only loopback addresses (127.0.0.x) are used.

Profiling aid: ``KNET_BENCH_WRAP="py-spy record -o /tmp/{cell}-{role}.svg --"`` runs
every child process under that command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import attrs
import trio

try:
    import knet
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "knet" / "src"))
    import knet

DEFAULT_SIZES = (64, 1024, 16384, 65536)
QUICK_SIZES = (64, 1024)
DEFAULT_DURATION = 2.0
QUICK_DURATION = 0.5
WINDOW_BYTES = 1024 * 1024  # bytes in flight in phase 2, within the bounds below
WINDOW_MIN, WINDOW_MAX = 8, 1024
STALL_NS = 200_000_000
#: The cipher a ``knet.CryptoConfig`` uses when none is given: the 'crypto on' default.
KNET_DEFAULT_CIPHER: knet.Cipher = attrs.fields(knet.CryptoConfig).cipher.default
BARE_CHUNK = 65000  # largest datagram of the bare rows (IPv4 UDP allows 65507)
SOCK_RCVBUF = 8 * 1024 * 1024  # what the knet driver asks for
SOCK_SNDBUF = 4 * 1024 * 1024
# Every payload (and every bare chunk) starts with: send time ns, message seq, chunk
# index, chunk count, phase (0 latency, 1 throughput).
STAMP = struct.Struct(">QQHHB")
ACK = struct.Struct(">cQ")  # b"A" + messages delivered, or b"E" + messages sent (the end)
LINK_ADDRESSES = (("127.0.0.1", "127.0.0.2"), ("127.0.0.3", "127.0.0.4"))
CHANNEL = 0
SENDER_ID, RECEIVER_ID = 1, 2
# Fast heartbeats so links come up quickly; the timeout stays generous under load.
LINK_OPTIONS = {"ping_interval_ms": 100, "ping_timeout_ms": 2000, "pong_count": 2}
BENCH_KEY = bytes(range(256))  # a fixed 256-byte authkey: this is a benchmark
LATENCY, THROUGHPUT = 0, 1


@dataclass
class CellSpec:
    """What one (transport, size, crypto, links) measurement runs."""

    transport: str  # "bare" or "knet"
    size: int
    crypto: bool
    links: int
    duration: float
    window: int
    cipher: str
    data_ports: list[tuple[int, int]]  # (sender port, receiver port) per link
    sender_ctrl: int
    receiver_ctrl: int


@dataclass
class Row:
    transport: str
    size: int
    crypto: bool
    links: int
    window: int
    sent: int = 0
    delivered: int = 0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    p50_us: float = math.nan
    p99_us: float = math.nan
    load_p50_us: float = math.nan
    load_p99_us: float = math.nan
    tx_cpu_us: float = math.nan
    rx_cpu_us: float = math.nan
    ratio: float | None = None
    cpu_ratio: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loss_pct(self) -> float:
        if not self.sent:
            return 0.0
        return max(0.0, 100.0 * (self.sent - self.delivered) / self.sent)


# ---------------------------------------------------------------------- helpers


def window_for(size: int) -> int:
    return max(WINDOW_MIN, min(WINDOW_MAX, WINDOW_BYTES // size))


def free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_socket(ip: str, port: int, *, big_buffers: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if big_buffers:  # the same buffer sizes as knet's sockets
        for option, size in ((socket.SO_RCVBUF, SOCK_RCVBUF), (socket.SO_SNDBUF, SOCK_SNDBUF)):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, size)
    sock.bind((ip, port))
    return sock


def chunk_sizes(size: int) -> list[int]:
    """How the bare rows cut one payload into datagrams of (nearly) equal size."""
    count = max(1, -(-size // BARE_CHUNK))
    base, extra = divmod(size, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def quiet_logging() -> None:
    """knet logs through structlog; keep the child's stdout for its result line."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


# ---------------------------------------------------------------------- receiver side


class Tally:
    """The receiving application: counts, timestamps and acknowledges messages."""

    def __init__(self, ctrl: socket.socket, sender_ctrl: int, window: int) -> None:
        self.ctrl = ctrl
        self.sender_ctrl = ("127.0.0.1", sender_ctrl)
        self.ack_every = max(1, window // 4)
        self.total = 0  # messages of both phases, as acknowledged
        self.acked = 0
        self.idle_latencies: list[int] = []
        self.delivered = 0  # phase 2
        self.latencies: list[int] = []
        self.first_ns = 0
        self.last_ns = 0
        self.cpu_first_ns = 0
        self.cpu_last_ns = 0
        self.cpu_delivered = 0
        self.expected: int | None = None
        self.done = trio.Event()

    def message(self, payload: bytes, now: int) -> None:
        sent_at, _seq, index, count, phase = STAMP.unpack_from(payload)
        if index + 1 != count:
            return  # bare rows: a message counts when its last chunk arrives
        self.total += 1
        if phase == LATENCY:
            self.idle_latencies.append(now - sent_at)
            self.ack()
            return
        self.latencies.append(now - sent_at)
        if not self.delivered:
            self.first_ns = now
            self.cpu_first_ns = time.process_time_ns()
        self.last_ns = now
        self.delivered += 1
        if self.total - self.acked >= self.ack_every:
            self.ack()

    def ack(self) -> None:
        self.acked = self.total
        with contextlib.suppress(BlockingIOError):
            self.ctrl.sendto(ACK.pack(b"A", self.total), self.sender_ctrl)

    def after_batch(self, *, idle: bool) -> None:
        """Called when the input at hand is processed (``idle``: nothing is left)."""
        if self.delivered:
            self.cpu_last_ns = time.process_time_ns()
            self.cpu_delivered = self.delivered
        if idle and self.total > self.acked:
            self.ack()
        if self.expected is not None and self.total >= self.expected:
            self.done.set()

    async def watch_control(self, cancel: trio.CancelScope) -> None:
        """Wait for the sender's end marker, then give stragglers a moment."""
        while True:
            await trio.lowlevel.wait_readable(self.ctrl)
            try:
                data = self.ctrl.recv(64)
            except BlockingIOError:
                continue
            kind, value = ACK.unpack_from(data)
            if kind == b"E":
                self.expected = value
                break
        self.after_batch(idle=True)
        with trio.move_on_after(0.5):
            await self.done.wait()
        cancel.cancel()

    def result(self, size: int) -> dict[str, Any]:
        elapsed = (self.last_ns - self.first_ns) / 1e9
        rate = (self.delivered - 1) / elapsed if elapsed > 0 and self.delivered > 1 else 0.0
        idle = sorted(self.idle_latencies)
        loaded = sorted(self.latencies)
        cpu = self.cpu_last_ns - self.cpu_first_ns
        return {
            "delivered": self.delivered,
            "msgs_per_s": rate,
            "mb_per_s": rate * size / 1e6,
            "p50_us": percentile(idle, 0.50) / 1000,
            "p99_us": percentile(idle, 0.99) / 1000,
            "load_p50_us": percentile(loaded, 0.50) / 1000,
            "load_p99_us": percentile(loaded, 0.99) / 1000,
            "rx_cpu_us": cpu / 1000 / (self.cpu_delivered - 1)
            if self.cpu_delivered > 1
            else math.nan,
        }


async def bare_receiver(spec: CellSpec) -> dict[str, Any]:
    sock = udp_socket(LINK_ADDRESSES[0][1], spec.data_ports[0][1], big_buffers=True)
    ctrl = udp_socket("127.0.0.1", spec.receiver_ctrl)
    tally = Tally(ctrl, spec.sender_ctrl, spec.window)
    recvfrom = sock.recvfrom
    monotonic_ns = time.monotonic_ns
    message = tally.message
    print("READY", flush=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tally.watch_control, nursery.cancel_scope)
        while True:
            await trio.lowlevel.wait_readable(sock)
            batch = []
            with contextlib.suppress(BlockingIOError):
                for _ in range(256):  # the knet driver's batch bound
                    batch.append(recvfrom(65536))  # noqa: PERF401 - stops at BlockingIOError
            for data, _source in batch:
                message(data, monotonic_ns())
            tally.after_batch(idle=len(batch) < 256)
    sock.close()
    ctrl.close()
    return tally.result(spec.size)


def knet_crypto(spec: CellSpec) -> knet.CryptoConfig | None:
    if not spec.crypto:
        return None
    return knet.CryptoConfig(BENCH_KEY, knet.Cipher.from_name(spec.cipher))


def configure_links(handle: knet.KnetHandle, spec: CellSpec, *, sender: bool) -> None:
    peer = RECEIVER_ID if sender else SENDER_ID
    handle.add_host(peer, policy=knet.LinkPolicy.ACTIVE)
    options = knet.LinkOptions(**LINK_OPTIONS)
    for link_id in range(spec.links):
        send_ip, recv_ip = LINK_ADDRESSES[link_id]
        send_port, recv_port = spec.data_ports[link_id]
        ends = ((send_ip, send_port), (recv_ip, recv_port))
        local, remote = ends if sender else ends[::-1]
        handle.set_link(peer, link_id, local=local, remote=remote, options=options)


async def knet_receiver(spec: CellSpec) -> dict[str, Any]:
    quiet_logging()
    capacity = max(4096, 4 * spec.window)
    async with knet.open_handle(
        RECEIVER_ID, crypto=knet_crypto(spec), channel_capacity=capacity
    ) as handle:
        channel = handle.open_channel(CHANNEL)
        configure_links(handle, spec, sender=False)
        ctrl = udp_socket("127.0.0.1", spec.receiver_ctrl)
        tally = Tally(ctrl, spec.sender_ctrl, spec.window)
        monotonic_ns = time.monotonic_ns
        message = tally.message
        receive_nowait = channel.receive_nowait
        print("READY", flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tally.watch_control, nursery.cancel_scope)
            while True:
                event = await channel.receive()
                message(event.payload, monotonic_ns())
                idle = False
                for _ in range(4096):
                    try:
                        event = receive_nowait()
                    except trio.WouldBlock:
                        idle = True
                        break
                    message(event.payload, monotonic_ns())
                tally.after_batch(idle=idle)
        ctrl.close()
        result = tally.result(spec.size)
        stats = handle.stats()
        result["extra"] = {
            key: stats.get(key, 0)
            for key in ("rx_channel_overflows", "rx_auth_failures", "rx_replayed")
        }
        return result


# ---------------------------------------------------------------------- sender side


class Credit:
    """The sender's side of the window: acknowledgements in, stalls counted as loss."""

    def __init__(self, ctrl: socket.socket, receiver_ctrl: int) -> None:
        self.ctrl = ctrl
        self.receiver_ctrl = ("127.0.0.1", receiver_ctrl)
        self.acked = 0
        self.forgiven = 0  # messages given up on after a stall
        self.stalls = 0
        self.waited_ns = 0  # time spent waiting for acknowledgements

    def poll(self) -> None:
        try:
            while True:
                kind, value = ACK.unpack_from(self.ctrl.recv(64))
                if kind == b"A":
                    self.acked = max(self.acked, value)
        except BlockingIOError:
            pass

    def room(self, sent: int, window: int) -> int:
        return window - (sent - self.acked - self.forgiven)

    async def wait_for_room(self, sent: int, window: int, deadline_ns: int) -> None:
        started = time.monotonic_ns()
        try:
            while self.room(sent, window) <= 0:
                now = time.monotonic_ns()
                if now >= deadline_ns:
                    return
                if now - started >= STALL_NS:
                    self.stalls += 1
                    self.forgiven = sent - self.acked
                    return
                wait_s = min(deadline_ns - now, STALL_NS - (now - started)) / 1e9
                with trio.move_on_after(wait_s):
                    await trio.lowlevel.wait_readable(self.ctrl)
                self.poll()
        finally:
            self.waited_ns += time.monotonic_ns() - started

    def finish(self, sent: int) -> None:
        self.ctrl.sendto(ACK.pack(b"E", sent), self.receiver_ctrl)


SendMessage = Callable[[int, int], Awaitable[None] | None]  # (seq, phase) -> maybe await


async def run_sender(spec: CellSpec, send_message: SendMessage, credit: Credit) -> dict[str, Any]:
    """Phase 1 (one message in flight), then phase 2 (up to the window in flight)."""
    sent = 0
    deadline = time.monotonic_ns() + int(spec.duration * 1e9 / 4)
    while time.monotonic_ns() < deadline:
        pending = send_message(sent, LATENCY)
        if pending is not None:
            await pending
        sent += 1
        await credit.wait_for_room(sent, 1, deadline)
    await credit.wait_for_room(sent, 1, time.monotonic_ns() + STALL_NS)
    latency_sent = sent

    credit.waited_ns = 0
    started = time.monotonic_ns()
    cpu_started = time.process_time_ns()
    deadline = started + int(spec.duration * 1e9)
    window = spec.window
    while time.monotonic_ns() < deadline:
        credit.poll()
        room = credit.room(sent, window)
        if room <= 0:
            await credit.wait_for_room(sent, window, deadline)
            continue
        for _ in range(room):
            pending = send_message(sent, THROUGHPUT)
            if pending is not None:
                await pending
            sent += 1
        await trio.lowlevel.checkpoint()  # let the driver's tasks (pongs, timers) run
    elapsed = (time.monotonic_ns() - started) / 1e9
    cpu_us = (time.process_time_ns() - cpu_started) / 1000
    credit.finish(sent)
    throughput_sent = sent - latency_sent
    return {
        "sent": throughput_sent,
        "send_rate": throughput_sent / elapsed,
        "tx_cpu_us": cpu_us / throughput_sent if throughput_sent else math.nan,
        "stalls": credit.stalls,
        "waiting_pct": 100 * credit.waited_ns / 1e9 / elapsed,
    }


async def bare_sender(spec: CellSpec) -> dict[str, Any]:
    sock = udp_socket(LINK_ADDRESSES[0][0], spec.data_ports[0][0], big_buffers=True)
    ctrl = udp_socket("127.0.0.1", spec.sender_ctrl)
    destination = (LINK_ADDRESSES[0][1], spec.data_ports[0][1])
    chunks = chunk_sizes(spec.size)
    count = len(chunks)
    pads = [bytes(size - STAMP.size) for size in chunks]
    sendto = sock.sendto
    monotonic_ns = time.monotonic_ns
    pack = STAMP.pack

    async def send_rest(seq: int, phase: int, start: int) -> None:
        """The slow path: the socket buffer is full; wait until it takes more."""
        for index in range(start, count):
            datagram = pack(monotonic_ns(), seq, index, count, phase) + pads[index]
            while True:
                try:
                    sendto(datagram, destination)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)

    def send_message(seq: int, phase: int) -> Awaitable[None] | None:
        for index in range(count):
            datagram = pack(monotonic_ns(), seq, index, count, phase) + pads[index]
            try:
                sendto(datagram, destination)
            except BlockingIOError:
                return send_rest(seq, phase, index)
        return None

    result = await run_sender(spec, send_message, Credit(ctrl, spec.receiver_ctrl))
    sock.close()
    ctrl.close()
    return result


async def wait_links_ready(handle: knet.KnetHandle, links: int, timeout: float = 15.0) -> None:
    """Until every link is up and the data MTU (PMTU discovery) stopped changing."""
    with trio.fail_after(timeout):
        while len(handle.host_status(RECEIVER_ID).active_links) < links:
            await trio.sleep(0.02)
        stable_since = trio.current_time()
        mtu = handle.data_mtu
        while trio.current_time() - stable_since < 0.2:
            await trio.sleep(0.02)
            if handle.data_mtu != mtu:
                mtu, stable_since = handle.data_mtu, trio.current_time()


async def knet_sender(spec: CellSpec) -> dict[str, Any]:
    quiet_logging()
    async with knet.open_handle(SENDER_ID, crypto=knet_crypto(spec)) as handle:
        configure_links(handle, spec, sender=True)
        await wait_links_ready(handle, spec.links)
        ctrl = udp_socket("127.0.0.1", spec.sender_ctrl)
        pad = bytes(spec.size - STAMP.size)
        pack = STAMP.pack
        monotonic_ns = time.monotonic_ns
        send = handle.send
        hosts = (RECEIVER_ID,)

        def send_message(seq: int, phase: int) -> None:
            send(pack(monotonic_ns(), seq, 0, 1, phase) + pad, channel=CHANNEL, hosts=hosts)

        result = await run_sender(spec, send_message, Credit(ctrl, spec.receiver_ctrl))
        ctrl.close()
        stats = [handle.link_status(RECEIVER_ID, i).stats for i in range(spec.links)]
        sealed = handle.stats()
        result["extra"] = {
            "data_mtu": handle.data_mtu,
            "tx_errors": sum(s.get("tx_total_errors", 0) for s in stats),
            # The AEAD tag bytes each sealed packet carried (0: crypto off).
            "tag_bytes": sealed["tx_crypt_byte_overhead"] // max(1, sealed["tx_crypt_packets"]),
        }
        return result


def run_role(role: str, spec_json: str) -> None:
    fields = json.loads(spec_json)
    fields["data_ports"] = [(send, recv) for send, recv in fields["data_ports"]]
    spec = CellSpec(**fields)
    functions = {
        ("recv", "bare"): bare_receiver,
        ("recv", "knet"): knet_receiver,
        ("send", "bare"): bare_sender,
        ("send", "knet"): knet_sender,
    }
    result = trio.run(functions[role, spec.transport], spec)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------- orchestration


def read_line_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line starting with ``prefix`` (or fail)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError(f"no {prefix.strip()!r} line within {timeout:g} s")
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"process exited without {prefix.strip()!r} (rc {proc.wait()})")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


def spawn(role: str, spec: CellSpec) -> subprocess.Popen[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--role", role]
    command += ["--spec", json.dumps(asdict(spec))]
    wrap = os.environ.get("KNET_BENCH_WRAP")
    if wrap:
        cell = f"{spec.transport}-{spec.size}-{'crypto' if spec.crypto else 'clear'}-{spec.links}"
        command = wrap.format(cell=cell, role=role).split() + command
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str], grace: float) -> None:
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def run_cell(spec: CellSpec) -> Row:
    row = Row(spec.transport, spec.size, spec.crypto, spec.links, spec.window)
    timeout = 1.25 * spec.duration + 30.0
    receiver = spawn("recv", spec)
    sender: subprocess.Popen[str] | None = None
    try:
        read_line_until(receiver, "READY", timeout)
        sender = spawn("send", spec)
        sent = json.loads(read_line_until(sender, "RESULT ", timeout))
        got = json.loads(read_line_until(receiver, "RESULT ", timeout))
    except (TimeoutError, RuntimeError, ValueError) as exc:
        row.error = str(exc)
        return row
    finally:
        # After a result a child exits by itself; after a failure it is killed.
        grace = 0.0 if row.error else 10.0
        for proc in (receiver, sender):
            if proc is not None:
                stop(proc, grace)
    row.sent = sent["sent"]
    row.tx_cpu_us = sent["tx_cpu_us"]
    for name in ("delivered", "msgs_per_s", "mb_per_s", "rx_cpu_us"):
        setattr(row, name, got[name])
    for name in ("p50_us", "p99_us", "load_p50_us", "load_p99_us"):
        setattr(row, name, got[name])
    row.extra = {
        "stalls": sent["stalls"],
        "tx_waiting_pct": round(sent["waiting_pct"], 1),
        "send_rate": round(sent["send_rate"]),
        **sent.get("extra", {}),
        **got.get("extra", {}),
    }
    return row


def make_spec(transport: str, size: int, crypto: bool, links: int, args: Any) -> CellSpec:
    data_ports = [
        (free_udp_port(LINK_ADDRESSES[i][0]), free_udp_port(LINK_ADDRESSES[i][1]))
        for i in range(links)
    ]
    return CellSpec(
        transport=transport,
        size=size,
        crypto=crypto,
        links=links,
        duration=args.duration,
        window=args.window or window_for(size),
        cipher=args.cipher,
        data_ports=data_ports,
        sender_ctrl=free_udp_port("127.0.0.1"),
        receiver_ctrl=free_udp_port("127.0.0.1"),
    )


Cell = tuple[str, bool, int]  # transport, crypto, links


def cells_to_run(only: set[str] | None) -> list[Cell]:
    cells: list[Cell] = [("bare", False, 1)]
    cells += [("knet", crypto, links) for crypto in (False, True) for links in (1, 2)]
    if only is None:
        return cells
    names = ["bare"] + [f"knet-{'on' if c else 'off'}-{n}" for _, c, n in cells[1:]]
    return [cell for cell, name in zip(cells, names, strict=True) if name in only]


def measure_size(size: int, args: argparse.Namespace) -> list[Row]:
    """Every cell of one payload size, ``args.repeat`` rounds in turn (so a busy moment
    of the machine hits each cell at most once per round); a cell's fastest run counts."""
    cells = cells_to_run(args.only)
    runs: dict[Cell, list[Row]] = {cell: [] for cell in cells}
    for _ in range(max(1, args.repeat)):
        for cell in cells:
            transport, crypto, links = cell
            runs[cell].append(run_cell(make_spec(transport, size, crypto, links, args)))
    rows = []
    for cell in cells:
        good = [row for row in runs[cell] if not row.error]
        rows.append(max(good, key=lambda row: row.msgs_per_s) if good else runs[cell][0])
    bare = rows[0] if cells[0][0] == "bare" else None
    for row in rows:
        if row.transport == "knet" and bare and not bare.error and not row.error:
            row.ratio = row.msgs_per_s / bare.msgs_per_s if bare.msgs_per_s else None
            # The ratio the rates would have if both ends of both rows had a core each.
            row.cpu_ratio = max(bare.tx_cpu_us, bare.rx_cpu_us) / max(row.tx_cpu_us, row.rx_cpu_us)
    return rows


def format_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


HEADER = (
    f"{'payload':>8}  {'transport':<9} {'crypto':<6} {'links':>5} {'window':>6}  "
    f"{'msgs/s':>8} {'MB/s':>7}  {'p50 us':>6} {'p99 us':>6}  {'load p50':>8} {'load p99':>8}  "
    f"{'loss %':>6}  {'tx cpu':>6} {'rx cpu':>6}  {'ratio':>5} {'cpu ratio':>9}"
)


def format_row(row: Row) -> str:
    crypto = "-" if row.transport == "bare" else ("on" if row.crypto else "off")
    links = str(row.links) + (" act" if row.transport == "knet" and row.links > 1 else "")
    head = (
        f"{format_size(row.size):>8}  {row.transport:<9} {crypto:<6} {links:>5} {row.window:>6}  "
    )
    if row.error:
        return head + f"FAILED: {row.error}"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    cpu_ratio = "-" if row.cpu_ratio is None else f"{row.cpu_ratio:.2f}"
    return head + (
        f"{row.msgs_per_s:>8.0f} {row.mb_per_s:>7.1f}  {row.p50_us:>6.0f} {row.p99_us:>6.0f}  "
        f"{row.load_p50_us:>8.0f} {row.load_p99_us:>8.0f}  {row.loss_pct:>6.2f}  "
        f"{row.tx_cpu_us:>6.1f} {row.rx_cpu_us:>6.1f}  {ratio:>5} {cpu_ratio:>9}"
    )


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in text.split(","):
        number, factor = item.strip().lower().replace(" ", ""), 1
        for suffix, multiplier in (("kib", 1024), ("k", 1024), ("b", 1)):
            if number.endswith(suffix):
                number, factor = number[: -len(suffix)], multiplier
                break
        try:
            size = int(number) * factor
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a payload size: {item!r}") from None
        if not 64 <= size <= knet.MAX_PAYLOAD:
            raise argparse.ArgumentTypeError(
                f"payload size must be 64..{knet.MAX_PAYLOAD} bytes, got {size}"
            )
        sizes.append(size)
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds of phase 2 per cell (default 2)")
    parser.add_argument(
        "--sizes", type=parse_sizes, help="payload sizes, e.g. 64,1KiB,16KiB,64KiB (the default)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 64 B and 1 KiB, 0.5 s per cell"
    )
    parser.add_argument(
        "--window", type=int, default=0, help="messages in flight (default: 1 MiB / size, 8..1024)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every cell N times (in rounds), keep the fastest"
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        help="run only these cells: bare, knet-off-1, knet-off-2, knet-on-1, knet-on-2",
    )
    parser.add_argument(
        "--cipher",
        default=KNET_DEFAULT_CIPHER.value,
        choices=[c.value for c in knet.Cipher if c is not knet.Cipher.NONE],
        help=f"cipher of the 'crypto on' rows (default: knet's, {KNET_DEFAULT_CIPHER.value})",
    )
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--role", choices=("send", "recv"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION if args.quick else DEFAULT_DURATION
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    return args


def cipher_label(name: str) -> str:
    """``name``, marked when it is knet's default cipher."""
    return f"{name} (knet's default)" if name == KNET_DEFAULT_CIPHER.value else name


def print_legend(args: argparse.Namespace) -> None:
    best = f", fastest of {args.repeat} rounds" if args.repeat > 1 else ""
    print(
        f"knet benchmark on loopback: {args.duration:g} s throughput + {args.duration / 4:g} s "
        f"latency per cell{best};"
    )
    print(
        f"sender and receiver in separate processes; {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, trio {trio.__version__}"
    )
    print("msgs/s, MB/s: payloads delivered to the receiving application per second with up")
    print("  to `window` messages in flight (cumulative acks on a separate UDP socket)")
    print("p50/p99 us: one-way latency, one message in flight; load p50/p99: under full load")
    print("tx/rx cpu: CPU us per message (user + system) of the sending/receiving process")
    print("ratio: knet msgs/s / bare msgs/s of the same payload size in this run")
    print("cpu ratio: bare's / knet's CPU per message at the busier end: the ratio of the")
    print("  rates when each process has a core to itself (robust on a busy machine)")
    print(f"crypto on: {cipher_label(args.cipher)}; '2 act': two links, active policy")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        run_role(args.role, args.spec)
        return 0
    print_legend(args)
    print(f"{HEADER}  [crypto on: {args.cipher}]")
    rows: list[Row] = []
    for size in args.sizes:
        for row in measure_size(size, args):
            rows.append(row)
            print(format_row(row), flush=True)
    for row in rows:
        if row.size == 1024 and row.crypto and row.links == 1 and row.ratio is not None:
            verdict = "met" if row.ratio >= 0.5 else "NOT met"
            print(
                f"\ntarget: 1 KiB, crypto on, 1 link: ratio {row.ratio:.2f} (>= 0.50): {verdict};"
                f" cpu ratio {row.cpu_ratio:.2f}"
            )
    if args.json:
        print(json.dumps([{**asdict(row), "loss_pct": row.loss_pct} for row in rows]))
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
