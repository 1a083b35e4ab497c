"""The knet core: a sans-IO state machine for one handle (one local host).

Inputs are method calls that take ``now`` (integer nanoseconds, monotonic): ``send``,
``receive``, ``report_send_error``, ``handle_timeouts`` and the configuration calls.
Outputs are collected and handed over in one immutable batch by ``drain()``; the
driver sleeps until ``next_deadline()``. The core owns no socket, clock, thread or
randomness: the random instance id comes from the injected ``random.Random`` and the
optional ``perf_counter_ns`` only feeds the timing statistics.

Nothing that arrives from the network raises out of ``receive``: bad packets are
counted, logged at a limited rate, and dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from knet._compress import CompressionConfig, CompressionModel, Compressor, decompress_untrusted
from knet._crypto import (
    AuthenticationFailed,
    CryptoConfig,
    PacketSealer,
    ReplayWindow,
)
from knet._errors import ConfigError, CryptoError, HostError, KnetError, LinkError, MalformedPacket
from knet._events import (
    Datagram,
    DataMtuChanged,
    DataReceived,
    Event,
    HostReachable,
    HostUnreachable,
    LinkDown,
    LinkDownReason,
    LinkUp,
    LogLevel,
    LogRecord,
    Output,
)
from knet._frag import MAX_FRAGMENTS, split
from knet._host import Host
from knet._link import Link, LinkState
from knet._options import (
    DEFAULT_DEFRAG_BUFFERS,
    DEFAULT_PMTUD_INTERVAL_S,
    MAX_CHANNELS,
    MAX_HOST_ID,
    MAX_LINKS,
    MAX_PAYLOAD,
    Address,
    LinkOptions,
    LinkPolicy,
    make_address,
)
from knet._pmtud import ip_udp_overhead, min_udp_payload
from knet._stats import HandleStats
from knet._wire import (
    DATA_HEADER,
    HEADER,
    HEADER_SIZE,
    PING_BODY,
    PROBE,
    WIRE_VERSION,
    PacketType,
    UnsupportedVersion,
    decode_data_untrusted,
    decode_header_untrusted,
    decode_ping_untrusted,
    decode_pmtud_untrusted,
)

__all__ = ["DEFAULT_LOG_INTERVAL_NS", "HostStatus", "KnetCore", "LinkStatus", "TxFilter"]

DEFAULT_LOG_INTERVAL_NS = 10_000_000_000  # one "invalid digest"-style line per peer per 10 s
_EMSGSIZE = 90  # Linux errno; the driver passes errno values through unchanged

#: TX/RX filter: ``(payload, channel, src_host)`` -> ``None`` to broadcast (deliver on
#: RX), an empty sequence to drop, or the host ids to unicast to. ``src_host`` is None
#: on TX.
TxFilter = Callable[[bytes, int, int | None], Sequence[int] | None]

_DATA = int(PacketType.DATA)
_PING = int(PacketType.PING)
_PONG = int(PacketType.PONG)
_PMTUD = int(PacketType.PMTUD)
_PMTUD_REPLY = int(PacketType.PMTUD_REPLY)
_RR = LinkPolicy.RR


@attrs.frozen(slots=True)
class LinkStatus:
    """What ``knet_link_get_status`` tells: configuration, state, MTU and counters."""

    host_id: int
    link_id: int
    local: Address
    remote: Address
    enabled: bool
    connected: bool
    priority: int
    mtu: int  #: the UDP payload this link carries (PMTUd or manual)
    #: the application data one packet carries on this link (libknet's link status MTU):
    #: ``mtu`` less knet's header, the crypto overhead and the data header
    data_mtu: int
    pong_timeout_adj_ms: int
    backoff: int
    last_pong_ns: int | None
    stats: dict[str, Any]


@attrs.frozen(slots=True)
class HostStatus:
    host_id: int
    name: str | None
    reachable: bool
    policy: LinkPolicy
    active_links: tuple[int, ...]
    link_ids: tuple[int, ...]


class _RateLimiter:
    """At most one log line per key per interval; counts what it suppressed."""

    __slots__ = ("_interval", "_last", "_suppressed")

    def __init__(self, interval_ns: int) -> None:
        self._interval = interval_ns
        self._last: dict[Any, int] = {}
        self._suppressed: dict[Any, int] = {}

    def allow(self, key: Any, now: int) -> int | None:
        """None if suppressed, else how many lines were suppressed since the last one."""
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if len(self._last) > 4096:  # bounded: garbage from many addresses must not grow it
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class KnetCore:
    """One knet handle: hosts, their links, and the packet pipeline, without I/O."""

    def __init__(
        self,
        host_id: int,
        *,
        rng: random.Random,
        instance: int | None = None,
        perf_counter_ns: Callable[[], int] | None = None,
        defrag_buffers: int = DEFAULT_DEFRAG_BUFFERS,
        pmtud_interval_s: int = DEFAULT_PMTUD_INTERVAL_S,
        log_interval_ns: int = DEFAULT_LOG_INTERVAL_NS,
    ) -> None:
        _check_host_id(host_id)
        if not 32 <= defrag_buffers <= 1024:
            raise ConfigError(f"defrag_buffers must be 32..1024, got {defrag_buffers}")
        self.host_id = host_id
        #: New at every start: peers use it to notice our restart, and it is part of every
        #: nonce. Peers only accept a larger instance than the one they know (replay
        #: protection), so the driver passes ``start wall-clock ms << 16 | 16 random bits``.
        if instance is None:
            instance = rng.getrandbits(64)
        if not 0 <= instance < 1 << 64:
            raise ConfigError(f"instance must fit in 64 bits, got {instance}")
        self.instance = instance
        self._perf = perf_counter_ns
        self._defrag_buffers = defrag_buffers
        self._hosts: dict[int, Host] = {}
        # Per-peer crypto state of removed hosts, restored if the host is added again:
        # the TX counter (part of the nonce: restarting it under the same instance and
        # key would reuse nonces) and the replay window (a fresh one would accept a
        # recorded packet of the peer's current instance).
        self._removed_peer_state: dict[int, tuple[int, ReplayWindow]] = {}
        self._paths: dict[Address, dict[tuple[str, int], Link]] = {}
        self._channels: set[int] = set()
        self._filter: TxFilter | None = None
        self._data_seq = 0
        self._sealers: dict[int, PacketSealer] = {}
        self._tx_slot = 0
        self._allow_clear_rx = True
        self._compressor = Compressor(CompressionConfig())
        self._manual_mtu: int | None = None
        self._pmtud_interval_ns = 0
        self.set_pmtud_interval(pmtud_interval_s)
        self._data_mtu = self._compute_data_mtu()
        self._now = 0
        self._stats = HandleStats()
        self._log_limiter = _RateLimiter(log_interval_ns)
        self._datagrams: list[Datagram] = []
        self._events: list[Event] = []
        self._logs: list[LogRecord] = []

    # ------------------------------------------------------------------ output

    def drain(self) -> Output:
        """Everything produced since the last call, as one immutable batch."""
        datagrams, events, logs = self._datagrams, self._events, self._logs
        if not (datagrams or events or logs):
            return _EMPTY
        self._datagrams, self._events, self._logs = [], [], []
        return Output(tuple(datagrams), tuple(events), tuple(logs))

    def take_datagrams(self) -> tuple[Datagram, ...] | None:
        """The drivers' shortcut after ``send``: the pending datagrams, if datagrams are
        all there is to drain (None otherwise: call ``drain``). Saves building an
        :class:`Output` for every packet sent."""
        if self._events or self._logs:
            return None
        datagrams = self._datagrams
        self._datagrams = []
        return tuple(datagrams)

    def next_deadline(self) -> int | None:
        """When ``handle_timeouts`` must be called next (None: nothing scheduled)."""
        deadline: int | None = None
        now = self._now
        for host in self._hosts.values():
            for link in host.links.values():
                when = link.deadline(now)
                if when is not None and (deadline is None or when < deadline):
                    deadline = when
        return deadline

    # ------------------------------------------------------------------ hosts

    def add_host(
        self, host_id: int, *, name: str | None = None, policy: LinkPolicy = LinkPolicy.PASSIVE
    ) -> None:
        """Know a host. Adding our own id makes it the loopback host: data sent to it
        (or broadcast) is delivered locally, like libknet's loopback link."""
        _check_host_id(host_id)
        if host_id in self._hosts:
            raise HostError(f"host {host_id} is already configured")
        if not isinstance(policy, LinkPolicy):
            raise ConfigError(f"policy must be a LinkPolicy, got {policy!r}")
        self._hosts[host_id] = Host(
            host_id,
            name=name,
            policy=policy,
            is_loopback=host_id == self.host_id,
            defrag_buffers=self._defrag_buffers,
        )
        saved = self._removed_peer_state.pop(host_id, None)
        if saved is not None:
            host = self._hosts[host_id]
            host.tx_counter, host.replay = saved

    def remove_host(self, host_id: int) -> None:
        host = self._host(host_id)
        for link_id in sorted(host.links):
            self.clear_link(host_id, link_id, self._now)
        del self._hosts[host_id]
        self._removed_peer_state[host_id] = (host.tx_counter, host.replay)

    def set_host_policy(self, host_id: int, policy: LinkPolicy) -> None:
        host = self._host(host_id)
        host.policy = policy
        self._update_reachability(host)

    def host_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._hosts))

    def host_status(self, host_id: int) -> HostStatus:
        host = self._host(host_id)
        return HostStatus(
            host_id=host_id,
            name=host.name,
            reachable=host.reachable,
            policy=host.policy,
            active_links=tuple(link.link_id for link in host.active_links),
            link_ids=tuple(sorted(host.links)),
        )

    # ------------------------------------------------------------------ links

    def set_link(
        self,
        host_id: int,
        link_id: int,
        *,
        local: Address | tuple[str, int] | str,
        remote: Address | tuple[str, int] | str,
        options: LinkOptions | None = None,
        enabled: bool = True,
        now: int,
    ) -> None:
        """Configure link ``link_id`` (0..7) to ``host_id`` as the UDP pair
        (local, remote) and, unless ``enabled=False``, start its heartbeat.

        The same link id must be used for this path on the other host.
        """
        self._advance(now)
        host = self._host(host_id)
        if host.is_loopback:
            raise LinkError(f"host {host_id} is this host: it needs no links (loopback)")
        if isinstance(link_id, bool) or not isinstance(link_id, int):
            raise LinkError(f"link id must be an integer 0..{MAX_LINKS - 1}, got {link_id!r}")
        if not 0 <= link_id < MAX_LINKS:
            raise LinkError(
                f"link id {link_id} out of range: a host has at most {MAX_LINKS} links (0..7)"
            )
        if link_id in host.links:
            raise LinkError(
                f"link {link_id} to host {host_id} is already configured; clear it first"
            )
        local_addr = make_address(local, what=f"link {link_id} to host {host_id}: local address")
        remote_addr = make_address(remote, what=f"link {link_id} to host {host_id}: remote address")
        if local_addr.family != remote_addr.family:
            raise ConfigError(
                f"link {link_id} to host {host_id}: local {local_addr} and remote "
                f"{remote_addr} are not the same IP family"
            )
        path_key = (remote_addr.ip, remote_addr.port)
        existing = self._paths.get(local_addr, {}).get(path_key)
        if existing is not None:
            raise LinkError(
                f"path {local_addr} -> {remote_addr} is already link {existing.link_id} "
                f"to host {existing.host_id}"
            )
        link = Link(host_id, link_id, local_addr, remote_addr, options or LinkOptions())
        link.manual_mtu = self._manual_link_mtu(link)
        host.links[link_id] = link
        self._paths.setdefault(local_addr, {})[path_key] = link
        if enabled:
            link.enable(now)
        self._log(
            LogLevel.DEBUG,
            "link configured",
            host=host_id,
            link=link_id,
            local=str(local_addr),
            remote=str(remote_addr),
        )

    def set_link_enabled(self, host_id: int, link_id: int, enabled: bool, now: int) -> None:
        self._advance(now)
        link = self._link(host_id, link_id)
        if enabled:
            link.enable(now)
        elif link.disable(now):
            self._link_went_down(link, LinkDownReason.DISABLED)

    def set_link_options(self, host_id: int, link_id: int, options: LinkOptions, now: int) -> None:
        """Change priority, ping timers, precision or pong count of a configured link."""
        self._advance(now)
        link = self._link(host_id, link_id)
        link.set_options(options, now)
        self._update_reachability(self._hosts[host_id])

    def clear_link(self, host_id: int, link_id: int, now: int) -> None:
        self._advance(now)
        link = self._link(host_id, link_id)
        if link.disable(now):
            self._link_went_down(link, LinkDownReason.REMOVED)
        host = self._hosts[host_id]
        del host.links[link_id]
        paths = self._paths[link.local]
        del paths[(link.remote.ip, link.remote.port)]
        if not paths:
            del self._paths[link.local]
        self._update_reachability(host)
        self._update_data_mtu()

    def link_status(self, host_id: int, link_id: int) -> LinkStatus:
        link = self._link(host_id, link_id)
        return LinkStatus(
            host_id=host_id,
            link_id=link_id,
            local=link.local,
            remote=link.remote,
            enabled=link.state is not LinkState.DISABLED,
            connected=link.is_up,
            priority=link.options.priority,
            mtu=link.mtu,
            data_mtu=link.mtu - self._packet_overhead(),
            pong_timeout_adj_ms=link.pong_timeout_adj_ns(self._now) // 1_000_000,
            backoff=link.backoff(self._now),
            last_pong_ns=link.last_pong_ns,
            stats=link.stats.snapshot(),
        )

    def local_endpoints(self) -> frozenset[Address]:
        """The local addresses the driver must have a bound socket for."""
        return frozenset(self._paths)

    # ------------------------------------------------------------------ channels, filter

    def open_channel(self, channel: int) -> None:
        """Accept data for ``channel`` (0..31); data for closed channels is dropped."""
        _check_channel(channel)
        self._channels.add(channel)

    def close_channel(self, channel: int) -> None:
        _check_channel(channel)
        self._channels.discard(channel)

    def set_filter(self, packet_filter: TxFilter | None) -> None:
        """Install the per-packet filter (see :data:`TxFilter`), or remove it."""
        self._filter = packet_filter

    # ------------------------------------------------------------------ crypto

    def set_crypto_config(self, slot: int, config: CryptoConfig | None) -> None:
        """Install (or with None, clear) the key in slot 1 or 2. Receiving tries every
        installed slot, so a new key can be installed everywhere before anyone uses it."""
        if slot not in (1, 2):
            raise CryptoError(f"crypto slot must be 1 or 2, got {slot!r}")
        if slot == self._tx_slot:
            raise CryptoError(f"crypto slot {slot} is in use for sending; switch first")
        if config is None:
            self._sealers.pop(slot, None)
        else:
            self._sealers[slot] = PacketSealer(config)
        self._update_data_mtu()

    def use_crypto_config(self, slot: int) -> None:
        """Seal outgoing packets with slot 1 or 2, or send clear with 0."""
        if slot not in (0, 1, 2):
            raise CryptoError(f"crypto slot must be 0, 1 or 2, got {slot!r}")
        if slot and slot not in self._sealers:
            raise CryptoError(f"crypto slot {slot} has no key installed")
        self._tx_slot = slot
        self._update_data_mtu()
        if slot == 0:
            self._log(LogLevel.WARNING, "crypto is off: packets are neither encrypted nor signed")

    def set_rx_clear_traffic(self, allow: bool) -> None:
        """Whether clear (unsealed) packets are accepted. Allowed by default; disallow it
        once every host seals, and allow it while switching crypto on or off."""
        self._allow_clear_rx = allow

    @property
    def crypto_tx_slot(self) -> int:
        return self._tx_slot

    # ------------------------------------------------------------------ compression, MTU

    def set_compression(self, config: CompressionConfig) -> None:
        self._compressor = Compressor(config)

    def set_manual_mtu(self, interface_mtu: int | None, now: int) -> None:
        """Use this interface MTU on every link instead of discovering it (None or 0:
        discover again)."""
        self._advance(now)
        if interface_mtu is not None and interface_mtu != 0 and not 576 <= interface_mtu <= 65535:
            raise ConfigError(f"MTU must be 576..65535 (or 0 for automatic), got {interface_mtu}")
        self._manual_mtu = interface_mtu or None
        for link in self._all_links():
            link.manual_mtu = self._manual_link_mtu(link)
            if link.manual_mtu is None and link.is_up:
                self._start_pmtud(link, now)
        self._update_data_mtu()

    def set_pmtud_interval(self, seconds: int) -> None:
        if not 1 <= seconds <= 86400:
            raise ConfigError(f"PMTUd interval must be 1..86400 seconds, got {seconds}")
        self._pmtud_interval_ns = seconds * 1_000_000_000

    @property
    def data_mtu(self) -> int:
        """The largest payload one datagram carries; larger ones are fragmented."""
        return self._data_mtu

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    # ------------------------------------------------------------------ sending

    def send(
        self,
        payload: bytes,
        now: int,
        *,
        channel: int = 0,
        hosts: Iterable[int] | None = None,
    ) -> int:
        """Send ``payload`` (at most 64 KiB) on ``channel`` to ``hosts``, or, when
        ``hosts`` is None, where the filter says (broadcast without a filter).

        Returns the number of hosts it went to; hosts without a connected link are
        skipped and counted (``tx_no_active_links``).
        """
        self._now = now
        if len(payload) > MAX_PAYLOAD:
            raise KnetError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} bytes")
        if type(channel) is not int or not 0 <= channel < MAX_CHANNELS:
            _check_channel(channel)  # raises the precise error
        if hosts is None:
            chosen = self._filter(payload, channel, None) if self._filter else None
            if chosen is not None and not chosen:
                self._stats.tx_filtered += 1
                return 0
            targets = self._hosts.values() if chosen is None else self._hosts_of(chosen)
        else:
            hosts_map = self._hosts
            targets = []
            for host_id in hosts:
                try:
                    targets.append(hosts_map[host_id])
                except (KeyError, TypeError):
                    self._host(host_id)  # raises the precise error

        if self._compressor.model is CompressionModel.NONE:  # the common case, inlined
            self._stats.tx_uncompressed_packets += 1
            compressed_model, body = 0, payload
        else:
            compressed_model, body = self._compress(payload)
        self._data_seq = seq = (self._data_seq + 1) & 0xFFFFFFFF
        fragments: list[bytes] | None = None
        sent = 0
        for host in targets:
            if host.is_loopback:
                if channel in self._channels:
                    self._events.append(DataReceived(self.host_id, channel, bytes(payload)))
                sent += 1
                continue
            links = host.active_links if host.policy is not _RR else host.links_for_send()
            if not links:
                self._stats.tx_no_active_links += 1
                continue
            if fragments is None:
                if len(body) <= self._data_mtu:
                    fragments = [body]
                else:
                    fragments = split(body, self._fragment_size(len(body)))
            count = len(fragments)
            for link in links:
                stats = link.stats
                for index, fragment in enumerate(fragments):
                    data_body = DATA_HEADER.pack(seq, channel, compressed_model, index, count)
                    size = self._emit(host, link, _DATA, data_body + fragment)
                    stats.tx_data_packets += 1
                    stats.tx_data_bytes += size
            sent += 1
        return sent

    def _fragment_size(self, body_len: int) -> int:
        size = self._data_mtu
        if body_len > size * MAX_FRAGMENTS:  # tiny MTU: fewer, larger fragments; IP fragments them
            size = -(-body_len // MAX_FRAGMENTS)
        return size

    def _compress(self, payload: bytes) -> tuple[int, bytes]:
        perf = self._perf
        started = perf() if perf else 0
        model, body = self._compressor.compress(payload)
        stats = self._stats
        if model is CompressionModel.NONE:
            stats.tx_uncompressed_packets += 1
            if self._compressor.config.model is not CompressionModel.NONE and len(payload) >= (
                self._compressor.config.effective_threshold
            ):
                stats.tx_unable_to_compress += 1
            return 0, payload
        stats.tx_compressed_packets += 1
        stats.tx_compressed_original_bytes += len(payload)
        stats.tx_compressed_size_bytes += len(body)
        if perf:
            stats.tx_compress_time.add((perf() - started) // 1000)
        return int(model), body

    def _emit(self, host: Host, link: Link, ptype: int, body: bytes) -> int:
        """Frame (and seal) one packet to ``host`` on ``link``; returns its size."""
        host.tx_counter = counter = host.tx_counter + 1
        slot = self._tx_slot
        header = HEADER.pack(
            WIRE_VERSION, ptype, self.host_id, link.link_id, slot, 0, self.instance, counter
        )
        if slot:
            sealer = self._sealers[slot]
            perf = self._perf
            started = perf() if perf else 0
            nonce = sealer.make_nonce(self.host_id, host.host_id, self.instance, counter)
            data = sealer.seal_packet(header, nonce, body)
            stats = self._stats
            stats.tx_crypt_packets += 1
            stats.tx_crypt_byte_overhead += sealer.overhead
            if perf:
                stats.tx_crypt_time.add((perf() - started) // 1000)
        else:
            data = header + body
        self._datagrams.append(Datagram(link.local, link.remote, data))
        return len(data)

    def report_send_error(
        self, datagram: Datagram, errno: int, ip_mtu: int | None, now: int
    ) -> None:
        """The driver could not send ``datagram``. For EMSGSIZE pass the kernel's path
        MTU if known: PMTU discovery uses it."""
        self._advance(now)
        link = self._paths.get(datagram.local, {}).get((datagram.remote.ip, datagram.remote.port))
        if link is None:
            return
        link.stats.tx_total_errors += 1
        if errno != _EMSGSIZE:
            return
        link.stats.tx_emsgsize_errors += 1
        if link.manual_mtu is not None or not link.is_up:
            return
        if len(datagram.data) > 1 and datagram.data[1] == _PMTUD:
            probe = link.pmtud.on_emsgsize(len(datagram.data), ip_mtu, now, self._pmtud_interval_ns)
            self._after_pmtud_step(link, probe)
        elif link.pmtud.probe_size == 0:
            # A data packet no longer fits: the path shrank. Discover again.
            if ip_mtu:
                link.pmtud.mtu = max(
                    min_udp_payload(link.remote.family),
                    ip_mtu - ip_udp_overhead(link.remote.family),
                )
            self._start_pmtud(link, now)
            self._update_data_mtu()

    # ------------------------------------------------------------------ receiving

    def receive(self, local: Address, datagrams: Iterable[tuple[bytes, Any]], now: int) -> None:
        """Take a batch of ``(data, source address)`` pairs, as ``recvfrom`` returns
        them, that arrived on the socket bound to ``local``."""
        self._advance(now)
        paths = self._paths.get(local, {})
        for data, source in datagrams:
            link = paths.get((source[0], source[1]))
            if link is None:
                self._drop_unknown_source(local, source, now)
                continue
            try:
                self._receive_one(link, data, now)
            except MalformedPacket as exc:
                self._drop_malformed(link, exc, now)
            except Exception as exc:  # a bug of ours must not let a packet kill the node
                self._stats.rx_malformed += 1
                self._log(
                    LogLevel.ERROR,
                    "internal error while handling a packet; packet dropped",
                    host=link.host_id,
                    link=link.link_id,
                    error=repr(exc),
                )

    def _receive_one(self, link: Link, data: bytes, now: int) -> None:
        if len(data) < HEADER_SIZE or data[0] != WIRE_VERSION:
            decode_header_untrusted(data)  # raises the precise error
        _version, ptype, src_host, link_id, slot, reserved, instance, counter = HEADER.unpack_from(
            data
        )
        if reserved or ptype < _DATA or ptype > _PMTUD_REPLY or slot > 2:
            decode_header_untrusted(data)
        if src_host != link.host_id or link_id != link.link_id:
            self._stats.rx_link_mismatch += 1
            link.stats.rx_invalid_packets += 1
            if self._log_limiter.allow(("mismatch", link.remote), now) is not None:
                self._log(
                    LogLevel.WARNING,
                    "packet claims another host or link id than configured for its address; "
                    "dropped (link ids must pair up on both ends)",
                    address=str(link.remote),
                    expected_host=link.host_id,
                    expected_link=link.link_id,
                    claimed_host=src_host,
                    claimed_link=link_id,
                )
            return
        if link.state is LinkState.DISABLED:
            return
        host = self._hosts[src_host]
        if slot:
            body = self._open(host, link, data, slot, instance, counter, now)
            if body is None:
                return
        else:
            if not self._allow_clear_rx:
                self._stats.rx_clear_rejected += 1
                if self._log_limiter.allow(("clear", link.remote), now) is not None:
                    self._log(
                        LogLevel.WARNING,
                        "clear packet rejected: crypto is required",
                        address=str(link.remote),
                        host=src_host,
                    )
                return
            body = data[HEADER_SIZE:]
        if instance != host.peer_instance and not self._adopt_instance(
            host, link, ptype, body, slot, instance, counter, now
        ):
            return
        if slot:
            host.replay.accept(instance, counter)

        size = len(data)
        stats = link.stats
        if ptype == _DATA:
            stats.rx_data_packets += 1
            stats.rx_data_bytes += size
            self._receive_data(host, link, body, now)
        elif ptype == _PING:
            stats.rx_ping_packets += 1
            stats.rx_ping_bytes += size
            decode_ping_untrusted(body)
            stats.tx_pong_packets += 1
            stats.tx_pong_bytes += self._emit(host, link, _PONG, body)
        elif ptype == _PONG:
            stats.rx_pong_packets += 1
            stats.rx_pong_bytes += size
            sent_at, pinger = decode_ping_untrusted(body)
            if pinger != self.instance:
                stats.rx_late_pongs += 1  # answers a ping of an earlier run of ours
            elif link.on_pong(sent_at, now):
                self._link_came_up(link, now)
        elif ptype == _PMTUD:
            stats.rx_pmtu_packets += 1
            stats.rx_pmtu_bytes += size
            probe = decode_pmtud_untrusted(body)
            if probe == size:
                stats.tx_pmtu_packets += 1
                stats.tx_pmtu_bytes += self._emit(host, link, _PMTUD_REPLY, PROBE.pack(probe))
        else:
            stats.rx_pmtu_packets += 1
            stats.rx_pmtu_bytes += size
            probe = decode_pmtud_untrusted(body)
            if link.manual_mtu is None:
                self._after_pmtud_step(
                    link, link.pmtud.on_reply(probe, now, self._pmtud_interval_ns)
                )

    def _open(
        self, host: Host, link: Link, data: bytes, slot: int, instance: int, counter: int, now: int
    ) -> bytes | None:
        """Authenticate and decrypt; None (counted, logged) if that fails."""
        # While the peer is unreachable, let a smaller instance in: it may have restarted
        # with its clock stepped back (see ReplayWindow).
        allow_older = not host.reachable
        if not host.replay.check(instance, counter, allow_older=allow_older):
            self._stats.rx_replayed += 1
            link.stats.rx_replayed += 1
            if host.replay.predates_verification(instance, counter):
                # Sent before the pong that verified this peer, overtaken by it on
                # another link: dropped (it cannot be told from a replay), but normal.
                self._log(
                    LogLevel.DEBUG,
                    "packet sent before the peer was verified dropped",
                    host=host.host_id,
                    link=link.link_id,
                )
            elif self._log_limiter.allow(("replay", link.remote), now) is not None:
                self._log(
                    LogLevel.WARNING,
                    "replayed or too old packet dropped",
                    address=str(link.remote),
                    host=host.host_id,
                    link=link.link_id,
                )
            return None
        header = data[:HEADER_SIZE]
        sealed = data[HEADER_SIZE:]
        perf = self._perf
        started = perf() if perf else 0
        # The header names the sender's slot; our slot numbers may differ during a key
        # change, so fall back to the other installed key.
        sealers = self._sealers
        primary = sealers.get(slot)
        if primary is not None and len(sealers) == 1:
            candidates: Sequence[PacketSealer] = (primary,)  # one key: no list per packet
        else:
            candidates = [primary] if primary is not None else []
            candidates += [s for n, s in sorted(sealers.items()) if n != slot]
        for sealer in candidates:
            nonce = sealer.make_nonce(host.host_id, self.host_id, instance, counter)
            try:
                body = sealer.open(header, nonce, sealed)
            except AuthenticationFailed:
                continue
            stats = self._stats
            stats.rx_crypt_packets += 1
            if perf:
                stats.rx_crypt_time.add((perf() - started) // 1000)
            return body
        self._stats.rx_auth_failures += 1
        link.stats.rx_auth_failures += 1
        suppressed = self._log_limiter.allow(("digest", link.remote), now)
        if suppressed is not None:
            self._log(
                LogLevel.WARNING,
                f"invalid digest from {link.remote} (host {host.host_id} link {link.link_id}): "
                "packet dropped",
                address=str(link.remote),
                host=host.host_id,
                link=link.link_id,
                suppressed=suppressed,
            )
        return None

    def _adopt_instance(
        self,
        host: Host,
        link: Link,
        ptype: int,
        body: bytes,
        slot: int,
        instance: int,
        counter: int,
        now: int,
    ) -> bool:
        """A packet from an instance of the peer we have not verified (first contact
        or a restart). Returns True once the packet may be handled normally.

        Only a pong that answers one of *our* pings of this run (our instance id,
        echoed, and a recent timestamp) proves the instance is alive now; until then
        pings are answered (harmless) and everything else is dropped. So a packet
        recorded earlier and replayed to us after our own restart, or an old
        incarnation's straggler, can never be delivered or reset the receive state.
        """
        if ptype == _PING:
            return True  # answer it; pongs carry our state only in what they echo
        if ptype == _PONG:
            sent_at, pinger = decode_ping_untrusted(body)
            fresh = (
                pinger == self.instance
                and sent_at <= now
                and now - sent_at <= link.options.ping_timeout_ns
            )
            older = host.peer_instance is not None and instance < host.peer_instance
            if fresh and not (older and host.reachable):
                if host.peer_instance is not None:
                    self._log(LogLevel.INFO, "host restarted (new instance)", host=host.host_id)
                host.peer_restarted(instance)
                if slot:
                    # Every counter up to this one predates our proof of life: refuse them.
                    host.replay.start_instance(instance, counter)
                return True
        self._stats.rx_unverified_instance += 1
        return False

    def _receive_data(self, host: Host, link: Link, body: bytes, now: int) -> None:
        head, fragment = decode_data_untrusted(body)
        seq = head.data_seq
        if head.frag_count == 1:  # the common case: check and mark in one step
            if not host.dedup.mark_new(seq):
                link.stats.rx_duplicates += 1
                return
            payload = fragment
        else:
            if host.dedup.is_duplicate(seq):
                link.stats.rx_duplicates += 1
                return
            reassembler = host.reassembler
            evicted, expired = reassembler.evicted, reassembler.expired
            whole = reassembler.add(seq, head.frag_index, head.frag_count, fragment, now)
            self._stats.defrag_evicted += reassembler.evicted - evicted
            self._stats.defrag_expired += reassembler.expired - expired
            if whole is None:
                return
            payload = whole
            host.dedup.mark(seq)
        if head.compression:
            payload = self._decompress(head.compression, payload)
        channel = head.channel
        if channel not in self._channels:
            self._stats.rx_closed_channel += 1
            return
        if self._filter is not None:
            decision = self._filter(payload, channel, host.host_id)
            if decision is not None and not decision:
                self._stats.rx_filtered += 1
                return
        self._events.append(DataReceived(host.host_id, channel, payload))

    def _decompress(self, model: int, data: bytes) -> bytes:
        stats = self._stats
        perf = self._perf
        started = perf() if perf else 0
        try:
            payload = decompress_untrusted(model, data, MAX_PAYLOAD)
        except MalformedPacket:
            stats.rx_failed_to_decompress += 1
            raise
        stats.rx_compressed_packets += 1
        stats.rx_compressed_size_bytes += len(data)
        stats.rx_compressed_original_bytes += len(payload)
        if perf:
            stats.rx_decompress_time.add((perf() - started) // 1000)
        return payload

    def _drop_unknown_source(self, local: Address, source: Any, now: int) -> None:
        self._stats.rx_unknown_source += 1
        key = ("unknown", source[0])
        suppressed = self._log_limiter.allow(key, now)
        if suppressed is not None:
            self._log(
                LogLevel.WARNING,
                "packet from an address that is not a configured peer dropped",
                address=f"{source[0]}:{source[1]}",
                local=str(local),
                suppressed=suppressed,
            )

    def _drop_malformed(self, link: Link, exc: MalformedPacket, now: int) -> None:
        link.stats.rx_invalid_packets += 1
        if isinstance(exc, UnsupportedVersion):
            self._stats.rx_unsupported_version += 1
            what = "packet with an unsupported knet wire version dropped (is the peer newer?)"
        else:
            self._stats.rx_malformed += 1
            what = "malformed packet dropped"
        suppressed = self._log_limiter.allow(("malformed", link.remote), now)
        if suppressed is not None:
            self._log(
                LogLevel.WARNING,
                what,
                address=str(link.remote),
                host=link.host_id,
                link=link.link_id,
                reason=str(exc),
                suppressed=suppressed,
            )

    # ------------------------------------------------------------------ timers

    def handle_timeouts(self, now: int) -> None:
        """Fire every timer that is due: pings, pong timeouts, PMTU probes."""
        self._advance(now)
        for _host_id, host in sorted(self._hosts.items()):
            for _link_id, link in sorted(host.links.items()):
                if link.check_timeout(now):
                    self._link_went_down(link, LinkDownReason.TIMEOUT)
                if link.ping_due(now):
                    stats = link.stats
                    stats.tx_ping_packets += 1
                    stats.tx_ping_bytes += self._emit(
                        host, link, _PING, PING_BODY.pack(now, self.instance)
                    )
                    link.ping_sent(now)
                if link.is_up and link.manual_mtu is None:
                    self._pmtud_timer(link, now)
            if host.reassembler.pending:
                expired = host.reassembler.expired
                host.reassembler.expire(now)
                self._stats.defrag_expired += host.reassembler.expired - expired

    def _pmtud_timer(self, link: Link, now: int) -> None:
        pmtud = link.pmtud
        if pmtud.probe_size:
            deadline = pmtud.deadline()
            if deadline is not None and now >= deadline:
                self._after_pmtud_step(link, pmtud.on_timer(now, self._pmtud_interval_ns))
        elif pmtud.next_run_ns is not None and now >= pmtud.next_run_ns:
            self._start_pmtud(link, now)

    def _start_pmtud(self, link: Link, now: int) -> None:
        self._send_probe(link, link.pmtud.start(now, link.pong_timeout_adj_ns(now)))

    def _after_pmtud_step(self, link: Link, probe: int | None) -> None:
        if probe is not None:
            self._send_probe(link, probe)
            return
        if link.pmtud.aborted:
            self._log(
                LogLevel.WARNING,
                "aborting PMTUD process: too many attempts; keeping the last good size",
                host=link.host_id,
                link=link.link_id,
                mtu=link.pmtud.mtu,
            )
        self._update_data_mtu()

    def _send_probe(self, link: Link, size: int) -> None:
        host = self._hosts[link.host_id]
        overhead = HEADER_SIZE + (self._sealers[self._tx_slot].overhead if self._tx_slot else 0)
        padding = size - overhead - PROBE.size
        if padding < 0:
            return
        body = PROBE.pack(size) + bytes(padding)
        link.stats.tx_pmtu_packets += 1
        link.stats.tx_pmtu_bytes += self._emit(host, link, _PMTUD, body)

    # ------------------------------------------------------------------ state changes

    def _link_came_up(self, link: Link, now: int) -> None:
        self._events.append(LinkUp(link.host_id, link.link_id))
        self._log(
            LogLevel.INFO,
            f"rx: host: {link.host_id} link: {link.link_id} is up",  # libknet's wording
            host=link.host_id,
            link=link.link_id,
            latency_us=link.stats.latency_ave_us,
        )
        self._update_reachability(self._hosts[link.host_id])
        if link.manual_mtu is None:
            self._start_pmtud(link, now)
        self._update_data_mtu()

    def _link_went_down(self, link: Link, reason: LinkDownReason) -> None:
        self._events.append(LinkDown(link.host_id, link.link_id, reason))
        self._log(
            LogLevel.INFO,
            f"link: host: {link.host_id} link: {link.link_id} is down",
            host=link.host_id,
            link=link.link_id,
            reason=reason.value,
        )
        self._update_reachability(self._hosts[link.host_id])
        self._update_data_mtu()

    def _update_reachability(self, host: Host) -> None:
        previous_active = host.active_links
        reachable = host.recompute_active_links()
        changed = host.active_links != previous_active
        if host.policy is LinkPolicy.PASSIVE and changed and host.active_links:
            best = host.active_links[0]
            self._log(
                LogLevel.INFO,
                f"host: host: {host.host_id} (passive) best link: {best.link_id} "
                f"(pri: {best.options.priority})",
                host=host.host_id,
                policy="passive",
                link=best.link_id,
                priority=best.options.priority,
            )
        if reachable != host.reachable:
            host.reachable = reachable
            if reachable:
                self._events.append(HostReachable(host.host_id))
                self._log(
                    LogLevel.INFO, f"host: host: {host.host_id} has active links", host=host.host_id
                )
            else:
                self._events.append(HostUnreachable(host.host_id))
                self._log(
                    LogLevel.WARNING,
                    f"host: host: {host.host_id} has no active links",
                    host=host.host_id,
                )

    def _update_data_mtu(self) -> None:
        mtu = self._compute_data_mtu()
        if mtu != self._data_mtu:
            previous, self._data_mtu = self._data_mtu, mtu
            self._events.append(DataMtuChanged(mtu, previous))
            self._log(
                LogLevel.INFO,
                f"pmtud: Global data MTU changed to: {mtu}",
                data_mtu=mtu,
                previous=previous,
            )

    def _compute_data_mtu(self) -> int:
        links = [link for link in self._all_links() if link.is_up]
        link_mtu = min(link.mtu for link in links) if links else min_udp_payload(4)
        return link_mtu - self._packet_overhead()

    def _packet_overhead(self) -> int:
        """Bytes of a data packet that are not application data."""
        overhead = max((s.overhead for s in self._sealers.values()), default=0)
        return HEADER_SIZE + overhead + DATA_HEADER.size

    def _manual_link_mtu(self, link: Link) -> int | None:
        if self._manual_mtu is None:
            return None
        return self._manual_mtu - ip_udp_overhead(link.remote.family)

    # ------------------------------------------------------------------ helpers

    def _advance(self, now: int) -> None:
        self._now = now

    def _all_links(self) -> list[Link]:
        return [link for host in self._hosts.values() for link in host.links.values()]

    def _host(self, host_id: int) -> Host:
        try:
            return self._hosts[host_id]
        except (KeyError, TypeError):
            raise HostError(f"host {host_id!r} is not configured") from None

    def _hosts_of(self, host_ids: Iterable[int]) -> list[Host]:
        return [self._host(host_id) for host_id in host_ids]

    def _link(self, host_id: int, link_id: int) -> Link:
        host = self._host(host_id)
        try:
            return host.links[link_id]
        except (KeyError, TypeError):
            raise LinkError(f"link {link_id!r} to host {host_id} is not configured") from None

    def _log(self, level: LogLevel, event: str, **fields: Any) -> None:
        self._logs.append(LogRecord(level, event, fields))


_EMPTY = Output()


def _check_host_id(host_id: int) -> None:
    if isinstance(host_id, bool) or not isinstance(host_id, int) or not 0 <= host_id <= MAX_HOST_ID:
        raise HostError(f"host id must be an integer 0..{MAX_HOST_ID}, got {host_id!r}")


def _check_channel(channel: int) -> None:
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < MAX_CHANNELS:
        raise ConfigError(f"channel must be an integer 0..{MAX_CHANNELS - 1}, got {channel!r}")
