"""Real-socket tests of the trio driver (knet.open_handle / KnetHandle) on loopback.

Every host gets two links: link 0 over IPv4 on its own 127.0.0.x address and link 1 over
IPv6 on ::1, so each handle runs mixed address families. Ports come from the kernel
(bind port 0, read it, close) so parallel runs don't collide. Heartbeats are short
(50 ms ping, 200 ms timeout, 2 pongs) to keep the file fast; every wait is bounded.
"""

from __future__ import annotations

import random
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import pytest
import trio
from structlog.testing import capture_logs

import knet
from knet import (
    CryptoConfig,
    DataReceived,
    Event,
    HostReachable,
    HostUnreachable,
    KnetHandle,
    LinkDown,
    LinkDownReason,
    LinkOptions,
    LinkPolicy,
    LinkUp,
)

FAST = LinkOptions(ping_interval_ms=50, ping_timeout_ms=200, pong_count=2)
LINKS = (0, 1)
UP_TIMEOUT_S = 10.0  # generous bound for links to come up on a loaded machine
#: LinkDown must be seen within ping timeout (200 ms) + this slack (ping interval,
#: timer granularity, scheduling on a busy CI box).
DOWN_SLACK_S = 1.5

Addr = tuple[str, int]


def free_port(ip: str) -> int:
    """A UDP port the kernel considers free on ``ip`` right now."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def can_bind(addr: Addr) -> bool:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(addr)
        except OSError:
            return False
    return True


@attrs.define
class Node:
    """One running handle plus what the tests watch on it."""

    host_id: int
    handle: KnetHandle
    events: trio.MemoryReceiveChannel[Event]
    local: tuple[Addr, Addr]  # link 0 (IPv4), link 1 (IPv6)
    rx: dict[int, trio.MemoryReceiveChannel[DataReceived]]


async def start_node(
    stack: AsyncExitStack, host_id: int, key: bytes, channels: Iterable[int] = (0,)
) -> Node:
    # ::1 must work on this machine: free_port raises (the test fails) if it does not.
    assert socket.has_ipv6
    handle = await stack.enter_async_context(knet.open_handle(host_id, crypto=CryptoConfig(key)))
    ipv4 = f"127.0.0.{host_id}"
    local = ((ipv4, free_port(ipv4)), ("::1", free_port("::1")))
    events = handle.subscribe()
    rx = {channel: handle.open_channel(channel) for channel in channels}
    return Node(host_id, handle, events, local, rx)


def connect(
    nodes: dict[int, Node],
    *,
    policy: LinkPolicy = LinkPolicy.PASSIVE,
    options: LinkOptions = FAST,
) -> None:
    """Give every node both links to every other node."""
    for node in nodes.values():
        for peer in nodes.values():
            if peer is node:
                continue
            node.handle.add_host(peer.host_id, policy=policy)
            for link_id in LINKS:
                node.handle.set_link(
                    peer.host_id,
                    link_id,
                    local=node.local[link_id],
                    remote=peer.local[link_id],
                    options=options,
                )


async def expect(node: Node, wanted: set[Event], timeout: float = UP_TIMEOUT_S) -> list[Event]:
    """Read ``node``'s events until all of ``wanted`` were seen; return all read."""
    seen: list[Event] = []
    missing = set(wanted)
    with trio.move_on_after(timeout) as scope:
        while missing:
            event = await node.events.receive()
            seen.append(event)
            missing.discard(event)
    if scope.cancelled_caught:
        pytest.fail(f"host {node.host_id}: still waiting for {missing} after {timeout}s; {seen}")
    return seen


async def wait_all_up(nodes: dict[int, Node]) -> None:
    for node in nodes.values():
        peers = [p for p in nodes if p != node.host_id]
        await expect(node, {LinkUp(p, link) for p in peers for link in LINKS})


@asynccontextmanager
async def cluster(
    count: int,
    *,
    policy: LinkPolicy = LinkPolicy.PASSIVE,
    channels: Iterable[int] = (0,),
) -> AsyncIterator[dict[int, Node]]:
    """``count`` crypto-on handles, fully meshed over two links, all links up."""
    key = knet.generate_authkey()
    async with AsyncExitStack() as stack:
        nodes = {}
        for host_id in range(1, count + 1):
            nodes[host_id] = await start_node(stack, host_id, key, tuple(channels))
        connect(nodes, policy=policy)
        await wait_all_up(nodes)
        yield nodes


