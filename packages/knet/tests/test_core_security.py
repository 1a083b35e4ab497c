"""KnetCore over FakeNetwork: access control, crypto (keys, rolling change, replay),
and the events and statistics a handle reports (issue points 6, 7 and 9)."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knet import (
    Cipher,
    CompressionConfig,
    CompressionModel,
    CryptoConfig,
    CryptoError,
    Datagram,
    DataMtuChanged,
    HostReachable,
    HostUnreachable,
    KnetCore,
    LinkDown,
    LinkDownReason,
    LinkPolicy,
    LinkUp,
    LogLevel,
    LogRecord,
)
from knet._core import DEFAULT_LOG_INTERVAL_NS
from knet._crypto import PacketSealer
from knet._wire import HEADER_SIZE, PacketType, decode_header_untrusted
from knet.testing import FakeNetwork

MS = 1_000_000
SEC = 1_000_000_000
KEY1 = bytes(range(256))
KEY2 = bytes(255 - i for i in range(256))
KEY3 = bytes((7 * i + 3) % 256 for i in range(300))
#: The default cipher's tag: the only bytes sealing adds (the nonce is rebuilt, not sent).
TAG = PacketSealer(CryptoConfig(KEY1)).overhead

#: Handle counters of packets dropped before they reach the packet-type handlers.
REJECT_COUNTERS = (
    "rx_auth_failures",
    "rx_replayed",
    "rx_unverified_instance",
    "rx_malformed",
    "rx_unsupported_version",
    "rx_link_mismatch",
    "rx_clear_rejected",
    "rx_unknown_source",
)


# --- helpers ---------------------------------------------------------------------------


def endpoint(host: int, link: int) -> tuple[str, int]:
    """The local UDP endpoint of ``host`` for link ``link`` (one per host and link)."""
    return (f"127.0.{link}.{host}", 5405)


def cluster(
    net: FakeNetwork,
    host_ids: Iterable[int],
    *,
    links: Iterable[int] = (0,),
    policy: LinkPolicy = LinkPolicy.PASSIVE,
    key: bytes | None = None,
    keys: dict[int, bytes] | None = None,
    instances: dict[int, int] | None = None,
    **core_kwargs: object,
) -> dict[int, KnetCore]:
    """Full mesh of ``host_ids`` with the given links, channel 0 open, optional crypto."""
    ids = sorted(host_ids)
    cores = {}
    for host_id in ids:
        kwargs = dict(core_kwargs)
        if instances and host_id in instances:
            kwargs["instance"] = instances[host_id]
        cores[host_id] = net.add_core(host_id, **kwargs)
    for host_id in ids:
        configure(net, cores[host_id], ids, links=links, policy=policy)
        host_key = keys.get(host_id) if keys else key
        if host_key is not None:
            cores[host_id].set_crypto_config(1, CryptoConfig(host_key))
            cores[host_id].use_crypto_config(1)
    net.flush()
    return cores


def configure(
    net: FakeNetwork,
    core: KnetCore,
    host_ids: Iterable[int],
    *,
    links: Iterable[int] = (0,),
    policy: LinkPolicy = LinkPolicy.PASSIVE,
) -> None:
    """Know every host of ``host_ids`` and add ``links`` to each of the others."""
    for peer in sorted(host_ids):
        core.add_host(peer, policy=policy)
        if peer == core.host_id:
            continue
        for link in links:
            core.set_link(
                peer,
                link,
                local=endpoint(core.host_id, link),
                remote=endpoint(peer, link),
                now=net.now,
            )
    core.open_channel(0)


def numbered(i: int) -> bytes:
    return b"#" + i.to_bytes(4, "big")


def numbers_received(net: FakeNetwork, host_id: int, src: int) -> list[int]:
    return [
        int.from_bytes(e.payload[1:], "big")
        for e in net.received(host_id)
        if e.src_host == src and len(e.payload) == 5 and e.payload[:1] == b"#"
    ]


def stream(
    net: FakeNetwork,
    sender: KnetCore,
    count: int,
    actions: dict[int, Callable[[], None]],
) -> None:
    """Send payload i every millisecond of virtual time, running actions[i] first."""
    for i in range(count):
        if i in actions:
            actions[i]()
        sender.send(numbered(i), net.now)
        net.run_for(MS)


def sent_by(net: FakeNetwork, host_id: int, start: int = 0) -> list[Datagram]:
    return [d for h, d in net.sent[start:] if h == host_id]


def of_type(datagrams: Iterable[Datagram], ptype: PacketType) -> list[Datagram]:
    return [d for d in datagrams if d.data[1] == ptype]


def rejects(core: KnetCore) -> int:
    stats = core.stats()
    return sum(stats[name] for name in REJECT_COUNTERS)


def matching_logs(net: FakeNetwork, host_id: int, text: str) -> list[LogRecord]:
    return [r for r in net.logs[host_id] if text in r.event]


def run_stamped(
    net: FakeNetwork, duration: int, step: int = 10 * MS
) -> list[tuple[int, int, object]]:
    """Run in small steps; return (time of the step's end, host, event or log record)."""
    stamped: list[tuple[int, int, object]] = []
    end = net.now + duration
    while net.now < end:
        seen = {h: (len(net.events[h]), len(net.logs[h])) for h in net.cores}
        net.run_until(min(end, net.now + step))
        for host_id, (n_events, n_logs) in seen.items():
            stamped += [(net.now, host_id, e) for e in net.events[host_id][n_events:]]
            stamped += [(net.now, host_id, r) for r in net.logs[host_id][n_logs:]]
    return stamped


def fake_perf_counter(step_ns: int) -> Callable[[], int]:
    """A perf_counter_ns that advances ``step_ns`` on every call."""
    return functools.partial(next, itertools.count(0, step_ns))


# --- 6. access control -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [("127.0.0.9", 5405), ("127.0.0.1", 5999), ("::1", 5405)],
    ids=["other-ip", "peer-ip-other-port", "ipv6"],
)
def test_valid_packet_from_unconfigured_address_is_dropped(source: tuple[str, int]) -> None:
    """A peer's valid packet sent from an unconfigured address is dropped, counted and logged."""
    net = FakeNetwork(seed=1)
    a, b = cluster(net, [1, 2]).values()
    net.run_for(10 * SEC)
    start = len(net.sent)
    net.block(endpoint(1, 0), endpoint(2, 0))
    a.send(b"only once, from host 1", net.now)
    net.flush()
    net.block(endpoint(1, 0), endpoint(2, 0), blocked=False)
    (packet,) = of_type(sent_by(net, 1, start), PacketType.DATA)
    assert net.received(2) == []

    net.inject(source, packet.remote, packet.data)
    assert net.received(2) == []
    assert b.stats()["rx_unknown_source"] == 1
    (log,) = matching_logs(net, 2, "not a configured peer")
    assert log.level is LogLevel.WARNING
    assert log.fields["address"].startswith(source[0])
    assert log.fields["address"].endswith(f":{source[1]}")

    # The very same bytes from the configured address are a valid packet.
    net.inject(packet.local, packet.remote, packet.data)
    assert [e.payload for e in net.received(2)] == [b"only once, from host 1"]
    assert b.stats()["rx_unknown_source"] == 1


