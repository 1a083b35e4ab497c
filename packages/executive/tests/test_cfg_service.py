"""Tests of the cfg service: corosync.cfg (blocking and trio) and pycorosync-cfgtool
against an in-process IpcServer + CfgService, over a fake cluster.

Each test runs three fake nodes on one message bus (:class:`FakeBus`: a multicast is
delivered to every member's ``exec_deliver`` in order, at once or when released) with a
fake backend each (:class:`FakeBackend`: node statuses, addresses, reload results; it
records what the service asks of it). Node 1's cfg service, and a cmap service over its
configuration (cfgtool reads the nodelist from cmap), listen under a unique IPC prefix;
blocking client calls run in worker threads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import cfgtool_outputs
from corosync import CsError, CsErrorCode
from corosync.cfg import (
    AsyncCfgHandle,
    CfgDispatchFlags,
    CfgHandle,
    CfgLinkStatus,
    CfgNodeStatus,
    CfgShutdownFlags,
    CfgShutdownReply,
    initialize,
    open_cfg,
)
from corosync.ipc import (
    CfgNodeStatusGetRequest,
    CfgNodeStatusGetResponse,
    CfgReloadConfigRequest,
    CfgReplyToShutdownRequest,
    CfgReplyToShutdownResponse,
    CfgTestShutdownEvent,
    CfgTrackStartRequest,
    CfgTrackStartResponse,
    CfgTryShutdownRequest,
    IpcClient,
    RequestHeader,
    decode_cfg_event_untrusted,
    decode_cfg_response_untrusted,
    decode_response_header_untrusted,
)
from corosync.tools import cfgtool
from corosync_executive import (
    CfgService,
    CmapService,
    Config,
    load_config,
    load_config_into_cmap,
    validate_config,
)
from corosync_executive._cfg_exec import (
    CfgExecFunction,
    decode_cfg_crypto_phase_untrusted,
    decode_cfg_killnode_untrusted,
    decode_cfg_reload_token_untrusted,
    encode_cfg_killnode,
)
from corosync_executive._cmap_store import CmapStore, ValueType
from corosync_executive._ipc_server import AccessPolicy, IpcServer
from corosync_executive._service import ExecMessage
from totem import Guarantee, RingId

ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
CONF = Path(__file__).parent / "data" / "debian-3-nodes.conf"
NODES = (1, 2, 3)


def _link(src: str, dst: str, *, connected: bool = True, mtu: int = 1397) -> CfgLinkStatus:
    return CfgLinkStatus(True, connected, False, mtu, src, dst)


def cluster_statuses() -> dict[int, CfgNodeStatus]:
    """Node 1's view: link 1 to node 2 is down, everything else up."""
    return {
        1: CfgNodeStatus(1, True, link_status=[_link("10.231.0.1", "10.231.0.1", mtu=65535)]),
        2: CfgNodeStatus(
            2,
            True,
            link_status=[
                _link("10.231.0.1", "10.231.0.2"),
                _link("10.232.0.1", "10.232.0.2", connected=False),
            ],
        ),
        3: CfgNodeStatus(
            3,
            True,
            link_status=[_link("10.231.0.1", "10.231.0.3"), _link("10.232.0.1", "10.232.0.3")],
        ),
    }


@attrs.define
class FakeBackend:
    """A CfgBackend that records what it is asked."""

    nodeid: int
    statuses: dict[int, CfgNodeStatus] = attrs.Factory(cluster_statuses)
    reload_result: tuple[CsErrorCode, str] = (CsErrorCode.OK, "")
    reopen_error: OSError | None = None
    reloads: int = 0
    reopened: int = 0
    killed_by: list[tuple[int, str]] = attrs.Factory(list)
    shutdowns: int = 0
    crypto: list[tuple[int, int]] = attrs.Factory(list)

    def node_status(self, nodeid: int) -> CfgNodeStatus | None:
        return self.statuses.get(nodeid)

    def node_addresses(self, nodeid: int) -> tuple[str, ...] | None:
        if nodeid not in NODES:
            return None
        return (f"10.231.0.{nodeid}", f"10.232.0.{nodeid}")

    def reload_local(self) -> tuple[CsErrorCode, str]:
        self.reloads += 1
        return self.reload_result

    def reopen_log_files(self) -> None:
        if self.reopen_error is not None:
            raise self.reopen_error
        self.reopened += 1

    def killed(self, by_nodeid: int, reason: str) -> None:
        self.killed_by.append((by_nodeid, reason))

    def shutdown_now(self) -> None:
        self.shutdowns += 1

    def crypto_reconfig(self, sender: int, phase: int) -> None:
        self.crypto.append((sender, phase))