async def collect(
    rx: trio.MemoryReceiveChannel[DataReceived], count: int, timeout: float = 10.0
) -> list[DataReceived]:
    got: list[DataReceived] = []
    with trio.move_on_after(timeout) as scope:
        while len(got) < count:
            got.append(await rx.receive())
    if scope.cancelled_caught:
        pytest.fail(f"received only {len(got)} of {count} payloads within {timeout}s")
    return got


async def stream(
    sender: Node, receiver: Node, payloads: list[bytes], *, channel: int = 0, batch: int = 16
) -> list[bytes]:
    """Send ``payloads`` to ``receiver`` in small batches (so socket buffers never
    overflow) and return what arrived, in arrival order."""
    got: list[DataReceived] = []
    for start in range(0, len(payloads), batch):
        chunk = payloads[start : start + batch]
        for payload in chunk:
            assert sender.handle.send(payload, channel=channel, hosts=[receiver.host_id]) == 1
        got += await collect(receiver.rx[channel], len(chunk))
    assert {(d.src_host, d.channel) for d in got} <= {(sender.host_id, channel)}
    return [d.payload for d in got]


async def assert_nothing_more(rx: trio.MemoryReceiveChannel[DataReceived]) -> None:
    """Give stragglers (e.g. a duplicate on the second link) time to arrive: none may."""
    await trio.sleep(0.3)
    with pytest.raises(trio.WouldBlock):
        rx.receive_nowait()


def numbered(count: int, tag: str) -> list[bytes]:
    return [f"{tag} #{i}".encode() for i in range(count)]


def link_stat(node: Node, peer: int, link_id: int, name: str) -> int:
    return int(node.handle.link_status(peer, link_id).stats[name])


# ------------------------------------------------------------------ bring-up and data


async def test_two_hosts_mixed_families_exchange_exact_payloads_with_crypto() -> None:
    """Two hosts with an IPv4 and an IPv6 link come up and deliver exact payloads both ways."""
    rng = random.Random(2)
    sizes = [0, 1, 100, 1400, 9000, 32768, 65535, 65536]
    async with cluster(2, channels=(0, 7)) as nodes:
        one, two = nodes[1], nodes[2]
        for node, peer in ((one, two), (two, one)):
            status = [node.handle.link_status(peer.host_id, link) for link in LINKS]
            assert [s.local.family for s in status] == [4, 6]
            assert all(s.connected for s in status)
            assert node.handle.host_status(peer.host_id).reachable
        for sender, receiver, channel in ((one, two, 0), (two, one, 7), (one, two, 7)):
            payloads = [rng.randbytes(size) for size in sizes]
            assert await stream(sender, receiver, payloads, channel=channel, batch=2) == payloads
        for node in (one, two):
            stats = node.handle.stats()
            assert stats["tx_crypt_packets"] > 0
            assert stats["rx_crypt_packets"] > 0
            assert stats["rx_auth_failures"] == 0
            assert stats["rx_channel_overflows"] == 0


async def test_three_hosts_broadcast_and_unicast() -> None:
    """Three meshed hosts: broadcasts reach both peers, unicast reaches only its target."""
    async with cluster(3, channels=(3,)) as nodes:
        for host_id, node in nodes.items():
            for payload in numbered(20, f"bcast from {host_id}"):
                assert node.handle.send(payload, channel=3) == 2
            await trio.sleep(0)  # let readers drain between senders
        for host_id, node in nodes.items():
            got = await collect(node.rx[3], 40)
            by_source = Counter(d.src_host for d in got)
            assert by_source == {p: 20 for p in nodes if p != host_id}
            for peer in by_source:
                assert [d.payload for d in got if d.src_host == peer] == numbered(
                    20, f"bcast from {peer}"
                )
        assert nodes[1].handle.send(b"just for three", channel=3, hosts=[3]) == 1
        (only,) = await collect(nodes[3].rx[3], 1)
        assert (only.src_host, only.payload) == (1, b"just for three")
        await assert_nothing_more(nodes[2].rx[3])
        big = random.Random(6).randbytes(65536)
        assert nodes[2].handle.send(big, channel=3) == 2
        for host_id in (1, 3):
            (whole,) = await collect(nodes[host_id].rx[3], 1)
            assert (whole.src_host, whole.payload) == (2, big)


