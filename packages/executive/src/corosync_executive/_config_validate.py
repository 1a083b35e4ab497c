"""corosync's semantic rules for a parsed corosync.conf, and the :class:`Config` they
produce.

:func:`validate_config` is pure: the host name, the addresses of the local interfaces
and (optionally) a name resolver are parameters, so the same file gives the same
result on every machine a test runs on. The rules and messages are corosync's
(``exec/totemconfig.c``, ``exec/logconfig.c``, ``exec/votequorum.c``; corosync
reference 1.2-1.6); a :class:`ConfigError` prints as corosync prints it
(``parse error in config: <reason>``) plus the file and line of the key concerned.

What differs from corosync, on purpose:

* knet is the only transport: ``udp``/``udpu`` are refused with a clear message
  (corosync builds without the udpu feature silently fall back to knet).
* Every node needs a ``ring0_addr`` and a ``nodeid`` in 1..65535 (corosync only
  checks the local node's and lets knet fail later on the others).
* Crypto defaults follow corosync 3.1 (the Debian version we are compatible with):
  no crypto unless ``crypto_cipher``/``crypto_hash`` or ``secauth: on`` ask for it.
* ``runtime.config.totem.token_warning`` holds the configured percentage, as corosync
  publishes it; the effective warning time in ms is ``totem_effective.token_warning``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping

import attrs

import knet
import totem
from corosync_executive._cmap_store import ValueType
from corosync_executive._config_parser import ConfigEntry, ConfigError, ParsedConfig
from corosync_executive._config_schema import (
    LOG_PRIORITIES,
    ConfigValue,
    DebugLevel,
    IpVersion,
    LogPriority,
    TimestampMode,
    TypedEntry,
    convert_entries,
    dscp_value,
)
from totem import EffectiveConfig, TotemConfig

__all__ = [
    "DEFAULT_KEYFILE",
    "DEFAULT_MCASTPORT",
    "MAX_NODEID",
    "AtbMode",
    "Config",
    "CryptoSettings",
    "IPAddress",
    "Link",
    "LogTarget",
    "LoggingSettings",
    "Node",
    "NodeAddress",
    "QuorumDevice",
    "QuorumSettings",
    "Resolver",
    "SystemSettings",
    "validate_config",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves a host name for ``ip_version``; None when it does not resolve.
Resolver = Callable[[str, IpVersion], IPAddress | None]

DEFAULT_KEYFILE = "/etc/corosync/authkey"
DEFAULT_MCASTPORT = 5405
MAX_NODEID = knet.MAX_HOST_ID
MAX_LINKS = knet.MAX_LINKS

# corosync's MINIMUM_TIMEOUT and MINIMUM_TIMEOUT_HOLD for HZ=100.
_MIN_TIMEOUT = 30
_MIN_HOLD = 14
_KNET_NETMTU = 65536
_DEFAULT_PONG_COUNT = 2  # corosync's, not libknet's 5
_DEFAULT_PING_PRECISION = 2048
_DEFAULT_PMTUD_INTERVAL = 30
_QDEVICE_TIMEOUT = 10000
_QDEVICE_SYNC_TIMEOUT = 30000
_LMS_WINDOW = 10000

# Totem keys for which 0 means "use the default" (totem_volatile_config_read's
# allow_zero_value = 0); the others keep an explicit 0.
_ZERO_IS_DEFAULT = frozenset(
    {
        "token",
        "token_retransmits_before_loss_const",
        "token_retransmit",
        "hold",
        "join",
        "consensus",
        "merge",
        "downcheck",
        "fail_recv_const",
        "seqno_unchanged_const",
        "max_network_delay",
        "window_size",
        "max_messages",
        "miss_count_const",
        "knet_pmtud_interval",
    }
)
_TOTEM_INT_FIELDS = (
    "token",
    "token_coefficient",
    "token_retransmit",
    "hold",
    "token_retransmits_before_loss_const",
    "token_warning",
    "join",
    "send_join",
    "consensus",
    "merge",
    "downcheck",
    "fail_recv_const",
    "seqno_unchanged_const",
    "window_size",
    "max_messages",
    "miss_count_const",
    "max_network_delay",
    "heartbeat_failures_allowed",
)

_KNET_OPTION_KEYS = {
    "priority": "knet_link_priority",
    "ping_interval_ms": "knet_ping_interval",
    "ping_timeout_ms": "knet_ping_timeout",
    "ping_precision": "knet_ping_precision",
    "pong_count": "knet_pong_count",
}

_NODE_KEY = re.compile(r"nodelist\.node\.([0-9]+)\.(.+)")
_RING_ADDR = re.compile(r"ring([0-9]+)_addr")
_INTERFACE_KEY = re.compile(r"totem\.interface\.([0-9]+)\.(.+)")
_SUBSYS_KEY = re.compile(r"logging\.logger_subsys\.([^.]+)\.subsys")
_UIDGID_KEY = re.compile(r"uidgid\.config\.(uid|gid)\.([0-9]+)")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*)(?:\.[A-Za-z0-9_-]+)*\.?")


class AtbMode(enum.Enum):
    """``quorum.auto_tie_breaker_node``: which partition keeps quorum on an even split."""

    NONE = "none"
    LOWEST = "lowest"
    HIGHEST = "highest"
    LIST = "list"


@attrs.frozen
class NodeAddress:
    """One address of a node: the link, the text as configured, and the IP address
    (None for a host name that was not resolved: no resolver was given)."""

    link: int
    address: str
    ip: IPAddress | None


@attrs.frozen
class Node:
    """A ``nodelist.node`` entry. ``position`` is its index in ``nodelist.node.<i>``."""

    position: int
    nodeid: int
    name: str | None
    addresses: tuple[NodeAddress, ...]
    quorum_votes: int = 1

    def address(self, link: int) -> NodeAddress | None:
        """The address of this node on ``link``, if it has one."""
        for address in self.addresses:
            if address.link == link:
                return address
        return None

    @property
    def links(self) -> frozenset[int]:
        return frozenset(address.link for address in self.addresses)


@attrs.frozen
class Link:
    """A configured knet link (a ``ringX_addr`` of the nodes and/or an ``interface``
    section), with corosync's defaults and derived ping timers applied."""

    linknumber: int
    mcastport: int
    transport: str
    options: knet.LinkOptions