class FakeBus:
    """Totem for the fake nodes: every member delivers every message, in order."""

    def __init__(self) -> None:
        self.services: dict[int, CfgService] = {}
        self.members: tuple[int, ...] = NODES
        self.held: list[ExecMessage] | None = None
        self.full = False
        self.sent: list[tuple[ExecMessage, Guarantee]] = []

    def mcast(self, sender: int, message: ExecMessage, guarantee: Guarantee) -> None:
        if self.full:
            raise CsError(CsErrorCode.TRY_AGAIN, "totem queue full")
        self.sent.append((message, guarantee))
        if self.held is not None:
            self.held.append(message)
        else:
            self.deliver(message)

    def deliver(self, message: ExecMessage) -> None:
        for nodeid in self.members:
            self.services[nodeid].exec_deliver(message)

    def hold(self) -> None:
        self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for message in held:
            self.deliver(message)


@attrs.define
class FakeContext:
    """The ServiceContext of one fake node."""

    bus: FakeBus
    local_nodeid: int
    config: Config
    cmap: CmapStore
    ring_id: RingId | None = None

    @property
    def members(self) -> tuple[int, ...]:
        return self.bus.members

    def mcast(
        self, service_id: int, function_id: int, payload: bytes, guarantee: Guarantee
    ) -> None:
        message = ExecMessage(self.local_nodeid, service_id, function_id, payload)
        self.bus.mcast(self.local_nodeid, message, guarantee)

    def cmap_changed(self) -> None:
        pass


@functools.cache
def _config(nodeid: int) -> Config:
    return validate_config(load_config(CONF), hostname=f"node{nodeid}")