def test_unknown_source_log_is_rate_limited() -> None:
    """Strangers' packets are all counted but logged once per interval, with a suppressed count."""
    net = FakeNetwork(seed=2)
    _, b = cluster(net, [1, 2]).values()
    net.run_for(3 * SEC)
    stranger = ("127.0.0.77", 4000)
    for i in range(20):
        net.inject(stranger, endpoint(2, 0), b"\x01" + bytes([i]) * 40)
    assert b.stats()["rx_unknown_source"] == 20
    assert len(matching_logs(net, 2, "not a configured peer")) == 1
    net.run_for(DEFAULT_LOG_INTERVAL_NS)
    net.inject(stranger, endpoint(2, 0), b"late")
    logs = matching_logs(net, 2, "not a configured peer")
    assert len(logs) == 2
    assert logs[0].fields["suppressed"] == 0
    assert logs[1].fields["suppressed"] == 19
    assert logs[1].fields["address"] == "127.0.0.77:4000"
    assert b.stats()["rx_unknown_source"] == 21


# --- 7. crypto: sealing, wrong keys, tampering -------------------------------------------


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
def test_sealed_traffic_flows_and_hides_the_payload(crypto: bool) -> None:
    """Sealed data flows and no datagram shows the payload; in clear it shows (the control)."""
    net = FakeNetwork(seed=3)
    a, _ = cluster(net, [1, 2], key=KEY1 if crypto else None).values()
    net.run_for(10 * SEC)
    secret = b"attack at dawn: the secret payload " * 3
    start = len(net.sent)
    a.send(secret, net.now)
    net.run_for(10 * MS)
    assert [e.payload for e in net.received(2)] == [secret]
    datagrams = [d for _, d in net.sent[start:]]
    assert datagrams
    visible = any(b"secret payload" in d.data for d in datagrams)
    assert visible is not crypto
    slots = {d.data[5] for _, d in net.sent}
    assert slots == ({1} if crypto else {0})
    if crypto:
        (data,) = of_type(datagrams, PacketType.DATA)
        assert len(data.data) == HEADER_SIZE + 8 + len(secret) + TAG


def test_host_with_another_key_cannot_talk_and_is_logged_once_per_interval() -> None:
    """A host with another key never talks; one "invalid digest" line per peer per interval."""
    net = FakeNetwork(seed=4)
    cores = cluster(net, [1, 3, 4], keys={1: KEY1, 3: KEY2, 4: KEY2})
    a = cores[1]
    stamped = run_stamped(net, 35 * SEC, step=50 * MS)
    a_events = [e for _, h, e in stamped if h == 1 and not isinstance(e, LogRecord)]
    assert not any(isinstance(e, (LinkUp, HostReachable)) for e in a_events)
    assert net.received(1) == []
    # Hosts 3 and 4 share a key and talk to each other fine.
    assert LinkUp(4, 0) in net.events[3]

    stats = a.stats()
    per_link = [a.link_status(h, 0).stats["rx_auth_failures"] for h in (3, 4)]
    assert all(n >= 30 for n in per_link)  # a ping every second from each
    assert stats["rx_auth_failures"] == sum(per_link)

    for peer in (3, 4):
        address = f"127.0.0.{peer}:5405"
        lines = [
            (t, r)
            for t, h, r in stamped
            if h == 1
            and isinstance(r, LogRecord)
            and "invalid digest" in r.event
            and r.fields["address"] == address
        ]
        assert len(lines) == 4  # 35 s of failures, at most one line per 10 s
        times = [t for t, _ in lines]
        assert all(b - a >= DEFAULT_LOG_INTERVAL_NS for a, b in itertools.pairwise(times))
        for _, record in lines:
            assert record.level is LogLevel.WARNING
            assert address in record.event
            assert record.fields["host"] == peer
        assert lines[0][1].fields["suppressed"] == 0
        # A ping a second: the 9 failures between two lines were suppressed.
        assert [r.fields["suppressed"] for _, r in lines[1:]] == [9, 9, 9]


