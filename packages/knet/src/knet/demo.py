"""A live knet demo: three hosts in one process on loopback, two links each.

Run it with ``python -m knet.demo`` (or ``knet-demo``). Hosts 1, 2 and 3 listen on
127.0.0.1, 127.0.0.2 and 127.0.0.3; link 0 uses one UDP port and link 1 the next one.
Every packet is encrypted with a freshly generated key, and the active link policy sends
each message on every connected link (the receiver de-duplicates). Each host broadcasts
a numbered message five times a second.

Every second the demo prints, for each host and peer, the state and average round-trip
time of both links and the messages delivered from that peer in that second. At 5 s it
disables link 1 on host 3 (hosts 1 and 2 notice when its pongs stop coming), at 10 s it
enables it again, and it repeats that every 20 s. Messages keep flowing over link 0 the
whole time; the summary at the end shows none was lost or delivered twice.

Ctrl-C (or ``--duration``) stops it cleanly.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack

import structlog
import trio

import knet
from knet._core import LinkStatus
from knet._crypto import CryptoConfig
from knet._events import (
    DataReceived,
    Event,
    HostReachable,
    HostUnreachable,
    LinkDown,
    LinkDownReason,
    LinkUp,
)
from knet._options import LinkOptions, LinkPolicy
from knet._trio import KnetHandle

__all__ = ["main"]

HOSTS = (1, 2, 3)
LINKS = (0, 1)
FAILING_HOST = 3
FAILING_LINK = 1
DOWN_AT_S = 5  # within every cycle: take the link down at 5 s...
UP_AT_S = 10  # ...and bring it back at 10 s
CYCLE_S = 20
MESSAGES_PER_SECOND = 5
DEFAULT_PORT = 5405  # corosync's port; link 1 uses the next one
UP_TIMEOUT_S = 10.0
# Fast heartbeats so a failure shows within about a second.
OPTIONS = LinkOptions(ping_interval_ms=200, ping_timeout_ms=1000, pong_count=2)
_ALL_LINKS = len(HOSTS) * (len(HOSTS) - 1) * len(LINKS)


def _address(host: int) -> str:
    return f"127.0.0.{host}"


def _ports_free(ports: Sequence[int]) -> bool:
    for host in HOSTS:
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((_address(host), port))
                except OSError:
                    return False
    return True


def choose_ports(first: int) -> tuple[int, int]:
    """Two consecutive UDP ports free on all three addresses: ``first`` and ``first + 1``
    if possible, else the next free pair, else a pair the kernel picks."""
    for base in range(first, min(first + 200, 65534), 2):
        if _ports_free((base, base + 1)):
            return base, base + 1
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((_address(1), 0))
            base = int(sock.getsockname()[1])
        if base < 65535 and _ports_free((base, base + 1)):
            return base, base + 1
    raise SystemExit("knet demo: found no two free consecutive UDP ports on 127.0.0.1-3")


def _ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"#1-#3, #5"``."""
    ordered = sorted(numbers)
    parts: list[str] = []
    start = prev = None
    for n in [*ordered, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"#{start}" if start == prev else f"#{start}-#{prev}")
        start = prev = n
    return ", ".join(parts)


def _link_cell(status: LinkStatus) -> str:
    if not status.enabled:
        return "disabled"
    if not status.connected:
        return "DOWN"
    return f"up {status.stats['latency_ave_us']:>6} µs"


