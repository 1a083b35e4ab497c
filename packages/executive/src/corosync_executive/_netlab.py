"""A network-namespace lab: hosts in namespaces of their own, joined by bridged links.

Link ``L`` is a bridge ``br0`` inside a dedicated switch namespace, so nothing touches
the host's own network; host ``h`` reaches it through a veth pair whose host end is
``l<L>`` and carries ``10.(address_base+L).0.h/24``. These addresses exist only inside
the lab's namespaces.

Namespace names are ``<prefix><host_tag><h>`` and ``<prefix>s<L>``; a prefix starts
with a short tag and the creating process id (``knt<pid>t<n>``, ``pcs<pid>``), so
:func:`delete_stale_namespaces` can remove what an earlier, killed run left behind.
:meth:`NetnsLab.close` stops the processes the lab started and deletes its namespaces
(their veths and bridges go with them). Used by pycorosync-cluster and the system tests.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

__all__ = [
    "NetnsLab",
    "delete_stale_namespaces",
    "enter_netns",
    "ip_tool",
    "list_netns",
    "netns_unavailable_reason",
    "run_command",
]

_CLONE_NEWNET = 0x40000000


def netns_unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns, veth pairs)"
    if shutil.which("ip") is None:
        return "network namespaces need the iproute2 'ip' tool"
    return None


def ip_tool() -> str:
    """The path of iproute2's ``ip`` (RuntimeError when it is not installed)."""
    path = shutil.which("ip")
    if path is None:
        raise RuntimeError("the iproute2 'ip' tool is not installed")
    return path


def run_command(args: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    """Run ``args``; its stdout. RuntimeError with its stderr when it fails and ``check``."""
    result = subprocess.run(  # noqa: S603 - argv lists built by this module, no shell
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(args)}\n{result.stderr.strip()}"
        )
    return result.stdout


def list_netns() -> list[str]:
    """The names of the named network namespaces (``ip netns list``)."""
    return [
        line.split()[0] for line in run_command([ip_tool(), "netns", "list"]).splitlines() if line
    ]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_stale_namespaces(pattern: re.Pattern[str]) -> list[str]:
    """Delete the namespaces matching ``pattern`` whose creator (the process id in the
    pattern's first group) is gone; the names deleted."""
    deleted = []
    for name in list_netns():
        match = pattern.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            run_command([ip_tool(), "netns", "delete", name], check=False)
            deleted.append(name)
    return deleted


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the named network namespace: sockets it
    creates from now on, abstract unix sockets included, live there."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)  # Python 3.12+
        if setns is not None:
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), name)
    finally:
        os.close(fd)


class NetnsLab:
    """Hosts 1..n in namespaces of their own, joined by ``len(mtus)`` bridged links."""

    def __init__(
        self,
        prefix: str,
        n_hosts: int,
        mtus: Sequence[int] = (1500, 1500),
        *,
        host_tag: str = "h",
        address_base: int = 231,
    ) -> None:
        if not 1 <= n_hosts <= 200 or not 1 <= len(mtus) <= 8:
            raise ValueError("a lab has 1..200 hosts and 1..8 links")
        if not 0 <= address_base <= 255 - len(mtus) + 1:
            raise ValueError("address_base + link must stay a valid octet")
        self.prefix = prefix
        self.n_hosts = n_hosts
        self.mtus = tuple(mtus)
        self.host_tag = host_tag
        self.address_base = address_base
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ names

    @property
    def hosts(self) -> range:
        return range(1, self.n_hosts + 1)

    @property
    def links(self) -> range:
        return range(len(self.mtus))

    def ns(self, host: int) -> str:
        return f"{self.prefix}{self.host_tag}{host}"

    def switch_ns(self, link: int) -> str:
        return f"{self.prefix}s{link}"

    @staticmethod
    def iface(link: int) -> str:
        return f"l{link}"

    def address(self, host: int, link: int) -> str:
        return f"10.{self.address_base + link}.0.{host}"

    # ------------------------------------------------------------------ life cycle

    def create(self) -> None:
        """Build the namespaces, bridges and veths (undone by :meth:`close`, also when
        this fails half way)."""
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
                run_command([ip_tool(), "-n", ns, "link", "add", dev, "mtu", str(mtu), *veth])
                self.ip(sw, "link", "set", port, "master", "br0")
                self.ip(sw, "link", "set", port, "up")
                self.ip(ns, "addr", "add", f"{self.address(host, link)}/24", "dev", dev)
                self.ip(ns, "link", "set", dev, "up")

    def _add_netns(self, name: str) -> None:
        run_command([ip_tool(), "netns", "add", name])
        self.namespaces.append(name)

    def stop_processes(self, timeout: float = 5) -> None:
        """SIGTERM the lab's processes, SIGKILL those still alive after ``timeout``."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.processes.clear()

    def close(self) -> None:
        """Stop the processes, delete the namespaces (with their veths and bridges)."""
        self.stop_processes()
        for name in reversed(self.namespaces):
            run_command([ip_tool(), "netns", "delete", name], check=False)
        self.namespaces.clear()

    # ------------------------------------------------------------------ commands

    def ip(self, ns: str, *args: str) -> str:
        """Run ``ip -n <ns> args...``."""
        return run_command([ip_tool(), "-n", ns, *args])

    def exec(self, host: int, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """Run a command inside ``host``'s namespace and return its output."""
        return run_command(
            [ip_tool(), "netns", "exec", self.ns(host), *args], check=check, stdin=stdin
        )

    def popen(self, host: int, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process inside ``host``'s namespace; :meth:`close` stops it."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]  # noqa: S603
            [ip_tool(), "netns", "exec", self.ns(host), *args], **kwargs
        )
        self.processes.append(proc)
        return proc

    def set_link_state(self, host: int, link: int, up: bool) -> None:
        """``ip link set l<link> up|down`` inside ``host``'s namespace."""
        self.ip(self.ns(host), "link", "set", "dev", self.iface(link), "up" if up else "down")
