"""Issue 4's proof with real processes: pycorosync clusters in network namespaces.

Every node is a ``pycorosync -f`` process (``ip netns exec <ns> python -m
corosync_executive -f -c <conf>``) in a namespace of its own with two links, each a
bridged segment of its own (:class:`corosync_executive._netlab.NetnsLab`); the configs
are pycorosync-cluster's (:func:`corosync_executive._cluster_config.render_config`),
crypto on (aes256/sha256, one authkey file). The daemons find their node in the
nodelist by the addresses their namespace owns, as on separate machines.

What is checked runs the unmodified Debian ``corosync-cmapctl``/``corosync-cfgtool``
(3.1.7) inside a node's namespace, reads the daemons' log files and signals them:

* the tools print the right link status, members, addresses and stats over the SHM
  transport and over the socket transport (``system.qb_ipc_type: socket``);
* a link taken down (``ip link set down``) shows disconnected and comes back, the
  membership untouched; ``kill -9`` gives the survivors a new membership;
* ``cfgtool -R`` after a fourth node is added to every config file brings it in; a
  key change by reload re-forms nothing and drops no packet;
* SIGTERM: exit status 0 and a new membership at the others well before a failure
  could be detected (the token timeout).

One cluster serves the tests that leave it as they found it; the destructive ones get
a cluster of their own. Every cluster is torn down (processes, namespaces) even when
its test fails, and the teardown asserts that nothing was left behind. Needs root,
iproute2 and the corosync package; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corosync_executive._cluster_config import (
    NETNS_ADDRESS_BASE,
    ClusterLayout,
    LabMode,
    NodeFiles,
    render_config,
    write_authkey,
)
from corosync_executive._netlab import (
    NetnsLab,
    delete_stale_namespaces,
    list_netns,
    netns_unavailable_reason,
)
from corosync_executive.cluster import _die_with_parent_hook as die_with_parent_hook

pytestmark = pytest.mark.netns

N_LINKS = 2
TAG = "pst"  # namespaces pst<pytest pid>c<n>{n<node>,s<link>}
_STALE_NETNS = re.compile(rf"^{TAG}(\d+)c\d+[ns]\d+$")
_cluster_counter = itertools.count(1)
_NEW_RING = re.compile(r"A new membership \(([0-9a-f]+\.[0-9a-f]+)\) was formed")
_TIME = re.compile(r"\b(\d\d):(\d\d):(\d\d\.\d+)\b")
FORM_TIMEOUT = 20.0  # seconds; forming takes 2-3 s, more on a loaded machine
CHANGE_TIMEOUT = 15.0


def skip_reason() -> str | None:
    """Why these tests cannot run here, or None."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return f"pycorosync netns system tests: {reason}"
    for tool in ("corosync-cmapctl", "corosync-cfgtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install corosync; ./dev.sh setup as root)"
    return None


def wait_for(condition: Callable[[], bool], what: str, timeout: float = CHANGE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def seconds_of_day(line: str) -> float:
    """The hires timestamp of a log line (``Nov 27 04:15:38.094 ...``) in seconds."""
    match = _TIME.search(line)
    assert match is not None, line
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))


