"""The trio driver: a thin shell that gives a :class:`KnetCore` sockets and a clock.

One task per local UDP socket waits until the socket is readable, then drains it
without blocking into one batch for the core; one timer task sleeps until the core's
next deadline. Outgoing datagrams are sent as soon as the core produces them. Data is
handed to the application through one trio memory channel per knet channel, and
events through subscriber channels.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from knet._compress import CompressionConfig
from knet._core import HostStatus, KnetCore, LinkStatus, TxFilter
from knet._crypto import Cipher, CryptoConfig
from knet._errors import ConfigError, KnetError
from knet._events import Datagram, DataReceived, Event, LogLevel, Output
from knet._options import (
    DEFAULT_DEFRAG_BUFFERS,
    DEFAULT_PMTUD_INTERVAL_S,
    Address,
    LinkOptions,
    LinkPolicy,
)

__all__ = ["KnetHandle", "open_handle"]

_MAX_BATCH = 256  # datagrams drained per wake-up before yielding to other tasks
_RCVBUF = 8 * 1024 * 1024  # libknet asks for 8 MiB
_SNDBUF = 4 * 1024 * 1024
_IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
_IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
_IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
_IPV6_PMTUDISC_DO = getattr(socket, "IPV6_PMTUDISC_DO", 2)
_IP_MTU = getattr(socket, "IP_MTU", 14)
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)

_LOG_METHODS = {
    LogLevel.ERROR: "error",
    LogLevel.WARNING: "warning",
    LogLevel.INFO: "info",
    LogLevel.DEBUG: "debug",
    LogLevel.TRACE: "debug",
}


def _now_ns() -> int:
    return int(trio.current_time() * 1_000_000_000)


def new_instance_id(rng: random.Random | None = None) -> int:
    """Start wall-clock milliseconds << 16 | 16 random bits: ordered across restarts
    (peers reject older instances as replays) and unique within a millisecond."""
    rng = rng or random.SystemRandom()
    return ((time.time_ns() // 1_000_000) << 16 | rng.getrandbits(16)) & ((1 << 64) - 1)


class KnetHandle:
    """A running knet handle. Create it with :func:`open_handle`.

    Configuration methods mirror :class:`KnetCore`'s and take effect at once (sockets
    for new local addresses are bound immediately, so a bad or busy address raises
    here). ``send`` never blocks: UDP either takes the datagram or it is counted as a
    send error, like a lost packet.
    """

    def __init__(self, core: KnetCore, nursery: trio.Nursery, *, channel_capacity: int) -> None:
        self.core = core
        self._nursery = nursery
        self._capacity = channel_capacity
        self._sockets: dict[Address, socket.socket] = {}
        self._reader_scopes: dict[Address, trio.CancelScope] = {}
        self._channels: dict[int, trio.MemorySendChannel[DataReceived]] = {}
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._timer_scope: trio.CancelScope | None = None
        self._log = structlog.get_logger("knet").bind(subsystem="knet", local_host=core.host_id)
        self.rx_channel_overflows = 0
        self.event_overflows = 0
        self.closed = False
        # Counts send errors reported to the core (its timers and output may change).
        self._send_errors = 0
        # trio's clock, bound once: the packet paths read it for every send and batch.
        self._current_time = trio.lowlevel.current_clock().current_time

    # ---------------------------------------------------------------- configuration

    def add_host(
        self, host_id: int, *, name: str | None = None, policy: LinkPolicy = LinkPolicy.PASSIVE
    ) -> None:
        self.core.add_host(host_id, name=name, policy=policy)
        self._after_input()

    def remove_host(self, host_id: int) -> None:
        self.core.remove_host(host_id)
        self._sync_sockets()
        self._after_input()

    def set_host_policy(self, host_id: int, policy: LinkPolicy) -> None:
        self.core.set_host_policy(host_id, policy)
        self._after_input()

    def set_link(
        self,
        host_id: int,
        link_id: int,
        *,
        local: Address | tuple[str, int] | str,
        remote: Address | tuple[str, int] | str,
        options: LinkOptions | None = None,
        enabled: bool = True,
    ) -> None:
        """Configure and (by default) enable a link; binds its local socket if needed."""
        if self.closed:
            raise KnetError("handle is closed")
        self.core.set_link(
            host_id,
            link_id,
            local=local,
            remote=remote,
            options=options,
            enabled=False,
            now=_now_ns(),
        )
        try:
            self._sync_sockets()
        except KnetError:
            self.core.clear_link(host_id, link_id, _now_ns())
            raise
        if enabled:
            self.core.set_link_enabled(host_id, link_id, True, _now_ns())
        self._after_input()

    def set_link_enabled(self, host_id: int, link_id: int, enabled: bool) -> None:
        self.core.set_link_enabled(host_id, link_id, enabled, _now_ns())
        self._after_input()

    def set_link_options(self, host_id: int, link_id: int, options: LinkOptions) -> None:
        self.core.set_link_options(host_id, link_id, options, _now_ns())
        self._after_input()

    def clear_link(self, host_id: int, link_id: int) -> None:
        self.core.clear_link(host_id, link_id, _now_ns())
        self._sync_sockets()
        self._after_input()

    def set_crypto_config(self, slot: int, config: CryptoConfig | None) -> None:
        self.core.set_crypto_config(slot, config)
        self._after_input()

    def use_crypto_config(self, slot: int) -> None:
        self.core.use_crypto_config(slot)
        self._after_input()

    def set_rx_clear_traffic(self, allow: bool) -> None:
        self.core.set_rx_clear_traffic(allow)

    def set_compression(self, config: CompressionConfig) -> None:
        self.core.set_compression(config)

    def set_manual_mtu(self, interface_mtu: int | None) -> None:
        self.core.set_manual_mtu(interface_mtu, _now_ns())
        self._after_input()

    def set_pmtud_interval(self, seconds: int) -> None:
        self.core.set_pmtud_interval(seconds)

    def set_filter(self, packet_filter: TxFilter | None) -> None:
        self.core.set_filter(packet_filter)

    # ---------------------------------------------------------------- data

    def open_channel(self, channel: int) -> trio.MemoryReceiveChannel[DataReceived]:
        """Start receiving ``channel`` (0..31); returns where its data arrives."""
        if channel in self._channels:
            raise ConfigError(f"channel {channel} is already open")
        self.core.open_channel(channel)
        send, receive = trio.open_memory_channel[DataReceived](self._capacity)
        self._channels[channel] = send
        return receive

    def close_channel(self, channel: int) -> None:
        self.core.close_channel(channel)
        sender = self._channels.pop(channel, None)
        if sender is not None:
            sender.close()

    def send(self, payload: bytes, *, channel: int = 0, hosts: Iterable[int] | None = None) -> int:
        """Send ``payload`` to ``hosts`` (None: broadcast, or as the filter decides).
        Returns the number of hosts it went to."""
        if self.closed:
            raise KnetError("handle is closed")
        core = self.core
        now = int(self._current_time() * 1_000_000_000)
        count = core.send(payload, now, channel=channel, hosts=hosts)
        # Sending data changes no timer, so unlike _after_input this reschedules only if
        # a send error reached the core (PMTU discovery may restart).
        errors = self._send_errors
        datagrams = core.take_datagrams()
        if datagrams is None:  # events (loopback delivery) or logs too
            self._dispatch(core.drain())
        else:
            self._send_all(datagrams)
        if self._send_errors != errors:
            self._dispatch(core.drain())  # the core's reaction (e.g. PMTU probes)
            self._reschedule()
        return count

    def subscribe(self, capacity: int = 1000) -> trio.MemoryReceiveChannel[Event]:
        """A channel of every event from now on: links up/down, hosts reachable or
        not, data MTU changes. Events that find it full are dropped and counted."""
        send, receive = trio.open_memory_channel[Event](capacity)
        self._subscribers.append(send)
        return receive

    # ---------------------------------------------------------------- status

    def link_status(self, host_id: int, link_id: int) -> LinkStatus:
        return self.core.link_status(host_id, link_id)

    def host_status(self, host_id: int) -> HostStatus:
        return self.core.host_status(host_id)

    def stats(self) -> dict[str, Any]:
        return {
            **self.core.stats(),
            "rx_channel_overflows": self.rx_channel_overflows,
            "event_overflows": self.event_overflows,
        }

    @property
    def data_mtu(self) -> int:
        return self.core.data_mtu

    @property
    def host_id(self) -> int:
        return self.core.host_id

    # ---------------------------------------------------------------- plumbing

    def _after_input(self) -> None:
        self._dispatch(self.core.drain())
        self._reschedule()

    def _reschedule(self) -> None:
        scope = self._timer_scope
        if scope is None:
            return
        deadline = self.core.next_deadline()
        scope.deadline = math.inf if deadline is None else deadline / 1_000_000_000

    def _dispatch(self, out: Output) -> None:
        if not out:
            return
        errors = self._send_errors
        if out.datagrams:
            self._send_all(out.datagrams)
        for event in out.events:
            if isinstance(event, DataReceived):
                sender = self._channels.get(event.channel)
                if sender is not None:
                    try:
                        sender.send_nowait(event)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        self.rx_channel_overflows += 1
                continue
            for subscriber in list(self._subscribers):
                try:
                    subscriber.send_nowait(event)
                except trio.WouldBlock:
                    self.event_overflows += 1
                except trio.BrokenResourceError:
                    self._subscribers.remove(subscriber)
        for record in out.logs:
            getattr(self._log, _LOG_METHODS[record.level])(record.event, **record.fields)
        if self._send_errors != errors:
            # The core reacted to send errors (e.g. with PMTU probes).
            follow_up = self.core.drain()
            if follow_up:
                self._dispatch(follow_up)

    def _send_all(self, datagrams: tuple[Datagram, ...]) -> None:
        sockets = self._sockets
        for datagram in datagrams:
            sock = sockets.get(datagram.local)
            if sock is not None:
                remote = datagram.remote
                try:
                    sock.sendto(datagram.data, (remote.ip, remote.port))
                except OSError as exc:
                    self._send_failed(datagram, exc)

    def _send_failed(self, datagram: Datagram, exc: OSError) -> None:
        self._send_errors += 1
        hint = None
        if exc.errno == errno.EMSGSIZE:
            hint = _path_mtu(datagram.local, datagram.remote)
        self.core.report_send_error(datagram, exc.errno or 0, hint, _now_ns())

    def _sync_sockets(self) -> None:
        if self.closed:  # every socket is gone already; never bind after close
            return
        wanted = self.core.local_endpoints()
        for local in sorted(set(self._sockets) - wanted, key=str):
            self._reader_scopes.pop(local).cancel()
            sock = self._sockets.pop(local)
            trio.lowlevel.notify_closing(sock)
            sock.close()
        for local in sorted(wanted - set(self._sockets), key=str):
            sock = _bind(local)
            self._sockets[local] = sock
            scope = trio.CancelScope()
            self._reader_scopes[local] = scope
            self._nursery.start_soon(self._reader, local, sock, scope)

    async def _reader(self, local: Address, sock: socket.socket, scope: trio.CancelScope) -> None:
        recvfrom = sock.recvfrom
        with scope:
            while True:
                if sock.fileno() < 0:  # closed (handle closed or link cleared) before we ran
                    return
                try:
                    await trio.lowlevel.wait_readable(sock)
                except (OSError, trio.ClosedResourceError):
                    return
                batch: list[tuple[bytes, Any]] = []
                append = batch.append
                try:
                    for _ in range(_MAX_BATCH):
                        append(recvfrom(65536))
                except BlockingIOError:
                    pass
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    self._log.debug("socket receive error", local=str(local), error=str(exc))
                if batch:
                    self.core.receive(local, batch, int(self._current_time() * 1_000_000_000))
                    self._after_input()
                else:
                    await trio.lowlevel.checkpoint()

    async def _timer(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            with trio.CancelScope(
                deadline=math.inf if deadline is None else deadline / 1_000_000_000
            ) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = _now_ns()
            due = self.core.next_deadline()
            if scope.cancelled_caught and due is not None and now < due:
                # Woken by the deadline, but float seconds -> int ns rounded below it:
                # without this the core would fire nothing and the loop would spin.
                now = due
            self.core.handle_timeouts(now)
            self._dispatch(self.core.drain())

    def _close(self) -> None:
        self.closed = True
        for sender in self._channels.values():
            sender.close()
        for subscriber in self._subscribers:
            subscriber.close()
        for sock in self._sockets.values():
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._sockets.clear()


def _bind(local: Address) -> socket.socket:
    family = socket.AF_INET6 if local.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option, size in ((socket.SO_RCVBUF, _RCVBUF), (socket.SO_SNDBUF, _SNDBUF)):
            with contextlib.suppress(OSError):  # best effort, like libknet unprivileged
                sock.setsockopt(socket.SOL_SOCKET, option, size)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_DO)
        else:
            # Don't fragment: oversized datagrams fail with EMSGSIZE, which PMTUd uses.
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
        sock.bind((local.ip, local.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind UDP socket to {local}: {exc.strerror or exc}") from exc
    return sock


def _path_mtu(local: Address, remote: Address) -> int | None:
    """The kernel's idea of the path MTU to ``remote`` (IP_MTU on a connected socket)."""
    family = socket.AF_INET6 if remote.family == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((local.ip, 0))
            probe.connect((remote.ip, remote.port))
            if family == socket.AF_INET6:
                return int(probe.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU))
            return int(probe.getsockopt(socket.IPPROTO_IP, _IP_MTU))
    except OSError:
        return None


