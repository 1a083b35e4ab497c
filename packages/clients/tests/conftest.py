"""Fixtures of the client tests: ``cmap_server``, a cmap service of the executive
(IpcServer + CmapService) running in the test's trio loop, over the transport named by
the ``transport`` fixture (SHM unless a test parametrizes it). Its handler can be made
to stall on a key (``stall.*``), to test timeouts and a server that goes away in the
middle of a call. ``cfg_server``: the executive's cfg service the same way, with no
daemon behind it (for connection handling and shutdown tracking only).

``cluster``: a real corosync 3.1.7 cluster (module scope, needs root): three network
namespaces joined by two bridged links (each link a bridge in a namespace of its own,
10.231.0.0/24 and 10.232.0.0/24), ``corosync -f`` in each (knet, no crypto; each
daemon gets a private /run, where corosync keeps its lock file). It is up once node 1
sees both links to both peers connected. Its IPC transport is the ``cluster_ipc``
fixture's: SOCKET unless a module overrides it (``None``: corosync's default, SHM).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import pytest
import trio

from corosync import CmapValueType
from corosync.ipc import CmapGetRequest, decode_cmap_request_untrusted
from corosync_executive import CfgService, CmapService
from corosync_executive._cmap_store import CmapStore
from corosync_executive._ipc_server import AccessPolicy, IpcConnection, IpcServer

# corosync's rule plus our own uid, so the tests also pass when not run as root.
ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
STALL_PREFIX = "stall."


class CmapServer:
    """A running cmap IPC server; stop it with :meth:`stop`."""

    def __init__(self, service: CmapService, server: IpcServer, runtime_dir: str) -> None:
        self.service = service
        self.server = server
        self.prefix = server.name.removesuffix("cmap")
        self.runtime_dir = runtime_dir
        self.stalled = trio.Event()  # set when a stall.* GET has reached the handler
        self.release = trio.Event()  # set to let stalled GETs answer
        self.scope = trio.CancelScope()

    async def handle(self, conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        try:
            request = decode_cmap_request_untrusted(message)
        except Exception:
            request = None
        if isinstance(request, CmapGetRequest) and request.key.startswith(STALL_PREFIX):
            self.stalled.set()
            await self.release.wait()
        return await self.service.handle(conn, request_id, message)

    def stop(self) -> None:
        """Cancel the server: every connection is closed and its files removed."""
        self.scope.cancel()

    def files(self) -> list[str]:
        """The per-connection files left in the runtime directory."""
        found: list[str] = []
        for _, _, names in os.walk(self.runtime_dir):
            found.extend(names)
        return found


def _ipc_server(
    name: str,
    handle: Callable[[IpcConnection, int, bytes], Awaitable[bytes | None]],
    on_connect: Callable[[IpcConnection], None],
    on_disconnect: Callable[[IpcConnection], None],
    runtime_dir: str,
    transport: str,
) -> IpcServer:
    """An IpcServer for service ``name`` under a unique prefix, for this user."""
    return IpcServer(
        name,
        handle,
        prefix=f"cl{os.getpid()}{uuid.uuid4().hex[:6]}-",
        authorize=ME,
        runtime_dir=runtime_dir,
        transport=transport,  # type: ignore[arg-type]
        on_connect=on_connect,
        on_disconnect=on_disconnect,
    )


@pytest.fixture
def transport() -> str:
    """The transport ``cmap_server`` answers with; tests parametrize it to change it."""
    return "shm"


@pytest.fixture
async def cmap_server(transport: str) -> AsyncIterator[CmapServer]:
    """A cmap server with totem.token = 3000 and a few other keys, for one test."""
    store = CmapStore()
    store.set("totem.token", CmapValueType.UINT32, 3000, writer=True)
    store.set("totem.cluster_name", CmapValueType.STRING, "pytest", writer=True)
    store.set("nodelist.node.0.nodeid", CmapValueType.UINT32, 1, writer=True)
    service = CmapService(store)
    runtime_dir = tempfile.mkdtemp(prefix="pcc-", dir="/dev/shm")
    holder: list[CmapServer] = []

    async def handle(conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        return await holder[0].handle(conn, request_id, message)

    server = _ipc_server(
        "cmap", handle, service.on_connect, service.on_disconnect, runtime_dir, transport
    )
    running = CmapServer(service, server, runtime_dir)
    holder.append(running)

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with running.scope:
            await server.serve(task_status=task_status)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            yield running
            running.release.set()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


@pytest.fixture
async def cfg_server(transport: str) -> AsyncIterator[str]:
    """A cfg service under a unique IPC prefix (yielded). It is attached to no daemon:
    only TRACKSTART/TRACKSTOP (and connecting, closing) work."""
    service = CfgService(backend=None)  # type: ignore[arg-type]  # tracking needs none
    runtime_dir = tempfile.mkdtemp(prefix="pcf-", dir="/dev/shm")
    server = _ipc_server(
        "cfg", service.lib_handle, service.lib_init, service.lib_exit, runtime_dir, transport
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield server.name.removesuffix("cfg")
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


# ------------------------------------------------------- a real corosync cluster

CLIENTS_SRC = Path(__file__).resolve().parents[1] / "src"
HOSTS = (1, 2, 3)
LINKS = (0, 1)

COROSYNC_CONF = """\
totem {{
    version: 2
    cluster_name: {cluster_name}
    transport: knet
    crypto_cipher: none
    crypto_hash: none
{totem_extra}}}
nodelist {{
{nodes}
}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_stderr: no
    to_syslog: no
    to_logfile: yes
    logfile: {tmp}/corosync.log
}}
system {{
{ipc}    state_dir: {tmp}
}}
"""


def corosync_conf(
    tmp: Path,
    cluster_name: str,
    nodes: dict[int, tuple[str, ...]],
    *,
    ipc: str | None,
    token: int | None = None,
) -> str:
    """A corosync.conf for the real corosync: knet without crypto, votequorum, the log
    and state in ``tmp``; ``nodes`` maps node ids to their link addresses; ``ipc`` is
    ``qb_ipc_type`` (None: corosync's default, SHM)."""
    node_text = []
    for nodeid, addresses in nodes.items():
        rings = "".join(
            f"        ring{link}_addr: {address}\n" for link, address in enumerate(addresses)
        )
        node_text.append(f"    node {{\n        nodeid: {nodeid}\n        name: node{nodeid}\n"
                         f"{rings}    }}")  # fmt: skip
    return COROSYNC_CONF.format(
        cluster_name=cluster_name,
        totem_extra="" if token is None else f"    token: {token}\n",
        nodes="\n".join(node_text),
        tmp=tmp,
        ipc="" if ipc is None else f"    qb_ipc_type: {ipc}\n",
    )


@pytest.fixture(scope="session")
def make_corosync_conf() -> Callable[..., str]:
    """:func:`corosync_conf`, for the modules that start a real corosync."""
    return corosync_conf


@attrs.frozen
class RealResult:
    """What a program run in a node's namespace gave."""

    rc: int
    out: str
    err: str


def _real_cluster_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "corosync", "corosync-cfgtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt package iproute2/corosync)"
    return None


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@attrs.define
class RealCluster:
    """The running cluster of the ``cluster`` fixture."""

    prefix: str
    namespaces: list[str] = attrs.Factory(list)
    daemons: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def ns(self, host: int) -> str:
        """The network namespace of node ``host``."""
        return f"{self.prefix}h{host}"

    def env(self) -> dict[str, str]:
        """The environment of programs run in the namespaces (our library on the path)."""
        env = dict(os.environ, PYTHONPATH=str(CLIENTS_SRC))
        env.pop("PYCOROSYNC_IPC_PREFIX", None)
        return env

    def argv(self, host: int, argv: list[str]) -> list[str]:
        """``argv`` run in node ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(self, host: int, argv: list[str]) -> RealResult:
        done = subprocess.run(
            self.argv(host, argv), capture_output=True, timeout=60, env=self.env(), check=False
        )
        return RealResult(done.returncode, done.stdout.decode(), done.stderr.decode())

    def real(self, *args: str, host: int = 1) -> RealResult:
        """corosync-cfgtool ``args`` on node ``host``."""
        return self.run(host, ["corosync-cfgtool", *args])

    def ours(self, *args: str, host: int = 1) -> RealResult:
        """pycorosync-cfgtool ``args`` on node ``host`` (its name in errors as the real one)."""
        result = self.run(host, [sys.executable, "-m", "corosync.tools.cfgtool", *args])
        return attrs.evolve(
            result, err=result.err.replace("pycorosync-cfgtool", "corosync-cfgtool")
        )

    def python(self, script: str, host: int = 1) -> RealResult:
        """A Python ``script`` (dedented) on node ``host``."""
        return self.run(host, [sys.executable, "-c", textwrap.dedent(script)])

    def set_link(self, host: int, link: int, *, up: bool) -> None:
        """Take link ``link`` of node ``host`` down or up."""
        _ip("-n", self.ns(host), "link", "set", f"l{link}", "up" if up else "down")

    def wait_until(self, condition: str, expected_count: int) -> None:
        """Until node 1's ``cfgtool -s`` shows ``condition`` ``expected_count`` times."""
        deadline = time.monotonic() + 60
        while self.real("-s").out.count(condition) != expected_count:
            for daemon in self.daemons:
                assert daemon.poll() is None, "a corosync daemon exited"
            assert time.monotonic() < deadline, self.real("-s").out
            time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster_ipc() -> str | None:
    """The ``qb_ipc_type`` of the ``cluster`` fixture (None: corosync's default, SHM)."""
    return "socket"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_ipc: str | None
) -> Iterator[RealCluster]:
    """A real three-node corosync cluster in network namespaces (see the module doc)."""
    reason = _real_cluster_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = RealCluster(f"pcfg{os.getpid() % 100000}{uuid.uuid4().hex[:4]}")
    try:
        for link in LINKS:
            switch = f"{lab.prefix}s{link}"
            _ip("netns", "add", switch)
            lab.namespaces.append(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
        addresses = {host: tuple(f"10.{231 + link}.0.{host}" for link in LINKS) for host in HOSTS}
        for host in HOSTS:
            ns = lab.ns(host)
            _ip("netns", "add", ns)
            lab.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            for link in LINKS:
                switch = f"{lab.prefix}s{link}"
                peer = f"h{host}"
                _ip("-n", ns, "link", "add", f"l{link}", "type", "veth", "peer", "name", peer,
                    "netns", switch)  # fmt: skip
                _ip("-n", switch, "link", "set", peer, "master", "br0")
                _ip("-n", switch, "link", "set", peer, "up")
                _ip("-n", ns, "addr", "add", f"10.{231 + link}.0.{host}/24", "dev", f"l{link}")
                _ip("-n", ns, "link", "set", f"l{link}", "up")
            tmp = tmp_path_factory.mktemp(f"node{host}")
            (tmp / "run").mkdir()
            conf = tmp / "corosync.conf"
            conf.write_text(corosync_conf(tmp, "pycfgtool", addresses, ipc=cluster_ipc, token=1000))
            # ip netns exec gives a mount namespace of its own: the bind mount stays there.
            command = f"mount --bind {tmp}/run /run && exec corosync -f -c {conf}"
            lab.daemons.append(
                subprocess.Popen(
                    lab.argv(host, ["sh", "-c", command]),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        lab.wait_until("\tconnected\n", 4)
        yield lab
    finally:
        for daemon in lab.daemons:
            daemon.terminate()
        for daemon in lab.daemons:
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
        for name in reversed(lab.namespaces):
            _ip("netns", "delete", name, check=False)