class Cluster:
    """A lab of ``n_hosts`` namespaces whose first ``n_nodes`` hosts are in the
    nodelist; nodes are started one by one with :meth:`start`."""

    def __init__(
        self, workdir: Path, *, n_hosts: int = 3, n_nodes: int = 3, ipc_type: str | None = None
    ) -> None:
        self.workdir = workdir
        self.ipc_type = ipc_type
        prefix = f"{TAG}{os.getpid()}c{next(_cluster_counter)}"
        self.layout = ClusterLayout(n_nodes, N_LINKS, LabMode.NETNS, netns_prefix=prefix)
        self.lab = NetnsLab(
            prefix,
            n_hosts,
            (1500,) * N_LINKS,
            host_tag="n",
            address_base=NETNS_ADDRESS_BASE,
        )
        self.keyfile = workdir / "authkey"
        self.files = {host: NodeFiles.under(workdir, host) for host in self.lab.hosts}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.pids: set[int] = set()
        self._die_with_parent = die_with_parent_hook()

    # ------------------------------------------------------------------ set up, tear down

    def create(self) -> None:
        """The key, every host's directory and config, the namespaces."""
        write_authkey(self.keyfile)
        for files in self.files.values():
            files.directory.mkdir(mode=0o700)
            files.state_dir.mkdir(mode=0o700)
        self.write_configs(self.layout.n_nodes)
        for host in self.lab.hosts:
            # The lab and the layout must agree on where a node lives.
            assert self.lab.ns(host) == self.layout.netns(host)
            assert self.lab.address(host, 1) == self.layout.address(host, 1)
        self.lab.create()

    def write_configs(self, n_nodes: int) -> None:
        """A nodelist of nodes 1..``n_nodes`` into the config file of every host."""
        layout = ClusterLayout(
            n_nodes, N_LINKS, LabMode.NETNS, netns_prefix=self.layout.netns_prefix
        )
        for files in self.files.values():
            text = render_config(layout, files, self.keyfile)
            if self.ipc_type is not None:
                text = text.replace("system {\n", f"system {{\n\tqb_ipc_type: {self.ipc_type}\n")
                assert f"qb_ipc_type: {self.ipc_type}" in text
            files.config.write_text(text)

    def start(self, *nodeids: int) -> None:
        for nodeid in nodeids:
            files = self.files[nodeid]
            command = [sys.executable, "-m", "corosync_executive", "-f", "-c", str(files.config)]
            with files.stderr_log.open("wb") as stderr:
                process = self.lab.popen(
                    nodeid,
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    # SIGTERM when pytest dies, even by SIGKILL (the namespaces of such
                    # a run go at the next run: delete_stale_namespaces).
                    preexec_fn=self._die_with_parent,
                )
            self.processes[nodeid] = process
            self.pids.add(process.pid)

    def close(self) -> None:
        """Stop the daemons (SIGTERM, then SIGKILL), delete the namespaces, and check
        that nothing is left: namespaces, processes, IPC files in /dev/shm."""
        self.lab.close()
        leftovers = [name for name in list_netns() if name.startswith(self.lab.prefix)]
        assert leftovers == [], f"namespaces left behind: {leftovers}"
        running = {n: p.pid for n, p in self.processes.items() if p.poll() is None}
        assert running == {}, f"daemons still running: {running}"
        assert self._processes_using_workdir() == [], "processes of this cluster still run"
        shm = [
            name
            for name in os.listdir("/dev/shm")
            if any(name.startswith(f"qb-{pid}-") for pid in self.pids)
        ]
        assert shm == [], f"IPC files left in /dev/shm: {shm}"

    def _processes_using_workdir(self) -> list[int]:
        found = []
        needle = f"{self.workdir}{os.sep}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                found.append(int(entry))
        return found

    # ------------------------------------------------------------------ tools

    def run(self, nodeid: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in ``nodeid``'s namespace."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.lab.ns(nodeid), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check:
            assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result

    def cmap_get(self, nodeid: int, key: str, *, stats: bool = False) -> str:
        """The value of ``key`` as corosync-cmapctl -q prints it ("" when it is not set)."""
        args = ["corosync-cmapctl", *(["-m", "stats"] if stats else []), "-q", "-g", key]
        return self.run(nodeid, *args, check=False).stdout.strip()

    def member_status(self, nodeid: int) -> dict[int, str]:
        """``runtime.members.<id>.status`` as ``nodeid`` sees it."""
        listing = self.run(nodeid, "corosync-cmapctl", "runtime.members.", check=False).stdout
        status = {}
        for line in listing.splitlines():
            match = re.fullmatch(r"runtime\.members\.(\d+)\.status \(str\) = (\w+)", line)
            if match is not None:
                status[int(match.group(1))] = match.group(2)
        return status

    def sees_joined(self, nodeid: int, members: set[int]) -> bool:
        status = self.member_status(nodeid)
        return {n for n, s in status.items() if s == "joined"} == members

    def synced(self, nodeid: int) -> bool:
        """Whether ``nodeid`` finished the service synchronization of its latest
        membership (the services, cmap's ``runtime.members.*.config_version`` among
        them, are up to date only then)."""
        lines = self.log(nodeid).splitlines()
        formed = [i for i, line in enumerate(lines) if _NEW_RING.search(line)]
        return bool(formed) and any(
            "Completed service synchronization" in line for line in lines[formed[-1] :]
        )

    def wait_formed(self, members: set[int], timeout: float = FORM_TIMEOUT) -> None:
        """Every node of ``members`` sees exactly them joined, and has synchronized."""
        for nodeid in sorted(members):
            self.assert_running(nodeid)
            wait_for(
                lambda nodeid=nodeid: (  # type: ignore[misc]
                    self.sees_joined(nodeid, members) and self.synced(nodeid)
                ),
                f"node {nodeid} to see members {sorted(members)}\n{self.log_tail(nodeid)}",
                timeout,
            )

    def wait_links_connected(self, nodes: list[int]) -> None:
        """Every node of ``nodes`` shows every link to the others connected (a
        membership can form before the second link is up)."""
        for local in nodes:
            expected = self.expected_link_status(local, nodes)
            wait_for(
                lambda local=local, expected=expected: (  # type: ignore[misc]
                    self.run(local, "corosync-cfgtool", "-s").stdout == expected
                ),
                f"node {local} to show every link connected",
            )

    def assert_running(self, nodeid: int) -> None:
        process = self.processes[nodeid]
        assert process.poll() is None, (
            f"node {nodeid} exited with {process.returncode}\n{self.log_tail(nodeid)}"
        )

    # ------------------------------------------------------------------ logs

    def log(self, nodeid: int) -> str:
        try:
            return self.files[nodeid].logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, nodeid: int, lines: int = 30) -> str:
        stderr = self.files[nodeid].stderr_log
        err = stderr.read_text(errors="replace") if stderr.exists() else ""
        log = "\n".join(self.log(nodeid).splitlines()[-lines:])
        return f"---- node {nodeid} log tail:\n{log}\n---- stderr:\n{err[-2000:]}"

    def membership_lines(self, nodeid: int) -> list[str]:
        """Node ``nodeid``'s "A new membership (<ring id>) was formed" log lines."""
        return [line for line in self.log(nodeid).splitlines() if _NEW_RING.search(line)]

    def lines_with(self, nodeid: int, text: str) -> list[str]:
        return [line for line in self.log(nodeid).splitlines() if text in line]

    # ------------------------------------------------------------------ expectations

    def expected_link_status(
        self, local: int, nodes: list[int], disconnected: frozenset[tuple[int, int]] = frozenset()
    ) -> str:
        """What ``corosync-cfgtool -s`` prints at ``local`` (corosync's exact layout)."""
        lines = [f"Local node ID {local}, transport knet"]
        for link in range(N_LINKS):
            lines += [f"LINK ID {link} udp", f"\taddr\t= {self.lab.address(local, link)}"]
            lines.append("\tstatus:")
            for nodeid in nodes:
                if nodeid == local:
                    state = "localhost"
                elif (nodeid, link) in disconnected:
                    state = "disconnected"
                else:
                    state = "connected"
                lines.append(f"\t\tnodeid: {nodeid:>10}:\t{state}")
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_cluster(
    workdir: Path, *, start: tuple[int, ...] = (1, 2, 3), **options: Any
) -> Iterator[Cluster]:
    """A cluster whose nodes ``start`` have formed one membership; torn down (and
    checked for leftovers) at the end, also when the body fails."""
    cluster = Cluster(workdir, **options)
    try:
        cluster.create()
        cluster.start(*start)
        cluster.wait_formed(set(start))
        cluster.wait_links_connected(list(start))
        yield cluster
    finally:
        cluster.close()