@asynccontextmanager
async def open_handle(
    host_id: int,
    *,
    crypto: CryptoConfig | None = None,
    compression: CompressionConfig | None = None,
    defrag_buffers: int = DEFAULT_DEFRAG_BUFFERS,
    pmtud_interval_s: int = DEFAULT_PMTUD_INTERVAL_S,
    channel_capacity: int = 4096,
    rng: random.Random | None = None,
) -> AsyncIterator[KnetHandle]:
    """Run a knet handle for local host ``host_id`` while the block runs.

    With ``crypto`` the handle seals every packet with it (slot 1) and rejects clear
    packets; without it (or with ``Cipher.NONE``), traffic is clear and a warning is
    logged. Use the handle's ``set_crypto_config``/``use_crypto_config``/
    ``set_rx_clear_traffic`` for a rolling key change.
    """
    rng = rng or random.SystemRandom()
    core = KnetCore(
        host_id,
        rng=rng,
        instance=new_instance_id(rng),
        perf_counter_ns=time.perf_counter_ns,
        defrag_buffers=defrag_buffers,
        pmtud_interval_s=pmtud_interval_s,
    )
    if crypto is not None and crypto.cipher is not Cipher.NONE:
        core.set_crypto_config(1, crypto)
        core.use_crypto_config(1)
        core.set_rx_clear_traffic(False)
    else:
        core.use_crypto_config(0)
    if compression is not None:
        core.set_compression(compression)
    async with trio.open_nursery() as nursery:
        handle = KnetHandle(core, nursery, channel_capacity=channel_capacity)
        handle._dispatch(core.drain())
        nursery.start_soon(handle._timer)
        try:
            yield handle
        finally:
            handle._close()
            nursery.cancel_scope.cancel()
