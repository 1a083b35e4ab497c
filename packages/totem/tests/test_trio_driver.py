"""The trio driver (totem.open_node / TotemNode) over the in-process MemoryNetwork.

These tests run in trio's virtual time (the ``autojump_clock`` fixture): the clock
jumps to the next deadline whenever every task waits, so token timeouts of seconds
cost no real time, and "the ring reformed before the token timeout" is a statement
about protocol behaviour, not about machine speed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

import totem
from totem import (
    ConfigError,
    ConfigurationChange,
    ConfKind,
    Delivered,
    FileRingStore,
    GroupMessage,
    Guarantee,
    MembState,
    MemoryNetwork,
    MemoryRingStore,
    RingStore,
    TotemConfig,
    TotemError,
    TotemNode,
    open_node,
)

CONFIG = TotemConfig(token=1000, merge=200)  # consensus = 1200 ms (derived)
SRC_DIR = Path(totem.__file__).parent.parent


class Cluster:
    """Nodes on one MemoryNetwork, each in its own task and cancel scope."""

    def __init__(
        self,
        nursery: trio.Nursery,
        network: MemoryNetwork,
        *,
        node_count: int = 3,
        groups: bool = False,
        config: TotemConfig = CONFIG,
    ) -> None:
        self.nursery = nursery
        self.network = network
        self.node_count = node_count
        self.groups = groups
        self.config = config
        self.nodes: dict[int, TotemNode] = {}
        self.events: dict[int, list[object]] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        self.stores: dict[int, RingStore] = {}

    async def start(self, node_id: int) -> TotemNode:
        node: TotemNode = await self.nursery.start(self._run, node_id)
        return node

    async def _run(self, node_id: int, task_status: trio.TaskStatus[TotemNode]) -> None:
        store = self.stores.setdefault(node_id, MemoryRingStore())
        events: list[object] = []
        self.events[node_id] = events
        with trio.CancelScope() as scope, self.network.transport(node_id) as transport:
            self.scopes[node_id] = scope
            async with open_node(
                node_id,
                transport,
                node_count=self.node_count,
                config=self.config,
                store=store,
                groups=self.groups,
                rng=random.Random(node_id),
            ) as node:
                self.nodes[node_id] = node
                task_status.started(node)
                async for event in node.events():
                    events.append(event)  # noqa: PERF401 - read live while the node runs

    def kill(self, node_id: int) -> None:
        """Crash: cancel the node's task (no leave message)."""
        self.scopes[node_id].cancel()

    def formed(self, members: tuple[int, ...]) -> bool:
        """Every one of ``members`` is operational in a ring of exactly them, and its
        event list (filled by its task) already holds that REGULAR configuration."""
        return all(
            self.nodes[n].state is MembState.OPERATIONAL
            and self.nodes[n].members == members
            and any(c.ring_id == self.nodes[n].ring_id for c in self.regular(n))
            for n in members
        )

    def delivered(self, node_id: int) -> list[tuple[int, bytes]]:
        return [
            (event.sender, event.payload)
            for event in self.events[node_id]
            if isinstance(event, Delivered | GroupMessage)
        ]

    def regular(self, node_id: int) -> list[ConfigurationChange]:
        return [
            event
            for event in self.events[node_id]
            if isinstance(event, ConfigurationChange) and event.kind is ConfKind.REGULAR
        ]


async def wait_until(predicate: Callable[[], bool], seconds: float = 30) -> None:
    """Poll ``predicate`` every 10 ms of (virtual) time, failing after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.01)


async def start_cluster(cluster: Cluster, members: tuple[int, ...] = (1, 2, 3)) -> None:
    for node_id in members:
        await cluster.start(node_id)
    await wait_until(lambda: cluster.formed(members))


async def test_ring_forms_with_every_node(autojump_clock: trio.abc.Clock) -> None:
    """Three nodes form one ring: same ring id, every member, a REGULAR configuration."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(1)))
        with capture_logs() as logs:
            await start_cluster(cluster)
        ring_ids = {cluster.nodes[n].ring_id for n in (1, 2, 3)}
        assert len(ring_ids) == 1
        (ring_id,) = ring_ids
        assert ring_id.rep == 1
        for n in (1, 2, 3):
            last = cluster.regular(n)[-1]
            assert (last.ring_id, last.members) == (ring_id, (1, 2, 3))
        formed = [
            entry
            for entry in logs
            if entry["event"].startswith(f"A new membership ({ring_id}) was formed")
        ]
        assert {entry["node"] for entry in formed} == {1, 2, 3}
        assert all(entry["subsystem"] == "TOTEM" for entry in logs)
        nursery.cancel_scope.cancel()