@attrs.define
class Harness:
    bus: FakeBus
    backends: dict[int, FakeBackend]
    stores: dict[int, CmapStore]
    prefix: str
    logs: list[dict[str, Any]]

    @property
    def service(self) -> CfgService:
        return self.bus.services[1]

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(fn)

    def open(self, **kwargs: Any) -> CfgHandle:
        return initialize(prefix=self.prefix, timeout=5, **kwargs)

    def client(self) -> IpcClient:
        return IpcClient.connect("cfg", prefix=self.prefix, timeout=5)

    def events(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if text in e["event"]]

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not condition():
                await trio.sleep(0.01)

    def tool(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = cfgtool.main(["--ipc-prefix", self.prefix, *args], stdout=out, stderr=err)
        return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pcs-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _serve(runtime_dir: str, transport: str) -> AsyncIterator[Harness]:
    with capture_logs() as logs:
        bus = FakeBus()
        backends, stores = {}, {}
        for nodeid in NODES:
            config = _config(nodeid)
            store = CmapStore()
            load_config_into_cmap(store, config)
            backends[nodeid] = FakeBackend(nodeid)
            stores[nodeid] = store
            service = CfgService(backends[nodeid])
            service.attach(FakeContext(bus, nodeid, config, store))
            bus.services[nodeid] = service
        prefix = f"f{os.getpid()}{uuid.uuid4().hex[:6]}-"
        service = bus.services[1]
        cfg_server = IpcServer(
            "cfg",
            service.lib_handle,
            on_connect=service.lib_init,
            on_disconnect=service.lib_exit,
            prefix=prefix,
            authorize=ME,
            runtime_dir=runtime_dir,
            transport=transport,  # type: ignore[arg-type]
        )
        cmap_server = CmapService(stores[1]).make_server(
            prefix=prefix, authorize=ME, runtime_dir=runtime_dir, transport=transport
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(cfg_server.serve)
            await nursery.start(cmap_server.serve)
            yield Harness(bus, backends, stores, prefix, logs)
            nursery.cancel_scope.cancel()


@pytest.fixture
async def harness(runtime_dir: str) -> AsyncIterator[Harness]:
    async for h in _serve(runtime_dir, "socket"):
        yield h


@pytest.fixture(params=["socket", "shm"])
async def any_transport(request: pytest.FixtureRequest, runtime_dir: str) -> AsyncIterator[Harness]:
    async for h in _serve(runtime_dir, request.param):
        yield h


# ----------------------------------------------------------------- queries


async def test_queries_over_both_transports(any_transport: Harness) -> None:
    """local_get, node_status_get, get_node_addrs and ring_status_get give the backend's
    state; unknown nodes get corosync's errors."""
    h = any_transport

    def flow() -> dict[str, Any]:
        with h.open() as handle:
            result: dict[str, Any] = {
                "local": handle.local_get(),
                "status2": handle.node_status_get(2),
                "addrs2": handle.get_node_addrs(2),
                "addrs0": handle.get_node_addrs(0),
                "rings": handle.ring_status_get(),
            }
            for name, call in (
                ("status9", lambda: handle.node_status_get(9)),
                ("addrs9", lambda: handle.get_node_addrs(9)),
                ("reenable", handle.ring_reenable),
            ):
                with pytest.raises(CsError) as info:
                    call()
                result[name] = info.value.code
            return result

    result = await h.call(flow)
    assert result["local"] == 1
    assert result["status2"] == cluster_statuses()[2]
    assert result["addrs2"].family == socket.AF_INET
    assert result["addrs2"].addresses == ("10.231.0.2", "10.232.0.2")
    assert result["addrs0"].addresses == ("10.231.0.1", "10.232.0.1")
    assert result["rings"] == (("0 10.231.0.1", "n33"), ("1 10.232.0.1", "n13"))
    assert result["status9"] is CsErrorCode.FAILED_OPERATION
    assert result["addrs9"] is CsErrorCode.NOT_EXIST
    assert result["reenable"] is CsErrorCode.NOT_SUPPORTED


async def test_node_status_version_and_malformed_requests(harness: Harness) -> None:
    """A status version other than 1 is NOT_SUPPORTED (32 bytes, as corosync); bytes that
    are no cfg request get the bare INVALID_PARAM reply and the connection lives on."""

    def flow() -> tuple[bytes, bytes, int]:
        with harness.client() as client:
            v2 = client.request(CfgNodeStatusGetRequest(2, version=2).encode(), timeout=5)
            junk = client.request(RequestHeader(42, 16).encode(), timeout=5)
            with harness.open() as handle:
                return v2, junk, handle.local_get()

    v2, junk, local = await harness.call(flow)
    assert len(v2) == 32
    assert decode_cfg_response_untrusted(v2, CfgNodeStatusGetResponse).error is (
        CsErrorCode.NOT_SUPPORTED
    )
    header = decode_response_header_untrusted(junk)
    assert (header.id, header.size, header.error) == (0, 24, CsErrorCode.INVALID_PARAM)
    assert local == 1


# ------------------------------------------------------------------ reload


async def test_reload_runs_on_every_node_and_answers_the_local_result(harness: Harness) -> None:
    """RELOAD_CONFIG goes SAFE to every node; the client gets its own node's result."""
    harness.backends[2].reload_result = (CsErrorCode.INVALID_PARAM, "bad file on node 2")

    def ok() -> None:
        with harness.open() as handle:
            handle.reload_config()

    await harness.call(ok)
    assert [b.reloads for b in harness.backends.values()] == [1, 1, 1]
    assert harness.bus.sent[-1][1] is Guarantee.SAFE
    assert len(harness.events("Config reload requested by node 1")) == 3
    assert harness.events("Unable to reload config file: bad file on node 2")

    harness.backends[1].reload_result = (CsErrorCode.INVALID_PARAM, "parse error")

    def failing() -> CsErrorCode:
        with harness.open() as handle, pytest.raises(CsError) as info:
            handle.reload_config()
        return info.value.code

    assert await harness.call(failing) is CsErrorCode.INVALID_PARAM
    harness.bus.full = True
    assert await harness.call(failing) is CsErrorCode.TRY_AGAIN


async def test_reload_waits_for_delivery_and_drops_a_gone_client(harness: Harness) -> None:
    """The reply waits for this node's delivery; a client gone meanwhile is forgotten
    and the delivery still reloads every node."""
    harness.bus.hold()
    client = await harness.call(harness.client)
    await harness.call(lambda: client.send(CfgReloadConfigRequest().encode()))
    await harness.wait_for(lambda: bool(harness.service._reloads))
    await harness.call(client.close)
    await harness.wait_for(lambda: not harness.service._reloads)
    harness.bus.release()
    assert [b.reloads for b in harness.backends.values()] == [1, 1, 1]

    # A client that stays gets its answer once the message is delivered.
    harness.bus.hold()
    done = trio.Event()
    result: list[None] = []

    async def reload() -> None:
        def flow() -> None:
            with harness.open() as handle:
                handle.reload_config()

        result.append(await harness.call(flow))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reload)
        await harness.wait_for(lambda: bool(harness.service._reloads))
        assert not done.is_set()
        harness.bus.release()
    assert result == [None]


# -------------------------------------------------------- kill, logs, crypto


async def test_kill_node(harness: Harness) -> None:
    """KILLNODE reaches only the target's backend; a non-member is NOT_EXIST."""

    def flow() -> CsErrorCode:
        with harness.open() as handle:
            handle.kill_node(3, "Killed by corosync-cfgtool")
            with pytest.raises(CsError) as info:
                handle.kill_node(9, "nobody")
            return info.value.code

    assert await harness.call(flow) is CsErrorCode.NOT_EXIST
    assert harness.backends[3].killed_by == [(1, "Killed by corosync-cfgtool")]
    assert harness.backends[1].killed_by == harness.backends[2].killed_by == []
    harness.bus.members = (1, 2)  # node 3 left: no longer a member

    def again() -> CsErrorCode:
        with harness.open() as handle, pytest.raises(CsError) as info:
            handle.kill_node(3, "again")
        return info.value.code

    assert await harness.call(again) is CsErrorCode.NOT_EXIST


async def test_reopen_log_files(harness: Harness) -> None:
    """REOPEN_LOG_FILES asks this node's backend; a failure is CS_ERR_LIBRARY."""

    def flow() -> None:
        with harness.open() as handle:
            handle.reopen_log_files()

    await harness.call(flow)
    assert harness.backends[1].reopened == 1
    harness.backends[1].reopen_error = PermissionError("denied")
    with pytest.raises(CsError) as info:
        await harness.call(flow)
    assert info.value.code is CsErrorCode.LIBRARY


async def test_crypto_phases_reach_every_backend(harness: Harness) -> None:
    """send_crypto_phase multicasts SAFE; each backend sees (sender, phase)."""
    harness.bus.services[2].send_crypto_phase(1)
    harness.service.send_crypto_phase(2)
    for backend in harness.backends.values():
        assert backend.crypto == [(2, 1), (1, 2)]
    assert {guarantee for _, guarantee in harness.bus.sent} == {Guarantee.SAFE}


# ---------------------------------------------------------------- shutdown


class Tracker:
    """A tracking client answering shutdown requests from a dispatch thread."""

    def __init__(self, harness: Harness, answer: CfgShutdownReply | None) -> None:
        self.answer = answer
        self.asked: list[int] = []
        self.handle = harness.open(shutdown_callback=self._on_request)
        self.handle.trackstart()
        self.thread = threading.Thread(target=self._dispatch, daemon=True)
        self.thread.start()

    def _on_request(self, handle: CfgHandle, flags: int) -> None:
        self.asked.append(flags)
        if self.answer is not None:
            handle.reply_to_shutdown(self.answer)

    def _dispatch(self) -> None:
        with contextlib.suppress(CsError):
            self.handle.dispatch(CfgDispatchFlags.BLOCKING)

    def close(self) -> None:
        self.handle.finalize()
        self.thread.join(10)


async def _try_shutdown(harness: Harness, flags: CfgShutdownFlags) -> CsErrorCode:
    def flow() -> CsErrorCode:
        with harness.open() as handle:
            try:
                handle.try_shutdown(flags)
            except CsError as exc:
                return exc.code
            return CsErrorCode.OK

    result: CsErrorCode = await harness.call(flow)
    return result


async def _trackers(harness: Harness, *answers: CfgShutdownReply | None) -> list[Tracker]:
    trackers = [await harness.call(lambda a=a: Tracker(harness, a)) for a in answers]
    await harness.wait_for(lambda: harness.service.tracker_count == len(answers))
    return trackers


async def test_shutdown_without_trackers_goes_at_once(harness: Harness) -> None:
    """No tracking client: OK, SHUTDOWN goes SAFE, every node logs it, node 1 leaves."""
    assert await _try_shutdown(harness, CfgShutdownFlags.REQUEST) is CsErrorCode.OK
    assert [b.shutdowns for b in harness.backends.values()] == [1, 0, 0]
    assert len(harness.events("Node 1 was shut down by sysadmin")) == 3
    message, guarantee = harness.bus.sent[-1]
    assert (message.function_id, guarantee) == (CfgExecFunction.SHUTDOWN, Guarantee.SAFE)


async def test_shutdown_agreed_by_all_trackers(harness: Harness) -> None:
    """Every tracker is asked with the request's flags; all YES shuts down."""
    trackers = await _trackers(harness, CfgShutdownReply.YES, CfgShutdownReply.YES)
    try:
        assert await _try_shutdown(harness, CfgShutdownFlags.REQUEST) is CsErrorCode.OK
    finally:
        for tracker in trackers:
            await harness.call(tracker.close)
    assert [t.asked for t in trackers] == [[CfgShutdownFlags.REQUEST]] * 2
    assert harness.backends[1].shutdowns == 1
    assert harness.events("Shutdown decision: go (yes 2, no 0, no answer 0)")


async def test_shutdown_vetoed_by_one_no(harness: Harness) -> None:
    """One NO refuses a REQUEST with BUSY; REGARDLESS goes ahead anyway."""
    trackers = await _trackers(harness, CfgShutdownReply.YES, CfgShutdownReply.NO)
    try:
        assert await _try_shutdown(harness, CfgShutdownFlags.REQUEST) is CsErrorCode.BUSY
        assert harness.backends[1].shutdowns == 0
        assert not harness.service.shutdown_in_progress
        assert await _try_shutdown(harness, CfgShutdownFlags.REGARDLESS) is CsErrorCode.OK
    finally:
        for tracker in trackers:
            await harness.call(tracker.close)
    assert trackers[1].asked == [CfgShutdownFlags.REQUEST, CfgShutdownFlags.REGARDLESS]
    assert harness.backends[1].shutdowns == 1


async def test_silent_tracker_times_out_as_no(harness: Harness) -> None:
    """A tracker that never answers counts as NO after cfg.shutdown_timeout (ms)."""
    harness.stores[1].set("cfg.shutdown_timeout", ValueType.UINT32, 100, writer=True)
    trackers = await _trackers(harness, None)
    try:
        assert await _try_shutdown(harness, CfgShutdownFlags.REQUEST) is CsErrorCode.BUSY
        assert harness.events("(yes 0, no 0, no answer 1)")
        assert await _try_shutdown(harness, CfgShutdownFlags.REGARDLESS) is CsErrorCode.OK
    finally:
        await harness.call(trackers[0].close)
    assert harness.backends[1].shutdowns == 1


async def test_immediate_asks_nobody(harness: Harness) -> None:
    """IMMEDIATE shuts down without a TESTSHUTDOWN event to the trackers."""
    trackers = await _trackers(harness, CfgShutdownReply.NO)
    try:
        assert await _try_shutdown(harness, CfgShutdownFlags.IMMEDIATE) is CsErrorCode.OK
    finally:
        await harness.call(trackers[0].close)
    assert trackers[0].asked == []
    assert harness.backends[1].shutdowns == 1


async def test_round_rules_over_raw_ipc(harness: Harness) -> None:
    """Second round: EXIST. Replies from a client not asked, or without a round: ACCESS.
    A tracker that disconnects counts as YES, even after saying NO. The requester that
    goes away abandons the round."""

    def raw_tracker() -> IpcClient:
        client = harness.client()
        raw = client.request(CfgTrackStartRequest(0).encode(), timeout=5)
        assert decode_cfg_response_untrusted(raw, CfgTrackStartResponse).error is CsErrorCode.OK
        return client

    def reply(client: IpcClient, answer: int) -> CsErrorCode:
        raw = client.request(CfgReplyToShutdownRequest(answer).encode(), timeout=5)
        return decode_cfg_response_untrusted(raw, CfgReplyToShutdownResponse).error

    def next_event(client: IpcClient) -> CfgTestShutdownEvent:
        raw = client.receive_event(timeout=5)
        assert raw is not None
        return decode_cfg_event_untrusted(raw)

    tracker = await harness.call(raw_tracker)
    other = await harness.call(raw_tracker)
    bystander = await harness.call(harness.client)
    assert await harness.call(lambda: reply(bystander, 1)) is CsErrorCode.ACCESS
    async with trio.open_nursery() as nursery:
        results: list[CsErrorCode] = []

        async def request() -> None:
            results.append(await _try_shutdown(harness, CfgShutdownFlags.REQUEST))

        nursery.start_soon(request)
        event = await harness.call(lambda: next_event(tracker))
        assert event == CfgTestShutdownEvent(flags=CfgShutdownFlags.REQUEST)
        await harness.call(lambda: next_event(other))
        assert await _try_shutdown(harness, CfgShutdownFlags.REQUEST) is CsErrorCode.EXIST
        assert await harness.call(lambda: reply(bystander, 1)) is CsErrorCode.ACCESS
        assert await harness.call(lambda: reply(tracker, 0)) is CsErrorCode.OK  # NO, but ...
        await harness.call(tracker.close)  # ... leaving before the decision counts as YES
        assert await harness.call(lambda: reply(other, 1)) is CsErrorCode.OK
    assert results == [CsErrorCode.OK]
    assert harness.backends[1].shutdowns == 1
    await harness.call(other.close)

    # The requester goes away in the middle of a round: the round is abandoned.
    tracker = await harness.call(raw_tracker)
    requester = await harness.call(harness.client)
    await harness.call(
        lambda: requester.send(CfgTryShutdownRequest(CfgShutdownFlags.REQUEST).encode())
    )
    await harness.call(lambda: next_event(tracker))
    assert harness.service.shutdown_in_progress
    await harness.call(requester.close)
    await harness.wait_for(lambda: not harness.service.shutdown_in_progress)
    assert await harness.call(lambda: reply(tracker, 1)) is CsErrorCode.ACCESS
    await harness.call(tracker.close)
    await harness.call(bystander.close)
    assert harness.backends[1].shutdowns == 1


async def test_trackstop_and_late_trackstart_during_a_round(harness: Harness) -> None:
    """A tracker that stops tracking counts as YES; one that starts during a round is
    asked too."""
    harness.stores[1].set("cfg.shutdown_timeout", ValueType.UINT32, 10000, writer=True)
    stopping = await harness.call(lambda: Tracker(harness, None))
    await harness.wait_for(lambda: harness.service.tracker_count == 1)
    results: list[CsErrorCode] = []
    async with trio.open_nursery() as nursery:

        async def request() -> None:
            results.append(await _try_shutdown(harness, CfgShutdownFlags.REQUEST))

        nursery.start_soon(request)
        await harness.wait_for(lambda: stopping.asked == [CfgShutdownFlags.REQUEST])
        late = await harness.call(lambda: Tracker(harness, CfgShutdownReply.YES))
        await harness.wait_for(lambda: late.asked == [CfgShutdownFlags.REQUEST])
        await harness.call(stopping.handle.trackstop)
    assert results == [CsErrorCode.OK]
    for tracker in (stopping, late):
        await harness.call(tracker.close)


# ---------------------------------------------------------------- trio API


async def test_trio_api(harness: Harness) -> None:
    """open_cfg's handle does every call in a thread; dispatch_forever awaits the async
    shutdown callback, shutdown_requests() yields the flags of a handle without one."""
    asked: list[int] = []

    async def refuse(handle: AsyncCfgHandle, flags: int) -> None:
        asked.append(flags)
        await handle.reply_to_shutdown(CfgShutdownReply.NO)

    async with (
        open_cfg(prefix=harness.prefix, shutdown_callback=refuse) as tracker,
        open_cfg(prefix=harness.prefix) as plain,
        trio.open_nursery() as nursery,
    ):
        assert await plain.local_get() == 1
        assert (await plain.node_status_get(3)) == cluster_statuses()[3]
        assert (await plain.get_node_addrs(3)).addresses == ("10.231.0.3", "10.232.0.3")
        assert (await plain.ring_status_get())[0] == ("0 10.231.0.1", "n33")
        await plain.reload_config()
        await plain.reopen_log_files()
        await tracker.trackstart()
        nursery.start_soon(tracker.dispatch_forever)
        with pytest.raises(CsError) as info:
            await plain.try_shutdown()
        assert info.value.code is CsErrorCode.BUSY
        assert asked == [CfgShutdownFlags.REQUEST]
        await tracker.trackstop()

        await plain.trackstart()
        async with open_cfg(prefix=harness.prefix) as requester, trio.open_nursery() as inner:
            inner.start_soon(requester.try_shutdown, CfgShutdownFlags.REGARDLESS)
            async for flags in plain.shutdown_requests():
                assert flags == CfgShutdownFlags.REGARDLESS
                await plain.reply_to_shutdown(CfgShutdownReply.YES)
                break
        assert harness.backends[1].shutdowns == 1
        await tracker.aclose()
    assert tracker.closed
    with pytest.raises(CsError) as closed:
        await tracker.local_get()
    assert closed.value.code is CsErrorCode.BAD_HANDLE


# ------------------------------------------------------------ exec messages


def _deliver(service: CfgService, sender: int, function_id: int, payload: bytes) -> None:
    service.exec_deliver(ExecMessage(sender, service.service_id, function_id, payload))


def test_exec_payload_codecs() -> None:
    """The exec payloads round-trip; a long reason is cut to 255 bytes."""
    kill = decode_cfg_killnode_untrusted(encode_cfg_killnode(3, "é" * 200))
    assert kill.nodeid == 3
    assert len(kill.reason.encode()) <= 255
    assert kill.reason == "é" * 127
    assert decode_cfg_killnode_untrusted(encode_cfg_killnode(2, "x")).reason == "x"


@settings(max_examples=300, deadline=None)
@given(function_id=st.integers(0, 63), payload=st.binary(max_size=40))
def test_fuzz_exec_messages(function_id: int, payload: bytes) -> None:
    """Any payload for any function is handled or logged and dropped, never raised."""
    with capture_logs():
        bus = FakeBus()
        backend = FakeBackend(1)
        service = CfgService(backend)
        service.attach(FakeContext(bus, 1, _config(1), CmapStore()))
        bus.services = {1: service}
        _deliver(service, 2, function_id, payload)
    valid = {
        CfgExecFunction.RINGREENABLE: lambda: payload == b"",
        CfgExecFunction.SHUTDOWN: lambda: payload == b"",
        CfgExecFunction.KILLNODE: lambda: _ok(decode_cfg_killnode_untrusted, payload),
        CfgExecFunction.RELOAD_CONFIG: lambda: _ok(decode_cfg_reload_token_untrusted, payload),
        CfgExecFunction.CRYPTO_RECONFIG: lambda: _ok(decode_cfg_crypto_phase_untrusted, payload),
    }
    check = valid.get(function_id)
    assert service.stats.malformed_exec_messages == (0 if check is not None and check() else 1)


def _ok(decoder: Callable[[bytes], Any], payload: bytes) -> bool:
    try:
        decoder(payload)
    except Exception:
        return False
    return True


def test_malformed_exec_messages_are_logged_once_per_sender_at_warning() -> None:
    """A broken peer gets one warning, then debug lines."""
    with capture_logs() as logs:
        bus = FakeBus()
        service = CfgService(FakeBackend(1))
        service.attach(FakeContext(bus, 1, _config(1), CmapStore()))
        for _ in range(3):
            _deliver(service, 2, CfgExecFunction.KILLNODE, b"\x01")
        _deliver(service, 3, 9, b"")
    levels = [(e["log_level"], e["event"].split(":")[0]) for e in logs]
    assert levels == [
        ("warning", "Dropped a malformed cfg message from node 2"),
        ("debug", "Dropped a malformed cfg message from node 2"),
        ("debug", "Dropped a malformed cfg message from node 2"),
        ("warning", "Dropped a malformed cfg message from node 3"),
    ]
    assert service.stats.malformed_exec_messages == 4


# -------------------------------------------------- pycorosync-cfgtool on it


async def test_cfgtool_status_views(harness: Harness) -> None:
    """-s, -sb and -n print corosync-cfgtool's text for the fake cluster state."""
    assert await harness.call(lambda: harness.tool("-s")) == (0, cfgtool_outputs.STATUS, "")
    assert await harness.call(lambda: harness.tool("-sb")) == (0, cfgtool_outputs.BRIEF, "")
    assert await harness.call(lambda: harness.tool("-n")) == (0, cfgtool_outputs.NODES, "")
    assert await harness.call(lambda: harness.tool("-i", "10.231.0.1", "-s")) == (
        0,
        cfgtool_outputs.STATUS,
        "",
    )


async def test_cfgtool_status_details(harness: Harness) -> None:
    """Per-link knet transports (and SCTP's warning), remote/external/dynconnected
    words, unreachable nodes left out of -n, a node whose status fails in -s."""
    store = harness.stores[1]
    store.set("totem.interface.1.knet_transport", ValueType.STRING, "sctp", writer=True)
    statuses = harness.backends[1].statuses
    statuses[2] = attrs.evolve(
        statuses[2],
        remote=True,
        external=True,
        link_status=[attrs.evolve(statuses[2].link_status[0], dynconnected=True)],
    )
    statuses[3] = attrs.evolve(statuses[3], reachable=False)
    rc, out, err = await harness.call(lambda: harness.tool("-n"))
    assert (rc, err) == (0, "")
    assert out == (
        "Local node ID 1, transport knet\n"
        "nodeid: 2 reachable remote external\n"
        "   LINK: 0 udp (10.231.0.1->10.231.0.2) enabled connected dynconnected mtu: 1397\n"
        "\n"
    )
    # Links are listed as the last other node (node 3) has them: none if it fails.
    del statuses[3]
    rc, out, err = await harness.call(lambda: harness.tool("-s"))
    assert (rc, out) == (0, "Local node ID 1, transport knet\n")
    assert err == "Could not get the node status for nodeid 3, the error is: 21\n"
    statuses[3] = cluster_statuses()[3]
    del statuses[2]  # corosync prints a zeroed entry for a node whose status fails
    rc, out, err = await harness.call(lambda: harness.tool("-s"))
    assert rc == 0
    assert err == "Could not get the node status for nodeid 2, the error is: 21\n"
    assert out == (
        "Local node ID 1, transport knet\n"
        "LINK ID 0 udp\n"
        "\taddr\t= 10.231.0.1\n"
        "\tstatus:\n"
        "\t\tnodeid:          1:\tlocalhost\n"
        "\t\tnodeid:          0:\tdisconnected\n"
        "\t\tnodeid:          3:\tconnected\n"
        "LINK ID 1 sctp\n"
        "**SCTP is deprecated and will be removed in a future release\n"
        "\taddr\t= 10.232.0.1\n"
        "\tstatus:\n"
        "\t\tnodeid:          1:\tlocalhost\n"
        "\t\tnodeid:          0:\tdisconnected\n"
        "\t\tnodeid:          3:\tconnected\n"
    )


async def test_cfgtool_actions(harness: Harness) -> None:
    """-a, -R (ok and failing), -L, -k and -H print and exit as corosync-cfgtool."""
    tool = harness.tool
    assert await harness.call(lambda: tool("-a", "2")) == (0, "10.231.0.2 10.232.0.2\n", "")
    assert await harness.call(lambda: tool("-a", "9")) == (
        1,
        "",
        "Could not get node address for nodeid 9\n",
    )
    assert await harness.call(lambda: tool("-R")) == (
        0,
        "Reloading corosync.conf...\nDone\n",
        "",
    )
    harness.backends[1].reload_result = (CsErrorCode.INVALID_PARAM, "parse error")
    assert await harness.call(lambda: tool("-R")) == (
        7,
        "Reloading corosync.conf...\n",
        "Could not reload configuration. Error CS_ERR_INVALID_PARAM\n",
    )
    assert await harness.call(lambda: tool("-L")) == (0, "", "")
    assert harness.backends[1].reopened == 1
    assert await harness.call(lambda: tool("-k", "3")) == (0, "Killing node 3\n", "")
    assert harness.backends[3].killed_by == [(1, "Killed by corosync-cfgtool")]
    assert await harness.call(lambda: tool("-k", "7")) == (
        1,
        "Killing node 7\n",
        "Could not kill node (error = CS_ERR_NOT_EXIST)\n",
    )
    trackers = await _trackers(harness, CfgShutdownReply.NO)
    try:
        assert await harness.call(lambda: tool("-H")) == (
            0,
            "Shutting down corosync\n",
            "Could not shutdown (error = 10)\n",
        )
        assert harness.backends[1].shutdowns == 0
        assert await harness.call(lambda: tool("-H", "--force")) == (
            0,
            "Shutting down corosync\n",
            "",
        )
    finally:
        await harness.call(trackers[0].close)
    assert harness.backends[1].shutdowns == 1
    assert trackers[0].asked == [CfgShutdownFlags.REQUEST, CfgShutdownFlags.REGARDLESS]


async def test_cfgtool_nodelist_from_cmap(harness: Harness) -> None:
    """-s takes the nodes from nodelist.node.N.nodeid (u32 only) and fails without any."""
    store = harness.stores[1]
    store.set("nodelist.node.2.nodeid", ValueType.STRING, "3", writer=True)
    rc, out, _ = await harness.call(lambda: harness.tool("-sb"))
    assert rc == 0
    assert "\tstatus\t= n3\n" in out  # node 3 is left out: its nodeid is no u32
    assert "\tstatus\t= n1\n" in out
    for key, _ in store.iterate("nodelist."):
        store.delete(key, writer=True)
    assert await harness.call(lambda: harness.tool("-s")) == (
        1,
        "",
        "No nodes found in nodelist\n",
    )