def _skip_unless_possible() -> None:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    delete_stale_namespaces(_STALE_NETNS)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node SHM cluster for the tests that leave it as they found it."""
    _skip_unless_possible()
    with running_cluster(tmp_path_factory.mktemp("shared")) as cluster:
        yield cluster


@pytest.fixture
def new_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``make(**Cluster options)``: a cluster of this test's own, nodes 1-3 running."""
    _skip_unless_possible()
    with contextlib.ExitStack() as stack:
        count = itertools.count(1)

        def make(**options: Any) -> Cluster:
            workdir = tmp_path / f"cluster{next(count)}"
            workdir.mkdir()
            return stack.enter_context(running_cluster(workdir, **options))

        yield make


@pytest.fixture(params=["shm", "socket"])
def transport_cluster(request: pytest.FixtureRequest) -> Cluster:
    """The shared SHM cluster, or a cluster of its own with ``qb_ipc_type: socket``."""
    if request.param == "shm":
        cluster: Cluster = request.getfixturevalue("shared_cluster")
        return cluster
    make: Callable[..., Cluster] = request.getfixturevalue("new_cluster")
    return make(ipc_type="socket")


ALL = (1, 2, 3)
RELOAD_DONE = "Reloading corosync.conf...\nDone\n"


def _qb_dirs(pid: int, client: int | str = "") -> list[Path]:
    """The per-connection directories the libqb server ``pid`` has in /dev/shm (for
    the client ``client``, or for all)."""
    return sorted(Path("/dev/shm").glob(f"qb-{pid}-{client}*"))


