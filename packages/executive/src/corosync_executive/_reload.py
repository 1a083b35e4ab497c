"""Runtime reload of corosync.conf (``corosync-cfgtool -R``): the pure part.

When a reload request is delivered, every node re-reads its own file, validates it
into a new :class:`Config` and compares it with the one in force
(corosync reference 1.12). :func:`plan_reload` turns the two into a
:class:`ReloadPlan`: the cmap keys to delete and to set, the changes that cannot be
made at run time (reported, with corosync's log line), and typed summaries of what
the daemon must re-apply (nodes and links for knet, totem timers, logging, crypto,
quorum, IPC grants). :func:`apply_plan_to_cmap` writes the plan into the store;
:func:`begin_reload` and :func:`finish_reload` maintain the ``config.reload_*`` keys.
:func:`reload_config_file` reads the file (and, on request, the key) and plans.

Rules, as corosync's ``exec/cfg.c`` and ``exec/totemconfig.c`` apply them:

* A file that does not parse or validate changes nothing: the reload fails with
  CS_ERR_INVALID_PARAM and the message (which names the file and line).
* Keys that cannot change at run time keep their old value, and each change is
  reported as ``Modified entry '<key>' in corosync.conf cannot be changed at
  run-time``: ``totem.{version,threads,ip_version,ip_dscp,netmtu,transport,
  cluster_name,nodeid,clear_node_high_bit,rrp_mode,vsftype}``, ``quorum.provider``,
  every ``system.*`` key, and ``totem.interface.<L>.{mcastaddr,broadcast,ttl}``;
  ``totem.interface.<L>.{mcastport,knet_transport}`` only for a link that exists
  before and after (a new link takes them).
* This node's address on a link it keeps cannot change (knet needs a working link
  at all times: remove the link in one reload, add it back in the next). The key is
  reported with its own message and keeps the old address.
* This node's nodeid cannot change, and a file in which this node is not in the
  nodelist any more is an error (corosync would fail to find the local node).
* Everything else is applied: nodes and links added, removed and changed, the
  totem timers (``runtime.config.totem.*`` recomputed, the per-link ping timers
  with them), knet settings (link_mode, knet_mtu, PMTUd interval, compression,
  block_unlisted_ips), crypto (a rolling change, reference 5.6), logging, quorum
  (what votequorum accepts at run time is votequorum's business), and the uidgid
  grants (``uidgid.config.*``; ``uidgid.uid.N`` set by tools are not config keys and
  are never touched).

What differs from corosync, on purpose:

* Only keys that came from the file (``Config.keys``, the synthesised
  ``bindnetaddr`` and ``nodelist.local_node_pos`` included) and ``runtime.config.*``
  are compared, deleted or set; keys a tool created under ``totem.`` and the like
  stay (corosync deletes every key under its config prefixes that the file lacks),
  and a key a tool changed at run time is only rewritten when the file changes it
  (corosync copies every file key back).
* Deleting a read-only key from the file is reported and refused like a change
  (corosync deletes it); a change of ``crypto_model`` counts as a crypto change.
* ``totem.interface.<L>.bindnetaddr`` is derived from this node's nodelist address,
  so it follows the rule for that address instead of being read-only on its own.
* ``config.reload_error_message`` exists only after a failed reload (it is deleted
  by a successful one): corosync-cfgtool treats its presence as an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

import knet
from corosync import CsErrorCode
from corosync_executive._cmap_store import CmapStore, ValueType
from corosync_executive._config_parser import ConfigError, IdResolver, load_config
from corosync_executive._config_schema import ConfigValue
from corosync_executive._config_validate import (
    Config,
    CryptoSettings,
    IPAddress,
    Link,
    LoggingSettings,
    Node,
    NodeAddress,
    QuorumSettings,
    Resolver,
    validate_config,
)
from totem import TotemConfig

__all__ = [
    "KEY_RELOAD_ERROR_MESSAGE",
    "KEY_RELOAD_IN_PROGRESS",
    "KEY_RELOAD_STATUS",
    "KEY_TOTEMCONFIG_RELOAD_IN_PROGRESS",
    "MAX_KEY_LEN",
    "MIN_KEY_LEN",
    "KnetSettings",
    "ReloadFailure",
    "ReloadPlan",
    "apply_plan_to_cmap",
    "begin_reload",
    "cannot_change_message",
    "finish_reload",
    "is_runtime_read_only",
    "plan_reload",
    "read_key",
    "reload_config_file",
]

KEY_RELOAD_IN_PROGRESS = "config.reload_in_progress"
KEY_TOTEMCONFIG_RELOAD_IN_PROGRESS = "config.totemconfig_reload_in_progress"
KEY_RELOAD_STATUS = "config.reload_status"
KEY_RELOAD_ERROR_MESSAGE = "config.reload_error_message"

#: knet's KNET_MIN_KEY_LEN and the most corosync reads from a key file.
MIN_KEY_LEN = 128
MAX_KEY_LEN = 4096

_READ_ONLY_KEYS = frozenset(
    {
        *(
            f"totem.{name}"
            for name in (
                "version",
                "threads",
                "ip_version",
                "ip_dscp",
                "netmtu",
                "transport",
                "cluster_name",
                "nodeid",
                "clear_node_high_bit",
                "rrp_mode",
                "vsftype",
            )
        ),
        "quorum.provider",
    }
)
_READ_ONLY_PREFIXES = ("system.",)
_INTERFACE_KEY = re.compile(r"totem\.interface\.([0-9]+)\.(.+)")
# Always read-only (udp-only options), and read-only for a link that stays.
_INTERFACE_READ_ONLY = frozenset({"mcastaddr", "broadcast", "ttl"})
_INTERFACE_FIXED_WHILE_UP = frozenset({"mcastport", "knet_transport"})


def cannot_change_message(key: str) -> str:
    """corosync's log line for a change that a reload does not apply."""
    return f"Modified entry '{key}' in corosync.conf cannot be changed at run-time"


