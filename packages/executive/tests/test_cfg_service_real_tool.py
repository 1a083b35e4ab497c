"""The real corosync-cfgtool (Debian's corosync 3.1.7) against our cfg service.

A server script runs three fake nodes on one in-process message bus (each a
:class:`CfgService` with a fake backend holding the knet state of a 3-node, 2-link
cluster where node 1's link 1 to node 2 is down) and serves node 1's cfg service,
plus a cmap service over ``data/debian-3-nodes.conf`` (cfgtool reads the nodelist
there), in a fresh network namespace over the SHM transport (corosync's default) or
SOCKET. The unmodified tool runs in the same namespace: its output must be what that
state means, and its actions must reach the right fake backends.

Needs root (``ip netns``) and the corosync package (``./dev.sh setup`` installs it).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from cfgtool_outputs import BRIEF, NODES, STATUS

pytestmark = pytest.mark.netns

PACKAGES = Path(__file__).resolve().parents[2]
SRC_PATHS = [str(PACKAGES / name / "src") for name in ("executive", "clients", "knet", "totem")]
CONF = Path(__file__).parent / "data" / "debian-3-nodes.conf"

SERVER_SCRIPT = """
import os
import signal
import sys

import structlog
import trio

from corosync import CsErrorCode
from corosync.ipc import CfgLinkStatus, CfgNodeStatus
from corosync_executive import (
    CfgService, CmapService, load_config, load_config_into_cmap, validate_config,
)
from corosync_executive._cmap_store import CmapStore
from corosync_executive._ipc_server import IpcServer
from corosync_executive._service import ExecMessage


def link(src, dst, connected=True, mtu=1397):
    return CfgLinkStatus(True, connected, False, mtu, src, dst)


STATUSES = {
    1: CfgNodeStatus(1, True, link_status=[link("10.231.0.1", "10.231.0.1", mtu=65535)]),
    2: CfgNodeStatus(2, True, link_status=[
        link("10.231.0.1", "10.231.0.2"), link("10.232.0.1", "10.232.0.2", connected=False)]),
    3: CfgNodeStatus(3, True, link_status=[
        link("10.231.0.1", "10.231.0.3"), link("10.232.0.1", "10.232.0.3")]),
}


class Backend:
    def __init__(self, nodeid):
        self.nodeid = nodeid
        self.record = []

    def node_status(self, nodeid):
        return STATUSES.get(nodeid)

    def node_addresses(self, nodeid):
        return (f"10.231.0.{nodeid}", f"10.232.0.{nodeid}") if nodeid in STATUSES else None

    def reload_local(self):
        self.record.append("reload")
        if os.path.exists(sys.argv[3]):
            return CsErrorCode.INVALID_PARAM, "parser error"
        return CsErrorCode.OK, ""

    def reopen_log_files(self):
        self.record.append("reopen")

    def killed(self, by, reason):
        self.record.append(f"killed by {by}: {reason}")

    def shutdown_now(self):
        self.record.append("shutdown")

    def crypto_reconfig(self, sender, phase):
        self.record.append(f"crypto {sender} {phase}")


class Context:
    def __init__(self, nodeid, config, store, services):
        self.local_nodeid, self.config, self.cmap = nodeid, config, store
        self.members, self.ring_id, self.services = (1, 2, 3), None, services

    def mcast(self, service_id, function_id, payload, guarantee):
        message = ExecMessage(self.local_nodeid, service_id, function_id, payload)
        for nodeid in self.members:
            self.services[nodeid].exec_deliver(message)

    def cmap_changed(self):
        pass


async def main():
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    services, backends, store1 = {}, {}, None
    for nodeid in (1, 2, 3):
        config = validate_config(load_config(sys.argv[1]), hostname=f"node{nodeid}")
        store = CmapStore()
        load_config_into_cmap(store, config)
        store1 = store1 or store
        backends[nodeid] = Backend(nodeid)
        services[nodeid] = CfgService(backends[nodeid])
        services[nodeid].attach(Context(nodeid, config, store, services))
    cfg = services[1]
    cfg_server = IpcServer("cfg", cfg.lib_handle, on_connect=cfg.lib_init,
                           on_disconnect=cfg.lib_exit, transport=sys.argv[2])
    cmap_server = CmapService(store1).make_server(transport=sys.argv[2])
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(cfg_server.serve)
            await nursery.start(cmap_server.serve)
            print("READY", os.getpid(), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    for nodeid, backend in backends.items():
        print(f"NODE {nodeid}: {backend.record}", flush=True)
    print("TRACKERS", cfg.tracker_count, flush=True)


trio.run(main)
"""


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the cfg server did not answer in time"
    line: str = stream.readline()
    return line


@pytest.mark.parametrize("transport", ["shm", "socket"])
def test_real_cfgtool_against_cfg_service(netns: str, tmp_path: Path, transport: str) -> None:
    """corosync-cfgtool shows link and node status, addresses, reloads (ok and failed),
    reopens logs, kills a node and shuts down through our cfg service, as against
    corosync, over either transport."""
    script = tmp_path / "cfg_server.py"
    script.write_text(SERVER_SCRIPT)
    fail_flag = tmp_path / "reload-fails"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(SRC_PATHS))
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            str(script),
            str(CONF),
            transport,
            str(fail_flag),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def tool(*args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            ["ip", "netns", "exec", netns, "corosync-cfgtool", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    try:
        assert _read_line(server.stdout, 30).split()[0] == "READY"
        assert tool("-s") == (0, STATUS, "")
        assert tool("-sb") == (0, BRIEF, "")
        assert tool("-n") == (0, NODES, "")
        assert tool("-a", "2") == (0, "10.231.0.2 10.232.0.2\n", "")
        assert tool("-a", "9") == (1, "", "Could not get node address for nodeid 9\n")
        assert tool("-R") == (0, "Reloading corosync.conf...\nDone\n", "")
        fail_flag.touch()
        assert tool("-R") == (
            7,
            "Reloading corosync.conf...\n",
            "Could not reload configuration. Error CS_ERR_INVALID_PARAM\n",
        )
        assert tool("-L") == (0, "", "")
        assert tool("-k", "3") == (0, "Killing node 3\n", "")
        assert tool("-k", "9") == (
            1,
            "Killing node 9\n",
            "Could not kill node (error = CS_ERR_NOT_EXIST)\n",
        )
        assert tool("-H") == (0, "Shutting down corosync\n", "")

        server.send_signal(signal.SIGTERM)
        records = [_read_line(server.stdout, 30).strip() for _ in range(4)]
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stdout is not None
        server.stdout.close()
    assert records == [
        "NODE 1: ['reload', 'reload', 'reopen', 'shutdown']",
        "NODE 2: ['reload', 'reload']",
        "NODE 3: ['reload', 'reload', 'killed by 1: Killed by corosync-cfgtool']",
        "TRACKERS 0",
    ]
