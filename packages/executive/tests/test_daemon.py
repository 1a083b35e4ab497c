"""The daemon composed: several :class:`Daemon` s in one trio run, on loopback.

Each node has its own IPC prefix and state directory; node ``i`` owns
``127.0.<link+1>.<i>``. The clients talk to them over real IPC (worker threads).
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog.testing
import trio

from corosync import CmapMap, CmapValueType, CsError, CsErrorCode, cfg, cmap
from corosync.ipc import Credentials
from corosync_executive import ConfigSource, Daemon, ExecMessage, Service
from corosync_executive._cmap_store import ValueType
from daemon_lab import LoopbackCluster
from totem import Guarantee

pytestmark = pytest.mark.timeout(120)


class Running:
    """Daemons of a LoopbackCluster running in one nursery."""

    def __init__(self, nursery: trio.Nursery, lab: LoopbackCluster) -> None:
        self.nursery = nursery
        self.lab = lab
        self.daemons: dict[int, Daemon] = {}
        self.exit_status: dict[int, int] = {}
        self.scopes: dict[int, trio.CancelScope] = {}

    async def start(self, nodeid: int, *services: Service) -> Daemon:
        source = ConfigSource(
            str(self.lab.config_path(nodeid)), local_addresses=self.lab.local_addresses(nodeid)
        )
        daemon = Daemon(
            source,
            source.load(),
            ipc_prefix=self.lab.prefix(nodeid),
            handle_signals=False,
            extra_services=services,
        )
        self.daemons[nodeid] = daemon
        scope = trio.CancelScope()
        self.scopes[nodeid] = scope

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with scope:
                self.exit_status[nodeid] = await daemon.run(task_status=task_status)

        await self.nursery.start(run)
        return daemon

    def crash(self, nodeid: int) -> None:
        """Stop a node like kill -9: no leave."""
        self.scopes[nodeid].cancel()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.05)

    def all_links_up(self) -> bool:
        """Every configured knet link of every running node is connected."""
        for daemon in self.daemons.values():
            handle = daemon.handle
            if handle is None:
                return False
            for host, link in daemon._knet_links:
                if not handle.link_status(host, link).connected:
                    return False
        return True

    def members(self, nodeid: int) -> tuple[int, ...]:
        return self.daemons[nodeid].members

    async def call(self, fn: Callable[[], object]) -> object:
        return await trio.to_thread.run_sync(fn)


class Counter(Service):
    """A test service: remembers the sequence numbers it is delivered, per sender."""

    name = "test_counter"
    service_id = 40

    def __init__(self) -> None:
        self.seen: dict[int, list[int]] = {}

    def exec_deliver(self, message: ExecMessage) -> None:
        self.seen.setdefault(message.sender, []).append(int.from_bytes(message.payload, "big"))

    def send(self, number: int) -> None:
        self.ctx.mcast(self.service_id, 0, number.to_bytes(4, "big"), Guarantee.AGREED)


@asynccontextmanager
async def running_cluster(
    lab: LoopbackCluster, services: dict[int, Service] | None = None
) -> AsyncIterator[Running]:
    async with trio.open_nursery() as nursery:
        cluster = Running(nursery, lab)
        for nodeid in lab.node_ids:
            extra = (services[nodeid],) if services and nodeid in services else ()
            await cluster.start(nodeid, *extra)
        yield cluster
        for daemon in cluster.daemons.values():
            daemon.request_stop()


@pytest.fixture
def lab(tmp_path: Path) -> LoopbackCluster:
    return LoopbackCluster(tmp_path, nodes=3, links=2)


def everyone_sees(cluster: Running, members: tuple[int, ...]) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            cluster.members(n) == members and not cluster.daemons[n].sync.in_progress
            for n in members
        )

    return check


async def test_three_nodes_form_one_membership_with_cmap_keys(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))

        def read() -> dict[str, object]:
            with cmap.initialize(prefix=lab.prefix(2)) as handle:
                return {
                    "pos": handle.get("nodelist.local_node_pos"),
                    "status3": handle.get("runtime.members.3.status"),
                    "ip1": handle.get("runtime.members.1.ip"),
                    "svc": handle.get("internal_configuration.service.1.name"),
                    "token": handle.get("runtime.config.totem.token"),
                    "cluster": handle.get("totem.cluster_name"),
                }

        values = await cluster.call(read)
        assert values == {
            "pos": 1,
            "status3": "joined",
            "ip1": "r(0) ip(127.0.1.1) r(1) ip(127.0.2.1) ",
            "svc": "corosync_cfg",
            "token": 1000 + 650,
            "cluster": "lab",
        }

        def stats() -> dict[str, object]:
            with cmap.initialize(CmapMap.STATS, prefix=lab.prefix(1)) as handle:
                return {e.key: handle.get(e.key) for e in handle.iterate("stats.knet.node2.")}

        # The ring forms as soon as one link is up; wait for the other.
        with trio.fail_after(10):
            while True:
                knet_stats = await cluster.call(stats)
                links = (knet_stats.get(f"stats.knet.node2.link{n}.connected") for n in (0, 1))
                if all(value == 1 for value in links):
                    break
                await trio.sleep(0.1)
        assert knet_stats["stats.knet.node2.link0.enabled"] == 1


async def test_cfg_local_get_node_status_and_addresses(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        await cluster.wait_for(cluster.all_links_up)

        def query() -> tuple[int, object, object]:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                local = handle.local_get()
                status = handle.node_status_get(3)
                addresses = handle.get_node_addrs(2)
                return local, status, addresses

        local, status, addresses = await cluster.call(query)
        assert local == 1
        assert status.reachable  # type: ignore[attr-defined]
        links = status.link_status  # type: ignore[attr-defined]
        assert links[0].connected
        assert links[1].connected
        assert links[0].dst_ipaddr == "127.0.1.3"
        assert "127.0.2.2" in str(addresses)


async def test_crash_gives_new_membership_at_survivors(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        cluster.crash(3)
        await cluster.wait_for(everyone_sees(cluster, (1, 2)))

        def status() -> object:
            with cmap.initialize(prefix=lab.prefix(1)) as handle:
                return handle.get("runtime.members.3.status")

        assert await cluster.call(status) == "left"


async def test_clean_stop_lets_others_reform_at_once(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        start = trio.current_time()
        cluster.daemons[3].request_stop()
        await cluster.wait_for(everyone_sees(cluster, (1, 2)))
        # A clean leave does not wait for the token timeout (1650 ms here) + consensus.
        assert trio.current_time() - start < 1.65 + 1.98
        await cluster.wait_for(lambda: 3 in cluster.exit_status)
        assert cluster.exit_status[3] == 0


async def test_reload_adds_a_fourth_node(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        new = lab.add_node()

        def reload() -> None:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                handle.reload_config()

        await cluster.call(reload)
        # The reply comes when the asking node has reloaded; the others follow.
        assert cluster.daemons[1].config.node_by_id(new) is not None
        await cluster.wait_for(
            lambda: all(cluster.daemons[n].config.node_by_id(new) for n in (1, 2, 3))
        )
        await cluster.start(new)
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3, 4)))

        def status() -> tuple[object, object]:
            with cmap.initialize(prefix=lab.prefix(2)) as handle:
                return handle.get("config.reload_status"), handle.get("nodelist.node.3.nodeid")

        assert await cluster.call(status) == (int(CsErrorCode.OK), 4)


async def test_reload_error_is_reported_and_nothing_changes(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        path = lab.config_path(1)
        path.write_text(path.read_text() + "totem {\n")

        def reload() -> CsErrorCode:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                try:
                    handle.reload_config()
                except CsError as exc:
                    return exc.code
                return CsErrorCode.OK

        assert await cluster.call(reload) is not CsErrorCode.OK

        def message() -> object:
            with cmap.initialize(prefix=lab.prefix(1)) as handle:
                return handle.get("config.reload_error_message")

        assert "Missing closing brace" in str(await cluster.call(message))
        assert cluster.members(1) == (1, 2, 3)


async def test_crypto_key_change_by_reload_loses_nothing(lab: LoopbackCluster) -> None:
    """A stream of messages from node 1 runs through a key change: every node gets
    every message, in order, the ring never re-forms, the new key is in use after."""
    counters = {nodeid: Counter() for nodeid in lab.node_ids}
    async with running_cluster(lab, dict(counters)) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        ring = cluster.daemons[1].ring_id
        assert all(d._crypto_slot == 1 for d in cluster.daemons.values())
        sent = 0

        async def stream() -> None:
            nonlocal sent
            while sent < 400:
                counters[1].send(sent)
                sent += 1
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream)
            await trio.sleep(0.3)
            new_key = lab.rotate_key()

            def reload() -> None:
                with cfg.initialize(prefix=lab.prefix(2)) as handle:
                    handle.reload_config()

            await cluster.call(reload)
            await cluster.wait_for(
                lambda: all(
                    d._crypto_pending is None and d._crypto_slot == 2
                    for d in cluster.daemons.values()
                )
            )
        await cluster.wait_for(
            lambda: all(len(c.seen.get(1, [])) == sent for c in counters.values())
        )
        for counter in counters.values():
            assert counter.seen[1] == list(range(sent))
        assert all(d.ring_id == ring for d in cluster.daemons.values())
        for daemon in cluster.daemons.values():
            assert daemon._key == new_key


async def test_kill_node_through_cfg(lab: LoopbackCluster) -> None:
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))

        def kill() -> None:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                handle.kill_node(2, "test")

        await cluster.call(kill)
        await cluster.wait_for(lambda: 2 in cluster.exit_status)
        assert cluster.exit_status[2] == 255
        await cluster.wait_for(everyone_sees(cluster, (1, 3)))


async def test_pload_start_loads_every_member(lab: LoopbackCluster) -> None:
    """pload.start on node 2 makes it multicast pload.count messages of pload.size bytes;
    every member receives all of them and node 2 logs the throughput."""
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))

        def start() -> None:
            with cmap.initialize(prefix=lab.prefix(2)) as handle:
                handle.set("pload.count", 300, CmapValueType.UINT32)
                handle.set("pload.size", 200, CmapValueType.UINT32)
                handle.set("pload.start", "go", CmapValueType.STRING)

        await cluster.call(start)
        await cluster.wait_for(
            lambda: all(d.pload_service.received.get(2) == 300 for d in cluster.daemons.values())
        )
        await cluster.wait_for(lambda: cluster.daemons[2].pload_service.completed_runs == 1)

        def received() -> object:
            with cmap.initialize(prefix=lab.prefix(3)) as handle:
                return handle.get("runtime.pload.2.rx")

        assert await cluster.call(received) == 300


async def test_reload_changes_timers_and_refuses_what_cannot_change(lab: LoopbackCluster) -> None:
    """A token change reaches totem on every node (runtime.config.totem.token and the
    timers in force); a cluster_name change is refused and the old value kept."""
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        lab.token = 2000
        lab.write_all()
        for nodeid in lab.node_ids:
            path = lab.config_path(nodeid)
            path.write_text(path.read_text().replace("cluster_name: lab", "cluster_name: other"))

        def reload() -> None:
            with cfg.initialize(prefix=lab.prefix(3)) as handle:
                handle.reload_config()

        await cluster.call(reload)
        await cluster.wait_for(
            lambda: all(
                d.node is not None and d.node.timers.token == 2650 for d in cluster.daemons.values()
            )
        )

        def read() -> tuple[object, object, object]:
            with cmap.initialize(prefix=lab.prefix(1)) as handle:
                return (
                    handle.get("runtime.config.totem.token"),
                    handle.get("totem.cluster_name"),
                    handle.get("config.reload_status"),
                )

        assert await cluster.call(read) == (2650, "lab", int(CsErrorCode.OK))
        await trio.sleep(1)  # the new timers run a ring happily
        assert all(d.members == (1, 2, 3) for d in cluster.daemons.values())


async def test_reload_removes_a_stopped_node(lab: LoopbackCluster) -> None:
    """Node 3 stops; its entry leaves every file; a reload drops it from knet and the
    nodelist, and the ring of 1 and 2 runs on."""
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        cluster.daemons[3].request_stop()
        await cluster.wait_for(everyone_sees(cluster, (1, 2)))
        lab.node_ids.remove(3)
        lab.write_all()

        def reload() -> None:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                handle.reload_config()

        await cluster.call(reload)
        await cluster.wait_for(
            lambda: all(cluster.daemons[n].config.node_by_id(3) is None for n in (1, 2))
        )
        for nodeid in (1, 2):
            daemon = cluster.daemons[nodeid]
            assert 3 not in daemon._knet_hosts
            assert all(host != 3 for host, _ in daemon._knet_links)

        def nodelist() -> list[str]:
            with cmap.initialize(prefix=lab.prefix(2)) as handle:
                return [entry.key for entry in handle.iterate("nodelist.node.")]

        keys = await cluster.call(nodelist)
        assert "nodelist.node.2.nodeid" not in keys
        assert "nodelist.node.1.nodeid" in keys
        assert cluster.members(1) == (1, 2)


async def test_ipc_access_follows_uidgid_in_cmap(lab: LoopbackCluster) -> None:
    """root is let in; another user only once uidgid.uid.<uid> (or a gid) is in cmap."""
    async with running_cluster(lab) as cluster:
        daemon = cluster.daemons[1]
        assert daemon._authorize(Credentials(pid=1, uid=0, gid=0)) == 0
        user = Credentials(pid=1, uid=4242, gid=4343)
        assert daemon._authorize(user) == -errno.EACCES
        assert daemon._authorize(None) == -errno.EACCES
        daemon.cmap.set("uidgid.uid.4242", ValueType.UINT8, 1, writer=True)
        assert daemon._authorize(user) == 0
        daemon.cmap.delete("uidgid.uid.4242", writer=True)
        daemon.cmap.set("uidgid.config.gid.4343", ValueType.UINT8, 1, writer=True)
        assert daemon._authorize(user) == 0


async def test_a_node_with_another_key_is_logged_and_kept_out(tmp_path: Path) -> None:
    """Node 2 has a different key: neither accepts the other's packets, both log
    knet's "invalid digest from <address>" line, and each stays alone."""
    lab = LoopbackCluster(tmp_path, nodes=2, links=1)
    other_key = tmp_path / "other-authkey"
    other_key.write_bytes(os.urandom(256))
    path = lab.config_path(2)
    path.write_text(path.read_text().replace(str(lab.keyfile), str(other_key)))
    with structlog.testing.capture_logs() as logs:
        async with running_cluster(lab) as cluster:
            await trio.sleep(3)  # several heartbeats and join attempts
            assert cluster.members(1) == (1,)
            assert cluster.members(2) == (2,)
    digests = [entry["event"] for entry in logs if "invalid digest" in entry["event"]]
    assert any("invalid digest from 127.0.1.2" in text for text in digests), digests
    assert any("invalid digest from 127.0.1.1" in text for text in digests), digests


