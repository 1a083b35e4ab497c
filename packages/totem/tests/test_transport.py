"""Transports below Totem: the in-process network, loss injection, plain UDP and knet
on loopback, and the ring id file store."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import pytest
import trio

import knet
from totem import (
    ConfigError,
    FileRingStore,
    KnetTransport,
    LossyTransport,
    MemoryNetwork,
    MemoryTransport,
    TotemError,
    Transport,
    UdpTransport,
)
from totem._udp import UDP_HEADER_SIZE, UDP_VERSION


async def receive_all(transport: Transport, count: int) -> list[tuple[int, bytes]]:
    """``count`` datagrams from ``transport`` (bounded wait)."""
    got: list[tuple[int, bytes]] = []
    with trio.fail_after(5):
        while len(got) < count:
            got.extend(await transport.receive_batch())
    return got


async def nothing_arrives(transport: Transport) -> bool:
    """True if no datagram arrives within 0.2 s."""
    with trio.move_on_after(0.2):
        await transport.receive_batch()
        return False
    return True


# ------------------------------------------------------------------ MemoryNetwork


async def test_memory_unicast_and_broadcast_reach_the_right_nodes() -> None:
    """A unicast reaches its target only; a broadcast every other node, never the sender."""
    net = MemoryNetwork()
    a, b, c = (net.transport(n) for n in (1, 2, 3))
    assert isinstance(a, Transport)
    a.send(2, b"to two")
    a.send(0, b"to all")
    assert await receive_all(b, 2) == [(1, b"to two"), (1, b"to all")]
    assert await receive_all(c, 1) == [(1, b"to all")]
    assert await nothing_arrives(a)
    assert net.node_ids == (1, 2, 3)


async def test_memory_receive_batch_returns_what_is_waiting_up_to_max_count() -> None:
    """One receive_batch hands over every waiting datagram, at most max_count, in order."""
    net = MemoryNetwork()
    a, b = net.transport(1), net.transport(2)
    for i in range(10):
        a.send(2, b"%d" % i)
    first = await b.receive_batch(4)
    rest = await b.receive_batch()
    assert [data for _src, data in first] == [b"0", b"1", b"2", b"3"]
    assert [data for _src, data in rest] == [b"%d" % i for i in range(4, 10)]


async def test_memory_loss_is_per_direction_and_seeded() -> None:
    """set_loss drops one direction only; the same seed loses the same datagrams."""

    async def run(seed: int) -> list[bytes]:
        net = MemoryNetwork(rng=random.Random(seed))
        a, b = net.transport(1), net.transport(2)
        net.set_loss(1, 2, 0.5)
        for i in range(200):
            a.send(2, b"%d" % i)
            b.send(1, b"%d" % i)
        assert len(await receive_all(a, 200)) == 200  # 2 -> 1 is lossless
        got = [data for _src, data in await b.receive_batch(1000)]
        assert await nothing_arrives(b)
        assert net.stats["lost"] == 200 - len(got)
        return got

    first, again, other = await run(7), await run(7), await run(8)
    assert 60 < len(first) < 140
    assert first == again
    assert first != other


async def test_memory_cut_and_restore() -> None:
    """A cut drops both directions until restored; other paths are untouched."""
    net = MemoryNetwork()
    a, b, c = (net.transport(n) for n in (1, 2, 3))
    net.cut(1, 2)
    a.send(0, b"cut")
    b.send(1, b"cut")
    assert await receive_all(c, 1) == [(1, b"cut")]
    assert await nothing_arrives(b)
    assert await nothing_arrives(a)
    net.restore(1, 2)
    a.send(2, b"back")
    assert await receive_all(b, 1) == [(1, b"back")]
    assert net.stats["cut"] == 2


async def test_memory_close_detaches_and_allows_a_restart() -> None:
    """A closed transport ends its receive, is skipped by sends, and its id can rejoin."""
    net = MemoryNetwork()
    a = net.transport(1)
    b = net.transport(2)
    with pytest.raises(TotemError, match="already attached"):
        net.transport(2)
    b.close()
    assert await b.receive_batch() == []
    a.send(2, b"to nobody")
    assert net.stats["unknown_target"] == 1
    b.send(1, b"from a closed transport")  # dropped, not raised
    again = net.transport(2)
    a.send(2, b"hello again")
    assert await receive_all(again, 1) == [(1, b"hello again")]
    assert await nothing_arrives(a)


async def test_memory_refuses_oversize_datagrams_and_bad_settings() -> None:
    """Caller misuse raises: a datagram over max_datagram, a loss outside 0..1, id 0."""
    net = MemoryNetwork(max_datagram=100)
    a = net.transport(1)
    with pytest.raises(TotemError, match="exceeds max_datagram"):
        a.send(0, bytes(101))
    with pytest.raises(ConfigError):
        net.set_loss(1, 2, 1.5)
    with pytest.raises(ConfigError):
        net.transport(0)
    with pytest.raises(ConfigError):
        MemoryNetwork(loss=-0.1)


# ------------------------------------------------------------------ LossyTransport


async def test_lossy_transport_drops_a_fraction_of_sends() -> None:
    """LossyTransport drops about ``loss`` of what it sends and passes the rest on."""
    net = MemoryNetwork()
    inner = net.transport(1)
    receiver = net.transport(2)
    lossy = LossyTransport(inner, 0.3, random.Random(3))
    assert (lossy.node_id, lossy.max_datagram) == (1, inner.max_datagram)
    for i in range(1000):
        lossy.send(2, b"%d" % i)
    got = await receive_all(receiver, lossy.sent)
    assert lossy.sent + lossy.dropped == 1000
    assert 230 < lossy.dropped < 370
    assert len(got) == lossy.sent
    assert await nothing_arrives(receiver)
    receiver.send(1, b"reply")
    assert await lossy.receive_batch() == [(2, b"reply")]  # receiving is untouched


async def test_lossy_transport_extremes() -> None:
    """Loss 0 passes everything, loss 1 nothing; a probability outside 0..1 is refused."""
    net = MemoryNetwork()
    inner, receiver = net.transport(1), net.transport(2)
    LossyTransport(inner, 1.0, random.Random(1)).send(2, b"never")
    assert await nothing_arrives(receiver)
    LossyTransport(inner, 0.0, random.Random(1)).send(2, b"always")
    assert await receive_all(receiver, 1) == [(1, b"always")]
    with pytest.raises(ConfigError):
        LossyTransport(inner, 2, random.Random(1))


# ------------------------------------------------------------------ UdpTransport


def free_port(ip: str) -> int:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def udp_cluster(count: int) -> dict[int, tuple[str, int]]:
    return {n: (f"127.0.0.{n}", free_port(f"127.0.0.{n}")) for n in range(1, count + 1)}


async def test_udp_unicast_and_broadcast_on_loopback() -> None:
    """Over real UDP a unicast reaches its target, a broadcast every other node."""
    nodes = udp_cluster(3)
    with (
        UdpTransport(1, nodes) as a,
        UdpTransport(2, nodes) as b,
        UdpTransport(3, nodes) as c,
    ):
        assert isinstance(a, Transport)
        a.send(3, b"to three")
        b.send(0, b"from two to all")
        assert sorted(await receive_all(c, 2)) == [(1, b"to three"), (2, b"from two to all")]
        assert await receive_all(a, 1) == [(2, b"from two to all")]
        assert await nothing_arrives(b)
        assert b.stats["tx_packets"] == 2


async def test_udp_carries_the_largest_datagram() -> None:
    """A datagram of max_datagram bytes arrives whole (the kernel fragments it)."""
    nodes = udp_cluster(2)
    with UdpTransport(1, nodes) as a, UdpTransport(2, nodes) as b:
        payload = random.Random(1).randbytes(a.max_datagram)
        a.send(2, payload)
        assert await receive_all(b, 1) == [(1, payload)]
        with pytest.raises(TotemError, match="exceeds max_datagram"):
            a.send(2, payload + b"x")


async def test_udp_refuses_unknown_sources_and_impostors() -> None:
    """Datagrams from unconfigured addresses, from a peer claiming another id, or
    malformed ones are counted and dropped; legitimate traffic still arrives."""
    nodes = udp_cluster(3)
    with UdpTransport(1, nodes) as a, UdpTransport(2, nodes) as b, UdpTransport(3, nodes) as c:
        header_of_2 = struct.pack(">BI", UDP_VERSION, 2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.9", 0))
            stranger.sendto(header_of_2 + b"forged", a.local_address)
        # node 3's own socket claiming to be node 2
        c._sock.sendto(header_of_2 + b"impostor", a.local_address)
        b._sock.sendto(b"\x07garbage", a.local_address)  # unknown version
        b._sock.sendto(b"\x01", a.local_address)  # shorter than the header
        b.send(1, b"genuine")
        assert await receive_all(a, 1) == [(2, b"genuine")]
        assert await nothing_arrives(a)
        assert a.stats["rx_unknown_source"] == 2
        assert a.stats["rx_malformed"] == 2
        assert a.stats["rx_packets"] == 1
        assert UDP_HEADER_SIZE == 5


async def test_udp_over_ipv6() -> None:
    """Two nodes on ::1 (distinct ports) exchange datagrams."""
    nodes = {1: ("::1", free_port("::1")), 2: ("::1", free_port("::1"))}
    with UdpTransport(1, nodes) as a, UdpTransport(2, nodes) as b:
        a.send(0, b"v6")
        assert await receive_all(b, 1) == [(1, b"v6")]
        assert a.max_datagram == 65527 - UDP_HEADER_SIZE


async def test_udp_close_ends_a_waiting_receive() -> None:
    """Closing the transport makes a pending receive_batch return [] (end of stream)."""
    nodes = udp_cluster(2)
    transport = UdpTransport(1, nodes)
    results: list[object] = []

    async def wait() -> None:
        results.append(await transport.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(0.05)
        transport.close()
    assert results == [[]]
    transport.send(2, b"after close")  # dropped quietly
    assert transport.stats["tx_packets"] == 0


def test_udp_configuration_errors() -> None:
    """Bad node maps are refused with ConfigError naming the problem."""
    port = free_port("127.0.0.1")
    with pytest.raises(ConfigError, match="no address"):
        UdpTransport(1, {2: ("127.0.0.2", port)})
    with pytest.raises(ConfigError, match="IPv4, or all IPv6"):
        UdpTransport(1, {1: ("127.0.0.1", port), 2: ("::1", port)})
    with pytest.raises(ConfigError, match="share"):
        UdpTransport(1, {1: ("127.0.0.1", port), 2: ("127.0.0.1", port)})
    with pytest.raises(ConfigError, match="not an IP address"):
        UdpTransport(1, {1: ("localhost", port)})
    with pytest.raises(ConfigError, match="port"):
        UdpTransport(1, {1: ("127.0.0.1", 0)})
    with UdpTransport(1, {1: ("127.0.0.1", port)}), pytest.raises(ConfigError, match="bind"):
        UdpTransport(1, {1: ("127.0.0.1", port)})  # busy


# ------------------------------------------------------------------ KnetTransport


async def test_knet_transport_unicast_broadcast_and_refused_sends() -> None:
    """Over knet (crypto on, loopback) a broadcast reaches every other configured host
    and never the sender; a send to an unconfigured host is counted, not raised."""
    crypto = knet.CryptoConfig(key=knet.generate_authkey())
    fast = knet.LinkOptions(ping_interval_ms=50, ping_timeout_ms=200, pong_count=2)
    ports = {n: free_port(f"127.0.0.{n}") for n in (1, 2, 3)}
    async with (
        knet.open_handle(1, crypto=crypto) as h1,
        knet.open_handle(2, crypto=crypto) as h2,
        knet.open_handle(3, crypto=crypto) as h3,
    ):
        handles = {1: h1, 2: h2, 3: h3}
        for n, handle in handles.items():
            for peer in handles:
                if peer != n:
                    handle.add_host(peer)
                    handle.set_link(
                        peer,
                        0,
                        local=(f"127.0.0.{n}", ports[n]),
                        remote=(f"127.0.0.{peer}", ports[peer]),
                        options=fast,
                    )
        transports = {n: KnetTransport(handle, channel=3) for n, handle in handles.items()}
        assert isinstance(transports[1], Transport)
        assert transports[1].max_datagram == knet.MAX_PAYLOAD
        with trio.fail_after(10):
            while not all(h1.host_status(peer).reachable for peer in (2, 3)):
                await trio.sleep(0.02)
        big = bytes(range(256)) * 200  # 51200 bytes: fragmented by knet
        transports[1].send(0, big)
        transports[1].send(3, b"only to three")
        assert await receive_all(transports[2], 1) == [(1, big)]
        assert sorted(await receive_all(transports[3], 2)) == [(1, big), (1, b"only to three")]
        assert await nothing_arrives(transports[1])
        transports[1].send(9, b"unknown host")
        assert transports[1].stats["tx_errors"] == 1
        transports[2].close()
        assert await transports[2].receive_batch() == []


# ------------------------------------------------------------------ FileRingStore


def test_file_ring_store_round_trip(tmp_path: Path) -> None:
    """A missing file reads 0; a saved seq survives into a new store as 8 bytes BE."""
    path = tmp_path / "ringid_1"
    assert FileRingStore(path).load() == 0
    store = FileRingStore(path)
    store.save(0x1234)
    assert path.read_bytes() == (0x1234).to_bytes(8, "big")
    assert FileRingStore(path).load() == 0x1234
    store.save(2**64 - 1)
    assert FileRingStore(path).load() == 2**64 - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ringid_1"]  # no temp file left
    with pytest.raises(TotemError):
        store.save(2**64)


def test_file_ring_store_corrupt_file_names_the_path(tmp_path: Path) -> None:
    """A file of the wrong size raises TotemError naming it, not a guess."""
    path = tmp_path / "ringid_2"
    path.write_bytes(b"\x00\x01\x02")
    with pytest.raises(TotemError, match=r"ringid_2 is corrupt: 3 bytes, expected 8"):
        FileRingStore(path).load()


def test_file_ring_store_unreadable_or_unwritable_names_the_path(tmp_path: Path) -> None:
    """A path that cannot be read or written raises TotemError naming it."""
    directory = tmp_path / "ringid_3"
    directory.mkdir()
    with pytest.raises(TotemError, match=r"cannot read the ring id file .*ringid_3"):
        FileRingStore(directory).load()
    missing_dir = tmp_path / "missing" / "ringid_4"
    with pytest.raises(TotemError, match=r"cannot write the ring id file .*ringid_4"):
        FileRingStore(missing_dir).save(8)


def test_memory_transport_type() -> None:
    """MemoryNetwork.transport returns a MemoryTransport bound to its node id."""
    transport = MemoryNetwork().transport(5)
    assert isinstance(transport, MemoryTransport)
    assert transport.node_id == 5