def is_runtime_read_only(key: str, kept_links: Iterable[int] = ()) -> bool:
    """Whether a reload refuses to change ``key``. ``kept_links`` are the links that
    exist before and after the reload (their port and transport are fixed)."""
    if key in _READ_ONLY_KEYS or key.startswith(_READ_ONLY_PREFIXES):
        return True
    match = _INTERFACE_KEY.fullmatch(key)
    if match is None:
        return False
    name = match.group(2)
    if name in _INTERFACE_READ_ONLY:
        return True
    return name in _INTERFACE_FIXED_WHILE_UP and int(match.group(1)) in frozenset(kept_links)


@attrs.frozen
class KnetSettings:
    """The knet-wide settings a reload can change."""

    link_mode: knet.LinkPolicy
    knet_mtu: int
    knet_pmtud_interval: int
    compression: knet.CompressionConfig
    block_unlisted_ips: bool

    @classmethod
    def of(cls, config: Config) -> KnetSettings:
        return cls(
            link_mode=config.link_mode,
            knet_mtu=config.knet_mtu,
            knet_pmtud_interval=config.knet_pmtud_interval,
            compression=config.compression,
            block_unlisted_ips=config.block_unlisted_ips,
        )


@attrs.frozen(kw_only=True)
class ReloadPlan:
    """What one reload changes.

    ``deletes`` (sorted) and ``sets`` are the cmap keys to change, in that order;
    ``rejected`` the changes refused, as (key, log message) in key order: those keys
    keep their old value. The ``*_changed`` fields are None (or empty) when that part
    did not change, else the new settings for the daemon to apply. ``config`` is the
    configuration now in force (the new one with the refused changes undone): pass it
    as ``current`` to the next reload.
    """

    config: Config
    deletes: tuple[str, ...] = ()
    sets: Mapping[str, ConfigValue] = attrs.field(factory=dict)
    rejected: tuple[tuple[str, str], ...] = ()
    nodes_added: tuple[Node, ...] = ()
    nodes_removed: tuple[Node, ...] = ()
    nodes_changed: tuple[Node, ...] = ()
    links_added: tuple[Link, ...] = ()
    links_removed: tuple[Link, ...] = ()
    links_changed: tuple[Link, ...] = ()
    totem_changed: TotemConfig | None = None
    knet_changed: KnetSettings | None = None
    logging_changed: LoggingSettings | None = None
    crypto_changed: CryptoSettings | None = None
    quorum_changed: QuorumSettings | None = None
    uids_changed: frozenset[int] | None = None
    gids_changed: frozenset[int] | None = None
    new_key: bytes | None = attrs.field(default=None, repr=False)
    """The key read for a crypto change (by :func:`reload_config_file`), if read."""

    @property
    def is_empty(self) -> bool:
        """True when the reload changes nothing and refuses nothing."""
        return not (
            self.deletes
            or self.sets
            or self.rejected
            or self.nodes_added
            or self.nodes_removed
            or self.nodes_changed
            or self.links_added
            or self.links_removed
            or self.links_changed
            or self.totem_changed is not None
            or self.knet_changed is not None
            or self.logging_changed is not None
            or self.crypto_changed is not None
            or self.quorum_changed is not None
            or self.uids_changed is not None
            or self.gids_changed is not None
        )


