"""knet under real failures: hosts in network namespaces, two veth links each.

Every host is a process (tests/knet_netns_agent.py) in a namespace of its own with two
links, each link a bridged L2 segment of its own (see ``NetnsLab`` in conftest.py).
Crypto is on (a shared authkey file) and the heartbeat timers are short (ping every
100 ms, timeout 400 ms, 2 pongs to come up) so failures are seen quickly.

Failures are real: ``ip link set l0 down`` inside a host's namespace, and random packet
loss on link 0. Loss uses ``tc netem`` when the kernel has the netem qdisc and falls
back to an nftables ``numgen random`` drop rule otherwise; the test prints which one
it used (``-s`` or the captured output of a failure shows it).

The time bounds below are functional bounds (a link must be declared down at all,
well within a few ping timeouts), not performance assertions; the measured detection
times are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import NetnsLab

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
AGENT = Path(__file__).resolve().parent / "knet_netns_agent.py"
KNET_SRC = REPO / "packages" / "knet" / "src"

PING_INTERVAL_MS = 100
PING_TIMEOUT_MS = 400
PONG_COUNT = 2
PORT = 5405
#: A link must be reported down within this many seconds of the interface going down:
#: the ping timeout (0.4 s, backoff 1 on a fresh link) plus generous slack.
DETECT_BOUND_S = 3.0
#: ... and up again within this many seconds of the interface coming back.
RECOVER_BOUND_S = 5.0
RATE = 200  # stream messages per second


class AgentProcess:
    """Test-side handle of one agent: sends commands, collects its JSON-line events."""

    def __init__(self, lab: NetnsLab, host: int, config: dict[str, Any], log_dir: Path) -> None:
        self.host = host
        self.stderr_path = log_dir / f"agent{host}.stderr"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(KNET_SRC), *filter(None, [env.get("PYTHONPATH")])])
        with self.stderr_path.open("wb") as stderr:
            self.proc = lab.popen(
                host,
                [
                    sys.executable,
                    str(AGENT),
                    "--host-id",
                    str(host),
                    "--config",
                    json.dumps(config),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._eof = False
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._cond:
                if "reply" in message:
                    self._replies[message["reply"]] = message
                else:
                    self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _dead(self, what: str) -> AssertionError:
        tail = self.stderr_path.read_text(errors="replace")[-3000:]
        return AssertionError(f"agent {self.host}: {what}; stderr tail:\n{tail}")

    def request(self, cmd: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send one command and return its reply."""
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": request_id, "cmd": cmd, **fields}).encode() + b"\n")
        self.proc.stdin.flush()
        with self._cond:
            if not self._cond.wait_for(
                lambda: request_id in self._replies or self._eof, timeout=timeout
            ):
                raise self._dead(f"no reply to {cmd!r} within {timeout} s")
            if request_id not in self._replies:
                raise self._dead(f"exited before replying to {cmd!r}")
            reply = self._replies.pop(request_id)
        if not reply["ok"]:
            raise AssertionError(f"agent {self.host}: {cmd!r} failed: {reply['error']}")
        return reply

    def mark(self) -> int:
        """A position in the event list: ``wait_event(since=mark)`` looks after it."""
        with self._cond:
            return len(self.events)

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], *, timeout: float, since: int = 0
    ) -> dict[str, Any]:
        """The first event after ``since`` that ``match`` accepts, waiting for it."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [ev for ev in self.events[since:] if match(ev)][:1]
            return bool(found) or self._eof

        with self._cond:
            self._cond.wait_for(seen, timeout=timeout)
        if not found:
            raise self._dead(f"expected event not seen within {timeout} s")
        return found[0]

    def received(self, src: int) -> list[dict[str, Any]]:
        """Every ``rx`` event from ``src`` so far, in delivery order."""
        with self._cond:
            return [ev for ev in self.events if ev["ev"] == "rx" and ev["src"] == src]

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def link(self, peer: int, link: int) -> dict[str, Any]:
        info: dict[str, Any] = self.status()["hosts"][str(peer)]["links"][str(link)]
        return info

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # the agent exits when its stdin closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        self.proc.stdout.close()


class KnetCluster:
    """One agent per lab host, every pair of hosts joined by every lab link."""

    def __init__(self, lab: NetnsLab, policy: str, tmp_path: Path) -> None:
        self.lab = lab
        key_file = tmp_path / "authkey"
        key_file.write_bytes(os.urandom(256))
        config = {
            "hosts": {
                str(host): [lab.address(host, link) for link in lab.links] for host in lab.hosts
            },
            "port": PORT,
            "policy": policy,
            "key_file": str(key_file),
            "ping_interval_ms": PING_INTERVAL_MS,
            "ping_timeout_ms": PING_TIMEOUT_MS,
            "pong_count": PONG_COUNT,
        }
        self.agents: dict[int, AgentProcess] = {}
        for host in lab.hosts:
            self.agents[host] = AgentProcess(lab, host, config, tmp_path)
        for agent in self.agents.values():
            agent.wait_event(lambda ev: ev["ev"] == "ready", timeout=20)

    def __getitem__(self, host: int) -> AgentProcess:
        return self.agents[host]

    def peers(self, host: int) -> list[int]:
        return [peer for peer in self.lab.hosts if peer != host]

    def wait_all_links_up(self, timeout: float = 10.0) -> None:
        """Until every agent has every link to every peer connected."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [
                (host, peer, link)
                for host, agent in self.agents.items()
                for peer, state in agent.status()["hosts"].items()
                for link, info in state["links"].items()
                if not info["connected"]
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"links (host, peer, link) still down: {pending}")
            time.sleep(0.05)

    def wait_link_events(
        self,
        kind: str,
        link: int,
        pairs: list[tuple[int, int]],
        since: dict[int, int],
        timeout: float,
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """For each (host, peer): host's first ``kind`` event about ``link`` to peer."""
        found = {}
        for host, peer in pairs:

            def match(ev: dict[str, Any], peer: int = peer) -> bool:
                return bool(ev["ev"] == kind and ev["host"] == peer and ev["link"] == link)

            found[(host, peer)] = self.agents[host].wait_event(
                match, timeout=timeout, since=since[host]
            )
        return found

    def marks(self) -> dict[int, int]:
        return {host: agent.mark() for host, agent in self.agents.items()}

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()


@pytest.fixture
def knet_cluster(
    netns_lab: Callable[..., NetnsLab], tmp_path: Path
) -> Iterator[Callable[..., KnetCluster]]:
    """A factory ``make(n_hosts, policy, mtus=(1500, 1500)) -> KnetCluster``."""
    clusters: list[KnetCluster] = []

    def make(n_hosts: int, policy: str, mtus: tuple[int, ...] = (1500, 1500)) -> KnetCluster:
        lab = netns_lab(n_hosts, mtus)
        cluster = KnetCluster(lab, policy, tmp_path)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()


def wait_complete(receiver: AgentProcess, src: int, seqs: set[int], timeout: float = 5.0) -> None:
    """Until ``receiver`` has delivered every seq of ``seqs`` from ``src`` (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seqs <= {ev["seq"] for ev in receiver.received(src)}:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # late copies over the other link would show up as duplicates now


def delivery_report(
    receiver: AgentProcess, src: int, last_seq: int
) -> tuple[set[int], Counter[int]]:
    """(missing seqs, delivery count per seq) of the stream ``src`` sent to ``receiver``."""
    events = receiver.received(src)
    corrupt = [ev["seq"] for ev in events if not ev["ok"]]
    assert not corrupt, f"host {receiver.host} got corrupted payloads from {src}: {corrupt}"
    counts = Counter(ev["seq"] for ev in events)
    missing = set(range(1, last_seq + 1)) - set(counts)
    return missing, counts


def test_passive_link_failover_and_recovery(knet_cluster: Callable[..., KnetCluster]) -> None:
    """Passive mode, 3 hosts: l0 down is detected, traffic moves to link 1, l0 comes back."""
    cluster = knet_cluster(3, "passive")
    cluster.wait_all_links_up()
    a1, a2, a3 = cluster[1], cluster[2], cluster[3]
    # Passive with equal priorities: the lowest link id carries the data.
    assert a2.status()["hosts"]["1"]["active_links"] == [0]

    a1.request("stream", to=[2, 3], rate=RATE, size=300)
    a2.request("stream", to=[1], rate=RATE, size=300)
    time.sleep(0.5)
    before = {1: a1.status()["stream_seq"], 2: a2.status()["stream_seq"]}
    since = cluster.marks()
    t_down = time.monotonic()
    cluster.lab.set_link_state(1, 0, up=False)

    pairs = [(1, 2), (1, 3), (2, 1), (3, 1)]
    downs = cluster.wait_link_events("link_down", 0, pairs, since, timeout=DETECT_BOUND_S + 2)
    detect = {pair: ev["t"] - t_down for pair, ev in downs.items()}
    print(f"passive: link 0 down detected after (s) {detect}")
    assert all(0 < seconds < DETECT_BOUND_S for seconds in detect.values()), detect
    assert {ev["reason"] for ev in downs.values()} == {"TIMEOUT"}

    # Host 1 is still reachable over link 1, which now carries the data both ways;
    # link 0 between hosts 2 and 3 did not fail and still carries theirs.
    status1, status2 = a1.status(), a2.status()
    assert status1["hosts"]["2"]["active_links"] == [1]
    assert status1["hosts"]["3"]["active_links"] == [1]
    assert status2["hosts"]["1"]["active_links"] == [1]
    assert status2["hosts"]["3"]["active_links"] == [0]
    assert status2["hosts"]["1"]["reachable"]
    time.sleep(0.7)

    since = cluster.marks()
    rx_link0_before_up = a2.link(1, 0)["rx_data_packets"]
    t_up = time.monotonic()
    cluster.lab.set_link_state(1, 0, up=True)
    ups = cluster.wait_link_events("link_up", 0, pairs, since, timeout=RECOVER_BOUND_S + 2)
    recover = {pair: ev["t"] - t_up for pair, ev in ups.items()}
    print(f"passive: link 0 up again after (s) {recover}")
    assert all(0 < seconds < RECOVER_BOUND_S for seconds in recover.values()), recover
    time.sleep(0.5)
    last = {1: a1.request("stream_stop")["last_seq"], 2: a2.request("stream_stop")["last_seq"]}

    # Failback: link 0 is the best link again and carries host 1's data.
    assert a2.status()["hosts"]["1"]["active_links"] == [0]
    assert a2.link(1, 0)["rx_data_packets"] > rx_link0_before_up

    for src, receiver in ((1, a2), (1, a3), (2, a1)):
        wait_complete(receiver, src, {last[src]})
        missing, counts = delivery_report(receiver, src, last[src])
        # The sender switches to link 1 when it declares link 0 down: what it sent
        # before the failure or after its down event arrives; only what was in flight
        # on link 0 in between may be lost (passive mode sends on one link only).
        sender_down_seq = downs[(src, receiver.host)]["stream_seq"]
        print(
            f"passive: {src}->{receiver.host}: sent {last[src]}, lost {len(missing)} "
            f"(window {before[src]}..{sender_down_seq})"
        )
        assert all(before[src] - 5 < seq <= sender_down_seq for seq in missing), sorted(missing)
        assert len(missing) <= sender_down_seq - before[src] + 5
        assert max(counts.values()) == 1, "a payload was delivered twice"

    # Hosts 2 and 3 never lost link 0 between them.
    for host, peer in ((2, 3), (3, 2)):
        assert not [
            ev for ev in cluster[host].events if ev["ev"] == "link_down" and ev["host"] == peer
        ]


def test_active_link_down_delivers_everything_once(
    knet_cluster: Callable[..., KnetCluster],
) -> None:
    """Active mode: a stream across l0 down and up arrives complete, each payload once."""
    cluster = knet_cluster(2, "active")
    cluster.wait_all_links_up()
    a1, a2 = cluster[1], cluster[2]
    assert a1.status()["hosts"]["2"]["active_links"] == [0, 1]

    a1.request("stream", to=[2], rate=RATE, size=300, big_every=10, big_size=4000)
    a2.request("stream", to=[1], rate=RATE, size=300)
    time.sleep(0.5)
    since = cluster.marks()
    t_down = time.monotonic()
    cluster.lab.set_link_state(1, 0, up=False)
    downs = cluster.wait_link_events(
        "link_down", 0, [(1, 2), (2, 1)], since, timeout=DETECT_BOUND_S + 2
    )
    detect = {pair: ev["t"] - t_down for pair, ev in downs.items()}
    print(f"active: link 0 down detected after (s) {detect}")
    assert all(0 < seconds < DETECT_BOUND_S for seconds in detect.values()), detect
    assert a1.status()["hosts"]["2"]["active_links"] == [1]
    time.sleep(0.7)

    since = cluster.marks()
    t_up = time.monotonic()
    cluster.lab.set_link_state(1, 0, up=True)
    ups = cluster.wait_link_events(
        "link_up", 0, [(1, 2), (2, 1)], since, timeout=RECOVER_BOUND_S + 2
    )
    print(f"active: link 0 up again after (s) { {p: e['t'] - t_up for p, e in ups.items()} }")
    assert all(ev["t"] - t_up < RECOVER_BOUND_S for ev in ups.values())
    time.sleep(0.5)
    last = {1: a1.request("stream_stop")["last_seq"], 2: a2.request("stream_stop")["last_seq"]}

    for src, receiver in ((1, a2), (2, a1)):
        wait_complete(receiver, src, set(range(1, last[src] + 1)))
        missing, counts = delivery_report(receiver, src, last[src])
        duplicates = {seq: n for seq, n in counts.items() if n > 1}
        print(f"active: {src}->{receiver.host}: sent {last[src]}, lost {len(missing)}")
        assert not missing, f"lost in active mode: {sorted(missing)}"
        assert not duplicates, f"delivered more than once: {duplicates}"
        # Both links carried copies: the receiver dropped the second copy of each.
        links = receiver.status()["hosts"][str(src)]["links"]
        assert links["0"]["rx_duplicates"] + links["1"]["rx_duplicates"] > 0


def test_active_with_packet_loss_delivers_everything_once(
    knet_cluster: Callable[..., KnetCluster],
) -> None:
    """Active mode with 25% random loss on link 0: every payload arrives exactly once."""
    cluster = knet_cluster(2, "active")
    cluster.wait_all_links_up()
    a1, a2 = cluster[1], cluster[2]
    methods = {cluster.lab.add_packet_loss(host, 0, 25) for host in (1, 2)}
    print(f"loss on link 0 injected with: {', '.join(sorted(methods))}")

    # Every 4th payload is fragmented, so lost fragments on link 0 are covered too.
    a1.request("stream", to=[2], rate=250, size=300, big_every=4, big_size=3000)
    a2.request("stream", to=[1], rate=250, size=300, big_every=4, big_size=3000)
    time.sleep(2.0)
    last = {1: a1.request("stream_stop")["last_seq"], 2: a2.request("stream_stop")["last_seq"]}

    for src, receiver in ((1, a2), (2, a1)):
        wait_complete(receiver, src, set(range(1, last[src] + 1)))
        missing, counts = delivery_report(receiver, src, last[src])
        duplicates = {seq: n for seq, n in counts.items() if n > 1}
        assert not missing, f"lost despite link 1: {sorted(missing)}"
        assert not duplicates, f"delivered more than once: {duplicates}"
        sent0 = cluster[src].link(receiver.host, 0)["tx_data_packets"]
        got0 = receiver.link(src, 0)["rx_data_packets"]
        print(f"loss: {src}->{receiver.host}: {last[src]} payloads, link 0 got {got0}/{sent0}")
        # The loss was real: link 0 alone would have lost payloads.
        assert got0 < 0.9 * sent0


def test_pmtu_follows_the_smallest_link(knet_cluster: Callable[..., KnetCluster]) -> None:
    """PMTUd over MTU 1500 and 9000 links: data MTU is the minimum over up links."""
    cluster = knet_cluster(2, "passive", mtus=(1500, 9000))
    cluster.wait_all_links_up()
    a1, a2 = cluster[1], cluster[2]
    ipv4_udp = 28

    def mtus(agent: AgentProcess, peer: int) -> tuple[int, int]:
        links = agent.status()["hosts"][str(peer)]["links"]
        return links["0"]["mtu"], links["1"]["mtu"]

    deadline = time.monotonic() + 10
    while True:
        found = {1: mtus(a1, 2), 2: mtus(a2, 1)}
        done = all(
            1500 - ipv4_udp - 4 <= m0 <= 1500 - ipv4_udp
            and 9000 - ipv4_udp - 4 <= m1 <= 9000 - ipv4_udp
            for m0, m1 in found.values()
        )
        if done:
            break
        assert time.monotonic() < deadline, f"PMTUd did not settle: {found}"
        time.sleep(0.1)
    print(f"pmtu: link MTUs (link 0, link 1) per host: {found}")
    data_mtu = a1.status()["data_mtu"]
    link0_mtu, link1_mtu = found[1]
    # Data MTU is link 0's minus knet's headers and the crypto tag.
    assert link0_mtu - 100 < data_mtu < link0_mtu

    # A 60 KiB payload crosses in fragments of the data MTU.
    a1.request("send", to=[2], seq=1, size=60000)
    big = a2.wait_event(lambda ev: ev["ev"] == "rx" and ev["seq"] == 1, timeout=5)
    assert big["ok"]
    assert big["size"] == 60000

    # Without link 0 the minimum is link 1's: the data MTU grows by the difference.
    since = cluster.marks()
    cluster.lab.set_link_state(1, 0, up=False)
    change = a1.wait_event(lambda ev: ev["ev"] == "data_mtu", timeout=5, since=since[1])
    assert (change["previous"], change["data_mtu"]) == (data_mtu, data_mtu + link1_mtu - link0_mtu)
    assert a1.status()["data_mtu"] == data_mtu + link1_mtu - link0_mtu

    since = cluster.marks()
    cluster.lab.set_link_state(1, 0, up=True)
    back = a1.wait_event(
        lambda ev: ev["ev"] == "data_mtu", timeout=RECOVER_BOUND_S + 2, since=since[1]
    )
    assert back["data_mtu"] == data_mtu