async def test_agreed_order_is_identical_everywhere_under_loss(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With 10 % loss, every node delivers every message, in one identical order."""
    async with trio.open_nursery() as nursery:
        network = MemoryNetwork(rng=random.Random(2))
        cluster = Cluster(nursery, network)
        await start_cluster(cluster)
        for a in (1, 2, 3):
            for b in (1, 2, 3):
                if a != b:
                    network.set_loss(a, b, 0.1)
        sent = []
        for i in range(150):
            sender = 1 + i % 3
            payload = b"message %d" % i
            guarantee = Guarantee.SAFE if i % 5 == 0 else Guarantee.AGREED
            cluster.nodes[sender].mcast(payload, guarantee)
            sent.append((sender, payload))
            if i % 10 == 0:
                await trio.sleep(0.001)
        await wait_until(lambda: all(len(cluster.delivered(n)) == 150 for n in (1, 2, 3)))
        order = cluster.delivered(1)
        assert cluster.delivered(2) == order
        assert cluster.delivered(3) == order
        assert sorted(order) == sorted(sent)
        for n in (1, 2, 3):  # each sender's own messages stay in its sending order
            assert [p for s, p in order if s == n] == [p for s, p in sent if s == n]
        assert network.stats["lost"] > 0
        assert sum(cluster.nodes[n].stats["retransmits_sent"] for n in (1, 2, 3)) > 0
        nursery.cancel_scope.cancel()


async def test_groups_deliver_only_joined_groups(autojump_clock: trio.abc.Clock) -> None:
    """Each node receives exactly the messages of the groups it joined, in one order."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(3)), groups=True)
        await start_cluster(cluster)
        joined = {1: [b"a"], 2: [b"b"], 3: [b"a", b"b"]}
        for n, groups in joined.items():
            for group in groups:
                cluster.nodes[n].join(group)
        sent: list[tuple[int, tuple[bytes, ...], bytes]] = []
        for i in range(60):
            sender = 1 + i % 3
            groups = ((b"a",), (b"b",), (b"a", b"b"), (b"c",))[i % 4]
            payload = b"payload %d" % i
            cluster.nodes[sender].mcast_group(groups, payload)
            sent.append((sender, groups, payload))

        def expected(n: int) -> list[tuple[int, bytes]]:
            return [(s, p) for s, g, p in sent if set(g) & set(joined[n])]

        await wait_until(
            lambda: all(len(cluster.delivered(n)) == len(expected(n)) for n in (1, 2, 3))
        )
        everything = cluster.delivered(3)  # node 3 joined a and b: the reference order
        for n in (1, 2):
            mine = cluster.delivered(n)
            assert sorted(mine) == sorted(expected(n))
            assert mine == [m for m in everything if m in set(mine)]
        assert cluster.nodes[1].stats["pg_filtered_messages"] > 0
        cluster.nodes[3].leave_group(b"b")
        cluster.nodes[1].mcast_group([b"b"], b"after leaving b")
        await wait_until(lambda: cluster.delivered(2)[-1] == (1, b"after leaving b"))
        await trio.sleep(1)
        assert (1, b"after leaving b") not in cluster.delivered(3)
        nursery.cancel_scope.cancel()


async def test_one_mebibyte_group_message_is_fragmented_and_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A 1 MiB message travels as many totem messages and arrives whole everywhere."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(4), loss=0.02), groups=True)
        await start_cluster(cluster)
        for n in (1, 2, 3):
            cluster.nodes[n].join(b"big")
        payload = random.Random(5).randbytes(1 << 20)
        cluster.nodes[2].mcast_group([b"big"], payload, Guarantee.AGREED)
        cluster.nodes[2].mcast_group([b"big"], b"small one after")
        cluster.nodes[1].mcast_group([b"big"], b"from another node")
        await wait_until(lambda: all(len(cluster.delivered(n)) == 3 for n in (1, 2, 3)))
        order = cluster.delivered(1)
        assert [m for m in order if m[0] == 2] == [(2, payload), (2, b"small one after")]
        assert (1, b"from another node") in order
        assert cluster.delivered(2) == cluster.delivered(3) == order
        stats = cluster.nodes[2].stats
        assert stats["pg_fragments"] >= (1 << 20) // cluster.nodes[2].core.max_payload
        assert stats["messages_originated"] > 16
        nursery.cancel_scope.cancel()


async def test_clean_leave_reforms_without_waiting_for_the_token_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """After leave(), the others install a ring without the leaver well before a token
    timeout could have noticed it, and no token was declared lost."""
    config = TotemConfig(token=10_000, merge=200)  # a token loss would take 10 s
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(6)), config=config)
        await start_cluster(cluster)
        left_at = trio.current_time()
        await cluster.nodes[3].leave()
        assert cluster.nodes[3].state is MembState.STOPPED
        with pytest.raises(TotemError, match="stopped"):
            cluster.nodes[3].mcast(b"too late")
        await wait_until(lambda: cluster.formed((1, 2)))
        assert trio.current_time() - left_at < config.token / 1000
        for n in (1, 2):
            last = cluster.regular(n)[-1]
            assert (last.members, last.left) == ((1, 2), (3,))
            assert cluster.nodes[n].stats["token_lost"] == 0
            assert cluster.nodes[n].stats["leaves_received"] >= 1
        nursery.cancel_scope.cancel()