@functools.cache
def _sealed_world() -> tuple[FakeNetwork, KnetCore, dict[PacketType, Datagram]]:
    """Two sealed hosts with links up and one sealed datagram of every type from 1 to 2."""
    net = FakeNetwork(seed=5)
    a, b = cluster(net, [1, 2], key=KEY1).values()
    b.set_rx_clear_traffic(False)
    net.path(endpoint(1, 0), endpoint(2, 0)).mtu = 1500
    net.path(endpoint(2, 0), endpoint(1, 0)).mtu = 1500
    net.run_for(10 * SEC)
    a.send(b"p" * 3000, net.now)  # fragmented
    a.send(b"small", net.now)
    net.run_for(SEC)
    samples = {}
    for ptype in PacketType:
        fitting = [d for d in of_type(sent_by(net, 1), ptype) if len(d.data) + 28 <= 1500]
        samples[ptype] = fitting[-1]
    return net, b, samples


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ptype=st.sampled_from(list(PacketType)),
    position=st.integers(min_value=0, max_value=1 << 16),
    xor=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_of_a_sealed_datagram_is_dropped_and_counted(
    ptype: PacketType, position: int, xor: int
) -> None:
    """Any flipped byte in a sealed datagram of any type gets it dropped and counted, not raised."""
    net, b, samples = _sealed_world()
    original = samples[ptype].data
    index = position % len(original)
    tampered = bytearray(original)
    tampered[index] ^= xor
    received = len(net.received(2))
    before = rejects(b)
    totals = b.link_status(1, 0).stats["rx_total_packets"]
    net.inject(samples[ptype].local, samples[ptype].remote, bytes(tampered))
    assert len(net.received(2)) == received
    assert rejects(b) == before + 1
    assert b.link_status(1, 0).stats["rx_total_packets"] == totals
    assert not [r for r in net.logs[2] if r.level is LogLevel.ERROR]


def test_clear_packets_rejected_when_clear_rx_disabled() -> None:
    """With clear rx disabled clear packets are dropped, counted and logged until re-allowed."""
    net = FakeNetwork(seed=6)
    a, b = cluster(net, [1, 2]).values()
    net.run_for(10 * SEC)
    b.set_rx_clear_traffic(False)
    a.send(b"refused", net.now)
    net.run_for(10 * MS)
    a.send(b"refused too", net.now)
    net.run_for(10 * MS)
    assert net.received(2) == []
    assert b.stats()["rx_clear_rejected"] >= 2
    warnings = matching_logs(net, 2, "clear packet rejected")
    assert len(warnings) == 1
    assert warnings[0].level is LogLevel.WARNING
    assert warnings[0].fields["address"] == "127.0.0.1:5405"
    b.set_rx_clear_traffic(True)
    a.send(b"accepted", net.now)
    net.run_for(10 * MS)
    assert [e.payload for e in net.received(2)] == [b"accepted"]


# --- 7. crypto: key slots and rolling changes -----------------------------------------------


def test_rolling_key_change_loses_no_packet() -> None:
    """Two rolling key changes during a 1 ms numbered stream lose and duplicate nothing."""
    net = FakeNetwork(seed=7)
    cores = cluster(net, [1, 2, 3], links=(0, 1), policy=LinkPolicy.ACTIVE, key=KEY1)
    net.run_for(10 * SEC)
    for core in cores.values():
        for peer in core.host_ids():
            if peer != core.host_id:
                assert core.host_status(peer).active_links == (0, 1)

    def install(slot: int, key: bytes | None) -> Callable[[], None]:
        def action() -> None:
            for core in cores.values():
                core.set_crypto_config(slot, CryptoConfig(key) if key else None)

        return action

    def switch(host_id: int, slot: int) -> Callable[[], None]:
        return functools.partial(cores[host_id].use_crypto_config, slot)

    phase2 = len(net.sent)
    actions = {
        100: install(2, KEY2),
        300: switch(2, 2),  # a receiver switches first
        450: switch(1, 2),  # then the streaming host
        600: switch(3, 2),
        800: install(1, None),  # clear the old slot everywhere
        1000: install(1, KEY3),
        1200: switch(1, 1),
        1300: switch(3, 1),
        1400: switch(2, 1),
        1600: install(2, None),
    }
    count = 2000
    stream(net, cores[1], count, actions)
    net.run_for(SEC)

    for receiver in (2, 3):
        got = numbers_received(net, receiver, 1)
        assert sorted(got) == list(range(count))
        assert not [n for n, k in Counter(got).items() if k > 1]
    for core in cores.values():
        assert core.stats()["rx_auth_failures"] == 0
        assert core.crypto_tx_slot == 1
    assert not [e for h in cores for e in net.events[h] if isinstance(e, LinkDown)]
    slots_used = [d.data[5] for d in sent_by(net, 1, phase2)]
    assert set(slots_used) == {1, 2}
    assert slots_used[-1] == 1
    with pytest.raises(CryptoError):
        cores[2].use_crypto_config(2)  # slot 2 was cleared