async def test_wrong_key_never_comes_up_and_failures_are_counted() -> None:
    """A peer sealing with another authkey is never brought up; its packets count as
    authentication failures and are logged once per address."""
    with capture_logs() as logs:
        async with AsyncExitStack() as stack:
            one = await start_node(stack, 1, knet.generate_authkey())
            two = await start_node(stack, 2, knet.generate_authkey())
            connect({1: one, 2: two})
            with trio.fail_after(UP_TIMEOUT_S):
                while min(n.handle.stats()["rx_auth_failures"] for n in (one, two)) < 10:
                    await trio.sleep(0.02)
            for node, peer in ((one, 2), (two, 1)):
                while True:
                    try:
                        event = node.events.receive_nowait()
                    except trio.WouldBlock:
                        break
                    assert not isinstance(event, LinkUp | HostReachable)
                assert not any(node.handle.link_status(peer, link).connected for link in LINKS)
    digest = [e for e in logs if e["event"].startswith("invalid digest from")]
    assert {(e["local_host"], e["address"]) for e in digest} == {
        (1, f"{two.local[0][0]}:{two.local[0][1]}"),
        (1, f"[::1]:{two.local[1][1]}"),
        (2, f"{one.local[0][0]}:{one.local[0][1]}"),
        (2, f"[::1]:{one.local[1][1]}"),
    }
    assert len(digest) == 4  # rate limited: one line per peer address


# ------------------------------------------------------------------ fragmentation, PMTUd