@attrs.frozen
class ReloadFailure:
    """A reload that changes nothing: ``code`` goes to ``config.reload_status`` and
    ``message`` (naming the file and line when known) to
    ``config.reload_error_message``."""

    code: CsErrorCode
    message: str

    @property
    def log_message(self) -> str:
        """The line corosync logs for it."""
        return f"Unable to reload config file: {self.message}"


class _Planner:
    def __init__(self, current: Config, new: Config) -> None:
        self.current = current
        self.new = new
        self.keys: dict[str, ConfigValue] = dict(new.keys)
        self.runtime: dict[str, ConfigValue] = dict(new.runtime_keys)
        self.rejected: dict[str, str] = {}
        self.kept_links = {link.linknumber for link in current.links} & {
            link.linknumber for link in new.links
        }

    def keep_old(self, key: str, message: str) -> None:
        old = self.current.keys.get(key)
        if old is None:
            self.keys.pop(key, None)
        else:
            self.keys[key] = old
        self.rejected[key] = message

    def refuse_read_only(self) -> None:
        for key in sorted(self.current.keys.keys() | self.new.keys.keys()):
            if self.current.keys.get(key) == self.new.keys.get(key):
                continue
            if is_runtime_read_only(key, self.kept_links):
                self.keep_old(key, cannot_change_message(key))

    def refuse_local_address(self) -> tuple[Node, ...]:
        """Keep this node's old address on every link it keeps; the nodes with that."""
        old_local, new_local = self.current.local_node, self.new.local_node
        addresses = list(new_local.addresses)
        for index, address in enumerate(addresses):
            old = old_local.address(address.link)
            if old is None or (old.address, old.ip) == (address.address, address.ip):
                continue
            key = f"nodelist.node.{new_local.position}.ring{address.link}_addr"
            self.keys[key] = ConfigValue(ValueType.STRING, old.address)
            bindnetaddr = f"totem.interface.{address.link}.bindnetaddr"
            self.keys[bindnetaddr] = ConfigValue(ValueType.STRING, old.address)
            self.rejected[key] = (
                f"Modified entry '{key}' in corosync.conf cannot be changed at run-time: "
                f"the address of this node on link {address.link} stays {old.address} (to "
                "move it, remove the link in one reload and add it back in another)"
            )
            addresses[index] = NodeAddress(address.link, old.address, old.ip)
        if addresses == list(new_local.addresses):
            return self.new.nodes
        local = attrs.evolve(new_local, addresses=tuple(addresses))
        return tuple(local if node is new_local else node for node in self.new.nodes)

    def effective_links(self) -> tuple[Link, ...]:
        """The new links, with the port and transport of kept links unchanged."""
        old = {link.linknumber: link for link in self.current.links}
        links = []
        for link in self.new.links:
            before = old.get(link.linknumber)
            if before is None:
                links.append(link)
                continue
            links.append(attrs.evolve(link, mcastport=before.mcastport, transport=before.transport))
            key = f"runtime.config.totem.interface.{link.linknumber}.mcastport"
            if key in self.current.runtime_keys:
                self.runtime[key] = self.current.runtime_keys[key]
        return tuple(links)

    def effective_config(self) -> Config:
        nodes = self.refuse_local_address()
        links = self.effective_links()
        current, new, rejected = self.current, self.new, self.rejected
        changes: dict[str, object] = {}
        if "totem.cluster_name" in rejected:
            changes["cluster_name"] = current.cluster_name
        if "totem.ip_version" in rejected:
            changes["ip_version"] = current.ip_version
        if "totem.ip_dscp" in rejected:
            changes["ip_dscp"] = current.ip_dscp
        if "totem.netmtu" in rejected:
            changes["netmtu"] = current.netmtu
        if "quorum.provider" in rejected:
            changes["quorum"] = current.quorum
        if any(key.startswith(_READ_ONLY_PREFIXES) for key in rejected):
            changes["system"] = current.system
        return attrs.evolve(
            new,
            keys=dict(self.keys),
            runtime_keys=dict(self.runtime),
            nodes=nodes,
            links=links,
            **changes,  # type: ignore[arg-type]
        )


