"""Totem over knet on real loopback sockets, with loss injected in the transport.

Each node runs a knet handle (crypto on) with two links to every peer: link 0 on
127.0.0.N and link 1 on 127.0.1.N, each on its own kernel-chosen port, and a Totem node
over a :class:`KnetTransport` wrapped in a :class:`LossyTransport` that drops 10 % of
what the node sends (tokens, joins, commit tokens and messages alike). The ring id of
every node lives in a :class:`FileRingStore` in ``tmp_path``.

The scenario, for 3 and for 5 nodes: the ring forms; every node multicasts and all
deliver the same agreed order (full delivered sequences compared); one node is killed
(its task cancelled: no leave message) and the survivors install a regular
configuration without it; it restarts (new knet handle, new Totem node, same ring id
file) and rejoins; every node sees the configuration changes and keeps delivering one
order. Timers are short (token 400 ms, consensus derived; knet pings every 50 ms,
timeout 200 ms, 2 pongs), every wait is bounded.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import knet
from totem import (
    ConfigurationChange,
    ConfKind,
    Delivered,
    FileRingStore,
    Guarantee,
    KnetTransport,
    LossyTransport,
    MembState,
    TotemConfig,
    TotemNode,
    open_node,
)

FAST_LINK = knet.LinkOptions(ping_interval_ms=50, ping_timeout_ms=200, pong_count=2)
CONFIG = TotemConfig(token=400, token_coefficient=50, merge=200)
LOSS = 0.1
WAIT_S = 20.0  # generous bound for any one step on a loaded machine


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def link_ip(node: int, link: int) -> str:
    return f"127.0.{link}.{node}"


class RealCluster:
    """Totem nodes over knet handles; every incarnation of a node keeps its events."""

    def __init__(self, nursery: trio.Nursery, size: int, tmp_path: Path) -> None:
        self.nursery = nursery
        self.size = size
        self.all = tuple(range(1, size + 1))
        self.tmp_path = tmp_path
        self.crypto = knet.CryptoConfig(key=knet.generate_authkey())
        self.ports = {
            (node, link): free_port(link_ip(node, link)) for node in self.all for link in (0, 1)
        }
        self.nodes: dict[int, TotemNode] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        #: node -> one event list per incarnation
        self.runs: dict[int, list[list[object]]] = {node: [] for node in self.all}
        self.lossy: dict[int, LossyTransport] = {}

    def store(self, node: int) -> FileRingStore:
        return FileRingStore(self.tmp_path / f"ringid_{node}")

    async def start(self, node: int) -> None:
        await self.nursery.start(self._run, node)

    async def _run(self, node: int, task_status: trio.TaskStatus[None]) -> None:
        events: list[object] = []
        self.runs[node].append(events)
        incarnation = len(self.runs[node])
        with trio.CancelScope() as scope:
            self.scopes[node] = scope
            async with knet.open_handle(node, crypto=self.crypto) as handle:
                for peer in self.all:
                    if peer == node:
                        continue
                    handle.add_host(peer)
                    for link in (0, 1):
                        handle.set_link(
                            peer,
                            link,
                            local=(link_ip(node, link), self.ports[node, link]),
                            remote=(link_ip(peer, link), self.ports[peer, link]),
                            options=FAST_LINK,
                        )
                transport = LossyTransport(
                    KnetTransport(handle), LOSS, random.Random(1000 * incarnation + node)
                )
                self.lossy[node] = transport
                async with open_node(
                    node,
                    transport,
                    node_count=self.size,
                    config=CONFIG,
                    store=self.store(node),
                    rng=random.Random(node),
                ) as totem_node:
                    self.nodes[node] = totem_node
                    task_status.started()
                    async for event in totem_node.events():
                        events.append(event)  # noqa: PERF401 - read live while the node runs

    def kill(self, node: int) -> None:
        """Crash: cancel the node's task; no leave message is sent."""
        self.scopes[node].cancel()
        del self.nodes[node]

    def formed(self, members: tuple[int, ...]) -> bool:
        """Every one of ``members`` is operational in a ring of exactly them, and its
        event list (filled by its task) already holds that REGULAR configuration."""
        return all(
            node in self.nodes
            and self.nodes[node].state is MembState.OPERATIONAL
            and self.nodes[node].members == members
            and any(
                c.kind is ConfKind.REGULAR and c.ring_id == self.nodes[node].ring_id
                for c in self.confs(self.events(node))
            )
            for node in members
        )

    def events(self, node: int) -> list[object]:
        """The events of the node's current (last) incarnation."""
        return self.runs[node][-1]

    @staticmethod
    def delivered(events: list[object]) -> list[tuple[int, bytes, object, int]]:
        return [(e.sender, e.payload, e.ring_id, e.seq) for e in events if isinstance(e, Delivered)]

    @staticmethod
    def confs(events: list[object]) -> list[ConfigurationChange]:
        return [e for e in events if isinstance(e, ConfigurationChange)]

    def broadcast_round(self, tag: bytes, senders: tuple[int, ...], count: int) -> set[bytes]:
        """Every sender multicasts ``count`` messages (some SAFE, one large); returns
        the payloads."""
        payloads = set()
        for i in range(count):
            for node in senders:
                body = b"%s %d from %d" % (tag, i, node)
                if i == count // 2:
                    body += bytes(40_000)  # larger than one knet datagram: fragmented
                guarantee = Guarantee.SAFE if i % 4 == 0 else Guarantee.AGREED
                self.nodes[node].mcast(body, guarantee)
                payloads.add(body)
        return payloads

    def has_all(self, node: int, payloads: set[bytes]) -> bool:
        got = {payload for _s, payload, _r, _q in self.delivered(self.events(node))}
        return payloads <= got


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {WAIT_S} s waiting until {what}")


