"""pycorosync-cluster's plan of a local cluster: addresses, names, and the files.

:class:`ClusterLayout` decides where node ``i`` (nodeid ``i``, name ``node<i>``) lives:

* ``netns``: in namespace ``pcs<pid>n<i>``, link ``L`` on ``10.(100+L).0.i`` (addresses
  that exist only inside the namespaces, see :mod:`corosync_executive._netlab`); IPC
  names without prefix, so any tool run with ``ip netns exec`` finds the node;
* ``loopback``: on ``127.<slot>.<L>.i`` (a free slot is chosen per run, so clusters of
  several users or test runs do not meet) and IPC names prefixed ``pcs<slot>n<i>-``.

:func:`write_cluster_files` writes one corosync.conf per node, a state directory, and
the shared authkey (256 random bytes, mode 0400) into a work directory.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path

import attrs

from corosync_executive._config_parser import ConfigError, load_config
from corosync_executive._config_validate import Config, validate_config

__all__ = [
    "AUTHKEY_BYTES",
    "BASE_PORT",
    "MAX_LINKS",
    "MAX_NODES",
    "NETNS_ADDRESS_BASE",
    "ClusterLayout",
    "LabMode",
    "NodeFiles",
    "check_node_config",
    "find_free_slot",
    "render_config",
    "write_authkey",
    "write_cluster_files",
]

MAX_NODES = 16
MAX_LINKS = 8
BASE_PORT = 5405  # corosync's mcastport of link 0; link L uses BASE_PORT + L
NETNS_ADDRESS_BASE = 100  # link L is 10.(100+L).0.0/24 inside the namespaces
AUTHKEY_BYTES = 256


class LabMode(enum.Enum):
    """Where the nodes of a local cluster live."""

    NETNS = "netns"
    LOOPBACK = "loopback"


@attrs.frozen
class ClusterLayout:
    """Names and addresses of a local cluster of ``n_nodes`` nodes with ``n_links`` links."""

    n_nodes: int
    n_links: int
    mode: LabMode
    crypto: bool = True
    slot: int = 1
    """Loopback mode: the second octet of every address and part of the IPC prefix."""
    netns_prefix: str = ""
    """Netns mode: the namespaces are ``<netns_prefix>n<i>`` and ``<netns_prefix>s<L>``."""
    cluster_name: str = "pycorosync"

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.n_nodes <= MAX_NODES:
            raise ValueError(f"a local cluster has 1..{MAX_NODES} nodes, not {self.n_nodes}")
        if not 1 <= self.n_links <= MAX_LINKS:
            raise ValueError(f"a local cluster has 1..{MAX_LINKS} links, not {self.n_links}")
        if not 1 <= self.slot <= 254:
            raise ValueError(f"the loopback slot is 1..254, not {self.slot}")
        if self.mode is LabMode.NETNS and not self.netns_prefix:
            raise ValueError("netns mode needs a namespace prefix")

    @property
    def nodeids(self) -> range:
        return range(1, self.n_nodes + 1)

    @property
    def links(self) -> range:
        return range(self.n_links)

    @staticmethod
    def name(nodeid: int) -> str:
        return f"node{nodeid}"

    @staticmethod
    def port(link: int) -> int:
        return BASE_PORT + link

    def address(self, nodeid: int, link: int) -> str:
        if self.mode is LabMode.NETNS:
            return f"10.{NETNS_ADDRESS_BASE + link}.0.{nodeid}"
        return f"127.{self.slot}.{link}.{nodeid}"

    def addresses(self, nodeid: int) -> tuple[str, ...]:
        return tuple(self.address(nodeid, link) for link in self.links)

    def netns(self, nodeid: int) -> str | None:
        """The namespace of ``nodeid`` (None in loopback mode)."""
        return f"{self.netns_prefix}n{nodeid}" if self.mode is LabMode.NETNS else None

    def ipc_prefix(self, nodeid: int) -> str:
        """The IPC name prefix of ``nodeid`` ("" in netns mode: one node per namespace)."""
        return "" if self.mode is LabMode.NETNS else f"pcs{self.slot}n{nodeid}-"


@attrs.frozen
class NodeFiles:
    """Where one node's files are."""

    nodeid: int
    directory: Path
    config: Path
    state_dir: Path
    logfile: Path
    stderr_log: Path

    @classmethod
    def under(cls, workdir: Path, nodeid: int) -> NodeFiles:
        directory = workdir / f"node{nodeid}"
        return cls(
            nodeid=nodeid,
            directory=directory,
            config=directory / "corosync.conf",
            state_dir=directory / "state",
            logfile=directory / "corosync.log",
            stderr_log=directory / "stderr.log",
        )


