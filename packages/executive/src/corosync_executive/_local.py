"""Where this host is in a corosync.conf: its addresses, name resolution, and the
configuration source the daemon reads at start and at every reload."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket

import attrs

from corosync_executive._config_parser import ConfigError, ParsedConfig, load_config
from corosync_executive._config_schema import IpVersion
from corosync_executive._config_validate import Config, IPAddress, validate_config

__all__ = ["ConfigSource", "is_local_address", "local_candidates", "resolve_address"]


def is_local_address(address: str) -> bool:
    """True if this host (in its network namespace) can bind ``address``: what the
    kernel accepts as one of its own (loopback ranges included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_DGRAM)) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def resolve_address(name: str, ip_version: IpVersion) -> IPAddress | None:
    """corosync's ring address resolution: the first address of ``name`` in the
    family order of ``totem.ip_version`` (None when it does not resolve)."""
    order = {
        IpVersion.IPV4: (socket.AF_INET,),
        IpVersion.IPV6: (socket.AF_INET6,),
        IpVersion.IPV4_6: (socket.AF_INET, socket.AF_INET6),
        IpVersion.IPV6_4: (socket.AF_INET6, socket.AF_INET),
    }[ip_version]
    for family in order:
        try:
            infos = socket.getaddrinfo(name, None, family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            continue
        for info in infos:
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
    return None


def local_candidates(parsed: ParsedConfig) -> list[str]:
    """The literal node addresses of ``parsed`` this host can bind."""
    found: list[str] = []
    for entry in parsed.entries:
        name = entry.key.rsplit(".", 1)[-1]
        is_address = entry.key.startswith("nodelist.node.") and name.endswith("_addr")
        if is_address and entry.value not in found and is_local_address(entry.value):
            found.append(entry.value)
    return found


@attrs.frozen
class ConfigSource:
    """How the daemon reads its configuration: the file, and how it finds itself in it.

    ``local_addresses`` set explicitly (pycorosync's ``--local-address``) replaces the
    automatic choice and turns off the match by host name: several nodes on one host
    that all own 127.0.0.0/8 need it. Otherwise the host name (``uname -n``) and every
    node address this host can bind are used, as corosync does.
    """

    path: str
    local_addresses: tuple[str, ...] = ()
    hostname: str | None = None

    def load(self) -> Config:
        """Read, parse and validate the file; raises ConfigError/ConfigParseError."""
        parsed = load_config(self.path)
        hostname, addresses = self.identity(parsed)
        return validate_config(
            parsed,
            hostname=hostname,
            local_addresses=addresses,
            resolve_address=resolve_address,
        )

    def identity(self, parsed: ParsedConfig | None = None) -> tuple[str, list[str]]:
        """(host name, local addresses) to find this node in the file: the explicit
        addresses, or ``uname -n`` and the node addresses of ``parsed`` (read from the
        file when not given; none when it cannot be read) this host can bind."""
        if self.local_addresses:
            return "", list(self.local_addresses)
        hostname = self.hostname if self.hostname is not None else os.uname().nodename
        if parsed is None:
            try:
                parsed = load_config(self.path)
            except ConfigError:
                return hostname, []
        return hostname, local_candidates(parsed)