async def test_leaving_the_block_normally_leaves_cleanly(autojump_clock: trio.abc.Clock) -> None:
    """Exiting open_node's block without an exception sends the leave message."""
    network = MemoryNetwork(rng=random.Random(7))
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, network)
        await start_cluster(cluster, (1, 2))
        with network.transport(3) as transport:
            async with open_node(3, transport, node_count=3, config=CONFIG) as node:
                await wait_until(
                    lambda: (
                        node.state is MembState.OPERATIONAL
                        and node.members == (1, 2, 3)
                        and all(cluster.regular(n)[-1].members == (1, 2, 3) for n in (1, 2))
                    )
                )
        await wait_until(lambda: cluster.formed((1, 2)))
        assert cluster.nodes[1].stats["leaves_received"] >= 1
        assert cluster.nodes[1].stats["token_lost"] == 0
        nursery.cancel_scope.cancel()


async def test_crashed_node_is_removed_and_restarted_node_rejoins(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A node cancelled without leave is removed by token loss; restarted with its
    ring store it rejoins with a larger ring id, and everyone delivers the same."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(8)))
        await start_cluster(cluster)
        first_ring = cluster.nodes[1].ring_id
        cluster.kill(3)
        await wait_until(lambda: cluster.formed((1, 2)))
        for n in (1, 2):
            assert cluster.regular(n)[-1].left == (3,)
            assert cluster.nodes[n].stats["leaves_received"] == 0
        assert max(cluster.nodes[n].stats["token_lost"] for n in (1, 2)) >= 1
        assert cluster.stores[3].load() == first_ring.seq
        await cluster.start(3)
        await wait_until(lambda: cluster.formed((1, 2, 3)))
        ring = cluster.nodes[3].ring_id
        assert ring.seq > first_ring.seq
        assert cluster.regular(1)[-1].joined == (3,)
        for n in (1, 2, 3):
            cluster.nodes[n].mcast(b"after restart from %d" % n)
        await wait_until(lambda: all(len(cluster.delivered(n)) >= 3 for n in (1, 2)))
        await wait_until(lambda: len(cluster.delivered(3)) == 3)
        assert cluster.delivered(1)[-3:] == cluster.delivered(2)[-3:] == cluster.delivered(3)
        nursery.cancel_scope.cancel()


async def test_restart_with_a_file_store_never_reuses_a_ring_id(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """A FileRingStore keeps the ring seq across a restart: the next ring is newer."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, MemoryNetwork(rng=random.Random(9)))
        cluster.stores[2] = FileRingStore(tmp_path / "ringid_2")
        await start_cluster(cluster, (1, 2))
        seq = cluster.nodes[2].ring_id.seq
        assert FileRingStore(tmp_path / "ringid_2").load() == seq
        cluster.kill(2)
        await wait_until(lambda: cluster.formed((1,)))
        cluster.stores[2] = FileRingStore(tmp_path / "ringid_2")  # a fresh process
        await cluster.start(2)
        await wait_until(lambda: cluster.formed((1, 2)))
        assert cluster.nodes[2].ring_id.seq > seq
        assert FileRingStore(tmp_path / "ringid_2").load() == cluster.nodes[2].ring_id.seq
        nursery.cancel_scope.cancel()


async def test_raw_and_group_apis_refuse_each_other(autojump_clock: trio.abc.Clock) -> None:
    """A raw node has no group API, a group node no raw mcast; ids must match."""
    network = MemoryNetwork()
    with network.transport(1) as transport:
        async with open_node(1, transport, node_count=1, config=CONFIG) as raw:
            with pytest.raises(TotemError, match="groups=True"):
                raw.join(b"a")
            with pytest.raises(TotemError, match="groups=True"):
                raw.mcast_group([b"a"], b"x")
            assert raw.events() is raw.events()
    with network.transport(1) as transport:
        async with open_node(1, transport, node_count=1, config=CONFIG, groups=True) as grouped:
            with pytest.raises(TotemError, match="mcast_group"):
                grouped.mcast(b"x")
    with network.transport(2) as transport, pytest.raises(ConfigError, match="runs as node 2"):
        async with open_node(1, transport, node_count=1):
            pass


async def test_single_node_delivers_to_itself(autojump_clock: trio.abc.Clock) -> None:
    """A lone node forms a singleton ring and delivers its own messages in order."""
    network = MemoryNetwork()
    with network.transport(1) as transport:
        async with open_node(1, transport, node_count=1, config=CONFIG) as node:
            events = node.events()
            first = await events.receive()
            assert isinstance(first, ConfigurationChange)
            assert first.members == (1,)
            for i in range(5):
                node.mcast(b"%d" % i)
            got = [await events.receive() for _ in range(5)]
            assert [e.payload for e in got if isinstance(e, Delivered)] == [
                b"%d" % i for i in range(5)
            ]


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in an interpreter where importing trio, socket or knet fails."""
    prelude = textwrap.dedent(
        """
        import sys
        for name in ("trio", "socket", "knet"):
            assert name not in sys.modules, name
            sys.modules[name] = None  # any import of it now raises ImportError
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_core_and_package_import_without_trio_socket_or_knet() -> None:
    """``import totem`` and the sans-IO core work with trio, socket and knet unimportable;
    the driver is refused there (the control), so the check is real."""
    result = run_blocked(
        """
        import random
        import totem, totem._srp, totem._pg, totem._store
        core = totem.TotemCore(1, node_count=1, rng=random.Random(1))
        core.start(0)
        core.mcast(b"no trio here", now=0)
        for _ in range(100):
            deadline = core.next_deadline()
            if deadline is not None:
                core.handle_timeouts(deadline)
        payloads = [e.payload for e in core.drain().events if isinstance(e, totem.Delivered)]
        assert payloads == [b"no trio here"], payloads
        assert not {"totem._trio", "totem._transport", "totem._udp"} & set(sys.modules)
        try:
            totem.open_node
        except ImportError:
            print("core ok, driver refused")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "core ok, driver refused"


def test_driver_and_udp_transport_do_not_import_knet() -> None:
    """Only the optional knet adapter imports knet: the driver and UDP never do."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["knet"] = None
        import totem
        totem.open_node, totem.UdpTransport, totem.MemoryNetwork, totem.LossyTransport
        try:
            totem.KnetTransport
        except ImportError as exc:
            print("adapter needs knet:", "pycorosync-totem[knet]" in str(exc))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "adapter needs knet: True"