def _qb_files(pid: int, client: int) -> list[str]:
    """The files of ``client``'s connections to ``pid``: an SHM connection's six ring
    files (``<ring>-header``, ``<ring>-data``), a SOCKET connection's control file only
    (its messages travel as datagrams)."""
    return sorted(
        name for directory in _qb_dirs(pid, f"{client}-") for name in os.listdir(directory)
    )


# ---------------------------------------------------------------------- the real tools


def test_real_tools_show_the_cluster(transport_cluster: Cluster) -> None:
    """corosync-cfgtool and corosync-cmapctl, unmodified, at node 1: link status, node
    status, addresses, members, config and stats as corosync prints them."""
    cluster = transport_cluster
    address = cluster.lab.address
    for local in ALL:
        status = cluster.run(local, "corosync-cfgtool", "-s").stdout
        assert status == cluster.expected_link_status(local, list(ALL))

    mtu = {
        (nodeid, link): cluster.cmap_get(1, f"stats.knet.node{nodeid}.link{link}.mtu", stats=True)
        for nodeid in (2, 3)
        for link in range(N_LINKS)
    }
    assert all(value.isdigit() and 0 < int(value) <= 1472 for value in mtu.values()), mtu
    expected = "Local node ID 1, transport knet\n"
    for nodeid in (2, 3):
        expected += f"nodeid: {nodeid} reachable\n"
        for link in range(N_LINKS):
            expected += (
                f"   LINK: {link} udp ({address(1, link)}->{address(nodeid, link)}) "
                f"enabled connected mtu: {mtu[nodeid, link]}\n"
            )
        expected += "\n"
    assert cluster.run(1, "corosync-cfgtool", "-n").stdout == expected

    for nodeid in ALL:
        addresses = cluster.run(1, "corosync-cfgtool", "-a", str(nodeid)).stdout
        assert addresses == f"{address(nodeid, 0)} {address(nodeid, 1)}\n"

    members = cluster.run(1, "corosync-cmapctl", "runtime.members").stdout.splitlines()
    assert len(members) == 4 * len(ALL), "\n".join(members)
    for nodeid in ALL:
        key = f"runtime.members.{nodeid}"
        assert f"{key}.config_version (u64) = 0" in members
        ips = f"r(0) ip({address(nodeid, 0)}) r(1) ip({address(nodeid, 1)}) "
        assert f"{key}.ip (str) = {ips}" in members
        assert f"{key}.status (str) = joined" in members
        assert any(re.fullmatch(rf"{key}\.join_count \(u32\) = [1-9]\d*", m) for m in members)

    name = cluster.run(1, "corosync-cmapctl", "-g", "totem.cluster_name").stdout
    assert name == "totem.cluster_name (str) = pycorosync\n"
    connected = cluster.run(
        1, "corosync-cmapctl", "-m", "stats", "stats.knet.node2.link0.connected"
    ).stdout
    assert connected == "stats.knet.node2.link0.connected (u8) = 1\n"

    # Which transport the daemon chose: libqb's SHM rings of a connected client are
    # files in /dev/shm named after the server's pid; over sockets there are none.
    tracker = subprocess.Popen(
        ["ip", "netns", "exec", cluster.lab.ns(1), "corosync-cmapctl", "-t", "totem.token"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Connected once the daemon lists it among its cmap (service 0) connections.
        wait_for(
            lambda: (
                cluster.run(
                    1,
                    *("corosync-cmapctl", "-m", "stats", f"stats.ipcs.service0.{tracker.pid}."),
                    check=False,  # exit status 1 while no key has the prefix
                ).stdout.count(".procname (str) = corosync-cmapct\n")  # comm: 15 chars
                == 1
            ),
            "the tracking corosync-cmapctl to be connected",
        )
        files = _qb_files(cluster.processes[1].pid, tracker.pid)
    finally:
        out, err = tracker.communicate("q\n", timeout=10)
    assert tracker.returncode == 0, (out, err)
    if cluster.ipc_type == "socket":
        assert files == ["qb-control-cmap"]
    else:
        assert len(files) == 6, files
        assert all(name.endswith(("-header", "-data")) for name in files), files
    wait_for(lambda: _qb_dirs(cluster.processes[1].pid) == [], "the tracker's IPC files to go")


# ---------------------------------------------------------------------- link failure


def test_link_down_and_back_keeps_the_membership(shared_cluster: Cluster) -> None:
    """Node 3's link 1 goes down: node 1 shows it disconnected (link 0 connected), the
    membership stays as it was; up again: connected again."""
    cluster = shared_cluster
    rings = {nodeid: cluster.membership_lines(nodeid) for nodeid in ALL}
    ups = len(cluster.lines_with(1, "rx: host: 3 link: 1 is up"))
    link1_down = cluster.expected_link_status(1, list(ALL), frozenset({(3, 1)}))
    node3_down = cluster.expected_link_status(3, list(ALL), frozenset({(1, 1), (2, 1)}))
    cluster.lab.set_link_state(3, 1, up=False)
    try:
        wait_for(
            lambda: cluster.run(1, "corosync-cfgtool", "-s").stdout == link1_down,
            "node 1 to show link 1 to node 3 disconnected",
        )
        wait_for(
            lambda: cluster.run(3, "corosync-cfgtool", "-s").stdout == node3_down,
            "node 3 to show its link 1 disconnected",
        )
        assert cluster.cmap_get(1, "stats.knet.node3.link1.connected", stats=True) == "0"
        assert cluster.cmap_get(1, "stats.knet.node3.link0.connected", stats=True) == "1"
        assert cluster.lines_with(1, "link: host: 3 link: 1 is down")
        for nodeid in ALL:
            assert cluster.sees_joined(nodeid, set(ALL))
    finally:
        cluster.lab.set_link_state(3, 1, up=True)
    cluster.wait_links_connected(list(ALL))
    assert len(cluster.lines_with(1, "rx: host: 3 link: 1 is up")) == ups + 1
    for nodeid in ALL:
        assert cluster.sees_joined(nodeid, set(ALL))
        assert cluster.membership_lines(nodeid) == rings[nodeid], "the membership changed"


# ---------------------------------------------------------------------- key change


def test_crypto_key_change_by_reload_loses_nothing(shared_cluster: Cluster) -> None:
    """A new key in the key file and one ``corosync-cfgtool -R``: every node changes
    key without a new membership and without a packet failing authentication."""
    cluster = shared_cluster
    rings = {nodeid: cluster.membership_lines(nodeid) for nodeid in ALL}
    changed = {n: len(cluster.lines_with(n, "crypto: key change complete")) for n in ALL}
    reloads = {n: len(cluster.lines_with(n, "Config reload complete")) for n in ALL}
    old_key = cluster.keyfile.read_bytes()
    cluster.keyfile.unlink()
    write_authkey(cluster.keyfile)  # a new random key, the same path
    assert cluster.keyfile.read_bytes() != old_key

    assert cluster.run(1, "corosync-cfgtool", "-R").stdout == RELOAD_DONE
    for nodeid in ALL:
        wait_for(
            lambda nodeid=nodeid: (  # type: ignore[misc]
                len(cluster.lines_with(nodeid, "crypto: key change complete"))
                == changed[nodeid] + 1
            ),
            f"node {nodeid} to finish the key change\n{cluster.log_tail(nodeid)}",
        )
    # Totem traffic still reaches everyone, sealed with the new key only: a second
    # reload is agreed and carried out by every node.
    assert cluster.run(2, "corosync-cfgtool", "-R").stdout == RELOAD_DONE
    for nodeid in ALL:
        wait_for(
            lambda nodeid=nodeid: (  # type: ignore[misc]
                len(cluster.lines_with(nodeid, "Config reload complete")) == reloads[nodeid] + 2
            ),
            f"node {nodeid} to carry out both reloads",
        )
    for nodeid in ALL:
        assert cluster.cmap_get(nodeid, "config.reload_status") == "1"  # CS_OK
        assert cluster.lines_with(nodeid, "crypto: the new key is in use for sending")
        assert cluster.lines_with(nodeid, "invalid digest") == []
        assert cluster.lines_with(nodeid, "Config reload failed") == []
        assert cluster.membership_lines(nodeid) == rings[nodeid], "the ring re-formed"
        assert cluster.sees_joined(nodeid, set(ALL))


# ---------------------------------------------------------------------- destructive


def test_kill_9_gives_the_survivors_a_new_membership(
    new_cluster: Callable[..., Cluster],
) -> None:
    cluster = new_cluster()
    rings = {nodeid: len(cluster.membership_lines(nodeid)) for nodeid in (1, 2)}
    victim = cluster.processes[3]
    # A killed daemon cannot clean up after its clients: let it finish with ours first.
    wait_for(lambda: _qb_dirs(victim.pid) == [], "node 3 to close the tools' connections")
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    for nodeid in (1, 2):
        wait_for(
            lambda nodeid=nodeid: (  # type: ignore[misc]
                cluster.member_status(nodeid) == {1: "joined", 2: "joined", 3: "left"}
            ),
            f"node {nodeid} to see node 3 left\n{cluster.log_tail(nodeid)}",
        )
        new = cluster.membership_lines(nodeid)[rings[nodeid] :]
        assert any(line.rstrip().endswith("left: 3") or "left: 3 " in line for line in new), new
    gone = cluster.expected_link_status(1, list(ALL), frozenset({(3, 0), (3, 1)}))
    wait_for(
        lambda: cluster.run(1, "corosync-cfgtool", "-s").stdout == gone,
        "node 1 to show both links to node 3 disconnected",
    )


def test_reload_brings_in_a_fourth_node(new_cluster: Callable[..., Cluster]) -> None:
    """Node 4 in every config file, ``corosync-cfgtool -R``, node 4 started: all four
    see four members."""
    cluster = new_cluster(n_hosts=4)
    cluster.write_configs(4)
    assert cluster.run(1, "corosync-cfgtool", "-R").stdout == RELOAD_DONE
    for nodeid in ALL:
        wait_for(
            lambda nodeid=nodeid: cluster.cmap_get(nodeid, "nodelist.node.3.nodeid") == "4",  # type: ignore[misc]
            f"node {nodeid} to have node 4 in its nodelist",
        )
    # Our cfgtool says the same (and reloading an unchanged file changes nothing).
    ours = cluster.run(2, sys.executable, "-m", "corosync.tools.cfgtool", "-R")
    assert ours.stdout == RELOAD_DONE
    cluster.start(4)
    cluster.wait_formed({1, 2, 3, 4})
    cluster.wait_links_connected([1, 2, 3, 4])
    for nodeid in ALL:
        assert cluster.cmap_get(nodeid, "config.reload_status") == "1"


def test_sigterm_leaves_cleanly(new_cluster: Callable[..., Cluster]) -> None:
    """SIGTERM: node 3 exits 0 and the others form a new membership without it well
    within the token timeout (a failure could not be detected before it expires)."""
    cluster = new_cluster()
    token_ms = int(cluster.cmap_get(1, "runtime.config.totem.token"))
    rings = {nodeid: len(cluster.membership_lines(nodeid)) for nodeid in (1, 2)}
    leaver = cluster.processes[3]
    leaver.send_signal(signal.SIGTERM)
    assert leaver.wait(timeout=15) == 0, cluster.log_tail(3)
    received = cluster.lines_with(3, "Received SIGTERM")
    assert len(received) == 1, cluster.log_tail(3)
    for nodeid in (1, 2):
        wait_for(
            lambda nodeid=nodeid: len(cluster.membership_lines(nodeid)) > rings[nodeid],  # type: ignore[misc]
            f"node {nodeid} to form a new membership",
        )
        formed = cluster.membership_lines(nodeid)[rings[nodeid]]
        assert "left: 3" in formed, formed
        delay = seconds_of_day(formed) - seconds_of_day(received[0])
        print(f"node {nodeid}: new membership {delay * 1000:.0f} ms after the SIGTERM")
        assert 0 <= delay < token_ms / 1000, (delay, token_ms)
        assert cluster.member_status(nodeid) == {1: "joined", 2: "joined", 3: "left"}
