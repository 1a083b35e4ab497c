"""pycorosync-cfgtool against a real corosync 3.1.7 cluster: same output as corosync-cfgtool.

A module fixture builds three network namespaces joined by two bridged links (each
link a bridge in a namespace of its own, 10.231.0.0/24 and 10.232.0.0/24) and starts
``corosync -f`` in each (knet, no crypto, SOCKET IPC as in test_cmapctl_real_corosync;
each daemon gets a private /run, where corosync keeps its lock file). Once node 1 sees
both links to both peers connected, ``corosync-cfgtool ARGS`` and
``python -m corosync.tools.cfgtool ARGS`` run in node 1's namespace must give the same
stdout, stderr (apart from the program name) and exit code -- also after a link of
node 3 is taken down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

pytestmark = pytest.mark.netns

CLIENTS_SRC = Path(__file__).resolve().parents[1] / "src"
HOSTS = (1, 2, 3)
LINKS = (0, 1)

CONFIG = """\
totem {{
    version: 2
    cluster_name: pycfgtool
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}}
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
    qb_ipc_type: socket
    state_dir: {tmp}
}}
"""

NODE = """\
    node {{
        nodeid: {host}
        name: node{host}
        ring0_addr: 10.231.0.{host}
        ring1_addr: 10.232.0.{host}
    }}"""


@attrs.frozen
class Result:
    rc: int
    out: str
    err: str


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "corosync", "corosync-cfgtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt package iproute2/corosync)"
    return None


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@attrs.define
class Cluster:
    prefix: str
    namespaces: list[str] = attrs.Factory(list)
    daemons: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def ns(self, host: int) -> str:
        return f"{self.prefix}h{host}"

    def _run(self, host: int, argv: list[str]) -> Result:
        env = dict(os.environ, PYTHONPATH=str(CLIENTS_SRC))
        env.pop("PYCOROSYNC_IPC_PREFIX", None)
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), *argv],
            capture_output=True,
            timeout=60,
            env=env,
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    def real(self, *args: str, host: int = 1) -> Result:
        return self._run(host, ["corosync-cfgtool", *args])

    def ours(self, *args: str, host: int = 1) -> Result:
        result = self._run(host, [sys.executable, "-m", "corosync.tools.cfgtool", *args])
        return attrs.evolve(
            result, err=result.err.replace("pycorosync-cfgtool", "corosync-cfgtool")
        )

    def wait_until(self, condition: str, expected_count: int) -> None:
        """Until node 1's ``cfgtool -s`` shows ``condition`` ``expected_count`` times."""
        deadline = time.monotonic() + 60
        while self.real("-s").out.count(condition) != expected_count:
            for daemon in self.daemons:
                assert daemon.poll() is None, "a corosync daemon exited"
            assert time.monotonic() < deadline, self.real("-s").out
            time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = Cluster(f"pcfg{os.getpid() % 100000}{uuid.uuid4().hex[:4]}")
    try:
        for link in LINKS:
            switch = f"{lab.prefix}s{link}"
            _ip("netns", "add", switch)
            lab.namespaces.append(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
        nodes = "\n".join(NODE.format(host=host) for host in HOSTS)
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
            conf.write_text(CONFIG.format(nodes=nodes, tmp=tmp))
            # ip netns exec gives a mount namespace of its own: the bind mount stays there.
            command = f"mount --bind {tmp}/run /run && exec corosync -f -c {conf}"
            lab.daemons.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, "sh", "-c", command],
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


def _same(cluster: Cluster, *args: str, host: int = 1) -> Result:
    real, ours = cluster.real(*args, host=host), cluster.ours(*args, host=host)
    assert ours == real
    return ours


def test_status_views_match(cluster: Cluster) -> None:
    """-s, -sb, -n and -i ... -s print exactly what corosync-cfgtool prints."""
    status = _same(cluster, "-s")
    assert status.out.startswith("Local node ID 1, transport knet\nLINK ID 0 udp\n")
    assert status.out.count("\tconnected\n") == 4
    assert _same(cluster, "-sb").out.count("\tstatus\t= n33\n") == 2
    nodes = _same(cluster, "-n")
    assert "nodeid: 3 reachable\n   LINK: 0 udp (10.231.0.1->10.231.0.3) enabled connected" in (
        nodes.out
    )
    _same(cluster, "-i", "10.232.0.1", "-s")
    _same(cluster, "-n", host=2)


def test_addresses_match(cluster: Cluster) -> None:
    """-a for each node (and an unknown one) matches."""
    for host in HOSTS:
        assert _same(cluster, "-a", str(host)).out == f"10.231.0.{host} 10.232.0.{host}\n"
    assert _same(cluster, "-a", "9").rc == 1


@pytest.mark.parametrize(
    "args",
    [
        ("-k", "9"),
        ("-k", "abc"),
        ("-a", "0"),
        ("-x",),
        ("-k",),
        ("--foo",),
        ("--re",),
        ("-L",),
    ],
)
def test_errors_and_harmless_actions_match(cluster: Cluster, args: tuple[str, ...]) -> None:
    """Error texts and exit codes, and -L, are the real tool's."""
    _same(cluster, *args)


def test_link_down_shows_the_same(cluster: Cluster) -> None:
    """With node 3's link 1 down, both tools show it disconnected, in every view."""
    _ip("-n", cluster.ns(3), "link", "set", "l1", "down")
    try:
        cluster.wait_until("\tdisconnected\n", 1)
        assert "\t\tnodeid:          3:\tdisconnected\n" in _same(cluster, "-s").out
        assert "\tstatus\t= n31\n" in _same(cluster, "-sb").out
        _same(cluster, "-n")
    finally:
        _ip("-n", cluster.ns(3), "link", "set", "l1", "up")
    cluster.wait_until("\tconnected\n", 4)