class Demo:
    """The three handles and what the demo has seen so far."""

    def __init__(self, handles: dict[int, KnetHandle], ports: tuple[int, int]) -> None:
        self.handles = handles
        self.ports = ports
        self.start = trio.current_time()
        self.all_up = trio.Event()
        self.links_up: set[tuple[int, int, int]] = set()
        self.unreachable: set[tuple[int, int]] = set()
        # (receiver, sender) -> numbers delivered this second / in total
        self.this_second: dict[tuple[int, int], list[int]] = {}
        self.delivered: dict[tuple[int, int], Counter[int]] = {
            (r, s): Counter() for r in HOSTS for s in HOSTS if r != s
        }
        self.sent = 0
        self.downs_seen = 0
        self.ups_seen = 0

    def elapsed(self) -> float:
        return trio.current_time() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():5.1f} s] {text}", flush=True)

    # ------------------------------------------------------------------ tasks

    async def watch_events(self, host: int, events: trio.MemoryReceiveChannel[Event]) -> None:
        async for event in events:
            if isinstance(event, LinkUp):
                self.links_up.add((host, event.host_id, event.link_id))
                if self.all_up.is_set():
                    self.ups_seen += 1
                    self.say(f"host {host}: link {event.link_id} to host {event.host_id} up")
                elif len(self.links_up) == _ALL_LINKS:
                    self.all_up.set()
            elif isinstance(event, LinkDown):
                self.links_up.discard((host, event.host_id, event.link_id))
                if event.reason is LinkDownReason.DISABLED:
                    what = "disabled here"
                else:
                    self.downs_seen += 1
                    what = f"DOWN ({event.reason.value})"
                self.say(f"host {host}: link {event.link_id} to host {event.host_id} {what}")
            elif isinstance(event, HostUnreachable):
                self.unreachable.add((host, event.host_id))
                self.say(f"host {host}: host {event.host_id} UNREACHABLE (no link left)")
            elif isinstance(event, HostReachable) and (host, event.host_id) in self.unreachable:
                self.unreachable.discard((host, event.host_id))
                self.say(f"host {host}: host {event.host_id} reachable again")

    async def receive(self, host: int, rx: trio.MemoryReceiveChannel[DataReceived]) -> None:
        async for data in rx:
            try:
                number = int(data.payload.rsplit(b"#", 1)[1])
            except (IndexError, ValueError):
                continue
            self.delivered[(host, data.src_host)][number] += 1
            self.this_second.setdefault((host, data.src_host), []).append(number)

    async def send_messages(self) -> None:
        began = trio.current_time()
        while True:
            self.sent += 1
            for host in HOSTS:
                self.handles[host].send(f"host {host} message #{self.sent}".encode())
            await trio.sleep_until(began + self.sent / MESSAGES_PER_SECOND)

    # ------------------------------------------------------------------ output

    def print_table(self, second: int) -> None:
        delivered, self.this_second = self.this_second, {}
        header = (
            "host  peer  link 0 (avg RTT)  link 1 (avg RTT)  delivered from peer in this second"
        )
        lines = [f"[{second:3} s]  {header}"]
        for host in HOSTS:
            handle = self.handles[host]
            for peer in HOSTS:
                if peer == host:
                    continue
                cells = [_link_cell(handle.link_status(peer, link)) for link in LINKS]
                numbers = delivered.get((host, peer), [])
                got = f"{len(numbers):>2}  {_ranges(numbers)}" if numbers else " 0"
                lines.append(f"{host:>12}  {peer:>4}  {cells[0]:<16}  {cells[1]:<16}  {got}")
        print("\n".join(lines), flush=True)

    def print_summary(self) -> None:
        print(f"=== summary after {self.elapsed():.1f} s ===", flush=True)
        clean = True
        for receiver in HOSTS:
            for sender in HOSTS:
                if sender == receiver:
                    continue
                counts = self.delivered[(receiver, sender)]
                highest = max(counts, default=0)
                missing = highest - len(counts)  # in-flight ones at the very end don't count
                twice = sum(1 for n in counts.values() if n > 1)
                clean = clean and bool(counts) and not missing and not twice
                print(
                    f"  host {receiver} delivered {len(counts)} messages from host {sender}: "
                    f"{missing} missing, {twice} delivered twice",
                    flush=True,
                )
        print(
            f"  link failures detected by heartbeat: {self.downs_seen}; "
            f"links that came back up: {self.ups_seen}",
            flush=True,
        )
        if clean:
            through = ", through every failover" if self.downs_seen else ""
            print(f"  every message was delivered exactly once{through}", flush=True)

    def set_failing_link(self, enabled: bool) -> None:
        handle = self.handles[FAILING_HOST]
        for peer in HOSTS:
            if peer != FAILING_HOST:
                handle.set_link_enabled(peer, FAILING_LINK, enabled)


def _print_banner(ports: tuple[int, int], cipher: str, policy: LinkPolicy) -> None:
    print("knet demo: three hosts in one process on loopback, two links each")
    for host in HOSTS:
        address = _address(host)
        print(f"  host {host}: link 0 {address}:{ports[0]}   link 1 {address}:{ports[1]}")
    print(
        f"  crypto {cipher} (fresh random key), link policy {policy.value}, "
        f"ping every {OPTIONS.ping_interval_ms} ms, timeout {OPTIONS.ping_timeout_ms} ms"
    )
    print(f"  each host broadcasts a numbered message {MESSAGES_PER_SECOND} times a second")
    print(
        f"  link {FAILING_LINK} of host {FAILING_HOST} goes down at {DOWN_AT_S} s and comes "
        f"back at {UP_AT_S} s (again every {CYCLE_S} s); Ctrl-C stops\n",
        flush=True,
    )