def test_rolling_change_between_ciphers_keeps_the_data_mtu_for_the_larger_tag() -> None:
    """A rolling change XChaCha20-Poly1305 -> AEGIS-256 loses nothing; the data MTU
    leaves room for the largest installed tag and every change is reported."""
    net = FakeNetwork(seed=71)
    cores = cluster(net, [1, 2])
    xchacha = CryptoConfig(KEY1, cipher=Cipher.XCHACHA20_POLY1305)
    aegis = CryptoConfig(KEY2, cipher=Cipher.AEGIS256)
    small, large = PacketSealer(xchacha).overhead, PacketSealer(aegis).overhead
    assert (small, large) == (16, 32)
    for core in cores.values():
        core.set_crypto_config(1, xchacha)
        core.use_crypto_config(1)
    net.run_for(10 * SEC)
    a, b = cores[1], cores[2]
    base = a.data_mtu

    def mtu_changes() -> list[DataMtuChanged]:
        return [e for e in net.events[1] if isinstance(e, DataMtuChanged)]

    seen = len(mtu_changes())
    for core in cores.values():
        core.set_crypto_config(2, aegis)
    net.flush()
    assert a.data_mtu == base - (large - small)
    assert mtu_changes()[seen:] == [DataMtuChanged(base - (large - small), base)]
    for core in cores.values():
        core.use_crypto_config(2)
    start = len(net.sent)
    payload = bytes(range(256)) * (a.data_mtu // 256) + b"x" * (a.data_mtu % 256)
    a.send(payload, net.now)
    net.run_for(10 * MS)
    assert [e.payload for e in net.received(2)] == [payload]
    (sealed,) = of_type(sent_by(net, 1, start), PacketType.DATA)  # one datagram: it fits
    assert sealed.data[5] == 2
    assert len(sealed.data) == HEADER_SIZE + 8 + len(payload) + large
    # Clearing the XChaCha20 slot keeps the MTU: AEGIS-256's tag is the larger one.
    seen = len(mtu_changes())
    for core in cores.values():
        core.set_crypto_config(1, None)
    net.flush()
    assert a.data_mtu == base - (large - small)
    assert mtu_changes()[seen:] == []
    assert a.stats()["rx_auth_failures"] == b.stats()["rx_auth_failures"] == 0


def test_switching_before_the_peer_has_the_key_loses_packets() -> None:
    """Control: sealing with a key the receiver lacks loses packets as auth failures."""
    net = FakeNetwork(seed=8)
    cores = cluster(net, [1, 2], key=KEY1)
    net.run_for(10 * SEC)

    def early_switch() -> None:
        cores[1].set_crypto_config(2, CryptoConfig(KEY2))
        cores[1].use_crypto_config(2)

    stream(net, cores[1], 200, {100: early_switch})
    assert numbers_received(net, 2, 1) == list(range(100))
    assert cores[2].stats()["rx_auth_failures"] >= 100


def test_same_key_in_different_slots_still_talks() -> None:
    """A receiver finds the sender's key whichever of its slots holds it."""
    net = FakeNetwork(seed=19)
    cores = cluster(net, [1, 2], key=KEY2)
    cores[2].set_crypto_config(2, CryptoConfig(KEY1))
    cores[2].use_crypto_config(2)
    cores[2].set_crypto_config(1, None)
    cores[1].set_crypto_config(2, CryptoConfig(KEY3))  # another key in the sender's slot 2
    cores[1].use_crypto_config(0)
    cores[1].set_crypto_config(1, CryptoConfig(KEY1))
    cores[1].use_crypto_config(1)
    cores[1].set_rx_clear_traffic(False)
    cores[2].set_rx_clear_traffic(False)
    net.run_for(10 * SEC)
    assert LinkUp(2, 0) in net.events[1]
    assert LinkUp(1, 0) in net.events[2]
    stream(net, cores[1], 50, {})
    assert numbers_received(net, 2, 1) == list(range(50))
    assert {d.data[5] for d in sent_by(net, 1)[-10:]} == {1}
    assert {d.data[5] for d in sent_by(net, 2)[-10:]} == {2}
    assert cores[1].stats()["rx_auth_failures"] == cores[2].stats()["rx_auth_failures"] == 0


def test_switch_from_clear_to_crypto_loses_no_packet() -> None:
    """Switching from clear to sealed host by host while streaming loses nothing."""
    net = FakeNetwork(seed=9)
    cores = cluster(net, [1, 2, 3], links=(0, 1), policy=LinkPolicy.ACTIVE)
    net.run_for(10 * SEC)
    phase2 = len(net.sent)

    def install() -> None:
        for core in cores.values():
            core.set_crypto_config(1, CryptoConfig(KEY1))

    def refuse_clear() -> None:
        for core in cores.values():
            core.set_rx_clear_traffic(False)

    actions = {
        100: install,
        200: lambda: cores[3].use_crypto_config(1),
        350: lambda: cores[1].use_crypto_config(1),
        500: lambda: cores[2].use_crypto_config(1),
        700: refuse_clear,
    }
    count = 1000
    stream(net, cores[1], count, actions)
    net.run_for(SEC)
    for receiver in (2, 3):
        assert sorted(numbers_received(net, receiver, 1)) == list(range(count))
    for core in cores.values():
        stats = core.stats()
        assert stats["rx_auth_failures"] == stats["rx_clear_rejected"] == 0
    assert {d.data[5] for d in sent_by(net, 1, phase2)} == {0, 1}
    assert not [e for h in cores for e in net.events[h] if isinstance(e, LinkDown)]

    # A clear packet from before the change, replayed now: rejected.
    clear_packet = next(
        d
        for d in of_type(sent_by(net, 1, phase2), PacketType.DATA)
        if d.data[5] == 0 and d.remote.ip == "127.0.0.2"
    )
    net.inject(clear_packet.local, clear_packet.remote, clear_packet.data)
    assert cores[2].stats()["rx_clear_rejected"] == 1
    assert sorted(numbers_received(net, 2, 1)) == list(range(count))


def test_key_slot_misuse_raises_crypto_error() -> None:
    """Replacing the slot in use, using an empty slot or a bad slot number raise CryptoError."""
    net = FakeNetwork(seed=10)
    (a,) = cluster(net, [1], key=KEY1).values()
    with pytest.raises(CryptoError, match="in use"):
        a.set_crypto_config(1, CryptoConfig(KEY2))
    with pytest.raises(CryptoError, match="in use"):
        a.set_crypto_config(1, None)
    with pytest.raises(CryptoError, match="no key"):
        a.use_crypto_config(2)
    for slot in (0, 3, -1):
        with pytest.raises(CryptoError):
            a.set_crypto_config(slot, CryptoConfig(KEY2))
    with pytest.raises(CryptoError):
        a.use_crypto_config(3)
    assert a.crypto_tx_slot == 1
    a.set_crypto_config(2, CryptoConfig(KEY2))
    a.use_crypto_config(2)
    a.set_crypto_config(1, None)
    with pytest.raises(CryptoError, match="no key"):
        a.use_crypto_config(1)
    assert a.crypto_tx_slot == 2


def test_crypto_none_is_allowed_with_a_warning() -> None:
    """use_crypto_config(0) sends clear packets and logs a WARNING saying crypto is off."""
    net = FakeNetwork(seed=11)
    a, _ = cluster(net, [1, 2], key=KEY1).values()
    net.run_for(10 * SEC)
    a.drain()
    a.use_crypto_config(0)
    logs = a.drain().logs
    warnings = [r for r in logs if r.level is LogLevel.WARNING and "crypto is off" in r.event]
    assert len(warnings) == 1
    start = len(net.sent)
    a.send(b"now in clear", net.now)
    net.run_for(10 * MS)
    (data,) = of_type(sent_by(net, 1, start), PacketType.DATA)
    assert data.data[5] == 0
    assert b"now in clear" in data.data
    assert [e.payload for e in net.received(2)] == [b"now in clear"]


# --- 7. replay protection ----------------------------------------------------------------


def test_replayed_sealed_packets_are_dropped_and_counted() -> None:
    """Captured sealed packets of every type sent again are refused and counted rx_replayed."""
    net = FakeNetwork(seed=12)
    a, b = cluster(net, [1, 2], key=KEY1).values()
    net.run_for(10 * SEC)
    start = len(net.sent)
    a.send(b"pay the invoice", net.now)
    net.run_for(10 * MS)
    assert [e.payload for e in net.received(2)] == [b"pay the invoice"]
    (data,) = of_type(sent_by(net, 1, start), PacketType.DATA)

    net.inject(data.local, data.remote, data.data)
    assert [e.payload for e in net.received(2)] == [b"pay the invoice"]
    assert b.stats()["rx_replayed"] == 1
    assert b.link_status(1, 0).stats["rx_replayed"] == 1
    (log,) = matching_logs(net, 2, "replayed")
    assert log.level is LogLevel.WARNING
    assert log.fields["address"] == "127.0.0.1:5405"

    # Every other captured packet type is refused too (a replayed PING gets no PONG).
    replayed = 1
    for ptype in (PacketType.PING, PacketType.PONG, PacketType.PMTUD, PacketType.PMTUD_REPLY):
        packet = of_type(sent_by(net, 1), ptype)[-1]
        sent_before = len(net.sent)
        net.inject(packet.local, packet.remote, packet.data)
        replayed += 1
        assert b.stats()["rx_replayed"] == replayed
        assert net.sent[sent_before:] == []

    # Far outside the window (more than 1024 newer packets): still refused.
    for i in range(1100):
        a.send(numbered(i), net.now)
    net.run_for(10 * MS)
    assert len(numbers_received(net, 2, 1)) == 1100
    net.inject(data.local, data.remote, data.data)
    assert b.stats()["rx_replayed"] == replayed + 1
    assert len(net.received(2)) == 1101
    assert b.stats()["rx_auth_failures"] == 0


def _restart(net: FakeNetwork, host_id: int, peers: list[int], instance: int) -> KnetCore:
    """Replace ``host_id``'s core by a fresh one (same id, addresses and key)."""
    core = net.add_core(host_id, instance=instance)
    configure(net, core, peers)
    core.set_crypto_config(1, CryptoConfig(KEY1))
    core.use_crypto_config(1)
    net.flush()
    return core


def test_restarted_peer_is_accepted_and_its_old_packets_are_refused() -> None:
    """A peer restarted with a larger instance is accepted; its old run's packets are refused."""
    net = FakeNetwork(seed=13)
    a, _ = cluster(net, [1, 2], key=KEY1, instances={1: 10_000, 2: 20_000}).values()
    net.run_for(10 * SEC)
    start = len(net.sent)
    for i in range(5):
        net.cores[2].send(numbered(i), net.now)
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2) == [0, 1, 2, 3, 4]
    old_packets = sent_by(net, 2, start)
    old_data = of_type(old_packets, PacketType.DATA)[-1]  # data_seq 5
    old_ping = of_type(sent_by(net, 2), PacketType.PING)[-1]

    b = _restart(net, 2, [1, 2], instance=30_000)
    net.run_for(10 * SEC)  # the new run's own link to 1 needs its pongs
    assert b.host_status(1).reachable
    b.send(numbered(100), net.now)  # data_seq 1, counter restarted
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2) == [0, 1, 2, 3, 4, 100]
    assert matching_logs(net, 1, "host restarted")
    assert a.stats()["rx_replayed"] == 0
    assert not [e for e in net.events[1] if isinstance(e, LinkDown)]

    net.inject(old_data.local, old_data.remote, old_data.data)
    net.inject(old_ping.local, old_ping.remote, old_ping.data)
    assert numbers_received(net, 1, 2) == [0, 1, 2, 3, 4, 100]
    assert a.stats()["rx_replayed"] == 2
    # The new instance is still the one accepted.
    b.send(numbered(101), net.now)
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2)[-1] == 101