@attrs.frozen
class CryptoSettings:
    """``crypto_model``/``crypto_cipher``/``crypto_hash`` after the ``secauth`` rule,
    and where the key comes from (``key`` inline, else ``keyfile``)."""

    model: str = "nss"
    cipher: str = "none"
    hash: str = "none"
    keyfile: str = DEFAULT_KEYFILE
    key: str | None = attrs.field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        """True when packets are signed and/or encrypted, i.e. a key is needed."""
        return self.cipher != "none" or self.hash != "none"


@attrs.frozen
class LogTarget:
    """Where and what one subsystem (or the default) logs."""

    to_stderr: bool = True
    to_syslog: bool = True
    to_logfile: bool = False
    logfile: str | None = None
    logfile_priority: LogPriority = LogPriority.INFO
    syslog_priority: LogPriority = LogPriority.INFO
    syslog_facility: str = "daemon"
    debug: DebugLevel = DebugLevel.OFF


@attrs.frozen
class LoggingSettings:
    """The ``logging`` section; ``subsystems`` holds the ``logger_subsys`` overrides,
    each starting from the defaults of the section."""

    default: LogTarget = LogTarget()
    subsystems: Mapping[str, LogTarget] = attrs.field(factory=dict)
    timestamp: TimestampMode = TimestampMode.HIRES
    fileline: bool = False
    function_name: bool = False
    blackbox: bool = True

    def for_subsys(self, name: str) -> LogTarget:
        """The settings in force for subsystem ``name`` (e.g. ``"QUORUM"``)."""
        return self.subsystems.get(name, self.default)


@attrs.frozen
class QuorumDevice:
    """``quorum.device``: a quorum device (corosync-qdevice) is configured."""

    model: str
    votes: int | None
    timeout: int = _QDEVICE_TIMEOUT
    sync_timeout: int = _QDEVICE_SYNC_TIMEOUT
    master_wins: bool = False


@attrs.frozen
class QuorumSettings:
    """The ``quorum`` section after votequorum's rules: ``provider`` None means no
    quorum (always quorate). ``expected_votes`` and ``votes`` are this node's values
    at start: the nodelist's sum and the local node's ``quorum_votes`` unless set."""

    provider: str | None = None
    expected_votes: int = 0
    votes: int = 1
    two_node: bool = False
    wait_for_all: bool = False
    last_man_standing: bool = False
    last_man_standing_window: int = _LMS_WINDOW
    auto_tie_breaker: AtbMode = AtbMode.NONE
    auto_tie_breaker_nodes: tuple[int, ...] = ()
    allow_downscale: bool = False
    expected_votes_tracking: bool = False
    device: QuorumDevice | None = None


@attrs.frozen
class SystemSettings:
    """The ``system`` section (all read-only at runtime)."""

    qb_ipc_type: str = "native"
    sched_rr: bool = True
    priority: str | None = None
    move_to_root_cgroup: str = "auto"
    allow_knet_handle_fallback: bool = False
    state_dir: str | None = None


@attrs.frozen(kw_only=True)
class Config:
    """A valid configuration: the keys cmap holds, and the typed settings of each part.

    ``keys`` mirrors the file (plus ``nodelist.local_node_pos`` and the synthesised
    ``totem.interface.<link>.bindnetaddr``); ``runtime_keys`` is ``runtime.config.*``
    (the values in force); ``origins`` tells where each key of the file was written.
    """

    file: str
    keys: Mapping[str, ConfigValue]
    runtime_keys: Mapping[str, ConfigValue]
    origins: Mapping[str, ConfigEntry]
    local_node_pos: int
    local_nodeid: int
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    link_mode: knet.LinkPolicy
    ip_version: IpVersion
    ip_dscp: int
    cluster_name: str | None
    config_version: int
    netmtu: int
    knet_mtu: int
    knet_pmtud_interval: int
    compression: knet.CompressionConfig
    block_unlisted_ips: bool
    crypto: CryptoSettings
    totem: TotemConfig
    totem_effective: EffectiveConfig
    logging: LoggingSettings
    quorum: QuorumSettings
    system: SystemSettings
    uids: frozenset[int]
    gids: frozenset[int]
    warnings: tuple[str, ...]

    @property
    def local_node(self) -> Node:
        """The node this host is (``nodelist.node.<local_node_pos>``)."""
        for node in self.nodes:
            if node.position == self.local_node_pos:
                return node
        raise AssertionError("the local node is always in the nodelist")

    def node_by_id(self, nodeid: int) -> Node | None:
        for node in self.nodes:
            if node.nodeid == nodeid:
                return node
        return None

    def cmap_keys(self) -> dict[str, ConfigValue]:
        """Every key this configuration puts into cmap (``keys`` and ``runtime_keys``)."""
        return {**self.keys, **self.runtime_keys}