async def test_a_clean_start_logs_no_warnings(lab: LoopbackCluster) -> None:
    """Three nodes start, meet and bring every link up without a warning or an error
    in the log (an operator must be able to trust a warning)."""
    with structlog.testing.capture_logs() as logs:
        async with running_cluster(lab) as cluster:
            await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
            await cluster.wait_for(cluster.all_links_up)
    bad = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert bad == []


async def test_totem_timer_set_in_cmap_changes_this_node_only(lab: LoopbackCluster) -> None:
    """As corosync: `cmapctl -s totem.token u32 4000` re-derives every totem timer on
    that node (runtime.config.totem.* follow); the other nodes keep theirs; a value
    totem refuses changes nothing."""
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        before = cluster.daemons[2].node.timers  # type: ignore[union-attr]

        def set_token() -> tuple[object, object]:
            with cmap.initialize(prefix=lab.prefix(1)) as handle:
                handle.set("totem.token", 4000, CmapValueType.UINT32)
                return (
                    handle.get("runtime.config.totem.token"),
                    handle.get("runtime.config.totem.consensus"),
                )

        token, consensus = await cluster.call(set_token)
        timers = cluster.daemons[1].node.timers  # type: ignore[union-attr]
        assert (timers.token, token) == (4650, 4650)
        assert consensus == timers.consensus == int(4650 * 1.2)
        assert cluster.daemons[2].node.timers == before  # type: ignore[union-attr]

        def bad_hold() -> object:
            with cmap.initialize(prefix=lab.prefix(1)) as handle:
                handle.set("totem.hold", 5, CmapValueType.UINT32)
                return handle.get("runtime.config.totem.token")

        assert await cluster.call(bad_hold) == 4650
        assert cluster.daemons[1].node.timers == timers  # type: ignore[union-attr]
        await trio.sleep(1)
        assert all(d.members == (1, 2, 3) for d in cluster.daemons.values())


async def test_key_change_completes_when_a_member_leaves_before_its_cleanup(
    lab: LoopbackCluster,
) -> None:
    """Node 3 switches to the new key but dies before its CLEANUP: once the others
    form a ring without it they drop the old key instead of waiting forever."""
    async with running_cluster(lab) as cluster:
        await cluster.wait_for(everyone_sees(cluster, (1, 2, 3)))
        silent = cluster.daemons[3]
        send_phase = silent._send_crypto_phase
        silent._send_crypto_phase = lambda phase: None if phase == 2 else send_phase(phase)  # type: ignore[method-assign]
        lab.rotate_key()

        def reload() -> None:
            with cfg.initialize(prefix=lab.prefix(1)) as handle:
                handle.reload_config()

        await cluster.call(reload)
        survivors = (cluster.daemons[1], cluster.daemons[2])
        await cluster.wait_for(lambda: all(d._crypto_cleanups == {1, 2} for d in survivors))
        assert all(d._crypto_pending is not None for d in survivors)  # waiting for node 3
        cluster.crash(3)
        await cluster.wait_for(everyone_sees(cluster, (1, 2)))
        await cluster.wait_for(
            lambda: all(d._crypto_pending is None and d._crypto_slot == 2 for d in survivors)
        )