def test_restart_with_smaller_instance_waits_until_the_old_one_is_gone() -> None:
    """A smaller restarted instance is refused while reachable, accepted once links time out."""
    net = FakeNetwork(seed=14)
    a, _ = cluster(net, [1, 2], key=KEY1, instances={1: 10_000, 2: 20_000}).values()
    net.run_for(10 * SEC)
    old_ping = of_type(sent_by(net, 2), PacketType.PING)[-1]

    b = _restart(net, 2, [1, 2], instance=5_000)
    net.run_for(SEC)
    assert a.stats()["rx_replayed"] > 0
    assert a.host_status(2).reachable

    stamped = run_stamped(net, 20 * SEC, step=100 * MS)
    a_events = [e for _, h, e in stamped if h == 1 and not isinstance(e, LogRecord)]
    assert a_events.index(HostUnreachable(2)) < a_events.index(HostReachable(2))
    assert a.host_status(2).reachable
    b.send(numbered(7), net.now)
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2) == [7]

    replayed = a.stats()["rx_replayed"]
    net.inject(old_ping.local, old_ping.remote, old_ping.data)
    assert a.stats()["rx_replayed"] == replayed + 1


# --- 9. events and statistics --------------------------------------------------------------


def test_link_and_host_events_follow_link_failures() -> None:
    """Link and host events and up/down counters and times follow blocked and restored links."""
    net = FakeNetwork(seed=15)
    a, b = cluster(net, [1, 2], links=(0, 1)).values()
    stamped = run_stamped(net, 10 * SEC)

    def block(link: int, blocked: bool = True) -> None:
        net.block(endpoint(1, link), endpoint(2, link), blocked)

    block(0)
    stamped += run_stamped(net, 10 * SEC)
    block(1)
    stamped += run_stamped(net, 10 * SEC)
    block(0, blocked=False)
    block(1, blocked=False)
    stamped += run_stamped(net, 30 * SEC)

    for core, peer in ((a, 2), (b, 1)):
        me = core.host_id
        events = [(t, e) for t, h, e in stamped if h == me and not isinstance(e, LogRecord)]
        kinds = [e for _, e in events if not type(e).__name__.startswith("DataMtu")]
        host_events = [e for e in kinds if isinstance(e, (HostReachable, HostUnreachable))]
        assert host_events == [HostReachable(peer), HostUnreachable(peer), HostReachable(peer)]
        for link in (0, 1):
            assert [
                e for e in kinds if isinstance(e, (LinkUp, LinkDown)) and e.link_id == link
            ] == [
                LinkUp(peer, link),
                LinkDown(peer, link, LinkDownReason.TIMEOUT),
                LinkUp(peer, link),
            ]
        # Reachable with the first link up, unreachable only when the last went down.
        first_up = kinds.index(HostReachable(peer)) - 1
        assert isinstance(kinds[first_up], LinkUp)
        lost = kinds.index(HostUnreachable(peer))
        assert kinds[lost - 2 : lost] == [
            LinkDown(peer, 0, LinkDownReason.TIMEOUT),
            LinkDown(peer, 1, LinkDownReason.TIMEOUT),
        ]
        back = len(kinds) - 1 - kinds[::-1].index(HostReachable(peer))
        assert isinstance(kinds[back - 1], LinkUp)
        assert kinds[lost + 1] == kinds[back - 1]
        for link in (0, 1):
            stats = core.link_status(peer, link).stats
            ups = [t for t, e in events if e == LinkUp(peer, link)]
            downs = [t for t, e in events if isinstance(e, LinkDown) and e.link_id == link]
            assert stats["up_count"] == len(ups) == 2
            assert stats["down_count"] == len(downs) == 1
            for recorded, observed in zip(stats["last_up_times_ns"], ups, strict=True):
                assert observed - 10 * MS < recorded <= observed
            for recorded, observed in zip(stats["last_down_times_ns"], downs, strict=True):
                assert observed - 10 * MS < recorded <= observed
            assert core.link_status(peer, link).connected