async def test_manual_mtu_fragments_64k_payloads_over_real_sockets() -> None:
    """With a 1500-byte MTU forced, 64 KiB payloads go out as many datagrams and arrive whole."""
    rng = random.Random(3)
    async with cluster(2) as nodes:
        one, two = nodes[1], nodes[2]
        for node in (one, two):
            node.handle.set_manual_mtu(1500)
            assert node.handle.data_mtu < 1500 - 48
            assert all(
                node.handle.link_status(3 - node.host_id, link).mtu <= 1472 for link in LINKS
            )
        fragments_each = -(-65536 // one.handle.data_mtu)
        assert fragments_each > 40
        before = sum(link_stat(one, 2, link, "tx_data_packets") for link in LINKS)
        payloads = [rng.randbytes(65536) for _ in range(6)] + [rng.randbytes(3000)]
        assert await stream(one, two, payloads, batch=1) == payloads
        sent = sum(link_stat(one, 2, link, "tx_data_packets") for link in LINKS) - before
        assert sent >= 6 * fragments_each + 3
        assert await stream(two, one, payloads[::-1], batch=1) == payloads[::-1]
        assert two.handle.stats()["defrag_evicted"] == 0


async def test_pmtud_on_loopback_discovers_a_large_mtu() -> None:
    """PMTU discovery over loopback (MTU 65536) raises each link's MTU far above the minimum."""
    async with cluster(2) as nodes:
        one = nodes[1]
        with trio.fail_after(UP_TIMEOUT_S):
            while one.handle.data_mtu < 60000:
                event = await one.events.receive()
                if isinstance(event, knet.DataMtuChanged):
                    assert event.data_mtu == one.handle.data_mtu
        ipv4 = one.handle.link_status(2, 0).mtu
        ipv6 = one.handle.link_status(2, 1).mtu
        # UDP payload limits: IPv4 65507 (16-bit total length), IPv6 65536 - 48 header bytes
        assert 60000 < ipv4 <= 65507
        assert 60000 < ipv6 <= 65536 - 48
        assert one.handle.data_mtu < min(ipv4, ipv6)
        payload = random.Random(4).randbytes(65536)
        assert await stream(one, nodes[2], [payload]) == [payload]


# ------------------------------------------------------------------ link policies, failover


async def test_active_policy_delivers_every_payload_exactly_once() -> None:
    """Active policy sends every payload on both links; the receiver delivers each once."""
    async with cluster(2, policy=LinkPolicy.ACTIVE) as nodes:
        one, two = nodes[1], nodes[2]
        assert one.handle.host_status(2).active_links == (0, 1)
        rx_before = [link_stat(two, 1, link, "rx_data_packets") for link in LINKS]
        payloads = [*numbered(200, "active"), random.Random(5).randbytes(20000)]
        got = await stream(one, two, payloads)
        assert Counter(got) == Counter(payloads)
        await assert_nothing_more(two.rx[0])
        rx_after = [link_stat(two, 1, link, "rx_data_packets") for link in LINKS]
        for before, after in zip(rx_before, rx_after, strict=True):
            assert after - before >= len(payloads)  # every payload arrived on each link
        assert sum(link_stat(two, 1, link, "rx_duplicates") for link in LINKS) >= len(payloads)
        back = await stream(two, one, payloads)
        assert Counter(back) == Counter(payloads)
        await assert_nothing_more(one.rx[0])


@pytest.mark.parametrize("policy", [LinkPolicy.PASSIVE, LinkPolicy.ACTIVE])
async def test_failover_when_a_link_is_disabled_and_restored(policy: LinkPolicy) -> None:
    """Disabling link 0 on one side: the other side reports it down by ping timeout, data
    flows on link 1 without loss, and link 0 comes back up when re-enabled."""
    async with cluster(2, policy=policy) as nodes:
        one, two = nodes[1], nodes[2]
        started = trio.current_time()
        one.handle.set_link_enabled(2, 0, False)
        seen_one = await expect(one, {LinkDown(2, 0, LinkDownReason.DISABLED)}, timeout=1)
        seen_two = await expect(
            two,
            {LinkDown(1, 0, LinkDownReason.TIMEOUT)},
            timeout=FAST.ping_timeout_ms / 1000 + DOWN_SLACK_S,
        )
        down_after = trio.current_time() - started
        assert down_after >= FAST.ping_timeout_ms / 1000 * 0.9  # not before the timeout
        assert not any(isinstance(e, HostUnreachable) for e in seen_one + seen_two)
        assert one.handle.host_status(2).active_links == (1,)
        assert two.handle.host_status(1).active_links == (1,)
        assert not two.handle.link_status(1, 0).connected

        tx0_before = link_stat(two, 1, 0, "tx_data_packets")
        rx1_before = link_stat(one, 2, 1, "rx_data_packets")
        payloads = numbered(150, f"after failover {policy.value}")
        assert await stream(two, one, payloads) == payloads
        assert await stream(one, two, payloads) == payloads
        assert link_stat(two, 1, 0, "tx_data_packets") == tx0_before  # nothing on the dead link
        assert link_stat(one, 2, 1, "rx_data_packets") - rx1_before >= len(payloads)

        one.handle.set_link_enabled(2, 0, True)
        await expect(one, {LinkUp(2, 0)})
        await expect(two, {LinkUp(1, 0)})
        assert two.handle.link_status(1, 0).stats["down_count"] == 1
        assert two.handle.link_status(1, 0).stats["up_count"] == 2
        expected_active = (0,) if policy is LinkPolicy.PASSIVE else (0, 1)
        assert one.handle.host_status(2).active_links == expected_active
        assert two.handle.host_status(1).active_links == expected_active
        rx0_before = link_stat(one, 2, 0, "rx_data_packets")
        payloads = numbered(50, "link 0 is back")
        assert await stream(two, one, payloads) == payloads
        assert link_stat(one, 2, 0, "rx_data_packets") - rx0_before >= len(payloads)


async def test_peer_closing_is_reported_down_and_unreachable() -> None:
    """When a peer's handle closes, the survivor reports both links down and the host
    unreachable."""
    key = knet.generate_authkey()
    async with AsyncExitStack() as outer:
        one = await start_node(outer, 1, key)
        async with AsyncExitStack() as inner:
            two = await start_node(inner, 2, key)
            nodes = {1: one, 2: two}
            connect(nodes)
            await wait_all_up(nodes)
        await expect(
            one,
            {
                LinkDown(2, 0, LinkDownReason.TIMEOUT),
                LinkDown(2, 1, LinkDownReason.TIMEOUT),
                HostUnreachable(2),
            },
            timeout=FAST.ping_timeout_ms / 1000 + DOWN_SLACK_S,
        )
        assert one.handle.send(b"nobody listens", hosts=[2]) == 0
        assert one.handle.stats()["tx_no_active_links"] == 1


# ------------------------------------------------------------------ configuration errors


async def test_second_handle_on_the_same_local_address_fails() -> None:
    """Binding a local address another handle (or any socket) holds raises ConfigError
    naming the address, and leaves the link unconfigured."""
    key = CryptoConfig(knet.generate_authkey())
    async with knet.open_handle(1, crypto=key) as first, knet.open_handle(2, crypto=key) as second:
        for ip in ("127.0.0.1", "::1"):
            local = (ip, free_port(ip))
            remote = (ip, free_port(ip))
            shown = f"[{ip}]:{local[1]}" if ":" in ip else f"{ip}:{local[1]}"
            peer = 3 if ip == "::1" else 4
            first.add_host(peer)
            first.set_link(peer, 0, local=local, remote=remote)
            second.add_host(peer)
            with pytest.raises(knet.ConfigError, match=re.escape(shown)):
                second.set_link(peer, 0, local=local, remote=remote)
            assert second.host_status(peer).link_ids == ()
            # The handle stays usable: the same link on a free address works.
            second.set_link(peer, 0, local=(ip, free_port(ip)), remote=remote)
            assert second.host_status(peer).link_ids == (0,)

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.1", 0))
            taken = squatter.getsockname()
            second.add_host(5)
            with pytest.raises(knet.ConfigError, match=re.escape(f"127.0.0.1:{taken[1]}")):
                second.set_link(5, 0, local=taken, remote=("127.0.0.5", 7))


async def test_bad_configuration_raises_typed_errors() -> None:
    """Out-of-range ids, bad addresses, duplicates and misuse raise the right KnetError."""
    p = free_port("127.0.0.1")
    local = ("127.0.0.1", p)
    async with knet.open_handle(1, crypto=CryptoConfig(knet.generate_authkey())) as h:
        h.add_host(2)
        for link_id in range(knet.MAX_LINKS):
            h.set_link(2, link_id, local=local, remote=("127.0.0.2", 40000 + link_id))
        with pytest.raises(knet.LinkError, match="at most 8 links"):
            h.set_link(2, 8, local=local, remote=("127.0.0.2", 40008))
        with pytest.raises(knet.LinkError, match="already configured"):
            h.set_link(2, 0, local=local, remote=("127.0.0.2", 41000))
        with pytest.raises(knet.HostError, match=re.escape("0..65535")):
            h.add_host(70000)
        with pytest.raises(knet.HostError, match="already configured"):
            h.add_host(2)
        with pytest.raises(knet.HostError, match="not configured"):
            h.set_link(3, 0, local=local, remote=("127.0.0.3", 40000))
        h.add_host(3)
        with pytest.raises(knet.LinkError, match="already link 0 to host 2"):
            h.set_link(3, 0, local=local, remote=("127.0.0.2", 40000))
        with pytest.raises(knet.ConfigError, match="not an IPv4 or IPv6 address"):
            h.set_link(3, 0, local=("127.0.0.256", p), remote=("127.0.0.3", 40000))
        with pytest.raises(knet.ConfigError, match="not the same IP family"):
            h.set_link(3, 0, local=local, remote=("::1", 40000))
        with pytest.raises(knet.ConfigError, match="port must be"):
            h.set_link(3, 0, local=local, remote=("127.0.0.3", 0))
        with pytest.raises(knet.ConfigError, match="multicast or unspecified"):
            h.set_link(3, 0, local=local, remote=("0.0.0.0", 40000))
        assert h.host_status(3).link_ids == ()
        h.add_host(1)
        with pytest.raises(knet.LinkError, match="this host"):
            h.set_link(1, 0, local=local, remote=("127.0.0.1", 40000))
        with pytest.raises(knet.LinkError, match="not configured"):
            h.set_link_enabled(3, 0, False)
        with pytest.raises(knet.ConfigError, match="channel"):
            h.open_channel(knet.MAX_CHANNELS)
        h.open_channel(0)
        with pytest.raises(knet.ConfigError, match="already open"):
            h.open_channel(0)
        with pytest.raises(knet.KnetError, match="exceeds"):
            h.send(bytes(knet.MAX_PAYLOAD + 1))
        with pytest.raises(knet.ConfigError, match="MTU"):
            h.set_manual_mtu(100)
        with pytest.raises(knet.CryptoError, match="in use for sending"):
            h.set_crypto_config(1, None)
    with pytest.raises(knet.ConfigError, match="ping_interval_ms"):
        LinkOptions(ping_interval_ms=0)
    with pytest.raises(knet.CryptoError):
        CryptoConfig(b"too short")


# ------------------------------------------------------------------ close, access control


async def test_close_releases_sockets_and_rejects_further_use() -> None:
    """After the handle's block exits its ports can be bound again, its channels end,
    and sending or configuring raises KnetError."""
    async with cluster(2) as nodes:
        one = nodes[1]
        addresses = [addr for node in nodes.values() for addr in node.local]
        assert not any(can_bind(addr) for addr in addresses)  # held while running
    assert all(can_bind(addr) for addr in addresses)
    assert one.handle.closed
    with pytest.raises(knet.KnetError, match="closed"):
        one.handle.send(b"too late")
    with pytest.raises(knet.KnetError, match="closed"):
        one.handle.set_link(2, 5, local=one.local[0], remote=nodes[2].local[0])
    assert all(can_bind(addr) for addr in addresses)  # the failed set_link bound nothing
    with trio.fail_after(1):
        with pytest.raises(trio.EndOfChannel):
            await one.rx[0].receive()
        async for _event in one.events:  # buffered events, then the end
            pass


async def test_datagrams_from_unconfigured_sources_are_dropped_and_counted() -> None:
    """Datagrams from addresses that are not configured peers never reach the application;
    they are counted and logged (rate limited) naming the source."""
    with capture_logs() as logs:
        async with cluster(2) as nodes:
            one = nodes[1]
            intruders = [
                (("127.0.0.7", 0), one.local[0], 5),  # unknown address
                (("127.0.0.2", 0), one.local[0], 3),  # the peer's IP, but another port
                (("::1", 0), one.local[1], 2),  # IPv6, unknown port
            ]
            sources = []
            for bind_to, target, count in intruders:
                family = socket.AF_INET6 if ":" in bind_to[0] else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as sock:
                    sock.bind(bind_to)
                    sources.append(sock.getsockname()[:2])
                    for i in range(count):
                        # a well-formed-looking header (wire version first) and garbage
                        sock.sendto(bytes([knet.WIRE_VERSION, 1, 0, 2]) + bytes(40 + i), target)
            with trio.fail_after(5):
                while one.handle.stats()["rx_unknown_source"] < 10:
                    await trio.sleep(0.01)
            await trio.sleep(0.2)
            assert one.handle.stats()["rx_unknown_source"] == 10
            assert one.handle.stats()["rx_malformed"] == 0
            with pytest.raises(trio.WouldBlock):
                one.rx[0].receive_nowait()
            assert all(one.handle.link_status(2, link).connected for link in LINKS)
            assert all(link_stat(one, 2, link, "rx_invalid_packets") == 0 for link in LINKS)
    unknown = "packet from an address that is not a configured peer dropped"
    dropped = [e for e in logs if e["event"] == unknown]
    assert all(e["subsystem"] == "knet" and e["log_level"] == "warning" for e in dropped)
    assert sum(e["address"].startswith("127.0.0.7:") for e in dropped) == 1  # 5 sent, 1 line
    assert f"127.0.0.7:{sources[0][1]}" in {e["address"] for e in dropped}


async def test_logs_go_through_structlog_with_subsystem_knet() -> None:
    """Link up/down and reachability are logged through structlog with subsystem knet."""
    with capture_logs() as logs:
        async with cluster(2) as nodes:
            nodes[1].handle.set_link_enabled(2, 1, False)
    ups = {
        (e["local_host"], e["host"], e["link"])
        for e in logs
        if e["event"].endswith(" is up") and e["log_level"] == "info"
    }
    assert ups == {(1, 2, 0), (1, 2, 1), (2, 1, 0), (2, 1, 1)}
    assert all(e["subsystem"] == "knet" for e in logs)
    assert all(isinstance(e["latency_us"], int) for e in logs if e["event"].endswith(" is up"))
    assert ups == {
        (e["local_host"], e["host"], int(e["event"].split()[4]))
        for e in logs
        if e["event"] == f"rx: host: {e.get('host')} link: {e.get('link')} is up"
    }
    reachable = {
        (e["local_host"], e["host"]) for e in logs if e["event"].endswith("has active links")
    }
    assert reachable == {
        (1, 2),
        (2, 1),
    }
    (down,) = [e for e in logs if e["event"].endswith(" is down") and e["local_host"] == 1]
    assert down["event"] == "link: host: 2 link: 1 is down"
    assert (down["host"], down["link"], down["reason"]) == (2, 1, LinkDownReason.DISABLED.value)