def _by_id(nodes: Iterable[Node]) -> dict[int, Node]:
    return {node.nodeid: node for node in nodes}


def _by_number(links: Iterable[Link]) -> dict[int, Link]:
    return {link.linknumber: link for link in links}


def _addresses(node: Node) -> tuple[tuple[int, str, IPAddress | None], ...]:
    return tuple((a.link, a.address, a.ip) for a in node.addresses)


def plan_reload(current: Config, new: Config, *, key_changed: bool = False) -> ReloadPlan:
    """Compare the configuration in force with the file's new one.

    ``key_changed`` says that the crypto key itself changed (same settings, new key
    file content); :func:`reload_config_file` finds that out. Both configurations
    must be of this node with the same nodeid (:func:`reload_config_file` checks).
    """
    planner = _Planner(current, new)
    planner.refuse_read_only()
    effective = planner.effective_config()

    old_keys = current.cmap_keys()
    new_keys = effective.cmap_keys()
    deletes = tuple(sorted(old_keys.keys() - new_keys.keys()))
    sets = {key: value for key, value in sorted(new_keys.items()) if old_keys.get(key) != value}

    old_nodes, new_nodes = _by_id(current.nodes), _by_id(effective.nodes)
    old_links, new_links = _by_number(current.links), _by_number(effective.links)
    totem_changed = (
        effective.totem
        if (effective.totem, effective.totem_effective) != (current.totem, current.totem_effective)
        else None
    )
    knet_settings = KnetSettings.of(effective)
    crypto_changed = effective.crypto != current.crypto or (
        key_changed and effective.crypto.enabled
    )
    return ReloadPlan(
        config=effective,
        deletes=deletes,
        sets=sets,
        rejected=tuple(sorted(planner.rejected.items())),
        nodes_added=tuple(new_nodes[i] for i in sorted(new_nodes.keys() - old_nodes.keys())),
        nodes_removed=tuple(old_nodes[i] for i in sorted(old_nodes.keys() - new_nodes.keys())),
        nodes_changed=tuple(
            new_nodes[i]
            for i in sorted(old_nodes.keys() & new_nodes.keys())
            if _addresses(old_nodes[i]) != _addresses(new_nodes[i])
        ),
        links_added=tuple(new_links[n] for n in sorted(new_links.keys() - old_links.keys())),
        links_removed=tuple(old_links[n] for n in sorted(old_links.keys() - new_links.keys())),
        links_changed=tuple(
            new_links[n]
            for n in sorted(old_links.keys() & new_links.keys())
            if old_links[n] != new_links[n]
        ),
        totem_changed=totem_changed,
        knet_changed=knet_settings if knet_settings != KnetSettings.of(current) else None,
        logging_changed=effective.logging if effective.logging != current.logging else None,
        crypto_changed=effective.crypto if crypto_changed else None,
        quorum_changed=effective.quorum if effective.quorum != current.quorum else None,
        uids_changed=effective.uids if effective.uids != current.uids else None,
        gids_changed=effective.gids if effective.gids != current.gids else None,
    )


# ---------------------------------------------------------------- cmap


def apply_plan_to_cmap(store: CmapStore, plan: ReloadPlan) -> None:
    """Write ``plan`` into ``store`` as the executive: the deletes first, then the sets
    (each notifies its trackers, as corosync's reload does)."""
    for key in plan.deletes:
        if key in store:
            store.delete(key, writer=True)
    for key, value in plan.sets.items():
        store.set(key, value.type, value.value, writer=True)


def begin_reload(store: CmapStore) -> None:
    """Mark a reload as running: ``config.reload_in_progress`` and
    ``config.totemconfig_reload_in_progress`` = 1 (u8), so trackers can treat the key
    changes that follow as one reconfiguration."""
    store.set(KEY_RELOAD_IN_PROGRESS, ValueType.UINT8, 1, writer=True)
    store.set(KEY_TOTEMCONFIG_RELOAD_IN_PROGRESS, ValueType.UINT8, 1, writer=True)