def render_config(layout: ClusterLayout, files: NodeFiles, keyfile: Path) -> str:
    """The corosync.conf of node ``files.nodeid``: the same cluster for every node, its
    own state directory and log file."""
    lines = [
        f"# pycorosync-cluster: node {files.nodeid} of a local {layout.n_nodes}-node cluster",
        "totem {",
        "\tversion: 2",
        f"\tcluster_name: {layout.cluster_name}",
        "\ttransport: knet",
    ]
    if layout.crypto:
        lines += ["\tcrypto_cipher: aes256", "\tcrypto_hash: sha256", f"\tkeyfile: {keyfile}"]
    else:
        lines += ["\tcrypto_cipher: none", "\tcrypto_hash: none"]
    for link in layout.links:
        lines += [
            "\tinterface {",
            f"\t\tlinknumber: {link}",
            f"\t\tmcastport: {layout.port(link)}",
            "\t}",
        ]
    lines += ["}", "", "nodelist {"]
    for nodeid in layout.nodeids:
        lines += ["\tnode {", f"\t\tname: {layout.name(nodeid)}", f"\t\tnodeid: {nodeid}"]
        lines += [f"\t\tring{link}_addr: {layout.address(nodeid, link)}" for link in layout.links]
        lines.append("\t}")
    lines += [
        "}",
        "",
        "logging {",
        "\tto_stderr: no",
        "\tto_logfile: yes",
        f"\tlogfile: {files.logfile}",
        "\tto_syslog: no",
        "\ttimestamp: hires",
        "\tdebug: off",
        "}",
        "",
        "system {",
        f"\tstate_dir: {files.state_dir}",
        "}",
    ]
    if os.geteuid() != 0:  # corosync lets only root and the listed users use its IPC
        lines += ["", "uidgid {", f"\tuid: {os.geteuid()}", f"\tgid: {os.getegid()}", "}"]
    return "\n".join(lines) + "\n"


def write_authkey(path: Path) -> None:
    """A new random key of :data:`AUTHKEY_BYTES` bytes, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(AUTHKEY_BYTES))


def write_cluster_files(layout: ClusterLayout, workdir: Path) -> tuple[NodeFiles, ...]:
    """The authkey (when crypto is on) and every node's directory, state directory and
    corosync.conf under ``workdir`` (which must exist)."""
    keyfile = workdir / "authkey"
    if layout.crypto:
        write_authkey(keyfile)
    nodes = []
    for nodeid in layout.nodeids:
        files = NodeFiles.under(workdir, nodeid)
        files.directory.mkdir(mode=0o700)
        files.state_dir.mkdir(mode=0o700)
        files.config.write_text(render_config(layout, files, keyfile))
        nodes.append(files)
    return tuple(nodes)


def check_node_config(layout: ClusterLayout, files: NodeFiles) -> Config:
    """Validate a generated corosync.conf as the daemon will (finding the node by its
    addresses, as ``--local-address`` tells it); RuntimeError naming the problem."""
    try:
        config = validate_config(
            load_config(files.config),
            hostname="",
            local_addresses=layout.addresses(files.nodeid),
        )
    except ConfigError as exc:
        raise RuntimeError(f"the generated {files.config} is invalid: {exc}") from exc
    if config.local_nodeid != files.nodeid:
        raise RuntimeError(
            f"the generated {files.config} makes node {files.nodeid} node {config.local_nodeid}"
        )
    return config


def _slot_free(slot: int, n_nodes: int, n_links: int) -> bool:
    """True if no one uses the UDP ports of ``slot``'s loopback addresses nor the IPC
    name of its first node."""
    layout = ClusterLayout(n_nodes, n_links, LabMode.LOOPBACK, slot=slot)
    for nodeid in layout.nodeids:
        for link in layout.links:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((layout.address(nodeid, link), layout.port(link)))
                except OSError:
                    return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.bind("\0" + layout.ipc_prefix(1) + "cmap")
        except OSError:
            return False
    return True


def find_free_slot(n_nodes: int, n_links: int, preferred: Iterable[int] = ()) -> int:
    """A loopback slot (1..254) nobody uses now: the ``preferred`` ones first, then by
    the process id. RuntimeError when all are taken."""
    start = os.getpid() % 254
    candidates = [*preferred, *(1 + (start + step) % 254 for step in range(254))]
    for slot in candidates:
        with contextlib.suppress(ValueError):
            if _slot_free(slot, n_nodes, n_links):
                return slot
    raise RuntimeError("no free loopback address range 127.<1..254>.x.y for a local cluster")
