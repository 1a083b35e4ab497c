"""Helpers for tests that run pycorosync daemons: cluster configs on loopback.

Node ``i`` owns ``127.0.<link+1>.<i>`` on each link; each daemon runs with its own IPC
prefix (``t<token>n<i>-``) and ``--local-address`` its addresses, so several nodes
share this host's network namespace.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

__all__ = ["LoopbackCluster", "free_udp_ports"]


def free_udp_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` distinct UDP ports free right now (the kernel picks them)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class LoopbackCluster:
    """Config files for ``nodes`` nodes with ``links`` links each, under ``root``."""

    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        links: int = 2,
        *,
        crypto: bool = True,
        token: int = 1000,
        extra_totem: str = "",
    ) -> None:
        self.root = root
        self.node_ids = list(range(1, nodes + 1))
        self.links = links
        self.crypto = crypto
        self.token = token
        self.extra_totem = extra_totem
        self.token_id = uuid.uuid4().hex[:8]
        self.ports = free_udp_ports(links)
        self.keyfile = root / "authkey"
        self.keyfile.write_bytes(os.urandom(256))
        self.keyfile.chmod(0o400)
        for nodeid in self.node_ids:
            (root / f"node{nodeid}").mkdir(exist_ok=True)
        self.write_all()

    def address(self, nodeid: int, link: int) -> str:
        return f"127.0.{link + 1}.{nodeid}"

    def prefix(self, nodeid: int) -> str:
        return f"t{self.token_id}n{nodeid}-"

    def local_addresses(self, nodeid: int) -> tuple[str, ...]:
        return tuple(self.address(nodeid, link) for link in range(self.links))

    def config_path(self, nodeid: int) -> Path:
        return self.root / f"node{nodeid}" / "corosync.conf"

    def state_dir(self, nodeid: int) -> Path:
        return self.root / f"node{nodeid}"

    def config_text(self, nodeid: int, *, node_ids: list[int] | None = None) -> str:
        crypto = (
            f"    crypto_cipher: aes256\n    crypto_hash: sha256\n    keyfile: {self.keyfile}\n"
            if self.crypto
            else "    crypto_cipher: none\n    crypto_hash: none\n"
        )
        interfaces = "".join(
            f"    interface {{\n        linknumber: {link}\n"
            f"        mcastport: {self.ports[link]}\n    }}\n"
            for link in range(self.links)
        )
        nodes = ""
        for other in node_ids or self.node_ids:
            rings = "".join(
                f"        ring{link}_addr: {self.address(other, link)}\n"
                for link in range(self.links)
            )
            nodes += (
                f"    node {{\n        nodeid: {other}\n        name: node{other}\n{rings}    }}\n"
            )
        return (
            "totem {\n    version: 2\n    cluster_name: lab\n    transport: knet\n"
            f"    token: {self.token}\n{crypto}{self.extra_totem}{interfaces}}}\n"
            f"nodelist {{\n{nodes}}}\n"
            "logging {\n    to_stderr: no\n    to_syslog: no\n    to_logfile: yes\n"
            f"    logfile: {self.state_dir(nodeid) / 'pycorosync.log'}\n    timestamp: hires\n}}\n"
            f"system {{\n    state_dir: {self.state_dir(nodeid)}\n}}\n"
        )

    def write_all(self, *, node_ids: list[int] | None = None) -> None:
        for nodeid in node_ids or self.node_ids:
            self.config_path(nodeid).write_text(self.config_text(nodeid, node_ids=node_ids))

    def add_node(self) -> int:
        """A new node id in every config file (written); returns it."""
        nodeid = max(self.node_ids) + 1
        self.node_ids.append(nodeid)
        (self.root / f"node{nodeid}").mkdir(exist_ok=True)
        self.write_all()
        return nodeid

    def rotate_key(self) -> bytes:
        """New random content in the key file (the same path); returns it."""
        key = os.urandom(256)
        self.keyfile.chmod(0o600)
        self.keyfile.write_bytes(key)
        self.keyfile.chmod(0o400)
        return key