def finish_reload(store: CmapStore, error: CsErrorCode, message: str = "") -> None:
    """Publish a reload's result: ``config.reload_status`` (i32 cs_error_t, OK = 1),
    ``config.reload_error_message`` (set on failure, deleted on success), then clear the
    in-progress markers that :func:`begin_reload` set (a failure before
    :func:`begin_reload` leaves them alone)."""
    store.set(KEY_RELOAD_STATUS, ValueType.INT32, int(error), writer=True)
    if error is CsErrorCode.OK:
        if KEY_RELOAD_ERROR_MESSAGE in store:
            store.delete(KEY_RELOAD_ERROR_MESSAGE, writer=True)
    else:
        store.set(KEY_RELOAD_ERROR_MESSAGE, ValueType.STRING, message, writer=True)
    for key in (KEY_RELOAD_IN_PROGRESS, KEY_TOTEMCONFIG_RELOAD_IN_PROGRESS):
        if key in store:
            store.set(key, ValueType.UINT8, 0, writer=True)


# ---------------------------------------------------------------- the file


def read_key(crypto: CryptoSettings) -> bytes:
    """The key ``crypto`` names: the inline ``key``, else the first
    :data:`MAX_KEY_LEN` bytes of ``keyfile``. Raises :class:`ConfigError` when it
    cannot be read or is shorter than :data:`MIN_KEY_LEN` bytes."""
    if crypto.key is not None:
        data = crypto.key.encode("utf-8", "surrogateescape")[:MAX_KEY_LEN]
        where = "totem.key"
    else:
        try:
            with Path(crypto.keyfile).open("rb") as file:
                data = file.read(MAX_KEY_LEN)
        except OSError as exc:
            reason = f"Could not open {crypto.keyfile}: {exc.strerror or exc}"
            raise ConfigError(reason, message=reason) from None
        where = crypto.keyfile
    if len(data) < MIN_KEY_LEN:
        reason = (
            f"Could only read {len(data) * 8} bits of minimum {MIN_KEY_LEN * 8} bits from {where}."
        )
        raise ConfigError(reason, message=reason)
    return data


def _failure(error: ConfigError) -> ReloadFailure:
    return ReloadFailure(CsErrorCode.INVALID_PARAM, str(error))


def reload_config_file(
    path: str | os.PathLike[str],
    *,
    hostname: str,
    local_addresses: Iterable[str | IPAddress],
    resolve_address: Resolver | None = None,
    current: Config,
    current_key: bytes | None = None,
    resolve_user: IdResolver | None = None,
    resolve_group: IdResolver | None = None,
) -> ReloadPlan | ReloadFailure:
    """Re-read ``path`` (and ``uidgid.d/``), validate it for this host and plan the
    reload against ``current``; a :class:`ReloadFailure` when the file cannot be used.

    With ``current_key`` (the key in use), the key of the new configuration is read
    too when crypto is on, so that a new key file content is a crypto change
    (``plan.new_key`` holds it). ``resolve_user``/``resolve_group`` default to the
    system databases.
    """
    loaders: dict[str, IdResolver] = {}
    if resolve_user is not None:
        loaders["resolve_user"] = resolve_user
    if resolve_group is not None:
        loaders["resolve_group"] = resolve_group
    try:
        parsed = load_config(path, **loaders)
        new = validate_config(
            parsed,
            hostname=hostname,
            local_addresses=local_addresses,
            resolve_address=resolve_address,
        )
    except ConfigError as exc:
        if exc.reason == "No valid name found for local host":
            return ReloadFailure(
                CsErrorCode.INVALID_PARAM,
                f"{exc}: this node (nodeid {current.local_nodeid}) is not in the nodelist "
                f"of {path} any more; a node leaves the cluster by shutting down "
                "(corosync-cfgtool -H) before it is removed from the file",
            )
        return _failure(exc)
    if new.local_nodeid != current.local_nodeid:
        where = new.origins.get(f"nodelist.node.{new.local_node_pos}.nodeid")
        at = f" ({where.file}:{where.line})" if where is not None else ""
        return ReloadFailure(
            CsErrorCode.INVALID_PARAM,
            f"the nodeid of this node cannot change at run-time: it is "
            f"{current.local_nodeid}, the file says {new.local_nodeid}{at}",
        )
    new_key: bytes | None = None
    key_changed = False
    if current_key is not None and new.crypto.enabled:
        try:
            new_key = read_key(new.crypto)
        except ConfigError as exc:
            return _failure(exc)
        key_changed = new_key != current_key
    plan = plan_reload(current, new, key_changed=key_changed)
    if plan.crypto_changed is None:
        return plan
    return attrs.evolve(plan, new_key=new_key)
