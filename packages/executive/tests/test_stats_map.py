"""Tests of the stats map: real knet handles and Totem nodes on loopback, a real cmap
IpcServer with our IpcClient, and MembersTracker over a validated configuration.

Key names and value types are checked against what a real corosync 3.1.7 showed
(``corosync-cmapctl -m stats``, dumped once by hand and kept in the tables below).
Every wait is bounded by ``trio.fail_after``; no assertion depends on timing.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import knet
from corosync import CsErrorCode
from corosync.ipc import (
    CmapGetRequest,
    CmapGetResponse,
    CmapIterFinalizeRequest,
    CmapIterFinalizeResponse,
    CmapIterInitRequest,
    CmapIterInitResponse,
    CmapIterNextRequest,
    CmapIterNextResponse,
    CmapMap,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapSetRequest,
    CmapSetResponse,
    CmapValueType,
    IpcClient,
    decode_cmap_response_untrusted,
    encode_cmap_value,
)
from corosync_executive import (
    CmapService,
    MembersTracker,
    StatsMap,
    handle_clear_write,
    make_stats_store,
    parse_config,
    read_procname,
    validate_config,
)
from corosync_executive._cmap_store import CmapError, CmapStore, ValueType
from corosync_executive._ipc_server import AccessPolicy, IpcServer
from totem import KnetTransport, TotemConfig, TotemNode, open_node

U8, U32, I32, U64, STR, FLT = (
    ValueType.UINT8,
    ValueType.UINT32,
    ValueType.INT32,
    ValueType.UINT64,
    ValueType.STRING,
    ValueType.FLOAT,
)
ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
FAST = knet.LinkOptions(ping_interval_ms=50, ping_timeout_ms=200, pong_count=2)
TOTEM = TotemConfig(token=400, token_coefficient=50, merge=200)
WAIT_S = 15.0  # bound for any one step on a loaded machine
GROUP = b"stats-test"

# -- what corosync 3.1.7 shows (observed), name -> type ---------------------------

REAL_LINK_KEYS: dict[str, ValueType] = {
    "connected": U8,
    "enabled": U8,
    "mtu": U32,
    "down_count": U32,
    "up_count": U32,
    "latency_ave": U32,
    "latency_max": U32,
    "latency_min": U32,
    "latency_samples": U32,
    "rx_total_retries": U64,
    "tx_total_errors": U64,
    **{
        f"{d}_{k}_{u}": U64
        for d in ("tx", "rx")
        for k in ("data", "ping", "pong", "pmtu", "total")
        for u in ("packets", "bytes")
    },
    **{f"tx_{k}_{w}": U32 for k in ("data", "ping", "pong", "pmtu") for w in ("errors", "retries")},
}
#: What we leave out (our knet counts send errors per link only).
OMITTED_LINK_KEYS = {f"tx_{k}_errors" for k in ("data", "ping", "pong", "pmtu")}

REAL_HANDLE_KEYS: dict[str, ValueType] = {
    **{
        f"{d}_{what}_time_{m}": U64
        for d in ("tx", "rx")
        for what in ("compress", "crypt")
        for m in ("min", "max", "ave")
    },
    **{
        f"{d}_compressed_{w}": U64
        for d in ("tx", "rx")
        for w in ("packets", "original_bytes", "size_bytes")
    },
    "rx_crypt_packets": U64,
    "tx_crypt_packets": U64,
    "tx_crypt_byte_overhead": U64,
    "tx_uncompressed_packets": U64,
}

REAL_SRP_KEYS: dict[str, ValueType] = {
    **dict.fromkeys(
        (
            "orf_token_tx",
            "orf_token_rx",
            "memb_merge_detect_tx",
            "memb_merge_detect_rx",
            "memb_join_tx",
            "memb_join_rx",
            "mcast_tx",
            "mcast_retx",
            "mcast_rx",
            "memb_commit_token_tx",
            "memb_commit_token_rx",
            "token_hold_cancel_tx",
            "token_hold_cancel_rx",
            "operational_entered",
            "operational_token_lost",
            "gather_entered",
            "gather_token_lost",
            "commit_entered",
            "commit_token_lost",
            "recovery_entered",
            "recovery_token_lost",
            "consensus_timeouts",
            "rx_msg_dropped",
            "time_since_token_last_received",
        ),
        U64,
    ),
    **dict.fromkeys(
        (
            "continuous_gather",
            "continuous_sendmsg_failures",
            "mtt_rx_token",
            "avg_token_workload",
            "avg_backlog_calc",
        ),
        U32,
    ),
    "firewall_enabled_or_nic_failure": U8,
}

REAL_CONN_KEYS: dict[str, ValueType] = {
    "dispatched": U64,
    "flow_control": U32,
    "flow_control_count": U64,
    "invalid_request": U64,
    "overload": U64,
    "procname": STR,
    "queued": U32,
    "queueing": I32,
    "recv_retries": U64,
    "requests": U64,
    "responses": U64,
    "send_retries": U64,
    "sent": U32,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def value(store: CmapStore, key: str) -> Any:
    return store.get(key)[1]


def keys_under(store: CmapStore, prefix: str) -> dict[str, ValueType]:
    """name below ``prefix`` -> type, of the keys ``store`` holds there."""
    return {key[len(prefix) :]: typed.type for key, typed in store.iterate(prefix)}


async def wait_for(condition: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not condition():
            await trio.sleep(0.01)


# -- a two-node ring over knet on loopback --------------------------------------------


@attrs.define
class Ring:
    handles: dict[int, knet.KnetHandle]
    nodes: dict[int, TotemNode]

    async def mcast(self, count: int) -> None:
        """``count`` messages from node 1, waited for until node 2 delivered them."""
        before = self.nodes[2].stats["pg_delivered_messages"]
        for i in range(count):
            self.nodes[1].mcast_group([GROUP], b"hello %d" % i)
        await wait_for(lambda: self.nodes[2].stats["pg_delivered_messages"] >= before + count)


@pytest.fixture
async def ring() -> AsyncIterator[Ring]:
    ports = {1: free_port(), 2: free_port()}
    async with AsyncExitStack() as stack:
        handles: dict[int, knet.KnetHandle] = {}
        nodes: dict[int, TotemNode] = {}
        for me, peer in ((1, 2), (2, 1)):
            handle = await stack.enter_async_context(knet.open_handle(me))
            handle.add_host(peer)
            handle.set_link(
                peer,
                0,
                local=("127.0.0.1", ports[me]),
                remote=("127.0.0.1", ports[peer]),
                options=FAST,
            )
            handles[me] = handle
        for me in (1, 2):
            node = await stack.enter_async_context(
                open_node(me, KnetTransport(handles[me]), node_count=2, config=TOTEM, groups=True)
            )
            node.join(GROUP)
            nodes[me] = node
        await wait_for(lambda: all(n.members == (1, 2) for n in nodes.values()))
        yield Ring(handles, nodes)


def stats_map_of(ring: Ring, servers: dict[int, IpcServer] | None = None) -> StatsMap:
    return StatsMap(
        local_nodeid=1,
        handle=lambda: ring.handles[1],
        node=lambda: ring.nodes[1],
        servers=lambda: servers or {},
        nodeids=lambda: (1, 2, 3),  # node 3 is configured but has no knet host
        local_links=lambda: (0,),
    )


# -- knet and totem -------------------------------------------------------------------


async def test_names_and_types_are_corosyncs(ring: Ring) -> None:
    stats = stats_map_of(ring)
    store = make_stats_store()
    stats.refresh(store)

    remote = keys_under(store, "stats.knet.node2.link0.")
    assert remote == {k: t for k, t in REAL_LINK_KEYS.items() if k not in OMITTED_LINK_KEYS}
    assert keys_under(store, "stats.knet.node1.link0.") == remote  # the local loopback link
    assert not keys_under(store, "stats.knet.node3.")  # no knet host: no keys
    assert keys_under(store, "stats.knet.handle.") == REAL_HANDLE_KEYS

    srp = keys_under(store, "stats.srp.")
    assert srp, "Totem counters are shown"
    assert all(REAL_SRP_KEYS[name] is vtype for name, vtype in srp.items())
    assert keys_under(store, "stats.pg.") == {"msg_queue_avail": U32}
    assert keys_under(store, "stats.ipcs.") == {"global.active": U64, "global.closed": U64}
    # Every key is in one of corosync's trees, and nothing is stored for clear triggers.
    top = {key.split(".")[1] for key, _ in store.iterate("")}
    assert top == {"srp", "pg", "knet", "ipcs"}


async def test_link_state_and_loopback_values(ring: Ring) -> None:
    store = make_stats_store()
    stats_map_of(ring).refresh(store)
    link = "stats.knet.node2.link0."
    assert value(store, link + "enabled") == 1
    assert value(store, link + "connected") == 1
    assert value(store, link + "up_count") >= 1
    assert value(store, link + "mtu") == ring.handles[1].link_status(2, 0).data_mtu
    assert value(store, link + "latency_samples") > 0
    assert value(store, link + "latency_min") <= value(store, link + "latency_max")
    assert f"{link}tx_data_errors" not in store
    loop = "stats.knet.node1.link0."
    assert value(store, loop + "mtu") == 65535
    assert value(store, loop + "connected") == 1
    assert value(store, loop + "up_count") == 1
    assert value(store, loop + "latency_min") == (1 << 32) - 1  # never sampled
    assert value(store, loop + "tx_data_packets") == 0
    # No crypto, no compression: the time minimums are corosync's "never" (UINT64_MAX).
    assert value(store, "stats.knet.handle.tx_crypt_time_min") == (1 << 64) - 1
    assert value(store, "stats.knet.handle.tx_crypt_packets") == 0
    assert value(store, "stats.knet.handle.tx_uncompressed_packets") > 0


async def test_counters_move_with_traffic(ring: Ring) -> None:
    stats = stats_map_of(ring)
    store = make_stats_store()
    stats.refresh(store)
    link = "stats.knet.node2.link0."
    tx_before = value(store, link + "tx_data_packets")
    bytes_before = value(store, link + "tx_data_bytes")
    mcast_before = value(store, "stats.srp.mcast_tx")
    rx_before = value(store, "stats.srp.mcast_rx")
    await ring.mcast(20)
    stats.refresh(store)
    assert value(store, link + "tx_data_packets") > tx_before
    assert value(store, link + "tx_data_bytes") > bytes_before
    assert value(store, link + "tx_total_packets") >= value(store, link + "tx_data_packets")
    assert value(store, link + "rx_data_packets") > 0  # tokens and messages from node 2
    assert value(store, "stats.srp.mcast_tx") > mcast_before
    # Totem messages, not application messages: the group layer packs them together.
    assert value(store, "stats.srp.mcast_rx") > rx_before
    assert value(store, "stats.srp.orf_token_rx") > 0
    assert value(store, "stats.srp.operational_entered") >= 1
    assert value(store, "stats.srp.gather_entered") >= 1
    assert value(store, "stats.pg.msg_queue_avail") > 0


async def test_clear_counts_from_zero(ring: Ring) -> None:
    stats = stats_map_of(ring)
    store = make_stats_store()
    await ring.mcast(10)
    stats.refresh(store)
    link = "stats.knet.node2.link0."
    assert value(store, "stats.srp.mcast_tx") >= 1
    up_before = value(store, link + "up_count")
    assert up_before >= 1

    stats.clear("totem")
    # Read at once: no trio checkpoint since the clear, so nothing has moved.
    stats.refresh(store)
    assert value(store, "stats.srp.mcast_tx") == 0
    assert value(store, "stats.srp.operational_entered") == 0
    assert value(store, link + "up_count") == up_before  # knet not cleared

    stats.clear("knet")
    stats.refresh(store)
    assert value(store, link + "up_count") == 0
    assert value(store, link + "tx_data_packets") == 0
    assert value(store, link + "tx_total_bytes") == 0
    assert value(store, link + "connected") == 1  # state is not a counter
    assert value(store, "stats.knet.handle.tx_uncompressed_packets") == 0

    await ring.mcast(5)
    stats.refresh(store)
    assert value(store, "stats.srp.mcast_tx") >= 1
    assert value(store, link + "tx_data_packets") > 0

    with pytest.raises(ValueError, match="cannot clear 'bogus'"):
        stats.clear("bogus")


async def test_a_new_knet_handle_is_not_measured_against_the_old_baseline(ring: Ring) -> None:
    current = {"handle": ring.handles[1]}
    stats = StatsMap(local_nodeid=3, handle=lambda: current["handle"], nodeids=lambda: (1, 2))
    await ring.mcast(5)
    stats.clear("knet")
    assert stats.snapshot()["stats.knet.handle.tx_uncompressed_packets"].value == 0
    current["handle"] = ring.handles[2]  # another handle: its own counters, no baseline
    snapshot = stats.snapshot()  # no checkpoint until the comparison: nothing moves
    assert (
        snapshot["stats.knet.handle.tx_uncompressed_packets"].value
        == (ring.handles[2].stats()["tx_uncompressed_packets"])
    )
    assert (
        snapshot["stats.knet.node1.link0.tx_data_packets"].value
        == (ring.handles[2].link_status(1, 0).stats["tx_data_packets"])
    )
    assert not any(key.startswith("stats.knet.node2.") for key in snapshot)


async def test_no_sources_no_keys() -> None:
    store = make_stats_store()
    stats = StatsMap(local_nodeid=1)
    stats.refresh(store)
    assert dict(store.iterate("stats.")).keys() == {
        "stats.ipcs.global.active",
        "stats.ipcs.global.closed",
    }


async def test_vanished_links_and_nodes_lose_their_keys(ring: Ring) -> None:
    stats = stats_map_of(ring)
    store = make_stats_store()
    stats.refresh(store)
    assert "stats.knet.node2.link0.tx_data_packets" in store
    ring.handles[1].set_link_enabled(2, 0, False)
    ring.handles[1].clear_link(2, 0)
    stats.refresh(store)
    assert not keys_under(store, "stats.knet.node2.")
    assert "stats.knet.node1.link0.mtu" in store


# -- schedmiss ------------------------------------------------------------------------


def test_schedmiss_keeps_the_last_ten_newest_first() -> None:
    stats = StatsMap(local_nodeid=1)
    store = make_stats_store()
    for i in range(12):
        stats.record_schedmiss(1_700_000_000_000 + i, 100.5 + i)
    stats.refresh(store)
    assert keys_under(store, "stats.schedmiss.0.") == {"timestamp": U64, "delay": FLT}
    assert value(store, "stats.schedmiss.0.timestamp") == 1_700_000_000_011
    assert value(store, "stats.schedmiss.0.delay") == pytest.approx(111.5)
    assert value(store, "stats.schedmiss.9.timestamp") == 1_700_000_000_002
    assert "stats.schedmiss.10.timestamp" not in store
    stats.clear("schedmiss")
    stats.refresh(store)
    assert not keys_under(store, "stats.schedmiss.")


# -- the stats store's read-only rules ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("stats.clear.totem", "totem"),
        ("stats.clear.knet", "knet"),
        ("stats.clear.ipc", "ipc"),
        ("stats.clear.schedmiss", "schedmiss"),
        ("stats.clear.all", "all"),
        ("stats.clear.foo", None),
        ("stats.clear.", None),
        ("stats.srp.mcast_tx", None),
        ("stats.clear.all.x", None),
    ],
)
def test_handle_clear_write(key: str, what: str | None) -> None:
    assert handle_clear_write(key) == what


@pytest.mark.parametrize(
    "key",
    [
        "stats.srp.mcast_tx",
        "stats.knet.node1.link0.mtu",
        "stats.ipcs.global.active",
        "stats.foo",
        "stats.clear",
        "stats.clea",
        "stats.cleaR.all",
        "stats",
        "abc",
        "runtime.members.1.ip",
        "Stats.clear.all",
    ],
)
def test_stats_store_is_read_only_outside_clear(key: str) -> None:
    store = make_stats_store()
    with pytest.raises(CmapError) as info:
        store.set(key, U8, 1)
    assert info.value.code is CsErrorCode.ACCESS


def test_clear_keys_are_writable_and_vanish_when_applied() -> None:
    store = make_stats_store()
    stats = StatsMap(local_nodeid=1)
    stats.record_schedmiss(1, 2.0)
    store.set("stats.clear.schedmiss", U8, 1)
    store.set("stats.clear.nothing", STR, "x")
    assert stats.apply_clear_writes(store) == ("schedmiss",)
    assert not list(store.iterate("stats.clear."))
    stats.refresh(store)
    assert not keys_under(store, "stats.schedmiss.")


# -- IPC --------------------------------------------------------------------------------


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="psm-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@attrs.define
class Daemon:
    stats: StatsMap
    stats_store: CmapStore
    server: IpcServer
    prefix: str

    def connect(self) -> IpcClient:
        return IpcClient.connect("cmap", prefix=self.prefix, timeout=5)


@pytest.fixture(params=["socket", "shm"])
async def daemon(request: pytest.FixtureRequest, runtime_dir: str) -> AsyncIterator[Daemon]:
    stats_store = make_stats_store()
    servers: list[IpcServer] = []  # numbered by name: cmap is service 0
    stats = StatsMap(local_nodeid=1, servers=lambda: servers)
    service = CmapService(
        CmapStore(), stats_store, refresh_stats=lambda: stats.refresh(stats_store)
    )
    prefix = f"s{os.getpid()}{uuid.uuid4().hex[:6]}-"
    server = service.make_server(
        prefix=prefix, authorize=ME, runtime_dir=runtime_dir, transport=request.param
    )
    servers.append(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield Daemon(stats, stats_store, server, prefix)
        nursery.cancel_scope.cancel()


def req(client: IpcClient, request: Any, expected: type[Any]) -> Any:
    return decode_cmap_response_untrusted(client.request(request.encode(), timeout=5), expected)


def use_stats_map(client: IpcClient) -> None:
    done = req(client, CmapSetCurrentMapRequest(CmapMap.STATS), CmapSetCurrentMapResponse)
    assert done.error is CsErrorCode.OK


def client_set(client: IpcClient, key: str, vtype: CmapValueType, raw: Any) -> CsErrorCode:
    request = CmapSetRequest(key, vtype, encode_cmap_value(vtype, raw))
    code: CsErrorCode = req(client, request, CmapSetResponse).error
    return code


def client_get(client: IpcClient, key: str) -> CmapGetResponse:
    result: CmapGetResponse = req(client, CmapGetRequest(key, 0), CmapGetResponse)
    return result


def client_keys(client: IpcClient, prefix: str) -> list[str]:
    init = req(client, CmapIterInitRequest(prefix), CmapIterInitResponse)
    keys = []
    while True:
        step = req(client, CmapIterNextRequest(init.iter_handle), CmapIterNextResponse)
        if step.error is CsErrorCode.NO_SECTIONS:
            break
        keys.append(step.key)
    req(client, CmapIterFinalizeRequest(init.iter_handle), CmapIterFinalizeResponse)
    return keys


async def test_ipc_connections_are_listed_and_vanish_when_closed(daemon: Daemon) -> None:
    client = await trio.to_thread.run_sync(daemon.connect)
    try:
        await trio.to_thread.run_sync(use_stats_map, client)
        keys = await trio.to_thread.run_sync(client_keys, client, "stats.ipcs.")
        conn = daemon.server.connections[0]
        prefix = f"stats.ipcs.service0.{os.getpid()}.{conn.id:#x}."
        assert sorted(keys) == sorted(
            ["stats.ipcs.global.active", "stats.ipcs.global.closed"]
            + [prefix + name for name in REAL_CONN_KEYS]
        )
        store = daemon.stats_store
        assert keys_under(store, prefix) == REAL_CONN_KEYS
        assert value(store, prefix + "procname") == read_procname(os.getpid())
        assert value(store, prefix + "procname")  # this process has a name
        # The last refresh ran before ITER_FINALIZE was answered: it counted the requests
        # up to that one (set map, init, one next per key, the final next, finalize) ...
        requests = 1 + 1 + len(keys) + 1 + 1
        assert value(store, prefix + "requests") == requests
        assert value(store, prefix + "responses") == requests - 1  # ... not its response
        assert value(store, "stats.ipcs.global.active") == 1
        assert value(store, "stats.ipcs.global.closed") == 0
        assert value(store, prefix + "flow_control") == 0

        daemon.server.set_flow_control(1)
        daemon.server.set_flow_control(1)  # no change: not counted again
        daemon.stats.refresh(store)
        assert value(store, prefix + "flow_control") == 1
        assert value(store, prefix + "flow_control_count") == 1
        daemon.server.set_flow_control(0)
    finally:
        await trio.to_thread.run_sync(client.close)
    await wait_for(lambda: not daemon.server.connections)
    daemon.stats.refresh(daemon.stats_store)
    assert keys_under(daemon.stats_store, "stats.ipcs.") == {
        "global.active": U64,
        "global.closed": U64,
    }
    assert value(daemon.stats_store, "stats.ipcs.global.active") == 0
    assert value(daemon.stats_store, "stats.ipcs.global.closed") == 1


async def test_clear_through_the_cmap_service(daemon: Daemon) -> None:
    first = await trio.to_thread.run_sync(daemon.connect)
    await trio.to_thread.run_sync(first.close)
    await wait_for(lambda: not daemon.server.connections)
    client = await trio.to_thread.run_sync(daemon.connect)
    try:
        await trio.to_thread.run_sync(use_stats_map, client)
        conn = daemon.server.connections[0]
        prefix = f"stats.ipcs.service0.{os.getpid()}.{conn.id:#x}."
        get = await trio.to_thread.run_sync(client_get, client, prefix + "requests")
        assert get.error is CsErrorCode.OK
        assert value(daemon.stats_store, "stats.ipcs.global.closed") == 1

        # Clients may not write stats, only the clear triggers.
        code = await trio.to_thread.run_sync(
            client_set, client, "stats.ipcs.global.closed", CmapValueType.UINT64, 0
        )
        assert code is CsErrorCode.ACCESS
        code = await trio.to_thread.run_sync(
            client_set, client, "stats.clear.ipc", CmapValueType.UINT8, 1
        )
        assert code is CsErrorCode.OK
        # The next request (a refresh first) applies the clear and removes the trigger.
        get = await trio.to_thread.run_sync(client_get, client, "stats.clear.ipc")
        assert get.error is CsErrorCode.NOT_EXIST
        assert value(daemon.stats_store, "stats.ipcs.global.closed") == 0
        # Counted from the clear, which ran while that GET was being answered.
        assert value(daemon.stats_store, prefix + "requests") == 0
        assert value(daemon.stats_store, prefix + "responses") == 0
        get = await trio.to_thread.run_sync(client_get, client, prefix + "requests")
        assert get.error is CsErrorCode.OK
        assert value(daemon.stats_store, prefix + "requests") == 1
        assert value(daemon.stats_store, prefix + "responses") == 1
    finally:
        await trio.to_thread.run_sync(client.close)


async def test_invalid_requests_are_counted(daemon: Daemon) -> None:
    client = await trio.to_thread.run_sync(daemon.connect)
    try:
        # A request header that claims a size other than what was sent: bare error reply.
        bogus = struct.pack("=i4xi4x", 1, 99)
        await trio.to_thread.run_sync(lambda: client.request(bogus, timeout=5))
        daemon.stats.refresh(daemon.stats_store)
        conn = daemon.server.connections[0]
        prefix = f"stats.ipcs.service0.{os.getpid()}.{conn.id:#x}."
        assert value(daemon.stats_store, prefix + "invalid_request") == 1
        assert value(daemon.stats_store, prefix + "requests") == 1
        assert value(daemon.stats_store, prefix + "responses") == 1
    finally:
        await trio.to_thread.run_sync(client.close)


def test_read_procname_of_a_missing_process_is_empty() -> None:
    assert read_procname(-1) == ""
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert read_procname(os.getpid()) == comm


# -- runtime.members ------------------------------------------------------------------

CONFIG = """\
totem {
 version: 2
 cluster_name: stats
}
nodelist {
 node {
  name: node1
  nodeid: 1
  ring0_addr: 10.231.0.1
  ring1_addr: 10.232.0.1
 }
 node {
  name: node2
  nodeid: 2
  ring0_addr: 10.231.0.2
  ring1_addr: 10.232.0.2
 }
 node {
  name: node3
  nodeid: 3
  ring0_addr: 10.231.0.3
  ring1_addr: 10.232.0.3
 }
}
"""


def members_keys(store: CmapStore, node: int) -> dict[str, Any]:
    prefix = f"runtime.members.{node}."
    return {key[len(prefix) :]: (t.type, t.value) for key, t in store.iterate(prefix)}


def test_members_tracker_joins_and_leaves() -> None:
    config = validate_config(parse_config(CONFIG, file="corosync.conf"), hostname="node1")
    store = CmapStore()
    tracker = MembersTracker(store)

    tracker.update(config, members=(1, 2), joined=(1, 2), left=())
    assert members_keys(store, 1) == {
        "ip": (STR, "r(0) ip(10.231.0.1) r(1) ip(10.232.0.1) "),
        "join_count": (U32, 1),
        "status": (STR, "joined"),
    }
    assert members_keys(store, 2)["ip"] == (STR, "r(0) ip(10.231.0.2) r(1) ip(10.232.0.2) ")

    tracker.update(config, members=(1,), joined=(), left=(2,))
    assert members_keys(store, 2) == {
        "ip": (STR, "r(0) ip(10.231.0.2) r(1) ip(10.232.0.2) "),
        "join_count": (U32, 1),
        "status": (STR, "left"),
    }
    assert members_keys(store, 1)["join_count"] == (U32, 1)  # still a member: unchanged

    tracker.update(config, members=(1, 2, 3), joined=(2, 3), left=())
    assert members_keys(store, 2)["join_count"] == (U32, 2)
    assert members_keys(store, 2)["status"] == (STR, "joined")
    assert members_keys(store, 3) == {
        "ip": (STR, "r(0) ip(10.231.0.3) r(1) ip(10.232.0.3) "),
        "join_count": (U32, 1),
        "status": (STR, "joined"),
    }
    assert tracker.status(3) == "joined"
    assert tracker.status(4) is None


def test_members_tracker_leaves_config_version_to_the_cmap_sync() -> None:
    config = validate_config(parse_config(CONFIG, file="corosync.conf"), hostname="node1")
    store = CmapStore()
    store.set("runtime.members.2.config_version", U64, 7, writer=True)
    tracker = MembersTracker(store)
    # A member not yet "joined" counts as joining even if joined= does not name it.
    tracker.update(config, members=(1, 2), joined=(1,), left=())
    assert members_keys(store, 2) == {
        "config_version": (U64, 7),
        "ip": (STR, "r(0) ip(10.231.0.2) r(1) ip(10.232.0.2) "),
        "join_count": (U32, 1),
        "status": (STR, "joined"),
    }
    # An unknown node (not in the configuration) gets no ip key, the rest as usual.
    tracker.update(config, members=(1, 2, 9), joined=(9,), left=())
    assert members_keys(store, 9) == {"join_count": (U32, 1), "status": (STR, "joined")}
    assert "runtime.members.9.ip" not in store
