"""KnetCore over FakeNetwork: hosts, links, heartbeats and link policies (virtual time)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import pytest

from knet import (
    MAX_HOST_ID,
    MAX_LINKS,
    ConfigError,
    HostError,
    HostReachable,
    HostUnreachable,
    KnetCore,
    LinkDown,
    LinkDownReason,
    LinkError,
    LinkOptions,
    LinkPolicy,
    LinkUp,
)
from knet._link import PONG_TIMEOUT_BACKOFF
from knet.testing import FakeNetwork

S = 1_000_000_000
MS = 1_000_000

#: Fast heartbeats so links come up in a fraction of a virtual second.
FAST = LinkOptions(ping_interval_ms=100, ping_timeout_ms=500, pong_count=2)

Endpoint = tuple[str, int]


# --- helpers ------------------------------------------------------------------------------


def endpoint(host: int, peer: int, link: int, family: int = 4) -> Endpoint:
    """The local endpoint of ``host`` for its link ``link`` to ``peer`` (unique per core)."""
    if family == 6:
        return ("::1", 20000 + 1000 * link + 30 * host + peer)
    return (f"127.0.{link}.{host}", 5000 + peer)


def path(a: int, b: int, link: int, family: int = 4) -> tuple[Endpoint, Endpoint]:
    """Both ends of link ``link`` between hosts ``a`` and ``b``."""
    return endpoint(a, b, link, family), endpoint(b, a, link, family)


def cluster(
    host_ids: Iterable[int] = (1, 2),
    *,
    links: Iterable[int] = (0, 1),
    policy: LinkPolicy = LinkPolicy.PASSIVE,
    options: dict[int, LinkOptions] | None = None,
    families: dict[int, int] | None = None,
    seed: int = 1,
) -> FakeNetwork:
    """A full mesh of cores with the given links between every pair, channel 0 open."""
    ids = sorted(host_ids)
    link_ids = sorted(links)
    net = FakeNetwork(seed=seed)
    for host in ids:
        core = net.add_core(host)
        core.open_channel(0)
        for peer in ids:
            if peer != host:
                core.add_host(peer, policy=policy)
    for host in ids:
        for peer in ids:
            if peer == host:
                continue
            for link in link_ids:
                family = (families or {}).get(link, 4)
                net.cores[host].set_link(
                    peer,
                    link,
                    local=endpoint(host, peer, link, family),
                    remote=endpoint(peer, host, link, family),
                    options=(options or {}).get(link, FAST),
                    now=net.now,
                )
    return net


def link_events(net: FakeNetwork, host: int) -> list[object]:
    """The link and reachability events of ``host`` so far, in order."""
    kinds = (LinkUp, LinkDown, HostReachable, HostUnreachable)
    return [e for e in net.events[host] if isinstance(e, kinds)]


def tx_data(net: FakeNetwork, host: int, peer: int, link: int) -> int:
    return int(net.cores[host].link_status(peer, link).stats["tx_data_packets"])


def data_links_sent(net: FakeNetwork, host: int, start: int = 0) -> list[int]:
    """Link ids (header byte 4) of the DATA datagrams ``host`` sent since ``net.sent[start]``."""
    return [d.data[4] for h, d in net.sent[start:] if h == host and d.data[1] == 1]


def payloads(net: FakeNetwork, host: int) -> list[bytes]:
    return [e.payload for e in net.received(host)]


def fresh_core(host_id: int = 1) -> KnetCore:
    return KnetCore(host_id, rng=random.Random(0))


# --- hosts ----------------------------------------------------------------------------------


def test_host_ids_cover_the_16_bit_range() -> None:
    """Host ids 0 and 65535 are accepted, both as peers and as the local id."""
    core = fresh_core(MAX_HOST_ID)
    assert MAX_HOST_ID == 65535
    core.add_host(0)
    core.add_host(MAX_HOST_ID - 1)
    assert core.host_ids() == (0, MAX_HOST_ID - 1)
    assert fresh_core(0).host_id == 0


@pytest.mark.parametrize("bad", [-1, 65536, 1 << 20, True, False, "3", 2.0, None])
def test_bad_host_id_is_rejected(bad: object) -> None:
    """Out-of-range, bool and non-integer host ids raise HostError, locally and for peers."""
    core = fresh_core()
    with pytest.raises(HostError, match=r"host id must be an integer 0\.\.65535"):
        core.add_host(bad)  # type: ignore[arg-type]
    with pytest.raises(HostError):
        KnetCore(bad, rng=random.Random(0))  # type: ignore[arg-type]
    assert core.host_ids() == ()


def test_duplicate_host_is_rejected() -> None:
    """Adding a known host again raises HostError; after remove_host it can be added."""
    core = fresh_core()
    core.add_host(2)
    with pytest.raises(HostError, match="already configured"):
        core.add_host(2)
    core.remove_host(2)
    core.add_host(2)
    assert core.host_ids() == (2,)


def test_unknown_host_is_an_error() -> None:
    """Links, status and sends to a host that is not configured raise HostError."""
    core = fresh_core()
    with pytest.raises(HostError, match="not configured"):
        core.set_link(9, 0, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)
    with pytest.raises(HostError):
        core.host_status(9)
    with pytest.raises(HostError):
        core.send(b"x", 0, hosts=[9])


# --- link configuration -------------------------------------------------------------------


def test_eight_links_per_host_and_no_more() -> None:
    """Links 0..7 can be configured; link id 8 raises LinkError naming the 8-link limit."""
    core = fresh_core()
    core.add_host(2)
    for link in range(MAX_LINKS):
        core.set_link(
            2, link, local=(f"127.0.{link}.1", 5000), remote=("127.0.0.2", 5000 + link), now=0
        )
    assert core.host_status(2).link_ids == tuple(range(8))
    with pytest.raises(LinkError, match=r"at most 8 links \(0\.\.7\)"):
        core.set_link(2, 8, local=("127.0.8.1", 5000), remote=("127.0.0.2", 5008), now=0)
    for bad in (-1, 255, True, "1", None):
        with pytest.raises(LinkError):
            core.set_link(2, bad, local=("127.0.9.1", 5000), remote=("127.0.0.2", 5009), now=0)  # type: ignore[arg-type]
    assert core.host_status(2).link_ids == tuple(range(8))


def test_duplicate_link_id_is_rejected() -> None:
    """A link id already configured for a host raises LinkError until it is cleared."""
    core = fresh_core()
    core.add_host(2)
    core.set_link(2, 3, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)
    with pytest.raises(LinkError, match="already configured"):
        core.set_link(2, 3, local=("127.0.0.1", 5001), remote=("127.0.0.2", 5001), now=0)
    assert core.link_status(2, 3).local.port == 5000
    core.clear_link(2, 3, 0)
    core.set_link(2, 3, local=("127.0.0.1", 5001), remote=("127.0.0.2", 5001), now=0)
    assert core.link_status(2, 3).local.port == 5001


@pytest.mark.parametrize(
    ("local", "remote", "message"),
    [
        (("not-an-ip", 5000), ("127.0.0.2", 5000), "is not an IPv4 or IPv6 address"),
        (("127.0.0.1", 5000), ("host.example", 5000), "is not an IPv4 or IPv6 address"),
        (("127.0.0.1", 0), ("127.0.0.2", 5000), "port must be an integer 1..65535"),
        (("127.0.0.1", 5000), ("127.0.0.2", 65536), "port must be an integer 1..65535"),
        (("127.0.0.1", "5000"), ("127.0.0.2", 5000), "port must be an integer"),
        (("127.0.0.1", True), ("127.0.0.2", 5000), "port must be an integer"),
        (("224.0.0.1", 5000), ("127.0.0.2", 5000), "multicast or unspecified"),
        (("127.0.0.1", 5000), ("ff02::1", 5000), "multicast or unspecified"),
        (("0.0.0.0", 5000), ("127.0.0.2", 5000), "multicast or unspecified"),
        (("127.0.0.1", 5000), ("::1", 5000), "not the same IP family"),
        (("::1", 5000), ("127.0.0.2", 5000), "not the same IP family"),
        ("127.0.0.1", ("127.0.0.2", 5000), "expected 'ip:port'"),
        (5000, ("127.0.0.2", 5000), "expected \\(ip, port\\)"),
    ],
)
def test_bad_address_is_a_config_error(local: object, remote: object, message: str) -> None:
    """Bad addresses raise ConfigError naming the problem and leave the link id free."""
    core = fresh_core()
    core.add_host(2)
    with pytest.raises(ConfigError, match=message):
        core.set_link(2, 0, local=local, remote=remote, now=0)  # type: ignore[arg-type]
    assert core.host_status(2).link_ids == ()
    assert core.local_endpoints() == frozenset()
    core.set_link(2, 0, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)


def test_address_text_forms_are_accepted() -> None:
    """'ip:port' and '[ipv6]:port' strings are accepted and canonicalised."""
    core = fresh_core()
    core.add_host(2)
    core.set_link(2, 0, local="127.0.0.1:5000", remote="127.0.0.2:5001", now=0)
    core.set_link(2, 1, local="[0:0::1]:6000", remote="[::1]:6001", now=0)
    status = core.link_status(2, 1)
    assert (status.local.ip, status.local.port) == ("::1", 6000)
    assert str(status.remote) == "[::1]:6001"
    assert str(core.link_status(2, 0).remote) == "127.0.0.2:5001"


def test_same_path_twice_is_rejected() -> None:
    """One (local, remote) pair can be one link only, whatever host or link id claims it."""
    core = fresh_core()
    core.add_host(2)
    core.add_host(3)
    core.set_link(2, 0, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)
    with pytest.raises(LinkError, match="is already link 0 to host 2"):
        core.set_link(2, 1, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)
    with pytest.raises(LinkError, match="is already link 0 to host 2"):
        core.set_link(3, 0, local="127.0.0.1:5000", remote="127.0.0.2:5000", now=0)
    # The same local endpoint to another remote is a different path.
    core.set_link(3, 0, local=("127.0.0.1", 5000), remote=("127.0.0.3", 5000), now=0)
    assert core.host_status(3).link_ids == (0,)


def test_loopback_host_takes_no_links() -> None:
    """The local host id is the loopback host: configuring a link to it is a LinkError."""
    core = fresh_core(1)
    core.add_host(1)
    assert core.host_status(1).reachable
    with pytest.raises(LinkError, match="loopback"):
        core.set_link(1, 0, local=("127.0.0.1", 5000), remote=("127.0.0.2", 5000), now=0)


# --- links on the fake network ---------------------------------------------------------------


def test_mixed_ipv4_and_ipv6_links_carry_data() -> None:
    """Link 0 on 127.0.0.x and link 1 on ::1 to the same host both come up and carry data."""
    net = cluster(links=(0, 1), families={1: 6}, policy=LinkPolicy.ACTIVE)
    net.run_for(2 * S)
    a, b = net.cores[1], net.cores[2]
    for core, peer in ((a, 2), (b, 1)):
        assert core.link_status(peer, 0).connected
        assert core.link_status(peer, 1).connected
        assert core.link_status(peer, 0).remote.family == 4
        assert core.link_status(peer, 1).remote.family == 6
    # PMTU discovery ran per family: IPv6 carries 20 more UDP payload bytes than IPv4.
    assert a.link_status(2, 0).mtu == 65507
    assert a.link_status(2, 1).mtu == 65527
    start = len(net.sent)
    for i in range(10):
        a.send(b"mixed %d" % i, net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [b"mixed %d" % i for i in range(10)]
    assert tx_data(net, 1, 2, 0) == tx_data(net, 1, 2, 1) == 10
    assert b.link_status(1, 0).stats["rx_data_packets"] == 10
    assert b.link_status(1, 1).stats["rx_data_packets"] == 10
    families = Counter(d.remote.family for h, d in net.sent[start:] if h == 1 and d.data[1] == 1)
    assert families == {4: 10, 6: 10}


def test_ipv6_link_alone_carries_data_when_ipv4_is_cut() -> None:
    """With passive policy, cutting the IPv4 link moves the traffic to the IPv6 link."""
    net = cluster(links=(0, 1), families={1: 6})
    net.run_for(2 * S)
    net.block(*path(1, 2, 0))
    net.run_for(2 * S)
    assert not net.cores[1].link_status(2, 0).connected
    net.cores[1].send(b"over v6", net.now)
    net.run_for(S // 10)
    assert payloads(net, 2) == [b"over v6"]
    assert tx_data(net, 1, 2, 1) == 1


def test_link_ids_must_pair_up() -> None:
    """A path that is link 0 on one host and link 1 on the other never comes up; counted."""
    net = FakeNetwork(seed=3)
    a, b = net.add_core(1), net.add_core(2)
    a.add_host(2)
    b.add_host(1)
    a_end, b_end = path(1, 2, 0)
    a.set_link(2, 0, local=a_end, remote=b_end, options=FAST, now=net.now)
    b.set_link(1, 1, local=b_end, remote=a_end, options=FAST, now=net.now)
    # A correctly paired link alongside shows the mismatch is the only problem.
    a.set_link(2, 2, local=endpoint(1, 2, 2), remote=endpoint(2, 1, 2), options=FAST, now=net.now)
    b.set_link(1, 2, local=endpoint(2, 1, 2), remote=endpoint(1, 2, 2), options=FAST, now=net.now)
    net.run_for(5 * S)
    assert not a.link_status(2, 0).connected
    assert not b.link_status(1, 1).connected
    assert a.link_status(2, 2).connected
    assert b.link_status(1, 2).connected
    assert a.link_status(2, 0).stats["rx_pong_packets"] == 0
    assert a.stats()["rx_link_mismatch"] > 0
    assert b.stats()["rx_link_mismatch"] > 0
    assert a.link_status(2, 0).stats["rx_invalid_packets"] > 0
    assert LinkUp(2, 0) not in net.events[1]
    assert LinkUp(1, 1) not in net.events[2]
    warnings = [r for r in net.logs[1] if "pair up" in r.event]
    assert warnings
    assert warnings[0].fields["claimed_link"] == 1
    assert warnings[0].fields["expected_link"] == 0
    # Rate-limited: far fewer log lines than mismatched packets.
    assert len(warnings) < a.stats()["rx_link_mismatch"]


def test_host_ids_must_pair_up() -> None:
    """A peer that is configured under a different host id at one end is dropped, counted."""
    net = FakeNetwork(seed=3)
    a, b = net.add_core(1), net.add_core(2)
    a.add_host(2)
    b.add_host(3)  # b thinks host 3 lives at a's address
    a_end, b_end = path(1, 2, 0)
    a.set_link(2, 0, local=a_end, remote=b_end, options=FAST, now=net.now)
    b.set_link(3, 0, local=b_end, remote=a_end, options=FAST, now=net.now)
    net.run_for(3 * S)
    assert not a.link_status(2, 0).connected
    assert not b.link_status(3, 0).connected
    assert b.stats()["rx_link_mismatch"] > 0


# --- heartbeats ---------------------------------------------------------------------------


@pytest.mark.parametrize("pong_count", [1, 3, 5])
def test_link_comes_up_after_pong_count_pongs(pong_count: int) -> None:
    """The link is up only after pong_count good pongs, i.e. (pong_count-1) intervals + RTT."""
    interval = 200
    options = LinkOptions(ping_interval_ms=interval, ping_timeout_ms=1000, pong_count=pong_count)
    net = cluster(links=(0,), options={0: options})
    start = net.now
    rtt = 2 * net.path(*path(1, 2, 0)).delay_ns
    expected = start + (pong_count - 1) * interval * MS + rtt
    net.run_until(expected - 1)
    assert not net.cores[1].link_status(2, 0).connected
    assert net.cores[1].link_status(2, 0).stats["rx_pong_packets"] == pong_count - 1
    net.run_until(expected)
    status = net.cores[1].link_status(2, 0)
    assert status.connected
    assert status.stats["rx_pong_packets"] == pong_count
    assert status.stats["last_up_times_ns"] == (expected,)
    assert status.stats["up_count"] == 1
    assert link_events(net, 1) == [LinkUp(2, 0), HostReachable(2)]


def test_default_heartbeat_options_are_libknets() -> None:
    """Default options: ping every 1000 ms, timeout 2000 ms, 5 pongs -> up after ~4 s."""
    net = FakeNetwork(seed=1)
    a, b = net.add_core(1), net.add_core(2)
    a.add_host(2)
    b.add_host(1)
    a_end, b_end = path(1, 2, 0)
    a.set_link(2, 0, local=a_end, remote=b_end, now=net.now)
    b.set_link(1, 0, local=b_end, remote=a_end, now=net.now)
    start = net.now
    net.run_for(4 * S - 1)
    assert not a.link_status(2, 0).connected
    assert a.link_status(2, 0).stats["tx_ping_packets"] == 4
    net.run_for(S)
    assert a.link_status(2, 0).connected
    assert a.link_status(2, 0).stats["last_up_times_ns"][0] - start == 4 * S + 200_000
    assert a.link_status(2, 0).pong_timeout_adj_ms == 2000


def _run_until_down(net: FakeNetwork, host: int, peer: int, link: int, limit_ns: int) -> int:
    """Advance in 10 ms steps until the link is down; return the down time."""
    deadline = net.now + limit_ns
    core = net.cores[host]
    while core.link_status(peer, link).connected:
        assert net.now < deadline, "link did not go down"
        net.run_for(10 * MS)
    return int(core.link_status(peer, link).stats["last_down_times_ns"][-1])


def _run_until_up(net: FakeNetwork, host: int, peer: int, link: int, limit_ns: int) -> None:
    deadline = net.now + limit_ns
    while not net.cores[host].link_status(peer, link).connected:
        assert net.now < deadline, "link did not come up"
        net.run_for(10 * MS)


def test_link_goes_down_after_ping_timeout_then_backoff_after_flap() -> None:
    """First down within ping_timeout; right after a flap the next down takes backoff x longer."""
    interval, timeout = 200, 1000
    options = LinkOptions(ping_interval_ms=interval, ping_timeout_ms=timeout, pong_count=2)
    net = cluster(links=(0,), options={0: options})
    a = net.cores[1]
    net.run_for(2 * S)
    assert a.link_status(2, 0).backoff == 1
    assert a.link_status(2, 0).pong_timeout_adj_ms == timeout

    # First failure: judged with backoff 1.
    blocked_at = net.now
    net.block(*path(1, 2, 0))
    down1 = _run_until_down(net, 1, 2, 0, 5 * S)
    last_pong = a.link_status(2, 0).last_pong_ns
    assert last_pong is not None
    assert timeout * MS < down1 - last_pong <= (timeout + interval) * MS
    assert (timeout - interval) * MS <= down1 - blocked_at <= (timeout + interval) * MS
    status = a.link_status(2, 0)
    assert status.backoff == PONG_TIMEOUT_BACKOFF
    assert status.pong_timeout_adj_ms >= PONG_TIMEOUT_BACKOFF * timeout
    assert status.stats["down_count"] == 1
    assert link_events(net, 1)[-2:] == [LinkDown(2, 0, LinkDownReason.TIMEOUT), HostUnreachable(2)]

    # Flap: restore at once; the link comes back, then fails again while backoff is high.
    net.block(*path(1, 2, 0), blocked=False)
    _run_until_up(net, 1, 2, 0, 2 * S)
    assert a.link_status(2, 0).backoff > 1
    blocked_at = net.now
    net.block(*path(1, 2, 0))
    down2 = _run_until_down(net, 1, 2, 0, 20 * S)
    assert down2 - blocked_at > 3 * timeout * MS

    # The backoff decays by one per second: ten quiet seconds later a failure is quick again.
    net.block(*path(1, 2, 0), blocked=False)
    net.run_for(2 * S)
    assert a.link_status(2, 0).backoff > 1
    net.run_for(10 * S)
    assert a.link_status(2, 0).connected
    assert a.link_status(2, 0).backoff == 1
    blocked_at = net.now
    net.block(*path(1, 2, 0))
    down3 = _run_until_down(net, 1, 2, 0, 5 * S)
    assert down3 - blocked_at <= (timeout + interval) * MS
    assert a.link_status(2, 0).stats["down_count"] == 3
    assert a.link_status(2, 0).stats["up_count"] == 3


def test_backoff_decays_one_per_second() -> None:
    """After a down the backoff is 10 and drops by one per second to 1."""
    net = cluster(links=(0,))
    a = net.cores[1]
    net.run_for(S)
    net.block(*path(1, 2, 0))
    down = _run_until_down(net, 1, 2, 0, 5 * S)
    seen = []
    for second in range(12):
        net.run_until(down + second * S + S // 2)
        seen.append(a.link_status(2, 0).backoff)
    assert seen == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1]


def test_late_pongs_are_discarded() -> None:
    """Pongs whose round trip exceeds ping_timeout are counted late and never bring a link up."""
    options = LinkOptions(ping_interval_ms=50, ping_timeout_ms=100, pong_count=2)
    net = cluster(links=(0, 1), options={0: options, 1: options})
    a_end, b_end = path(1, 2, 0)
    net.path(b_end, a_end).delay_ns = 150 * MS  # round trip 150 ms > 100 ms timeout
    net.path(*path(2, 1, 1)).delay_ns = 40 * MS  # round trip 40 ms: fine
    net.run_for(3 * S)
    late = net.cores[1].link_status(2, 0)
    assert not late.connected
    assert late.stats["rx_pong_packets"] > 20
    assert late.stats["rx_late_pongs"] == late.stats["rx_pong_packets"]
    assert late.stats["latency_samples"] == 0
    assert late.last_pong_ns is None
    ok = net.cores[1].link_status(2, 1)
    assert ok.connected
    assert ok.stats["rx_late_pongs"] == 0
    assert LinkUp(2, 0) not in net.events[1]


def test_latency_stats_follow_the_path_delay() -> None:
    """latency min/max/avg in link stats reflect the configured one-way delays and jitter."""
    net = cluster(links=(0,), options={0: LinkOptions(ping_interval_ms=50, pong_count=2)})
    a_end, b_end = path(1, 2, 0)
    net.path(a_end, b_end).delay_ns = 3 * MS
    back = net.path(b_end, a_end)
    back.delay_ns = 3 * MS
    back.jitter_ns = 2 * MS
    net.run_for(5 * S)
    stats = net.cores[1].link_status(2, 0).stats
    assert stats["latency_samples"] >= 90
    assert 6000 <= stats["latency_min_us"] < 6300
    assert 7700 < stats["latency_max_us"] < 8000
    assert stats["latency_min_us"] < stats["latency_ave_us"] < stats["latency_max_us"]
    assert 6500 < stats["latency_ave_us"] < 7500
    # The same path without extra delay: the default 100 us each way.
    other = cluster(links=(0,), options={0: LinkOptions(ping_interval_ms=50, pong_count=2)})
    other.run_for(S)
    fast = other.cores[1].link_status(2, 0).stats
    assert fast["latency_min_us"] == fast["latency_max_us"] == fast["latency_ave_us"] == 200


def test_disabled_link_sends_nothing_and_goes_down() -> None:
    """Disabling a link reports it down (DISABLED) and stops its heartbeat."""
    net = cluster(links=(0,))
    net.run_for(S)
    a = net.cores[1]
    a.set_link_enabled(2, 0, False, net.now)
    net.flush()
    assert link_events(net, 1)[-2:] == [
        LinkDown(2, 0, LinkDownReason.DISABLED),
        HostUnreachable(2),
    ]
    pings = a.link_status(2, 0).stats["tx_ping_packets"]
    net.run_for(2 * S)
    assert a.link_status(2, 0).stats["tx_ping_packets"] == pings
    assert not a.link_status(2, 0).enabled
    a.set_link_enabled(2, 0, True, net.now)
    net.run_for(S)
    assert a.link_status(2, 0).connected


# --- link policies ----------------------------------------------------------------------------


def _send(net: FakeNetwork, host: int, items: Iterable[bytes], gap_ns: int = MS) -> None:
    for item in items:
        net.cores[host].send(item, net.now)
        net.run_for(gap_ns)


def test_passive_uses_lowest_link_id_on_equal_priority() -> None:
    """Passive: with equal priorities only the lowest link id carries data."""
    net = cluster(links=(0, 1, 2))
    net.run_for(2 * S)
    assert net.cores[1].host_status(2).active_links == (0,)
    sent = [b"p%d" % i for i in range(20)]
    _send(net, 1, sent)
    net.run_for(S // 10)
    assert payloads(net, 2) == sent
    assert [tx_data(net, 1, 2, link) for link in (0, 1, 2)] == [20, 0, 0]


def test_passive_uses_highest_priority_link() -> None:
    """Passive: the highest priority connected link wins; lowest id among equal best."""
    options = {
        0: LinkOptions(ping_interval_ms=100, pong_count=2, priority=1),
        1: LinkOptions(ping_interval_ms=100, pong_count=2, priority=7),
        2: LinkOptions(ping_interval_ms=100, pong_count=2, priority=7),
    }
    net = cluster(links=(0, 1, 2), options=options)
    net.run_for(2 * S)
    _send(net, 1, [b"x"] * 10)
    assert [tx_data(net, 1, 2, link) for link in (0, 1, 2)] == [0, 10, 0]
    # Raising link 2 above link 1 moves the traffic without any other action.
    net.cores[1].set_link_options(
        2, 2, LinkOptions(ping_interval_ms=100, pong_count=2, priority=9), net.now
    )
    _send(net, 1, [b"y"] * 10)
    assert [tx_data(net, 1, 2, link) for link in (0, 1, 2)] == [0, 10, 10]
    assert len(payloads(net, 2)) == 20


def test_passive_failover_and_failback() -> None:
    """Passive: when the best link is cut traffic moves to the other, and back when restored."""
    net = cluster(links=(0, 1))
    a = net.cores[1]
    net.run_for(2 * S)
    _send(net, 1, [b"before"] * 5)
    assert (tx_data(net, 1, 2, 0), tx_data(net, 1, 2, 1)) == (5, 0)

    net.block(*path(1, 2, 0))
    sent_after_down: list[bytes] = []
    for i in range(60):  # 3 s of traffic every 50 ms
        payload = b"during %d" % i
        a.send(payload, net.now)
        if LinkDown(2, 0, LinkDownReason.TIMEOUT) in net.events[1]:
            sent_after_down.append(payload)
        net.run_for(50 * MS)
    assert LinkDown(2, 0, LinkDownReason.TIMEOUT) in net.events[1]
    assert len(sent_after_down) > 40
    delivered = set(payloads(net, 2))
    assert set(sent_after_down) <= delivered
    assert tx_data(net, 1, 2, 1) >= len(sent_after_down)
    assert a.host_status(2).reachable
    assert HostUnreachable(2) not in net.events[1]

    net.block(*path(1, 2, 0), blocked=False)
    _run_until_up(net, 1, 2, 0, 3 * S)
    on_link0, on_link1 = tx_data(net, 1, 2, 0), tx_data(net, 1, 2, 1)
    _send(net, 1, [b"after"] * 5)
    assert tx_data(net, 1, 2, 1) == on_link1
    assert tx_data(net, 1, 2, 0) == on_link0 + 5
    assert payloads(net, 2)[-5:] == [b"after"] * 5
    assert a.host_status(2).active_links == (0,)


def test_active_sends_on_every_link_and_delivers_once() -> None:
    """Active: every payload goes out on every connected link; the receiver delivers it once."""
    net = cluster(links=(0, 1, 2), policy=LinkPolicy.ACTIVE)
    net.run_for(2 * S)
    assert net.cores[1].host_status(2).active_links == (0, 1, 2)
    sent = [b"act %d" % i for i in range(30)] + [bytes(range(256)) * 256]  # last one fragments
    _send(net, 1, sent)
    net.run_for(S // 10)
    assert payloads(net, 2) == sent
    for link in (0, 1, 2):
        assert tx_data(net, 1, 2, link) == 30 + 2
    b = net.cores[2]
    duplicates = sum(b.link_status(1, link).stats["rx_duplicates"] for link in (0, 1, 2))
    assert duplicates >= 2 * 30


def test_active_delivers_exactly_once_with_loss_and_duplication() -> None:
    """Active: loss, duplication and jitter on one path still deliver each payload exactly once."""
    net = cluster(links=(0, 1), policy=LinkPolicy.ACTIVE, seed=7)
    net.run_for(2 * S)
    a_end, b_end = path(1, 2, 0)
    faults = net.path(a_end, b_end)
    faults.loss = 0.3
    faults.duplicate = 0.5
    faults.jitter_ns = 2 * MS
    sent = [b"msg %d" % i for i in range(300)]
    _send(net, 1, sent, gap_ns=2 * MS)
    net.run_for(S)
    counts = Counter(payloads(net, 2))
    assert set(counts) == set(sent)
    assert set(counts.values()) == {1}
    assert len(payloads(net, 2)) == 300


def test_active_loss_on_both_paths_never_duplicates() -> None:
    """Active: with loss and duplication on both paths no payload is delivered twice."""
    net = cluster(links=(0, 1), policy=LinkPolicy.ACTIVE, seed=11)
    net.run_for(2 * S)
    for link in (0, 1):
        faults = net.path(*path(1, 2, link))
        faults.loss = 0.2
        faults.duplicate = 0.3
    sent = [b"both %d" % i for i in range(300)]
    _send(net, 1, sent, gap_ns=2 * MS)
    net.run_for(S)
    got = payloads(net, 2)
    assert len(got) == len(set(got))
    assert set(got) <= set(sent)
    assert len(got) > 250  # lost only when both copies were lost (about 4 %)


def test_round_robin_alternates_links() -> None:
    """rr: consecutive payloads take the connected links in turn."""
    net = cluster(links=(0, 1, 2), policy=LinkPolicy.RR)
    net.run_for(2 * S)
    start = len(net.sent)
    sent = [b"rr %d" % i for i in range(12)]
    _send(net, 1, sent)
    net.run_for(S // 10)
    order = data_links_sent(net, 1, start)
    assert len(order) == 12
    assert order == [order[i % 3] for i in range(12)]
    assert sorted(order[:3]) == [0, 1, 2]
    assert [tx_data(net, 1, 2, link) for link in (0, 1, 2)] == [4, 4, 4]
    assert payloads(net, 2) == sent


def test_round_robin_skips_a_down_link() -> None:
    """rr: a link that goes down leaves the rotation; the rest keep alternating."""
    net = cluster(links=(0, 1, 2), policy=LinkPolicy.RR)
    net.run_for(2 * S)
    net.block(*path(1, 2, 1))
    _run_until_down(net, 1, 2, 1, 3 * S)
    start = len(net.sent)
    _send(net, 1, [b"z"] * 6)
    order = data_links_sent(net, 1, start)
    assert sorted(order) == [0, 0, 0, 2, 2, 2]
    assert order[0] != order[1]
    assert len(payloads(net, 2)) == 6


def test_events_in_order_through_failures() -> None:
    """LinkUp/HostReachable and LinkDown/HostUnreachable come in causal order."""
    net = cluster(links=(0, 1))
    net.run_for(2 * S)
    first = link_events(net, 1)
    assert len(first) == 3
    assert isinstance(first[0], LinkUp)
    assert first[1] == HostReachable(2)
    assert isinstance(first[2], LinkUp)
    assert {first[0].link_id, first[2].link_id} == {0, 1}

    net.block(*path(1, 2, 0))
    net.run_for(2 * S)
    net.block(*path(1, 2, 1))
    net.run_for(2 * S)
    net.block(*path(1, 2, 1), blocked=False)
    net.run_for(2 * S)
    timeout = LinkDownReason.TIMEOUT
    assert link_events(net, 1)[3:] == [
        LinkDown(2, 0, timeout),
        LinkDown(2, 1, timeout),
        HostUnreachable(2),
        LinkUp(2, 1),
        HostReachable(2),
    ]
    # Sending while unreachable is skipped and counted.
    net.block(*path(1, 2, 1))
    net.run_for(12 * S)  # the link just flapped: backoff makes the timeout longer
    assert net.cores[1].send(b"nowhere", net.now) == 0
    assert net.cores[1].stats()["tx_no_active_links"] == 1
    assert link_events(net, 1)[-2:] == [LinkDown(2, 1, timeout), HostUnreachable(2)]


def test_three_hosts_each_see_the_others() -> None:
    """In a three-host mesh every host reaches both others and broadcasts reach everyone."""
    net = cluster((1, 2, 3), links=(0, 1))
    net.run_for(2 * S)
    for host in (1, 2, 3):
        for peer in (1, 2, 3):
            if peer != host:
                assert net.cores[host].host_status(peer).reachable
    assert net.cores[1].send(b"all", net.now) == 2
    net.run_for(S // 10)
    assert payloads(net, 2) == payloads(net, 3) == [b"all"]
    assert [e.src_host for e in net.received(3)] == [1]