def regular_with(confs: list[ConfigurationChange], members: tuple[int, ...]) -> list[int]:
    """Indexes of REGULAR configurations with exactly ``members``."""
    return [i for i, c in enumerate(confs) if c.kind is ConfKind.REGULAR and c.members == members]


@pytest.mark.parametrize(("size", "victim"), [(3, 3), (5, 1)])
async def test_totem_over_knet_with_loss_kill_and_restart(
    size: int, victim: int, tmp_path: Path
) -> None:
    """Over knet with 10 % injected loss: one agreed order everywhere; a killed node is
    removed, a restarted one rejoins, and every node sees the configuration changes."""
    async with trio.open_nursery() as nursery:
        cluster = RealCluster(nursery, size, tmp_path)
        everyone = cluster.all
        survivors = tuple(n for n in everyone if n != victim)
        for node in everyone:
            await cluster.start(node)
        await wait_until(lambda: cluster.formed(everyone), f"all {size} nodes form one ring")

        # 1. One agreed order, with loss.
        first = cluster.broadcast_round(b"first", everyone, 12)
        await wait_until(
            lambda: all(cluster.has_all(n, first) for n in everyone), "first round delivered"
        )
        reference = cluster.delivered(cluster.events(1))
        for node in everyone:
            assert cluster.delivered(cluster.events(node)) == reference
        assert sum(cluster.lossy[n].dropped for n in everyone) > 0
        assert sum(cluster.nodes[n].stats["retransmits_sent"] for n in everyone) > 0

        # 2. Kill the victim: the survivors install a ring without it.
        ring_before_kill = cluster.nodes[victim].ring_id
        cluster.kill(victim)
        await wait_until(lambda: cluster.formed(survivors), "the survivors reform")
        for node in survivors:
            confs = cluster.confs(cluster.events(node))
            removed = [confs[i] for i in regular_with(confs, survivors)]
            assert removed
            assert victim in removed[-1].left
        second = cluster.broadcast_round(b"second", survivors, 6)
        await wait_until(
            lambda: all(cluster.has_all(n, second) for n in survivors), "second round delivered"
        )

        # 3. Restart it with the same ring id file: it rejoins with a newer ring.
        stored = cluster.store(victim).load()
        assert stored >= ring_before_kill.seq
        await cluster.start(victim)
        await wait_until(lambda: cluster.formed(everyone), "the restarted node rejoins")
        assert cluster.nodes[victim].ring_id.seq > stored
        third = cluster.broadcast_round(b"third", everyone, 6)
        await wait_until(
            lambda: all(cluster.has_all(n, third) for n in everyone), "third round delivered"
        )

        # 4. What every node saw.
        def changes_since_first_full_ring(events: list[object]) -> list[tuple[object, ...]]:
            """The configuration changes from the first ring of every node on. Before
            it each node had a singleton ring of its own while the links came up, so
            that first ring's ``joined`` differs per node: only its id is compared."""
            confs = cluster.confs(events)
            start = regular_with(confs, everyone)[0]
            return [
                (confs[start].ring_id,),
                *((c.kind, c.ring_id, c.members, c.left, c.joined) for c in confs[start + 1 :]),
            ]

        survivor_events = [cluster.events(n) for n in survivors]
        order = cluster.delivered(survivor_events[0])
        changes = changes_since_first_full_ring(survivor_events[0])
        for events in survivor_events[1:]:  # together all along: identical histories
            assert cluster.delivered(events) == order
            assert changes_since_first_full_ring(events) == changes
        survivor_confs = cluster.confs(survivor_events[0])
        removal = regular_with(survivor_confs, survivors)[0]
        rejoin = [
            i for i in regular_with(survivor_confs, everyone) if i > removal
        ]  # a regular configuration with everyone again, after the removal
        assert rejoin
        assert victim in survivor_confs[rejoin[0]].joined
        assert survivor_confs[removal].left == (victim,)

        first_life, second_life = cluster.runs[victim]
        first_order = cluster.delivered(first_life)
        assert first_order == order[: len(first_order)]  # a prefix: nothing else, no gap
        assert {p for _s, p, _r, _q in first_order} >= first
        final = cluster.confs(second_life)[-1]
        assert final.kind is ConfKind.REGULAR
        assert (final.ring_id, final.members) == (survivor_confs[-1].ring_id, everyone)
        in_final_ring = [d for d in order if d[2] == final.ring_id]
        assert [d for d in cluster.delivered(second_life) if d[2] == final.ring_id] == (
            in_final_ring
        )
        assert {p for _s, p, _r, _q in in_final_ring} >= third
        nursery.cancel_scope.cancel()
