"""corosync.cfg (blocking and trio) against a real corosync 3.1.7 cluster over SHM,
real corosync's default IPC transport.

The ``cluster`` fixture (conftest.py) runs three corosync nodes in network namespaces;
this module overrides ``cluster_ipc`` so they have no ``qb_ipc_type``. A script in node
1's namespace reads everything with both APIs; what it reads must be what
``corosync-cfgtool`` prints there (-s, -sb, -n, -a). Shutdown tracking is shown with
``corosync-cfgtool -H`` on node 3: the tracking clients are asked and their NO keeps
the node up.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.netns

HOSTS = (1, 2, 3)


@pytest.fixture(scope="module")
def cluster_ipc() -> str | None:
    return None  # corosync's default: SHM


READ_ALL = """
import json
import attrs
import trio
from corosync import CsError
from corosync.cfg import initialize, open_cfg

HOSTS = (1, 2, 3)

def error_of(call):
    try:
        call()
    except CsError as exc:
        return exc.code.name
    return "no error"

def blocking():
    with initialize() as h:
        return {
            "transport": h.transport.name,
            "local": h.local_get(),
            "status": {n: attrs.asdict(h.node_status_get(n)) for n in HOSTS},
            "addrs": {n: attrs.asdict(h.get_node_addrs(n)) for n in (0, *HOSTS)},
            "rings": h.ring_status_get(),
            "errors": [error_of(lambda: h.get_node_addrs(9)),
                       error_of(lambda: h.node_status_get(9))],
        }

async def error_of_async(call):
    try:
        await call()
    except CsError as exc:
        return exc.code.name
    return "no error"

async def with_trio():
    async with open_cfg() as h:
        return {
            "transport": h.transport.name,
            "local": await h.local_get(),
            "status": {n: attrs.asdict(await h.node_status_get(n)) for n in HOSTS},
            "addrs": {n: attrs.asdict(await h.get_node_addrs(n)) for n in (0, *HOSTS)},
            "rings": await h.ring_status_get(),
            "errors": [await error_of_async(lambda: h.get_node_addrs(9)),
                       await error_of_async(lambda: h.node_status_get(9))],
        }

async def open_and_close_with_pumps():
    # The close race of the trio handle (test_trio_handle_close.py), on real corosync.
    for round_ in range(60):
        async with trio.open_nursery() as nursery:
            async with open_cfg() as h:
                nursery.start_soon(h.dispatch_forever)
                for _ in range(round_ % 4):
                    await trio.lowlevel.checkpoint()

