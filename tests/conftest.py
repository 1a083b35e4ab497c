"""Shared fixtures of the root test suite: network-namespace labs for system tests.

A :class:`NetnsLab` builds hosts that each live in a network namespace of their own,
joined by separate L2 segments ("links"): link ``L`` is a bridge inside a dedicated
switch namespace, and host ``h`` reaches it through a veth pair whose host end is
called ``l<L>`` and carries the address ``10.(231+L).0.h/24``. These addresses exist
only inside the namespaces the lab creates, so no traffic leaves the machine.

Namespace names start with ``knt<pid>t<n>`` (the pytest process id and a per-lab
counter). The lab's finalizer stops every process it started and deletes its
namespaces, even when the test failed; namespaces left behind by an earlier run whose
process is gone are deleted when the next lab is created.

Tests that use a lab carry ``@pytest.mark.netns``; they are skipped, with the reason,
only when not run as root or when the ``ip`` tool is missing.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

NETNS_PREFIX = "knt"
_STALE_NETNS = re.compile(rf"^{NETNS_PREFIX}(\d+)t\d+[hs]\d+$")
_lab_counter = itertools.count(1)


def netns_skip_reason() -> str | None:
    """Why netns tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "netns system tests need root (network namespaces, veth pairs)"
    if shutil.which("ip") is None:
        return "netns system tests need the iproute2 'ip' tool"
    return None


def _run(args: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(args)}\n{result.stderr.strip()}"
        )
    return result.stdout


def _list_netns() -> list[str]:
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating pytest process no longer exists."""
    deleted = []
    for name in _list_netns():
        match = _STALE_NETNS.match(name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            _run(["ip", "netns", "delete", name], check=False)
            deleted.append(name)
    return deleted


class NetnsLab:
    """Hosts 1..n in namespaces of their own, joined by ``len(mtus)`` bridged links."""

    def __init__(self, n_hosts: int, mtus: Sequence[int] = (1500, 1500)) -> None:
        if not 1 <= n_hosts <= 200 or not 1 <= len(mtus) <= 8:
            raise ValueError("a lab has 1..200 hosts and 1..8 links")
        self.prefix = f"{NETNS_PREFIX}{os.getpid()}t{next(_lab_counter)}"
        self.n_hosts = n_hosts
        self.mtus = tuple(mtus)
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.loss_methods: dict[tuple[int, int], str] = {}

    # ------------------------------------------------------------------ names

    @property
    def hosts(self) -> range:
        return range(1, self.n_hosts + 1)

    @property
    def links(self) -> range:
        return range(len(self.mtus))

    def ns(self, host: int) -> str:
        return f"{self.prefix}h{host}"

    def switch_ns(self, link: int) -> str:
        return f"{self.prefix}s{link}"

    @staticmethod
    def iface(link: int) -> str:
        return f"l{link}"

    @staticmethod
    def address(host: int, link: int) -> str:
        return f"10.{231 + link}.0.{host}"

    # ------------------------------------------------------------------ life cycle

    def create(self) -> None:
        for link, mtu in zip(self.links, self.mtus, strict=True):
            sw = self.switch_ns(link)
            self._add_netns(sw)
            self.ip(sw, "link", "add", "br0", "type", "bridge")
            self.ip(sw, "link", "set", "br0", "mtu", str(mtu))
            self.ip(sw, "link", "set", "br0", "up")
        for host in self.hosts:
            ns = self.ns(host)
            self._add_netns(ns)
            self.ip(ns, "link", "set", "lo", "up")
            for link, mtu in zip(self.links, self.mtus, strict=True):
                sw, port = self.switch_ns(link), f"h{host}"
                dev = self.iface(link)
                veth = ["type", "veth", "peer", "name", port, "netns", sw, "mtu", str(mtu)]
                _run(["ip", "-n", ns, "link", "add", dev, "mtu", str(mtu), *veth])
                self.ip(sw, "link", "set", port, "master", "br0")
                self.ip(sw, "link", "set", port, "up")
                self.ip(ns, "addr", "add", f"{self.address(host, link)}/24", "dev", dev)
                self.ip(ns, "link", "set", dev, "up")

    def _add_netns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.processes.clear()
        for name in reversed(self.namespaces):
            _run(["ip", "netns", "delete", name], check=False)
        self.namespaces.clear()

    # ------------------------------------------------------------------ commands

    def ip(self, ns: str, *args: str) -> str:
        """Run ``ip -n <ns> args...``."""
        return _run(["ip", "-n", ns, *args])

    def exec(self, host: int, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """Run a command inside ``host``'s namespace and return its output."""
        return _run(["ip", "netns", "exec", self.ns(host), *args], check=check, stdin=stdin)

    def popen(self, host: int, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process inside ``host``'s namespace; the lab stops it at the end."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.ns(host), *args], **kwargs
        )
        self.processes.append(proc)
        return proc

    def set_link_state(self, host: int, link: int, up: bool) -> None:
        """``ip link set l<link> up|down`` inside ``host``'s namespace."""
        self.ip(self.ns(host), "link", "set", "dev", self.iface(link), "up" if up else "down")

    def add_packet_loss(self, host: int, link: int, percent: int) -> str:
        """Drop ``percent`` % of the packets ``host`` sends on ``link``, at random.

        Tries ``tc qdisc ... netem loss`` first; kernels without the netem qdisc get an
        nftables rule instead (output hook, ``numgen random`` drop on the interface).
        Returns which one was used: ``"netem"`` or ``"nftables"``.
        """
        dev = self.iface(link)
        if shutil.which("tc") is not None:
            netem = ["tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", f"{percent}%"]
            try:
                self.exec(host, *netem)
            except RuntimeError:
                pass  # e.g. "Specified qdisc kind is unknown": no netem in this kernel
            else:
                self.loss_methods[(host, link)] = "netem"
                return "netem"
        if shutil.which("nft") is None:
            raise RuntimeError("packet loss needs either the netem qdisc or nftables (nft)")
        table = f"knetloss{link}"
        ruleset = (
            f"table inet {table} {{\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f'    oifname "{dev}" numgen random mod 100 < {percent} counter drop\n'
            "  }\n"
            "}\n"
        )
        self.exec(host, "nft", "-f", "-", stdin=ruleset)
        self.loss_methods[(host, link)] = "nftables"
        return "nftables"


@pytest.fixture
def netns_lab() -> Iterator[Callable[..., NetnsLab]]:
    """A factory ``make(n_hosts, mtus=(1500, 1500)) -> NetnsLab``, cleaned up afterwards."""
    reason = netns_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    delete_stale_namespaces()
    labs: list[NetnsLab] = []

    def make(n_hosts: int, mtus: Sequence[int] = (1500, 1500)) -> NetnsLab:
        lab = NetnsLab(n_hosts, mtus)
        labs.append(lab)
        lab.create()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
