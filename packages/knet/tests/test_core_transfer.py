"""KnetCore over FakeNetwork: fragmentation, PMTU discovery, channels, filters, determinism."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Sequence

import pytest

from knet import (
    MAX_CHANNELS,
    MAX_PAYLOAD,
    ConfigError,
    DataMtuChanged,
    DataReceived,
    KnetCore,
    KnetError,
    LinkOptions,
    LinkPolicy,
    Output,
)
from knet._events import Datagram
from knet.testing import FakeNetwork

S = 1_000_000_000
MS = 1_000_000

FAST = LinkOptions(ping_interval_ms=100, ping_timeout_ms=500, pong_count=2)

#: Wire header (24) + DATA header (8): what a data datagram adds to its fragment.
DATA_OVERHEAD = 32
DATA, PMTUD = 1, 4

Endpoint = tuple[str, int]


# --- helpers ------------------------------------------------------------------------------


def endpoint(host: int, peer: int, link: int, family: int = 4) -> Endpoint:
    """The local endpoint of ``host`` for its link ``link`` to ``peer`` (unique per core)."""
    if family == 6:
        return ("::1", 20000 + 1000 * link + 30 * host + peer)
    return (f"127.0.{link}.{host}", 5000 + peer)


def path(a: int, b: int, link: int, family: int = 4) -> tuple[Endpoint, Endpoint]:
    return endpoint(a, b, link, family), endpoint(b, a, link, family)


def cluster(
    host_ids: Iterable[int] = (1, 2),
    *,
    links: Iterable[int] = (0,),
    policy: LinkPolicy = LinkPolicy.PASSIVE,
    family: int = 4,
    seed: int = 1,
    path_mtu: int | None = None,
    silent: bool = False,
    open_channels: Iterable[int] = (0,),
    **core_kwargs: object,
) -> FakeNetwork:
    """A full mesh of cores with the given links between every pair (not yet run)."""
    ids = sorted(host_ids)
    net = FakeNetwork(seed=seed)
    for host in ids:
        core = net.add_core(host, **core_kwargs)
        for channel in open_channels:
            core.open_channel(channel)
        for peer in ids:
            if peer != host:
                core.add_host(peer, policy=policy)
    for host in ids:
        for peer in ids:
            if peer == host:
                continue
            for link in sorted(links):
                local, remote = path(host, peer, link, family)
                if path_mtu is not None:
                    faults = net.path(local, remote)
                    faults.mtu = path_mtu
                    faults.silent_drop_over_mtu = silent
                net.cores[host].set_link(
                    peer, link, local=local, remote=remote, options=FAST, now=net.now
                )
    return net


def blob(size: int, salt: int = 0) -> bytes:
    """``size`` bytes whose content reveals any misordering or mix-up; unique per salt."""
    pattern = bytes((i * 7 + salt + i // 251) % 256 for i in range(size))
    return (salt.to_bytes(4, "big") + pattern)[:size] if size >= 4 else pattern


def sent_by(net: FakeNetwork, host: int, ptype: int, start: int = 0) -> list[Datagram]:
    return [d for h, d in net.sent[start:] if h == host and d.data[1] == ptype]


def payloads(net: FakeNetwork, host: int) -> list[bytes]:
    return [e.payload for e in net.received(host)]


def mtu_events(net: FakeNetwork, host: int) -> list[DataMtuChanged]:
    return [e for e in net.events[host] if isinstance(e, DataMtuChanged)]


def probe_sizes(net: FakeNetwork, host: int, start: int = 0) -> list[int]:
    return [len(d.data) for d in sent_by(net, host, PMTUD, start)]


# --- payload size and fragmentation -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1439, 1440, 1441, 4000, 65535, MAX_PAYLOAD])
def test_payloads_are_fragmented_and_reassembled(size: int) -> None:
    """Payloads up to 64 KiB are split at the data MTU and arrive intact."""
    net = cluster()
    for core in net.cores.values():
        core.set_manual_mtu(1500, net.now)  # UDP payload 1472 -> data MTU 1440
    net.run_for(S)
    a = net.cores[1]
    assert a.data_mtu == 1440
    start = len(net.sent)
    payload = blob(size)
    assert a.send(payload, net.now) == 1
    net.run_for(S // 10)
    assert payloads(net, 2) == [payload]
    fragments = sent_by(net, 1, DATA, start)
    assert len(fragments) == max(1, -(-size // 1440))
    assert all(len(d.data) == 1440 + DATA_OVERHEAD for d in fragments[:-1])
    assert len(fragments[-1].data) == size - 1440 * (len(fragments) - 1) + DATA_OVERHEAD
    assert {d.data[31] for d in fragments} == {len(fragments)}  # frag_count in every one
    assert [d.data[30] for d in fragments] == list(range(len(fragments)))


def test_64k_payload_on_an_unlimited_path_takes_two_datagrams() -> None:
    """Without an MTU limit the data MTU is the largest UDP payload: 64 KiB needs 2 datagrams."""
    net = cluster()
    net.run_for(S)
    a = net.cores[1]
    assert a.data_mtu == 65507 - DATA_OVERHEAD
    start = len(net.sent)
    payload = blob(MAX_PAYLOAD, 3)
    a.send(payload, net.now)
    net.run_for(S // 10)
    assert [len(d.data) for d in sent_by(net, 1, DATA, start)] == [
        65507,
        MAX_PAYLOAD - a.data_mtu + DATA_OVERHEAD,
    ]
    assert payloads(net, 2) == [payload]


def test_payload_over_64k_is_refused() -> None:
    """A payload over 65536 bytes raises KnetError and sends nothing."""
    net = cluster()
    net.run_for(S)
    a = net.cores[1]
    start = len(net.sent)
    with pytest.raises(KnetError, match="exceeds 65536 bytes"):
        a.send(bytes(MAX_PAYLOAD + 1), net.now)
    net.run_for(S // 10)
    assert sent_by(net, 1, DATA, start) == []
    assert a.send(bytes(MAX_PAYLOAD), net.now) == 1
    net.run_for(S // 10)
    assert payloads(net, 2) == [bytes(MAX_PAYLOAD)]


def _drop_first_fragment(_host: int, datagram: Datagram) -> bool:
    data = datagram.data
    return not (data[1] == DATA and data[31] > 1 and data[30] == 0)


@pytest.mark.parametrize("buffers", [32, 64])
def test_reassembly_buffers_are_bounded(buffers: int) -> None:
    """Incomplete packets hold at most defrag_buffers buffers; the oldest is evicted; all expire."""
    net = cluster(defrag_buffers=buffers)
    for core in net.cores.values():
        core.set_manual_mtu(1500, net.now)
    net.run_for(S)
    net.tap = _drop_first_fragment
    a, b = net.cores[1], net.cores[2]
    reassembler = b._hosts[1].reassembler
    for i in range(200):
        a.send(blob(5000, i), net.now)  # 4 fragments each, the first always lost
        net.run_for(MS)
        assert reassembler.pending <= buffers
    assert payloads(net, 2) == []
    assert reassembler.pending == buffers
    assert b.stats()["defrag_evicted"] == 200 - buffers
    assert b.stats()["defrag_expired"] == 0
    net.run_for(3 * S)  # reassembly timeout is 2 s
    assert reassembler.pending == 0
    assert b.stats()["defrag_expired"] == buffers
    net.tap = None
    a.send(blob(5000, 999), net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [blob(5000, 999)]


@pytest.mark.parametrize(
    ("gap_ns", "min_delivered"),
    [
        (MS // 2, 150),  # about 10 packets in flight: most complete
        (MS // 10, 1),  # about 50 in flight, more than the 32 buffers: thrashing, still bounded
    ],
)
def test_interleaved_fragments_under_loss_stay_bounded_and_intact(
    gap_ns: int, min_delivered: int
) -> None:
    """Interleaved fragments of many packets under loss: bounded buffers, no corrupt delivery."""
    net = cluster(seed=5)
    for core in net.cores.values():
        core.set_manual_mtu(1500, net.now)
    net.run_for(S)
    faults = net.path(*path(1, 2, 0))
    faults.loss = 0.1
    faults.jitter_ns = 5 * MS  # fragments of consecutive packets overtake each other
    a, b = net.cores[1], net.cores[2]
    reassembler = b._hosts[1].reassembler
    sent = [blob(6000, i) for i in range(300)]
    for payload in sent:
        a.send(payload, net.now)
        net.run_for(gap_ns)
        assert reassembler.pending <= 32
    net.run_for(3 * S)
    got = payloads(net, 2)
    assert len(got) == len(set(got))
    assert set(got) <= set(sent)
    assert min_delivered <= len(got) < 300
    stats = b.stats()
    assert stats["defrag_evicted"] + stats["defrag_expired"] > 0
    assert reassembler.pending == 0
    # The delivered ones arrived out of order: fragments really were interleaved.
    order = [sent.index(p) for p in got]
    assert order != sorted(order)


# --- PMTU discovery -------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "link_mtu"), [(4, 1472), (6, 1452)])
def test_pmtud_converges_with_emsgsize_hints(family: int, link_mtu: int) -> None:
    """Path MTU 1500 with EMSGSIZE hints: the link MTU becomes 1472 (IPv4) / 1452 (IPv6)."""
    net = cluster(family=family, path_mtu=1500)
    net.run_for(2 * S)
    a = net.cores[1]
    status = a.link_status(2, 0)
    assert status.mtu == link_mtu
    assert a.data_mtu == link_mtu - DATA_OVERHEAD
    # libknet's link status MTU: what one packet of this link carries for the application.
    assert status.data_mtu == link_mtu - DATA_OVERHEAD
    assert status.stats["tx_emsgsize_errors"] >= 1
    # The hint saves the bisection: one oversized probe, then the hinted size.
    assert probe_sizes(net, 1) == [65507 if family == 4 else 65527, link_mtu]
    assert mtu_events(net, 1)[-1].data_mtu == link_mtu - DATA_OVERHEAD


@pytest.mark.parametrize(("family", "link_mtu"), [(4, 1472), (6, 1452)])
def test_pmtud_bisects_by_timeouts_without_hints(family: int, link_mtu: int) -> None:
    """Oversized probes silently dropped: discovery bisects by timeouts to within 4 bytes."""
    net = cluster(family=family, path_mtu=1500, silent=True)
    net.run_for(20 * S)
    a = net.cores[1]
    status = a.link_status(2, 0)
    assert link_mtu - 4 <= status.mtu <= link_mtu
    assert status.stats["tx_emsgsize_errors"] == 0
    sizes = probe_sizes(net, 1)
    assert 8 <= len(sizes) <= 30
    assert any(size > link_mtu for size in sizes)
    assert a.data_mtu == status.mtu - DATA_OVERHEAD
    start = len(net.sent)
    payload = blob(MAX_PAYLOAD, 7)
    a.send(payload, net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [payload]
    assert all(len(d.data) <= link_mtu for d in sent_by(net, 1, DATA, start))


def test_64k_payload_over_a_1500_mtu_path() -> None:
    """After discovery a 64 KiB payload crosses a 1500-byte MTU path intact, no EMSGSIZE."""
    net = cluster(path_mtu=1500)
    net.run_for(2 * S)
    a = net.cores[1]
    errors = a.link_status(2, 0).stats["tx_emsgsize_errors"]
    start = len(net.sent)
    payload = blob(MAX_PAYLOAD, 1)
    a.send(payload, net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [payload]
    fragments = sent_by(net, 1, DATA, start)
    assert len(fragments) == -(-MAX_PAYLOAD // 1440)
    assert max(len(d.data) for d in fragments) == 1472
    assert a.link_status(2, 0).stats["tx_emsgsize_errors"] == errors


def test_data_mtu_is_the_minimum_over_links() -> None:
    """data_mtu follows the smallest connected link and each change emits DataMtuChanged."""
    net = cluster(links=(0, 1), policy=LinkPolicy.ACTIVE)
    for end_a, end_b in (path(1, 2, 0), path(1, 2, 1)):
        mtu = 1500 if end_a == endpoint(1, 2, 0) else 9000
        net.path(end_a, end_b).mtu = mtu
        net.path(end_b, end_a).mtu = mtu
    net.run_for(2 * S)
    a = net.cores[1]
    assert a.link_status(2, 0).mtu == 1472
    assert a.link_status(2, 1).mtu == 8972
    assert a.data_mtu == 1440
    assert mtu_events(net, 1)[-1].data_mtu == 1440

    net.block(*path(1, 2, 0))
    net.run_for(2 * S)
    assert not a.link_status(2, 0).connected
    assert a.data_mtu == 8972 - DATA_OVERHEAD
    assert mtu_events(net, 1)[-1] == DataMtuChanged(8972 - DATA_OVERHEAD, 1440)

    net.block(*path(1, 2, 0), blocked=False)
    net.run_for(2 * S)
    assert a.link_status(2, 0).connected
    assert a.data_mtu == 1440
    assert mtu_events(net, 1)[-1] == DataMtuChanged(1440, 8972 - DATA_OVERHEAD)


def test_manual_mtu_disables_probing() -> None:
    """set_manual_mtu(1400): no PMTUD probes, link MTU 1372; None re-enables discovery."""
    net = cluster(path_mtu=1500)
    a = net.cores[1]
    a.set_manual_mtu(1400, net.now)
    net.run_for(5 * S)
    assert a.link_status(2, 0).connected
    assert probe_sizes(net, 1) == []
    assert a.link_status(2, 0).mtu == 1372
    assert a.data_mtu == 1340
    assert net.cores[2].link_status(1, 0).mtu == 1472  # the peer still discovers its own
    payload = blob(10_000)
    a.send(payload, net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [payload]
    assert max(len(d.data) for d in sent_by(net, 1, DATA)) == 1372

    start = len(net.sent)
    a.set_manual_mtu(None, net.now)
    net.run_for(2 * S)
    assert probe_sizes(net, 1, start) == [65507, 1472]
    assert a.link_status(2, 0).mtu == 1472
    assert mtu_events(net, 1)[-1].data_mtu == 1440
    assert a.data_mtu == 1440

    # Setting it after discovery stops the periodic runs too.
    a.set_manual_mtu(1400, net.now)
    assert a.data_mtu == 1340
    start = len(net.sent)
    net.run_for(70 * S)  # longer than the default 60 s PMTUd interval
    assert probe_sizes(net, 1, start) == []
    a.set_manual_mtu(0, net.now)  # 0 means automatic, like None
    net.run_for(S)
    assert probe_sizes(net, 1, start)[:1] == [65507]
    assert a.link_status(2, 0).mtu == 1472


def test_manual_mtu_ipv6_and_bounds() -> None:
    """A manual MTU subtracts the IPv6 header on IPv6 links; out-of-range values are refused."""
    net = cluster(family=6)
    a = net.cores[1]
    a.set_manual_mtu(1400, net.now)
    net.run_for(2 * S)
    assert a.link_status(2, 0).mtu == 1352
    for bad in (575, 65536, -1):
        with pytest.raises(ConfigError, match=r"MTU must be 576\.\.65535"):
            a.set_manual_mtu(bad, net.now)
    assert a.link_status(2, 0).mtu == 1352


def _record_probe_starts(net: FakeNetwork, host: int, first_size: int) -> list[int]:
    """Install a tap noting the times ``host`` sends a probe of ``first_size`` (a run start)."""
    starts: list[int] = []

    def tap(sender: int, datagram: Datagram) -> bool:
        if sender == host and datagram.data[1] == PMTUD and len(datagram.data) == first_size:
            starts.append(net.now)
        return True

    net.tap = tap
    return starts


def test_pmtud_repeats_every_interval() -> None:
    """With pmtud_interval_s=5 a discovery run starts every 5 s while the link is up."""
    net = cluster(path_mtu=1500, pmtud_interval_s=5)
    starts = _record_probe_starts(net, 1, 65507)
    net.run_for(23 * S)
    assert len(starts) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(5 * S <= gap <= 5 * S + 10 * MS for gap in gaps)
    # With the default 60 s interval only the first run happened in the same time.
    default = cluster(path_mtu=1500)
    default_starts = _record_probe_starts(default, 1, 65507)
    default.run_for(23 * S)
    assert len(default_starts) == 1


def test_periodic_pmtud_follows_a_path_that_changes() -> None:
    """A path that silently shrinks, or grows, is found by the next periodic run."""
    net = cluster(path_mtu=1500, silent=True, pmtud_interval_s=5)
    a = net.cores[1]
    net.run_for(20 * S)
    assert 1468 <= a.link_status(2, 0).mtu <= 1472
    for end_a, end_b in (path(1, 2, 0), path(2, 1, 0)):
        net.path(end_a, end_b).mtu = 1400  # a router along the way; no ICMP comes back
    net.run_for(20 * S)
    assert 1368 <= a.link_status(2, 0).mtu <= 1372
    assert 1368 - DATA_OVERHEAD <= mtu_events(net, 1)[-1].data_mtu <= 1372 - DATA_OVERHEAD
    payload = blob(MAX_PAYLOAD, 5)
    a.send(payload, net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [payload]

    for end_a, end_b in (path(1, 2, 0), path(2, 1, 0)):
        net.path(end_a, end_b).mtu = 9000
    net.run_for(20 * S)
    assert 8968 <= a.link_status(2, 0).mtu <= 8972


# --- channels and filters ----------------------------------------------------------------------


def test_channel_range() -> None:
    """Channels 0..31 can be opened; 32, negative and bool channels are a ConfigError."""
    core = KnetCore(1, rng=random.Random(0))
    assert MAX_CHANNELS == 32
    for channel in range(32):
        core.open_channel(channel)
    for bad in (32, -1, 255, True, "1"):
        with pytest.raises(ConfigError, match=r"channel must be an integer 0\.\.31"):
            core.open_channel(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            core.send(b"x", 0, channel=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            core.close_channel(bad)  # type: ignore[arg-type]


def test_closed_channel_data_is_dropped_and_counted() -> None:
    """Data for a channel the receiver has not opened is dropped and counted."""
    net = cluster()
    net.run_for(S)
    a, b = net.cores[1], net.cores[2]
    a.send(b"to five", net.now, channel=5)
    net.run_for(S // 10)
    assert payloads(net, 2) == []
    assert b.stats()["rx_closed_channel"] == 1
    b.open_channel(5)
    a.send(b"to five again", net.now, channel=5)
    net.run_for(S // 10)
    assert net.received(2) == [DataReceived(1, 5, b"to five again")]
    b.close_channel(5)
    a.send(b"closed again", net.now, channel=5)
    a.send(b"still open", net.now, channel=0)
    net.run_for(S // 10)
    assert net.received(2)[1:] == [DataReceived(1, 0, b"still open")]
    assert b.stats()["rx_closed_channel"] == 2


def test_many_channels_at_once() -> None:
    """Interleaved traffic on all 32 channels is delivered on the right channel."""
    net = cluster(open_channels=range(32))
    net.run_for(S)
    a = net.cores[1]
    expected = []
    for round_ in range(3):
        for channel in (*range(0, 32, 2), *range(1, 32, 2)):
            payload = b"ch %d round %d" % (channel, round_)
            a.send(payload, net.now, channel=channel)
            expected.append(DataReceived(1, channel, payload))
    net.run_for(S // 10)
    assert net.received(2) == expected
    assert net.cores[2].stats()["rx_closed_channel"] == 0


def test_tx_filter_decides_unicast_broadcast_or_drop() -> None:
    """TX filter: None broadcasts, () drops (tx_filtered), host ids unicast."""
    net = cluster((1, 2, 3))
    net.run_for(S)
    a = net.cores[1]
    calls: list[tuple[bytes, int, int | None]] = []
    decisions: dict[bytes, Sequence[int] | None] = {
        b"all": None,
        b"none": (),
        b"to3": [3],
        b"to2and3": (2, 3),
    }

    def tx_filter(payload: bytes, channel: int, src: int | None) -> Sequence[int] | None:
        calls.append((payload, channel, src))
        return decisions[payload]

    a.set_filter(tx_filter)
    start = len(net.sent)
    assert a.send(b"all", net.now) == 2
    assert a.send(b"none", net.now) == 0
    assert a.send(b"to3", net.now) == 1
    assert a.send(b"to2and3", net.now) == 2
    net.run_for(S // 10)
    assert calls == [
        (b"all", 0, None),
        (b"none", 0, None),
        (b"to3", 0, None),
        (b"to2and3", 0, None),
    ]
    assert payloads(net, 2) == [b"all", b"to2and3"]
    assert payloads(net, 3) == [b"all", b"to3", b"to2and3"]
    assert a.stats()["tx_filtered"] == 1
    assert len(sent_by(net, 1, DATA, start)) == 5
    # Explicit destinations bypass the filter.
    assert a.send(b"none", net.now, hosts=[2]) == 1
    net.run_for(S // 10)
    assert payloads(net, 2)[-1] == b"none"
    assert len(calls) == 4
    # Removing the filter broadcasts again.
    a.set_filter(None)
    a.send(b"none", net.now)
    net.run_for(S // 10)
    assert payloads(net, 3)[-1] == b"none"


def test_rx_filter_can_drop() -> None:
    """RX filter: called with the source host; an empty result drops the packet (rx_filtered)."""
    net = cluster((1, 2, 3))
    net.run_for(S)
    b = net.cores[2]
    calls: list[tuple[bytes, int, int | None]] = []

    def rx_filter(payload: bytes, channel: int, src: int | None) -> Sequence[int] | None:
        calls.append((payload, channel, src))
        if payload.startswith(b"drop"):
            return ()
        if payload.startswith(b"keep"):
            return [2]
        return None

    b.set_filter(rx_filter)
    net.cores[1].send(b"drop me", net.now)
    net.cores[1].send(b"keep me", net.now)
    net.cores[3].send(b"plain", net.now)
    net.cores[3].send(b"drop too", net.now)
    net.run_for(S // 10)
    assert net.received(2) == [DataReceived(1, 0, b"keep me"), DataReceived(3, 0, b"plain")]
    assert b.stats()["rx_filtered"] == 2
    assert sorted(calls) == sorted(
        [(b"drop me", 0, 1), (b"keep me", 0, 1), (b"plain", 0, 3), (b"drop too", 0, 3)]
    )
    assert payloads(net, 3) == [b"drop me", b"keep me"]  # host 3 has no filter


def test_loopback_host_receives_its_own_broadcasts() -> None:
    """With add_host(own id) broadcasts are also delivered locally, and unicast to self works."""
    net = cluster()
    a = net.cores[1]
    a.add_host(1)
    net.run_for(S)
    assert a.host_status(1).reachable
    assert a.send(b"everyone", net.now) == 2
    net.run_for(S // 10)
    assert net.received(1) == [DataReceived(1, 0, b"everyone")]
    assert payloads(net, 2) == [b"everyone"]
    start = len(net.sent)
    assert a.send(b"just me", net.now, hosts=[1]) == 1
    net.run_for(S // 10)
    assert payloads(net, 1) == [b"everyone", b"just me"]
    assert sent_by(net, 1, DATA, start) == []
    a.set_filter(lambda payload, channel, src: [1] if src is None else None)
    a.send(b"filtered to me", net.now)
    net.run_for(S // 10)
    assert payloads(net, 1)[-1] == b"filtered to me"
    assert payloads(net, 2) == [b"everyone"]
    # A closed channel is closed for loopback too.
    a.set_filter(None)
    a.send(b"ch 3", net.now, channel=3)
    net.run_for(S // 10)
    assert payloads(net, 1)[-1] == b"filtered to me"
    assert [e.channel for e in net.received(2)] == [0]  # host 2 did not open 3 either


def test_no_loopback_without_own_host() -> None:
    """Without the loopback host a broadcast is not delivered to the sender."""
    net = cluster()
    net.run_for(S)
    net.cores[1].send(b"out", net.now)
    net.run_for(S // 10)
    assert net.received(1) == []
    assert payloads(net, 2) == [b"out"]


# --- determinism ----------------------------------------------------------------------------


def _scenario(seed: int) -> tuple[list[tuple[int, Datagram]], dict[int, list[object]]]:
    """Three hosts, two links, faults, failures and mixed traffic; returns what happened."""
    net = cluster((1, 2, 3), links=(0, 1), policy=LinkPolicy.ACTIVE, seed=seed, path_mtu=1500)
    faults = net.path(*path(1, 2, 0))
    faults.loss = 0.2
    faults.duplicate = 0.2
    faults.jitter_ns = 3 * MS
    net.run_for(2 * S)
    for i in range(40):
        net.cores[1 + i % 3].send(blob(100 * i + 1, i), net.now)
        net.run_for(7 * MS)
    net.block(*path(2, 3, 1))
    net.run_for(3 * S)
    net.cores[3].send(blob(MAX_PAYLOAD, 1), net.now)
    net.block(*path(2, 3, 1), blocked=False)
    net.run_for(3 * S)
    return net.sent, {h: list(e) for h, e in net.events.items()}


def test_same_seed_same_datagrams() -> None:
    """The same seed and inputs give byte-identical datagrams and identical events."""
    sent1, events1 = _scenario(42)
    sent2, events2 = _scenario(42)
    assert len(sent1) > 500
    assert sent1 == sent2
    assert events1 == events2
    assert sum(isinstance(e, DataReceived) for e in events1[2]) > 20
    sent3, _ = _scenario(43)
    assert [d.data for _, d in sent3] != [d.data for _, d in sent1]


def test_core_output_depends_only_on_inputs() -> None:
    """Two cores with equally seeded rngs and the same calls drain identical outputs."""

    def run() -> list[object]:
        core = KnetCore(7, rng=random.Random(1234))
        core.add_host(8, policy=LinkPolicy.ACTIVE)
        core.set_link(8, 0, local=("127.0.0.7", 5000), remote=("127.0.0.8", 5000), now=10)
        core.set_link(8, 1, local=("::1", 6007), remote=("::1", 6008), now=10)
        outputs: list[object] = [core.drain()]
        for step in range(1, 6):
            core.handle_timeouts(step * S)
            outputs.append(core.drain())
            outputs.append(core.next_deadline())
        return outputs

    first, second = run(), run()
    assert first == second
    datagrams = [d for out in first if isinstance(out, Output) for d in out.datagrams]
    assert len(datagrams) >= 10
    assert Counter(d.data[1] for d in datagrams) == {2: len(datagrams)}  # pings only