trio.run(open_and_close_with_pumps)
print(json.dumps([blocking(), trio.run(with_trio)]))
"""


def _read_all(cluster: Any) -> dict[str, Any]:
    """What both APIs read on node 1; they must agree."""
    result = cluster.python(READ_ALL)
    assert (result.rc, result.err) == (0, "")
    blocking, with_trio = json.loads(result.out)
    assert with_trio == blocking
    assert isinstance(blocking, dict)
    return blocking


def test_cfg_over_shm_reads_what_cfgtool_prints(cluster: Any) -> None:
    """local_get, node_status_get, get_node_addrs and ring_status_get (blocking and
    trio, over SHM) give what corosync-cfgtool -s, -sb, -n and -a print."""
    ours = _read_all(cluster)
    assert ours["transport"] == "SHM"

    status_view = cluster.real("-s").out
    local = re.match(r"Local node ID (\d+), transport knet\n", status_view)
    assert local is not None
    assert ours["local"] == int(local.group(1)) == 1

    # -s: per link, each node's state, as node_status_get has it.
    shown: dict[tuple[int, int], str] = {}
    for block in re.split(r"^LINK ID ", status_view, flags=re.M)[1:]:
        link = int(block.split(" ", 1)[0])
        for nodeid, state in re.findall(r"nodeid: +(\d+):\t(\w+)", block):
            shown[(link, int(nodeid))] = state
    expected: dict[tuple[int, int], str] = {}
    for nodeid in HOSTS[1:]:
        for link, status in enumerate(ours["status"][str(nodeid)]["link_status"]):
            if status["enabled"]:
                state = "connected" if status["connected"] else "disconnected"
                expected[(link, nodeid)] = state
    # The local node shows on each link the others use (node_status_get of the local
    # node has knet's link to itself only).
    assert {k: v for k, v in shown.items() if k[1] != 1} == expected
    assert {k for k, v in shown.items() if v == "localhost"} == {(0, 1), (1, 1)}
    assert len(shown) == 6

    # -sb: ring_status_get's (link and address, status string) of each link.
    brief = re.findall(
        r"LINK ID (\d+) \w+\n\taddr\t= (\S+)\n\tstatus\t= (\S+)\n", cluster.real("-sb").out
    )
    assert [[f"{link} {addr}", status] for link, addr, status in brief] == ours["rings"]
    assert [status for _, status in ours["rings"]] == ["n33", "n33"]

    # -n: each reachable peer's links: addresses, enabled/connected, MTU.
    node_view = cluster.real("-n").out
    peers = re.findall(r"^nodeid: (\d+) reachable\n((?:   LINK: .*\n)+)", node_view, flags=re.M)
    assert [int(nodeid) for nodeid, _ in peers] == [2, 3]
    for nodeid, links in peers:
        status = ours["status"][nodeid]
        assert status["reachable"] is True
        for link, src, dst, words, mtu in re.findall(
            r"LINK: (\d+) \w+ \((\S+)->(\S+)\) ([a-z ]+) mtu: (\d+)", links
        ):
            ours_link = status["link_status"][int(link)]
            assert (ours_link["src_ipaddr"], ours_link["dst_ipaddr"]) == (src, dst)
            assert ours_link["enabled"] is ("enabled" in words.split())
            assert ours_link["connected"] is ("connected" in words.split())
            assert ours_link["mtu"] == int(mtu)

    # -a: the addresses of each node; 0 means this node to the library.
    for nodeid in HOSTS:
        printed = cluster.real("-a", str(nodeid)).out.split()
        assert ours["addrs"][str(nodeid)] == {"family": 2, "addresses": printed}
    assert ours["addrs"]["0"] == ours["addrs"]["1"]
    assert cluster.real("-a", "9").rc == 1
    assert ours["errors"] == ["NOT_EXIST", "FAILED_OPERATION"]


TRACK = """
import sys
import trio
from corosync.cfg import CfgDispatchFlags, CfgShutdownReply, initialize, open_cfg

async def main():
    asked = []

    def refuse(handle, flags):
        asked.append(("blocking", int(flags)))
        handle.reply_to_shutdown(CfgShutdownReply.NO)

    with initialize(shutdown_callback=refuse) as blocking:
        async with open_cfg() as tracker:
            blocking.trackstart()
            await tracker.trackstart()

            async def answer_with_trio():
                async for flags in tracker.shutdown_requests():
                    asked.append(("trio", int(flags)))
                    await tracker.reply_to_shutdown(CfgShutdownReply.NO)
                    return

            print("ready", flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_with_trio)
                nursery.start_soon(trio.to_thread.run_sync, blocking.dispatch,
                                   CfgDispatchFlags.ONE)
            print(sorted(asked), flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            asked.clear()
            blocking.trackstop()
            print("ready", flush=True)
            await answer_with_trio()
            # Anything sent to the stopped tracker would be there by now.
            print(asked, blocking.dispatch(CfgDispatchFlags.ALL), flush=True)
            await tracker.trackstop()

trio.run(main)
"""


def test_trackstart_trackstop_over_shm(cluster: Any) -> None:
    """Blocking and trio trackers on node 3 are asked when corosync-cfgtool -H runs
    there, and their NO keeps corosync up (3.1.7's cfgtool prints the error, exit 0);
    after trackstop only the other one is asked."""
    argv = cluster.argv(3, [sys.executable, "-c", textwrap.dedent(TRACK)])
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=cluster.env()
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            refused = (0, "Shutting down corosync\n", "Could not shutdown (error = 10)\n")
            assert proc.stdout.readline() == b"ready\n"
            result = cluster.real("-H", host=3)
            assert (result.rc, result.out, result.err) == refused  # 10: CS_ERR_BUSY
            asked = ast.literal_eval(proc.stdout.readline().decode())
            assert asked == [("blocking", 0), ("trio", 0)]  # 0: REQUEST
            proc.stdin.write(b"next\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"ready\n"
            result = cluster.real("-H", host=3)
            assert (result.rc, result.out, result.err) == refused
            assert proc.stdout.readline() == b"[('trio', 0)] 0\n"
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert all(daemon.poll() is None for daemon in cluster.daemons)
    assert cluster.real("-s").out.count("\tconnected\n") == 4
