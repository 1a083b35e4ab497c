"""Totem over plain UDP: one socket per node, a fixed map of node ids to addresses.

Like corosync's ``udpu`` transport: every node knows every other node's address; a
multicast is sent as one unicast datagram per peer. Plain UDP carries no host id, so
every datagram starts with a 5-byte header::

    version u8 (1) | source node id u32 (big-endian) | totem message

A datagram is accepted only if it comes from the address configured for the node id in
its header; anything else (unknown addresses, a peer claiming another id, malformed or
foreign datagrams) is counted and dropped. There is no encryption or authentication:
UDP source addresses can be spoofed, so use this on a trusted network, or use knet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Mapping
from typing import Any

import trio

from totem._errors import ConfigError, TotemError
from totem._transport import DEFAULT_BATCH

__all__ = ["UDP_HEADER_SIZE", "UDP_VERSION", "UdpTransport"]

UDP_VERSION = 1
_HEADER = struct.Struct(">BI")
UDP_HEADER_SIZE = _HEADER.size
_MAX_UDP_PAYLOAD = {4: 65507, 6: 65527}  # 65535 minus the IP (v4 only) and UDP headers
_RCVBUF = 8 * 1024 * 1024
_SNDBUF = 4 * 1024 * 1024
_IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
_IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)


def _endpoint(node_id: int, address: object) -> tuple[str, int, int]:
    """Validate ``(ip, port)``; return (canonical ip, port, family)."""
    if not isinstance(address, tuple) or len(address) != 2:
        raise ConfigError(f"node {node_id}: address must be an (ip, port) tuple, got {address!r}")
    ip, port = address
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        raise ConfigError(f"node {node_id}: {ip!r} is not an IP address") from None
    if parsed.is_unspecified or parsed.is_multicast:
        raise ConfigError(f"node {node_id}: {ip} cannot be a node's address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"node {node_id}: port must be 1..65535, got {port!r}")
    return str(parsed), port, parsed.version


class UdpTransport:
    """A :class:`~totem.Transport` over one UDP socket.

    ``nodes`` maps every configured node id (this one included) to its ``(ip, port)``;
    the socket is bound to this node's address at once (a busy or foreign address
    raises :class:`ConfigError`). All addresses must be of one family (IPv4 or IPv6).
    ``max_datagram`` defaults to the largest UDP payload minus the 5-byte header; the
    kernel fragments large datagrams on the wire. Close it with :meth:`close` (or use
    it as a context manager). ``stats`` counts ``tx_packets``, ``tx_errors`` (send
    failures, dropped), ``rx_packets``, ``rx_unknown_source`` (not the configured
    address of the node id it claims), ``rx_malformed``.
    """

    def __init__(
        self,
        node_id: int,
        nodes: Mapping[int, tuple[str, int]],
        *,
        max_datagram: int | None = None,
    ) -> None:
        if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 < node_id < 1 << 32:
            raise ConfigError(f"node id must be an integer 1..2^32-1, got {node_id!r}")
        if node_id not in nodes:
            raise ConfigError(f"node {node_id} (this node) has no address in the node map")
        endpoints = {n: _endpoint(n, address) for n, address in sorted(nodes.items())}
        for n in endpoints:
            if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < 1 << 32:
                raise ConfigError(f"node id must be an integer 1..2^32-1, got {n!r}")
        families = {family for _ip, _port, family in endpoints.values()}
        if len(families) != 1:
            raise ConfigError("all node addresses must be IPv4, or all IPv6")
        (family,) = families
        by_address: dict[tuple[str, int], int] = {}
        for n, (ip, port, _family) in endpoints.items():
            if by_address.setdefault((ip, port), n) != n:
                raise ConfigError(f"nodes {by_address[(ip, port)]} and {n} share {ip}:{port}")
        limit = _MAX_UDP_PAYLOAD[family] - UDP_HEADER_SIZE
        if max_datagram is None:
            max_datagram = limit
        elif not 256 <= max_datagram <= limit:
            raise ConfigError(f"max_datagram must be 256..{limit}, got {max_datagram}")
        self._node_id = node_id
        self._max_datagram = max_datagram
        self._peers = {n: (ip, port) for n, (ip, port, _f) in endpoints.items() if n != node_id}
        self._peer_addresses = [self._peers[n] for n in sorted(self._peers)]
        self._by_address = by_address
        self._header = _HEADER.pack(UDP_VERSION, node_id)
        self.stats: dict[str, int] = dict.fromkeys(
            ("tx_packets", "tx_errors", "rx_packets", "rx_unknown_source", "rx_malformed"), 0
        )
        ip, port, _family = endpoints[node_id]
        self.local_address = (ip, port)
        self._sock = self._bind(ip, port, family)
        self.closed = False

    @staticmethod
    def _bind(ip: str, port: int, family: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option, size in ((socket.SO_RCVBUF, _RCVBUF), (socket.SO_SNDBUF, _SNDBUF)):
                with contextlib.suppress(OSError):  # best effort without privileges
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
            if family == 6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            else:
                with contextlib.suppress(OSError):  # let the kernel fragment big datagrams
                    sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DONT)
            sock.bind((ip, port))
        except OSError as exc:
            sock.close()
            reason = exc.strerror or exc
            raise ConfigError(f"cannot bind UDP socket to {ip}:{port}: {reason}") from exc
        return sock

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    def send(self, target: int, data: bytes) -> None:
        if len(data) > self._max_datagram:
            raise TotemError(
                f"datagram of {len(data)} bytes exceeds max_datagram ({self._max_datagram})"
            )
        if self.closed:
            return
        if target == 0:
            addresses = self._peer_addresses
        else:
            address = self._peers.get(target)
            if address is None:
                self.stats["tx_errors"] += 1
                return
            addresses = [address]
        datagram = self._header + data
        sendto = self._sock.sendto
        stats = self.stats
        for address in addresses:
            try:
                sendto(datagram, address)
            except OSError:  # full buffer, ICMP error queued, unreachable: a lost datagram
                stats["tx_errors"] += 1
            else:
                stats["tx_packets"] += 1

    async def receive_batch(self, max_count: int = DEFAULT_BATCH) -> list[tuple[int, bytes]]:
        sock = self._sock
        recvfrom = sock.recvfrom
        by_address = self._by_address
        stats = self.stats
        while True:
            if self.closed or sock.fileno() < 0:
                return []
            try:
                await trio.lowlevel.wait_readable(sock)
            except (OSError, trio.ClosedResourceError):
                return []
            batch: list[tuple[int, bytes]] = []
            raw: list[tuple[bytes, Any]] = []
            append = raw.append
            try:
                for _ in range(max_count):
                    append(recvfrom(65536))
            except OSError:  # BlockingIOError: drained; others: a queued ICMP error
                pass
            for data, source in raw:
                node = by_address.get((source[0], source[1]))
                if node is None:  # access control first: strangers cost nothing more
                    stats["rx_unknown_source"] += 1
                    continue
                if len(data) < UDP_HEADER_SIZE or data[0] != UDP_VERSION:
                    stats["rx_malformed"] += 1
                    continue
                if node != _HEADER.unpack_from(data)[1]:  # a peer claiming another id
                    stats["rx_unknown_source"] += 1
                    continue
                stats["rx_packets"] += 1
                batch.append((node, data[UDP_HEADER_SIZE:]))
            if batch:
                return batch
            await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the socket (idempotent); a waiting :meth:`receive_batch` returns []."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError):  # outside trio nobody can be waiting
            trio.lowlevel.notify_closing(self._sock)
        self._sock.close()

    def __enter__(self) -> UdpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