@attrs.define
class _NodeDraft:
    position: int
    line: int
    file: str
    nodeid: int | None = None
    name: str | None = None
    ring_addrs: dict[int, str] = attrs.field(factory=dict)
    votes: int = 1


class _Validator:
    def __init__(
        self,
        parsed: ParsedConfig,
        *,
        hostname: str,
        local_addresses: Iterable[str | IPAddress],
        resolve_address: Resolver | None,
    ) -> None:
        self.parsed = parsed
        self.hostname = hostname
        # Compared without IPv6 scope ids: "fe80::1%eth0" is fe80::1 on this host.
        self.local_addresses = frozenset(
            _strip_scope(ipaddress.ip_address(address) if isinstance(address, str) else address)
            for address in local_addresses
        )
        self.resolve_address = resolve_address
        self.typed: dict[str, TypedEntry] = convert_entries(parsed.entries)
        self.warnings: list[str] = list(parsed.warnings)

    # -- access to typed keys ---------------------------------------------------

    def value(self, key: str) -> ConfigValue | None:
        typed = self.typed.get(key)
        return None if typed is None else typed.value

    def string(self, key: str, default: str) -> str:
        value = self.value(key)
        return default if value is None else str(value.value)

    def opt_string(self, key: str) -> str | None:
        value = self.value(key)
        return None if value is None else str(value.value)

    def integer(self, key: str, default: int) -> int:
        value = self.value(key)
        if value is None or not isinstance(value.value, int):
            return default
        return value.value

    def opt_integer(self, key: str) -> int | None:
        value = self.value(key)
        if value is None or not isinstance(value.value, int):
            return None
        return value.value

    def flag(self, key: str, default: bool) -> bool:
        """A yes/no, on/off or 0/1 key."""
        value = self.value(key)
        if value is None:
            return default
        if isinstance(value.value, int):
            return value.value != 0
        return value.value in ("yes", "on")

    def fail(
        self, reason: str, key: str | None = None, *, message: str | None = None
    ) -> ConfigError:
        typed = self.typed.get(key) if key is not None else None
        if typed is None:
            return ConfigError(reason, key=key, message=message)
        return ConfigError(
            reason,
            key=key,
            file=typed.entry.file,
            line=typed.entry.line,
            message=message,
        )

    def warn(self, text: str, key: str | None = None) -> None:
        typed = self.typed.get(key) if key is not None else None
        if typed is not None:
            text = f"{typed.entry.file}:{typed.entry.line}: {text}"
        self.warnings.append(text)

    # -- the rules --------------------------------------------------------------

    def run(self) -> Config:
        self.check_transport()
        crypto = self.crypto()
        ip_version = IpVersion(self.string("totem.ip_version", IpVersion.IPV6_4.value))
        link_mode = knet.LinkPolicy(self.string("totem.link_mode", "passive"))
        drafts = self.read_nodes()
        interface_links = self.interface_links()
        if not drafts:
            if interface_links:
                raise self.fail("No valid name found for local host")
            raise self.fail("No interfaces defined")
        nodes_addresses = [self.node_addresses(draft, ip_version) for draft in drafts]
        local_index = self.find_local_node(drafts, nodes_addresses, ip_version)
        local_pos = drafts[local_index].position
        local_nodeid = self.local_nodeid(drafts[local_index])
        nodes = self.build_nodes(drafts, nodes_addresses, local_index, local_nodeid)
        configured = sorted({link for node in nodes for link in node.links} | interface_links)
        self.check_links(nodes, configured)
        if self.opt_integer("totem.version") != 2:
            raise self.fail(
                "This totem parser can only parse version 2 configurations.", "totem.version"
            )
        totem_config, effective = self.totem_timers(len(nodes))
        self.check_multi_link(nodes, configured)
        self.check_duplicate_nodeids(nodes)
        links = tuple(self.link(link, effective.token) for link in configured)
        compression = self.compression()
        keys = self.cmap_keys(nodes[local_index], local_pos)
        runtime = self.runtime_keys(effective, links, compression)
        uids, gids = self.uidgid()
        return Config(
            file=self.parsed.file,
            keys=keys,
            runtime_keys=runtime,
            origins={key: typed.entry for key, typed in self.typed.items()},
            local_node_pos=local_pos,
            local_nodeid=local_nodeid,
            nodes=nodes,
            links=links,
            link_mode=link_mode,
            ip_version=ip_version,
            ip_dscp=dscp_value(self.string("totem.ip_dscp", "0")) or 0,
            cluster_name=self.opt_string("totem.cluster_name"),
            config_version=self.integer("totem.config_version", 0),
            netmtu=self.integer("totem.netmtu", 0) or _KNET_NETMTU,
            knet_mtu=self.integer("totem.knet_mtu", 0),
            knet_pmtud_interval=self.integer("totem.knet_pmtud_interval", 0)
            or _DEFAULT_PMTUD_INTERVAL,
            compression=compression,
            block_unlisted_ips=self.flag("totem.block_unlisted_ips", True),
            crypto=crypto,
            totem=totem_config,
            totem_effective=effective,
            logging=self.logging(),
            quorum=self.quorum(nodes, local_index),
            system=self.system(),
            uids=uids,
            gids=gids,
            warnings=tuple(self.warnings),
        )

    def check_transport(self) -> None:
        transport = self.string("totem.transport", "knet")
        if transport in ("udp", "udpu"):
            raise self.fail(
                f'totem.transport "{transport}" is not supported: pycorosync implements only '
                "the knet transport (remove the transport line or set it to knet)",
                "totem.transport",
            )
        if transport != "knet":
            raise self.fail(
                f'Invalid totem.transport "{transport}": the only transport is knet',
                "totem.transport",
            )

    def crypto(self) -> CryptoSettings:
        cipher = hash_ = "none"
        if self.string("totem.secauth", "off") == "on":
            # corosync 2's secauth: on means aes256 + sha256 unless given explicitly.
            cipher, hash_ = "aes256", "sha256"
        cipher = self.string("totem.crypto_cipher", cipher)
        hash_ = self.string("totem.crypto_hash", hash_)
        if cipher != "none" and hash_ == "none":
            raise self.fail(
                "crypto_cipher requires crypto_hash with value other than none",
                "totem.crypto_hash" if "totem.crypto_hash" in self.typed else "totem.crypto_cipher",
            )
        return CryptoSettings(
            model=self.string("totem.crypto_model", "nss"),
            cipher=cipher,
            hash=hash_,
            keyfile=self.string("totem.keyfile", DEFAULT_KEYFILE),
            key=self.opt_string("totem.key"),
        )

    def read_nodes(self) -> list[_NodeDraft]:
        drafts: dict[int, _NodeDraft] = {}
        for key, typed in self.typed.items():
            match = _NODE_KEY.fullmatch(key)
            if match is None:
                continue
            position, rest = int(match.group(1)), match.group(2)
            entry = typed.entry
            draft = drafts.setdefault(position, _NodeDraft(position, entry.line, entry.file))
            draft.line = min(draft.line, entry.line)
            value = typed.value.value
            if rest == "nodeid" and isinstance(value, int):
                draft.nodeid = value
            elif rest == "quorum_votes" and isinstance(value, int):
                draft.votes = value
            elif rest == "name":
                draft.name = str(value)
            elif ring := _RING_ADDR.fullmatch(rest):
                link = int(ring.group(1))
                if link >= MAX_LINKS:
                    raise self.fail(
                        f"interface ring number {link} is bigger than allowed maximum "
                        f"{MAX_LINKS - 1}",
                        key,
                    )
                draft.ring_addrs[link] = str(value)
        result = [drafts[position] for position in sorted(drafts)]
        for draft in result:
            if 0 not in draft.ring_addrs:
                raise ConfigError(
                    f"nodelist.node.{draft.position} has no ring0_addr: every node needs one",
                    key=f"nodelist.node.{draft.position}.ring0_addr",
                    file=draft.file,
                    line=draft.line,
                )
        return result

    def interface_links(self) -> set[int]:
        links: set[int] = set()
        for key in self.typed:
            match = _INTERFACE_KEY.fullmatch(key)
            if match is None:
                continue
            link, rest = int(match.group(1)), match.group(2)
            if link >= MAX_LINKS:
                raise self.fail(
                    f"interface ring number {link} is bigger than allowed maximum {MAX_LINKS - 1}",
                    key,
                )
            if rest in ("mcastaddr", "broadcast"):
                self.warn(f"{key} is only used by the udp transport; ignored with knet", key)
            elif rest.startswith("member."):
                self.warn(f"{key}: interface member lists are ignored, the nodelist is used", key)
            links.add(link)
        return links

    def node_addresses(self, draft: _NodeDraft, ip_version: IpVersion) -> tuple[NodeAddress, ...]:
        result = []
        for link in sorted(draft.ring_addrs):
            text = draft.ring_addrs[link]
            key = f"nodelist.node.{draft.position}.ring{link}_addr"
            ip = _literal_ip(text)
            if ip is None:
                if self.resolve_address is not None:
                    ip = self.resolve_address(text, ip_version)
                    if ip is None:
                        raise self.fail(f"failed to parse node address '{text}'", key)
                elif len(text) > 253 or _HOSTNAME.fullmatch(text) is None:
                    raise self.fail(f"failed to parse node address '{text}'", key)
            if ip is not None and (ip.is_multicast or ip.is_unspecified):
                raise self.fail(
                    f"node address '{text}' cannot be used by knet (multicast or unspecified)",
                    key,
                )
            result.append(NodeAddress(link, text, ip))
        return tuple(result)

    def find_local_node(
        self,
        drafts: list[_NodeDraft],
        addresses: list[tuple[NodeAddress, ...]],
        ip_version: IpVersion,
    ) -> int:
        """corosync's find_local_node(): the host name, then shorter forms of it, then
        the local interface addresses against each node's name and ring0_addr."""

        def names(draft: _NodeDraft) -> list[str]:
            return [name for name in (draft.name, draft.ring_addrs.get(0)) if name is not None]

        def by_name(wanted: str, *, short: bool = False) -> int | None:
            for index, draft in enumerate(drafts):
                for name in names(draft):
                    candidate = name.split(".", 1)[0] if short else name
                    if candidate == wanted:
                        return index
            return None

        hostname = self.hostname
        if hostname:
            found = by_name(hostname)
            candidate = hostname
            while found is None and "." in candidate:
                candidate = candidate.rsplit(".", 1)[0]
                found = by_name(candidate)
            if found is None:
                found = by_name(candidate, short=True)
            if found is not None:
                return found
        # The addresses as written (a name may be an address, too) ...
        for index, draft in enumerate(drafts):
            for name in names(draft):
                ip = _literal_ip(name)
                if ip is not None and _strip_scope(ip) in self.local_addresses:
                    return index
        # ... then the names resolved, when a resolver is given.
        if self.resolve_address is not None:
            for index, draft in enumerate(drafts):
                ring0 = addresses[index][0].ip if addresses[index] else None
                for name in names(draft):
                    ip = _literal_ip(name)
                    if ip is None:
                        ip = ring0 if name == draft.ring_addrs.get(0) else None
                        if ip is None:
                            ip = self.resolve_address(name, ip_version)
                    if ip is not None and _strip_scope(ip) in self.local_addresses:
                        return index
        raise self.fail("No valid name found for local host")

    def local_nodeid(self, draft: _NodeDraft) -> int:
        totem_nodeid = self.opt_integer("totem.nodeid") or None
        if draft.nodeid:
            if totem_nodeid is not None:
                self.warn(
                    "nodeid in the totem section is deprecated and ignored; the nodeid of "
                    "the local node in the nodelist is used",
                    "totem.nodeid",
                )
            return draft.nodeid
        if totem_nodeid is not None:
            return totem_nodeid
        raise ConfigError(
            "Knet requires an explicit nodeid for the local node",
            key=f"nodelist.node.{draft.position}.nodeid",
            file=draft.file,
            line=draft.line,
        )

    def build_nodes(
        self,
        drafts: list[_NodeDraft],
        addresses: list[tuple[NodeAddress, ...]],
        local_index: int,
        local_nodeid: int,
    ) -> tuple[Node, ...]:
        nodes = []
        for index, draft in enumerate(drafts):
            nodeid = local_nodeid if index == local_index else draft.nodeid
            key = f"nodelist.node.{draft.position}.nodeid"
            if not nodeid:
                raise ConfigError(
                    f"Knet requires an explicit nodeid for every node: "
                    f"nodelist.node.{draft.position} has none",
                    key=key,
                    file=draft.file,
                    line=draft.line,
                )
            if nodeid > MAX_NODEID:
                where = self.typed.get(key)
                raise ConfigError(
                    f"nodeid {nodeid} of nodelist.node.{draft.position} is too large for knet "
                    f"(1..{MAX_NODEID})",
                    key=key,
                    file=where.entry.file if where else draft.file,
                    line=where.entry.line if where else draft.line,
                )
            nodes.append(
                Node(
                    position=draft.position,
                    nodeid=nodeid,
                    name=draft.name,
                    addresses=addresses[index],
                    quorum_votes=draft.votes,
                )
            )
        return tuple(nodes)

    def check_links(self, nodes: tuple[Node, ...], configured: list[int]) -> None:
        for link in configured:
            prefix = f"totem.interface.{link}."
            if self.opt_integer(prefix + "mcastport") == 0:
                raise self.fail("No multicast port specified", prefix + "mcastport")
            ttl = self.opt_integer(prefix + "ttl")
            if ttl is not None and ttl != 1:
                raise self.fail("Can only set ttl on multicast transport types", prefix + "ttl")
            transport = self.string(prefix + "knet_transport", "udp")
            if transport == "sctp":
                raise self.fail(
                    "knet_transport sctp is not supported by pycorosync: use udp",
                    prefix + "knet_transport",
                )
            if transport != "udp":
                raise self.fail(
                    "Unrecognised knet_transport. expected 'udp' or 'sctp'",
                    prefix + "knet_transport",
                )
            members = [
                (node, address)
                for node in nodes
                if (address := node.address(link)) is not None and address.ip is not None
            ]
            if not members:
                continue
            first = members[0][1].ip
            for node, address in members[1:]:
                if (
                    address.ip is not None
                    and first is not None
                    and address.ip.version != first.version
                ):
                    raise self.fail(
                        f"Nodes for link {link} have different IP families "
                        f"(compared {address.ip} with {first})",
                        f"nodelist.node.{node.position}.ring{link}_addr",
                    )

    def totem_timers(self, node_count: int) -> tuple[TotemConfig, EffectiveConfig]:
        values: dict[str, int | bool] = {}
        for name in _TOTEM_INT_FIELDS:
            number = self.opt_integer(f"totem.{name}")
            if number is None or (number == 0 and name in _ZERO_IS_DEFAULT):
                continue
            values[name] = number
        values["cancel_token_hold_on_retransmit"] = self.flag(
            "totem.cancel_token_hold_on_retransmit", False
        )
        self.check_timers(values, node_count)
        try:
            config = TotemConfig(**values)  # type: ignore[arg-type]
            return config, config.effective(node_count)
        except totem.ConfigError as exc:
            raise self.fail(str(exc)) from None

    def check_timers(self, values: Mapping[str, int | bool], node_count: int) -> None:
        """corosync's totem_volatile_config_validate(), with its messages (totem checks
        the same limits again, and a few more, in TotemConfig.effective)."""
        defaults = TotemConfig()

        def get(name: str) -> int:
            value = values.get(name, getattr(defaults, name))
            return int(value) if value is not None else 0

        token = get("token")
        if node_count > 2:
            token += (node_count - 2) * get("token_coefficient")
        retransmits = get("token_retransmits_before_loss_const")
        retransmit = (
            get("token_retransmit")
            if "token_retransmit" in values
            else int(token / (retransmits + 0.2))
        )
        hold = get("hold") if "hold" in values else int(retransmit * 0.8 - 10)
        consensus = get("consensus") if "consensus" in values else int(1.2 * token)
        join = get("join")

        def check(failed: bool, reason: str, name: str) -> None:
            if failed:
                raise self.fail(reason, f"totem.{name}")

        too_small = f"may not be less than ({_MIN_TIMEOUT} ms)."
        delay = get("max_network_delay")
        check(
            delay < _MIN_TIMEOUT,
            f"The max_network_delay parameter ({delay} ms) {too_small}",
            "max_network_delay",
        )
        check(
            token < _MIN_TIMEOUT, f"The token timeout parameter ({token} ms) {too_small}", "token"
        )
        warning = get("token_warning")
        check(
            warning > 100,
            f"The token warning parameter ({warning}%) must be between 0 (disabled) and 100.",
            "token_warning",
        )
        if "token_retransmit" in values:
            check(
                retransmit < _MIN_TIMEOUT,
                f"The token retransmit timeout parameter ({retransmit} ms) {too_small}",
                "token_retransmit",
            )
        check(
            retransmit < _MIN_TIMEOUT,
            "Not appropriate token or token_retransmits_before_loss_const value set",
            "token_retransmits_before_loss_const"
            if "token_retransmits_before_loss_const" in values
            else "token",
        )
        check(
            hold < _MIN_HOLD,
            f"The token hold timeout parameter ({hold} ms) may not be less than ({_MIN_HOLD} ms).",
            "hold" if "hold" in values else "token",
        )
        check(join < _MIN_TIMEOUT, f"The join timeout parameter ({join} ms) {too_small}", "join")
        check(
            consensus < _MIN_TIMEOUT,
            f"The consensus timeout parameter ({consensus} ms) {too_small}",
            "consensus",
        )
        check(
            consensus < join,
            f"The consensus timeout parameter ({consensus} ms) may not be less than join "
            f"timeout ({join} ms).",
            "consensus" if "consensus" in values else "join",
        )
        merge = get("merge")
        check(
            merge < _MIN_TIMEOUT, f"The merge timeout parameter ({merge} ms) {too_small}", "merge"
        )
        downcheck = get("downcheck")
        check(
            downcheck < _MIN_TIMEOUT,
            f"The downcheck timeout parameter ({downcheck} ms) {too_small}",
            "downcheck",
        )

    def check_multi_link(self, nodes: tuple[Node, ...], configured: list[int]) -> None:
        if len(configured) <= 1:
            return
        for node in nodes:
            if node.name is None:
                raise self.fail(
                    "for a multi-link configuration, all nodes must have a 'name' attribute",
                    f"nodelist.node.{node.position}.ring0_addr",
                )
        for node in nodes:
            if node.links != frozenset(configured):
                raise self.fail(
                    "Not all nodes have the same number of links",
                    f"nodelist.node.{node.position}.ring0_addr",
                )

    def check_duplicate_nodeids(self, nodes: tuple[Node, ...]) -> None:
        seen: set[int] = set()
        for node in nodes:
            if node.nodeid in seen:
                raise self.fail(
                    f"Nodeid {node.nodeid} appears twice in corosync.conf",
                    f"nodelist.node.{node.position}.nodeid",
                )
            seen.add(node.nodeid)

    def link(self, link: int, token: int) -> Link:
        prefix = f"totem.interface.{link}."
        pong_count = self.integer(prefix + "knet_pong_count", 0) or _DEFAULT_PONG_COUNT
        try:
            options = knet.LinkOptions(
                priority=self.integer(prefix + "knet_link_priority", 1),
                ping_interval_ms=self.integer(prefix + "knet_ping_interval", 0)
                or token // (pong_count * 2),
                ping_timeout_ms=self.integer(prefix + "knet_ping_timeout", 0)
                or token // pong_count,
                ping_precision=self.integer(prefix + "knet_ping_precision", 0)
                or _DEFAULT_PING_PRECISION,
                pong_count=pong_count,
            )
        except knet.ConfigError as exc:
            # knet names the option first in its message; map it back to our key.
            option = str(exc).split(" ", 1)[0]
            name = _KNET_OPTION_KEYS.get(option)
            key = prefix + name if name is not None and prefix + name in self.typed else None
            raise self.fail(f"link {link}: {exc}", key) from None
        return Link(
            linknumber=link,
            mcastport=self.integer(prefix + "mcastport", DEFAULT_MCASTPORT + link),
            transport="udp",
            options=options,
        )

    def compression(self) -> knet.CompressionConfig:
        model = self.string("totem.knet_compression_model", "none")
        # corosync passes the level on even without compression, where it means nothing.
        level = self.integer("totem.knet_compression_level", 0) if model != "none" else 0
        try:
            return knet.CompressionConfig(
                model=model,
                threshold=self.integer("totem.knet_compression_threshold", 0),
                level=level,
            )
        except knet.ConfigError as exc:
            raise self.fail(str(exc), "totem.knet_compression_level") from None

    def cmap_keys(self, local: Node, local_pos: int) -> dict[str, ConfigValue]:
        keys = {key: typed.value for key, typed in self.typed.items()}
        if "totem.interface.0.bindnetaddr" in keys:
            self.warn(
                "interface section bindnetaddr is used together with nodelist; the nodelist "
                "address of the local node is used",
                "totem.interface.0.bindnetaddr",
            )
        for address in local.addresses:
            keys[f"totem.interface.{address.link}.bindnetaddr"] = ConfigValue(
                ValueType.STRING, address.address
            )
        keys["nodelist.local_node_pos"] = ConfigValue(ValueType.UINT32, local_pos)
        return keys

    def runtime_keys(
        self,
        effective: EffectiveConfig,
        links: tuple[Link, ...],
        compression: knet.CompressionConfig,
    ) -> dict[str, ConfigValue]:
        prefix = "runtime.config.totem."
        u32 = ValueType.UINT32
        runtime = {
            prefix + name: ConfigValue(u32, value)
            for name, value in effective.as_runtime_keys().items()
        }
        # corosync publishes the configured percentage here, not the time in ms.
        runtime[prefix + "token_warning"] = ConfigValue(
            u32, self.integer("totem.token_warning", TotemConfig().token_warning)
        )
        runtime[prefix + "heartbeat_failures_allowed"] = ConfigValue(
            u32, self.integer("totem.heartbeat_failures_allowed", 0)
        )
        runtime[prefix + "max_network_delay"] = ConfigValue(
            u32, self.integer("totem.max_network_delay", 0) or TotemConfig().max_network_delay
        )
        runtime[prefix + "knet_pmtud_interval"] = ConfigValue(
            u32, self.integer("totem.knet_pmtud_interval", 0) or _DEFAULT_PMTUD_INTERVAL
        )
        runtime[prefix + "knet_mtu"] = ConfigValue(u32, self.integer("totem.knet_mtu", 0))
        runtime[prefix + "knet_compression_threshold"] = ConfigValue(u32, compression.threshold)
        runtime[prefix + "knet_compression_level"] = ConfigValue(
            ValueType.INT32, self.integer("totem.knet_compression_level", 0)
        )
        runtime[prefix + "knet_compression_model"] = ConfigValue(
            ValueType.STRING, compression.model.name.lower()
        )
        runtime[prefix + "block_unlisted_ips"] = ConfigValue(
            u32, int(self.flag("totem.block_unlisted_ips", True))
        )
        runtime[prefix + "cancel_token_hold_on_retransmit"] = ConfigValue(
            u32, int(effective.cancel_token_hold_on_retransmit)
        )
        for link in links:
            link_prefix = f"{prefix}interface.{link.linknumber}."
            runtime[link_prefix + "knet_ping_interval"] = ConfigValue(
                u32, link.options.ping_interval_ms
            )
            runtime[link_prefix + "knet_ping_timeout"] = ConfigValue(
                u32, link.options.ping_timeout_ms
            )
            runtime[link_prefix + "mcastport"] = ConfigValue(ValueType.UINT16, link.mcastport)
        return runtime

    def log_target(self, prefix: str, base: LogTarget) -> LogTarget:
        to_logfile = self.flag(
            prefix + "to_logfile", self.flag(prefix + "to_file", base.to_logfile)
        )
        if prefix + "to_file" in self.typed:
            self.warn(
                "the to_file config parameter has been obsoleted; use to_logfile",
                prefix + "to_file",
            )
        syslog_priority = base.syslog_priority
        if prefix + "syslog_level" in self.typed:
            self.warn(
                "the syslog_level config parameter has been obsoleted; use syslog_priority",
                prefix + "syslog_level",
            )
            syslog_priority = LOG_PRIORITIES[self.string(prefix + "syslog_level", "info")]
        if prefix + "syslog_priority" in self.typed:
            syslog_priority = LOG_PRIORITIES[self.string(prefix + "syslog_priority", "info")]
        logfile_priority = base.logfile_priority
        if prefix + "logfile_priority" in self.typed:
            logfile_priority = LOG_PRIORITIES[self.string(prefix + "logfile_priority", "info")]
        target = LogTarget(
            to_stderr=self.flag(prefix + "to_stderr", base.to_stderr),
            to_syslog=self.flag(prefix + "to_syslog", base.to_syslog),
            to_logfile=to_logfile,
            logfile=self.opt_string(prefix + "logfile") or base.logfile,
            logfile_priority=logfile_priority,
            syslog_priority=syslog_priority,
            syslog_facility=self.string(prefix + "syslog_facility", base.syslog_facility),
            debug=DebugLevel(self.string(prefix + "debug", base.debug.value)),
        )
        if target.to_logfile and target.logfile is None:
            self.warn(
                f"{prefix}to_logfile is yes but no logfile is set; nothing is logged to a file",
                prefix + "to_logfile" if prefix + "to_logfile" in self.typed else None,
            )
        return target

    def logging(self) -> LoggingSettings:
        default = self.log_target("logging.", LogTarget())
        subsystems = {}
        for key in self.typed:
            match = _SUBSYS_KEY.fullmatch(key)
            if match is not None:
                name = match.group(1)
                subsystems[name] = self.log_target(f"logging.logger_subsys.{name}.", default)
        return LoggingSettings(
            default=default,
            subsystems=subsystems,
            timestamp=TimestampMode(self.string("logging.timestamp", TimestampMode.HIRES.value)),
            fileline=self.flag("logging.fileline", False),
            function_name=self.flag("logging.function_name", False),
            blackbox=self.flag("logging.blackbox", True),
        )

    def quorum(self, nodes: tuple[Node, ...], local_index: int) -> QuorumSettings:
        """votequorum_readconfig() at startup: its errors, and its adjustments (which
        corosync logs at CRIT and we report as warnings)."""
        provider = self.opt_string("quorum.provider")
        if provider is None:
            return QuorumSettings()
        if provider != "corosync_votequorum":
            raise self.fail(
                f'quorum provider "{provider}" is not supported: use corosync_votequorum',
                "quorum.provider",
            )

        def error(reason: str, key: str) -> ConfigError:
            return self.fail(reason, key, message=reason)

        expected_votes = self.integer("quorum.expected_votes", 0)
        node_votes = nodes[local_index].quorum_votes
        node_count = len(nodes)
        node_expected = sum(node.quorum_votes for node in nodes)
        device = None
        model = self.opt_string("quorum.device.model")
        if model:
            device = QuorumDevice(
                model=model,
                votes=self.opt_integer("quorum.device.votes"),
                timeout=self.integer("quorum.device.timeout", _QDEVICE_TIMEOUT),
                sync_timeout=self.integer("quorum.device.sync_timeout", _QDEVICE_SYNC_TIMEOUT),
                master_wins=self.flag("quorum.device.master_wins", False),
            )
        two_node = self.flag("quorum.two_node", False)
        if two_node and device is not None:
            raise error(
                "configuration error: two_node and quorum device cannot be configured at the "
                "same time!",
                "quorum.two_node",
            )
        wait_for_all = self.flag("quorum.wait_for_all", two_node)
        allow_downscale = self.flag("quorum.allow_downscale", False)
        last_man_standing = self.flag("quorum.last_man_standing", False)
        ev_tracking = self.flag("quorum.expected_votes_tracking", False) or allow_downscale
        atb, atb_nodes = self.auto_tie_breaker()
        if two_node and atb is not AtbMode.NONE:
            self.warn(
                "two_node and auto_tie_breaker are both specified but are not compatible: "
                "two_node has been disabled, please fix your corosync.conf",
                "quorum.two_node",
            )
            two_node = False
        if atb is not AtbMode.NONE and node_expected % 2 and not wait_for_all:
            if last_man_standing:
                raise error(
                    "configuration error: auto_tie_breaker & last_man_standing not available "
                    "in odd sized cluster",
                    "quorum.auto_tie_breaker",
                )
            self.warn(
                "auto_tie_breaker is set and the cluster has an odd number of nodes, but "
                "wait_for_all is not set: auto_tie_breaker has been disabled, please fix "
                "your corosync.conf",
                "quorum.auto_tie_breaker",
            )
            atb, atb_nodes = AtbMode.NONE, ()
        if device is not None:
            for flag, name in (
                (last_man_standing, "last_man_standing"),
                (atb is not AtbMode.NONE, "auto_tie_breaker"),
                (allow_downscale, "allow_downscale"),
            ):
                if flag:
                    raise error(
                        f"configuration error: quorum.device is not compatible with {name}",
                        f"quorum.{name}",
                    )
            if expected_votes and device.votes is None:
                raise error(
                    "configuration error: quorum.device.votes must be specified when "
                    "quorum.expected_votes is set",
                    "quorum.expected_votes",
                )
            if device.votes is None and node_count != node_expected:
                raise error(
                    "configuration error: quorum.device.votes must be specified when not all "
                    "nodes votes 1",
                    "quorum.device.model",
                )
            if device.votes and expected_votes and expected_votes - device.votes < 2:
                raise error(
                    "configuration error: quorum.device.votes is too high or expected_votes "
                    "is too low",
                    "quorum.device.votes",
                )
            if device.votes is None and not expected_votes:
                device = attrs.evolve(device, votes=node_expected - 1)
                node_expected += node_expected - 1
        return QuorumSettings(
            provider=provider,
            expected_votes=expected_votes or node_expected,
            votes=node_votes,
            two_node=two_node,
            wait_for_all=wait_for_all,
            last_man_standing=last_man_standing,
            last_man_standing_window=self.integer("quorum.last_man_standing_window", _LMS_WINDOW),
            auto_tie_breaker=atb,
            auto_tie_breaker_nodes=atb_nodes,
            allow_downscale=allow_downscale,
            expected_votes_tracking=ev_tracking,
            device=device,
        )

    def auto_tie_breaker(self) -> tuple[AtbMode, tuple[int, ...]]:
        text = self.opt_string("quorum.auto_tie_breaker_node")
        if not self.flag("quorum.auto_tie_breaker", False):
            if text is not None:
                self.warn(
                    "auto_tie_breaker_node: is meaningless if auto_tie_breaker is set to 0",
                    "quorum.auto_tie_breaker_node",
                )
            return AtbMode.NONE, ()
        if text is None or text == "lowest":
            return AtbMode.LOWEST, ()
        if text == "highest":
            return AtbMode.HIGHEST, ()
        words = text.split()
        if not words or not all(word.isascii() and word.isdigit() for word in words):
            raise self.fail(
                'Value of key "quorum.auto_tie_breaker_node" is expected to be lowest, highest '
                f'or a list of node ids, but "{text}" was given',
                "quorum.auto_tie_breaker_node",
            )
        return AtbMode.LIST, tuple(int(word) for word in words)

    def system(self) -> SystemSettings:
        return SystemSettings(
            qb_ipc_type=self.string("system.qb_ipc_type", "native"),
            sched_rr=self.flag("system.sched_rr", True),
            priority=self.opt_string("system.priority"),
            move_to_root_cgroup=self.string("system.move_to_root_cgroup", "auto"),
            allow_knet_handle_fallback=self.flag("system.allow_knet_handle_fallback", False),
            state_dir=self.opt_string("system.state_dir"),
        )

    def uidgid(self) -> tuple[frozenset[int], frozenset[int]]:
        uids: set[int] = set()
        gids: set[int] = set()
        for key in self.typed:
            match = _UIDGID_KEY.fullmatch(key)
            if match is not None:
                (uids if match.group(1) == "uid" else gids).add(int(match.group(2)))
        return frozenset(uids), frozenset(gids)


def _literal_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _strip_scope(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def validate_config(
    parsed: ParsedConfig,
    *,
    hostname: str,
    local_addresses: Iterable[str | IPAddress] = (),
    resolve_address: Resolver | None = None,
) -> Config:
    """Apply corosync's rules to ``parsed`` and build the :class:`Config`.

    ``hostname`` (``uname -n``) and ``local_addresses`` (the addresses of this host's
    interfaces) find the local node as corosync does. ``resolve_address`` resolves
    node addresses that are host names; without it they are kept unresolved
    (``NodeAddress.ip`` is None) and only checked for host-name syntax.
    Raises :class:`ConfigError` (or :class:`ConfigParseError` for a value of the wrong
    type).
    """
    return _Validator(
        parsed,
        hostname=hostname,
        local_addresses=local_addresses,
        resolve_address=resolve_address,
    ).run()