def _wire_counts(datagrams: Iterable[Datagram]) -> Counter[tuple[str, str]]:
    """Per packet kind, the packets and bytes as the stats name them."""
    kinds = {
        PacketType.DATA: "data",
        PacketType.PING: "ping",
        PacketType.PONG: "pong",
        PacketType.PMTUD: "pmtu",
        PacketType.PMTUD_REPLY: "pmtu",
    }
    counts: Counter[tuple[str, str]] = Counter()
    for datagram in datagrams:
        kind = kinds[decode_header_untrusted(datagram.data).type]
        counts[(kind, "packets")] += 1
        counts[(kind, "bytes")] += len(datagram.data)
    return counts


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
def test_link_packet_and_byte_counters_match_the_wire(crypto: bool) -> None:
    """Per-link tx/rx packets and bytes per type equal the wire; latency follows each link."""
    net = FakeNetwork(seed=16)
    for link, one_way in ((0, 100_000), (1, 2 * MS)):
        net.path(endpoint(1, link), endpoint(2, link)).delay_ns = one_way
        net.path(endpoint(2, link), endpoint(1, link)).delay_ns = one_way
    a, b = cluster(
        net, [1, 2], links=(0, 1), policy=LinkPolicy.ACTIVE, key=KEY1 if crypto else None
    ).values()
    net.run_for(10 * SEC)
    for size in (1, 100, 1000, 20_000, 65_536):
        a.send(bytes(size), net.now)
        b.send(bytes(size), net.now)
    net.run_until(net.now - net.now % SEC + SEC // 2)  # between pings: nothing in flight
    assert len([e for e in net.received(1) if e.src_host == 2]) == 5
    assert len([e for e in net.received(2) if e.src_host == 1]) == 5

    for sender, receiver in ((a, b), (b, a)):
        for link in (0, 1):
            local = endpoint(sender.host_id, link)
            wire = _wire_counts(
                d
                for h, d in net.sent
                if h == sender.host_id and (d.local.ip, d.local.port) == local
            )
            tx = sender.link_status(receiver.host_id, link).stats
            rx = receiver.link_status(sender.host_id, link).stats
            for kind in ("data", "ping", "pong", "pmtu"):
                for unit in ("packets", "bytes"):
                    assert wire[(kind, unit)] > 0
                    assert tx[f"tx_{kind}_{unit}"] == wire[(kind, unit)], (kind, unit)
                    if kind == "ping" and crypto and unit == "packets":
                        # A ping in flight when the receiver verified the sender's
                        # instance (by a fresh pong) predates that proof: it is refused
                        # as a possible replay and counted as such.
                        refused = rx["rx_replayed"]
                        assert refused <= 2
                        assert rx["rx_ping_packets"] + refused == wire[(kind, unit)]
                        continue
                    if kind == "ping" and crypto:
                        continue
                    assert rx[f"rx_{kind}_{unit}"] == wire[(kind, unit)], (kind, unit)
            kinds = ("data", "ping", "pong", "pmtu")
            assert tx["tx_total_packets"] == sum(wire[(k, "packets")] for k in kinds)
            if not crypto:
                assert rx["rx_total_bytes"] == sum(wire[(k, "bytes")] for k in kinds)
            assert tx["tx_ping_bytes"] == tx["tx_ping_packets"] * (HEADER_SIZE + 16 + crypto * TAG)
            assert rx["rx_invalid_packets"] == rx["rx_auth_failures"] == 0
    for core, peer in ((a, 2), (b, 1)):
        fast = core.link_status(peer, 0).stats
        slow = core.link_status(peer, 1).stats
        assert fast["latency_min_us"] == fast["latency_max_us"] == fast["latency_ave_us"] == 200
        assert slow["latency_min_us"] == slow["latency_max_us"] == slow["latency_ave_us"] == 4000
        assert fast["latency_samples"] >= 5


def test_send_errors_and_invalid_packets_are_counted_per_link() -> None:
    """EMSGSIZE send errors and invalid received packets are counted per link."""
    net = FakeNetwork(seed=17)
    net.path(endpoint(1, 0), endpoint(2, 0)).mtu = 1500
    a, b = cluster(net, [1, 2]).values()
    net.run_for(10 * SEC)
    stats = a.link_status(2, 0).stats
    assert stats["tx_emsgsize_errors"] > 0
    assert stats["tx_total_errors"] == stats["tx_emsgsize_errors"]
    assert b.link_status(1, 0).stats["tx_emsgsize_errors"] == 0
    net.inject(endpoint(1, 0), endpoint(2, 0), b"\x01garbage")
    assert b.link_status(1, 0).stats["rx_invalid_packets"] == 1
    assert b.stats()["rx_malformed"] == 1


@pytest.mark.parametrize("timed", [False, True], ids=["no-perf-counter", "perf-counter"])
def test_handle_crypto_and_compression_counters_and_times(timed: bool) -> None:
    """Handle crypto/compression counters follow traffic; times only with a perf counter."""
    net = FakeNetwork(seed=18)
    perf = {h: fake_perf_counter(3000) for h in (1, 2)} if timed else {}
    cores = {}
    for host_id in (1, 2):
        cores[host_id] = net.add_core(host_id, perf_counter_ns=perf.get(host_id))
        configure(net, cores[host_id], [1, 2])
        cores[host_id].set_crypto_config(1, CryptoConfig(KEY1))
        cores[host_id].use_crypto_config(1)
        cores[host_id].set_compression(CompressionConfig(CompressionModel.ZLIB, threshold=100))
    a, b = cores[1], cores[2]
    net.run_for(10 * SEC)
    payload = b"compress me please " * 50
    for _ in range(3):
        a.send(payload, net.now)
    a.send(b"short", net.now)
    net.run_until(net.now - net.now % SEC + SEC // 2)
    assert [e.payload for e in net.received(2)] == [payload] * 3 + [b"short"]

    sa, sb = a.stats(), b.stats()
    a_sent = sent_by(net, 1)
    assert sa["tx_crypt_packets"] == len(a_sent)
    assert sa["tx_crypt_byte_overhead"] == TAG * len(a_sent)
    assert sb["rx_crypt_packets"] == len(a_sent)
    assert sa["tx_compressed_packets"] == 3
    assert sa["tx_uncompressed_packets"] == 1
    assert sa["tx_compressed_original_bytes"] == 3 * len(payload)
    assert 0 < sa["tx_compressed_size_bytes"] < len(payload)
    assert sb["rx_compressed_packets"] == 3
    assert sb["rx_compressed_original_bytes"] == 3 * len(payload)
    assert sb["rx_compressed_size_bytes"] == sa["tx_compressed_size_bytes"]

    timings = [
        (sa, "tx_crypt"),
        (sb, "rx_crypt"),
        (sa, "tx_compress"),
        (sb, "rx_decompress"),
    ]
    expected = 3 if timed else 0  # every measurement spans exactly one 3 us tick
    for stats, name in timings:
        for what in ("min", "max", "ave"):
            assert stats[f"{name}_time_{what}_us"] == expected, (name, what)


def test_packets_recorded_before_a_receiver_restart_are_never_delivered() -> None:
    """Replay to a restarted receiver: data recorded before it restarted is refused,
    because a peer instance is trusted only after a pong answering one of our pings."""
    net = FakeNetwork(seed=21)
    cluster(net, [1, 2], key=KEY1, instances={1: 10_000, 2: 20_000})
    net.run_for(10 * SEC)
    start = len(net.sent)
    for i in range(5):
        net.cores[2].send(numbered(i), net.now)
    net.run_for(10 * MS)
    recorded = of_type(sent_by(net, 2, start), PacketType.DATA)
    assert len(recorded) == 5

    a = _restart(net, 1, [1, 2], instance=30_000)  # the receiver restarts
    for datagram in recorded:  # replayed at once: host 2's instance is not verified yet
        net.inject(datagram.local, datagram.remote, datagram.data)
    assert numbers_received(net, 1, 2) == [0, 1, 2, 3, 4]  # only the first run's
    assert a.stats()["rx_unverified_instance"] == 5
    net.run_for(10 * SEC)  # pings and pongs: host 2's instance is verified now
    assert a.host_status(2).reachable
    for datagram in recorded:  # replayed again after verification
        net.inject(datagram.local, datagram.remote, datagram.data)
    assert numbers_received(net, 1, 2) == [0, 1, 2, 3, 4]
    assert a.stats()["rx_replayed"] >= 5
    net.cores[2].send(numbered(7), net.now)  # live traffic still flows
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2)[-1] == 7


@pytest.mark.parametrize("crypto", [False, True], ids=["clear", "sealed"])
def test_spoofed_packet_with_a_new_instance_does_not_take_over_a_peer(crypto: bool) -> None:
    """A packet claiming a new instance of a peer is dropped (counted) and changes
    nothing unless it is a pong answering our own ping: the real peer keeps talking."""
    net = FakeNetwork(seed=22)
    a, _ = cluster(net, [1, 2], key=KEY1 if crypto else None, instances={1: 10, 2: 20}).values()
    net.run_for(10 * SEC)
    net.cores[2].send(numbered(1), net.now)
    net.run_for(10 * MS)
    data = of_type(sent_by(net, 2), PacketType.DATA)[-1]
    forged = bytearray(data.data)
    forged[8:16] = (1 << 63).to_bytes(8, "big")  # a huge instance id
    net.inject(data.local, data.remote, bytes(forged))
    assert a.stats()["rx_unverified_instance" if not crypto else "rx_auth_failures"] == 1
    net.cores[2].send(numbered(2), net.now)
    net.run_for(10 * MS)
    assert numbers_received(net, 1, 2) == [1, 2]