async def _watch_ctrl_c(cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            print("\nCtrl-C: stopping", flush=True)
            cancel.cancel()
            return


def _connect(handles: dict[int, KnetHandle], ports: tuple[int, int], policy: LinkPolicy) -> None:
    """Every host gets links 0 and 1 to each other host: 127.0.0.<host>:<port of link>."""
    for host, handle in handles.items():
        for peer in HOSTS:
            if peer == host:
                continue
            handle.add_host(peer, name=f"host {peer}", policy=policy)
            for link in LINKS:
                handle.set_link(
                    peer,
                    link,
                    local=(_address(host), ports[link]),
                    remote=(_address(peer), ports[link]),
                    options=OPTIONS,
                )


async def _tick(demo: Demo, duration: float | None) -> None:
    """Print the table every second; fail and restore the link on schedule."""
    second = 0
    while duration is None or second + 1 <= duration:
        second += 1
        await trio.sleep_until(demo.start + second)
        demo.print_table(second)
        phase = second % CYCLE_S
        if phase == DOWN_AT_S:
            print(f"=== taking link {FAILING_LINK} of host {FAILING_HOST} down ===", flush=True)
            demo.set_failing_link(False)
        elif phase == UP_AT_S:
            print(
                f"=== bringing link {FAILING_LINK} of host {FAILING_HOST} back up ===",
                flush=True,
            )
            demo.set_failing_link(True)
    if duration is not None:
        await trio.sleep_until(demo.start + duration)


async def run(duration: float | None, first_port: int, policy: LinkPolicy) -> int:
    """The whole demo; returns the exit status."""
    ports = choose_ports(first_port)
    crypto = CryptoConfig(knet.generate_authkey())
    _print_banner(ports, crypto.cipher.value, policy)
    if ports[0] != first_port:
        print(f"(ports {first_port}/{first_port + 1} are busy: using the next free pair)\n")
    demo: Demo | None = None
    with trio.CancelScope() as stop:  # Ctrl-C cancels it: a clean stop, then the summary
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            nursery.start_soon(_watch_ctrl_c, stop)
            handles: dict[int, KnetHandle] = {}
            for host in HOSTS:
                handles[host] = await stack.enter_async_context(
                    knet.open_handle(host, crypto=crypto)
                )
            demo = Demo(handles, ports)
            for host, handle in handles.items():
                nursery.start_soon(demo.watch_events, host, handle.subscribe())
                nursery.start_soon(demo.receive, host, handle.open_channel(0))
            _connect(handles, ports, policy)
            with trio.move_on_after(UP_TIMEOUT_S):
                await demo.all_up.wait()
            if not demo.all_up.is_set():
                print(
                    f"knet demo: only {len(demo.links_up)} of {_ALL_LINKS} links came up "
                    f"within {UP_TIMEOUT_S:.0f} s; is loopback filtered?",
                    file=sys.stderr,
                    flush=True,
                )
                nursery.cancel_scope.cancel()
                return 1
            demo.say(f"all {_ALL_LINKS} links up: starting traffic")
            nursery.start_soon(demo.send_messages)
            await _tick(demo, duration)
            nursery.cancel_scope.cancel()
    if demo is not None:
        demo.print_summary()
    return 0


def _configure_logging(show_info: bool) -> None:
    """knet logs through structlog; send them to stderr (INFO only when asked for)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if show_info else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="knet-demo",
        description="Three knet hosts on loopback with two links each: link status, "
        "latency and delivered messages, with one link failing and coming back.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--quiet-logs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep knet's INFO logs off stderr (default); warnings are always shown",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show knet's INFO logs on stderr"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"UDP port of link 0, link 1 uses the next (default {DEFAULT_PORT}; "
        "the next free pair is used if busy)",
    )
    parser.add_argument(
        "--policy",
        choices=[p.value for p in LinkPolicy],
        default=LinkPolicy.ACTIVE.value,
        help="link policy of every host (default: active)",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if not 1 <= args.port <= 65534:
        parser.error("--port must be 1..65534")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # "µs" on a terminal that cannot show it
    _configure_logging(args.verbose or not args.quiet_logs)
    try:
        return trio.run(run, args.duration, args.port, LinkPolicy(args.policy))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        print("\nCtrl-C: stopped", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
