"""Tests of corosync's semantic rules on a parsed corosync.conf and of the Config built.

Every rule of corosync reference 1.2-1.6 has a good and a bad case; the derived
timers for 2, 3 and 5 nodes are the table of reference 1.2 (2 and 3 observed live on
corosync 3.1.7). The host name and local addresses are parameters, so nothing here
depends on the machine the tests run on.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import knet
from corosync_executive import (
    AtbMode,
    Config,
    ConfigEntry,
    ConfigError,
    ConfigParseError,
    ConfigValue,
    DebugLevel,
    IpVersion,
    LogPriority,
    ParsedConfig,
    QuorumDevice,
    TimestampMode,
    parse_config,
    validate_config,
)
from corosync_executive._cmap_store import ValueType
from corosync_executive._config_schema import convert_entries

#: Debian's example corosync.conf, with two knet links and a three-node nodelist.
DEBIAN_3_NODES = (Path(__file__).parent / "data" / "debian-3-nodes.conf").read_text()

U8, U16, U32, I32, U64, STR = (
    ValueType.UINT8,
    ValueType.UINT16,
    ValueType.UINT32,
    ValueType.INT32,
    ValueType.UINT64,
    ValueType.STRING,
)


def node(name: str | None, nodeid: int | None, *addresses: str, votes: int | None = None) -> str:
    """A ``node { }`` section."""
    lines = []
    if name is not None:
        lines.append(f"  name: {name}")
    if nodeid is not None:
        lines.append(f"  nodeid: {nodeid}")
    if votes is not None:
        lines.append(f"  quorum_votes: {votes}")
    lines += [f"  ring{link}_addr: {address}" for link, address in enumerate(addresses)]
    return " node {\n" + "\n".join(lines) + "\n }\n"


def three_nodes() -> list[str]:
    """Three single-link nodes on 10.0.0.1..3."""
    return [node(f"node{i}", i, f"10.0.0.{i}") for i in (1, 2, 3)]


def conf(
    *,
    totem: str = "",
    nodes: list[str] | None = None,
    quorum: str | None = None,
    logging: str = "",
    extra: str = "",
    version: str | None = "2",
) -> str:
    """A corosync.conf: a totem section, a nodelist, and optional other sections."""
    nodes = three_nodes() if nodes is None else nodes
    text = "totem {\n"
    if version is not None:
        text += f" version: {version}\n"
    text += totem + "}\n"
    if nodes:
        text += "nodelist {\n" + "".join(nodes) + "}\n"
    if quorum is not None:
        text += "quorum {\n" + quorum + "}\n"
    if logging:
        text += "logging {\n" + logging + "}\n"
    return text + extra


def validate(
    text: str,
    *,
    hostname: str = "node1",
    local_addresses: tuple[str, ...] = (),
    resolve_address=None,
) -> Config:
    """Parse and validate ``text`` as corosync.conf on host ``hostname``."""
    return validate_config(
        parse_config(text, file="corosync.conf"),
        hostname=hostname,
        local_addresses=local_addresses,
        resolve_address=resolve_address,
    )


def config_error(text: str, **kwargs) -> ConfigError:
    """The ConfigError validating ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        validate(text, **kwargs)
    return info.value


def line_of(text: str, fragment: str) -> int:
    """The 1-based number of the only line of ``text`` containing ``fragment``."""
    numbers = [i for i, line in enumerate(text.split("\n"), 1) if fragment in line]
    assert len(numbers) == 1, numbers
    return numbers[0]


# -- the realistic file ----------------------------------------------------------------


def test_debian_three_nodes_config():
    """Debian's example with 2 links and 3 nodes validates to the expected Config."""
    config = validate(DEBIAN_3_NODES, hostname="node2")
    assert config.local_node_pos == 1
    assert config.local_nodeid == 2
    assert config.local_node.name == "node2"
    assert [(n.position, n.nodeid, n.name, n.quorum_votes) for n in config.nodes] == [
        (0, 1, "node1", 1),
        (1, 2, "node2", 1),
        (2, 3, "node3", 2),
    ]
    assert [(a.link, a.address, a.ip) for a in config.nodes[2].addresses] == [
        (0, "10.231.0.3", ipaddress.ip_address("10.231.0.3")),
        (1, "10.232.0.3", ipaddress.ip_address("10.232.0.3")),
    ]
    assert [(link.linknumber, link.mcastport, link.transport) for link in config.links] == [
        (0, 5405, "udp"),
        (1, 5406, "udp"),
    ]
    assert config.links[0].options == knet.LinkOptions(
        priority=20, ping_interval_ms=912, ping_timeout_ms=1825, ping_precision=2048, pong_count=2
    )
    # pong_count 3 on link 1: interval = 3650 // 6, timeout = 3650 // 3
    assert config.links[1].options == knet.LinkOptions(
        priority=10, ping_interval_ms=608, ping_timeout_ms=1216, ping_precision=2048, pong_count=3
    )
    assert config.link_mode is knet.LinkPolicy.PASSIVE
    assert config.ip_version is IpVersion.IPV6_4
    assert config.cluster_name == "debian"
    assert config.config_version == 7
    assert config.netmtu == 65536
    assert config.knet_pmtud_interval == 30
    assert config.block_unlisted_ips is True
    assert config.crypto.cipher == "aes256"
    assert config.crypto.hash == "sha256"
    assert config.crypto.model == "nss"
    assert config.crypto.keyfile == "/etc/corosync/authkey"
    assert config.crypto.enabled
    assert config.system.allow_knet_handle_fallback is True
    assert config.quorum.provider == "corosync_votequorum"
    assert config.quorum.expected_votes == 4
    assert config.quorum.votes == 1
    assert config.logging.default.to_logfile is True
    assert config.logging.default.logfile == "/var/log/corosync/corosync.log"
    assert config.logging.for_subsys("QUORUM").debug is DebugLevel.ON
    assert config.logging.for_subsys("TOTEM").debug is DebugLevel.OFF
    assert config.warnings == ()


def test_debian_three_nodes_cmap_keys():
    """The flat map holds the file's typed keys plus local_node_pos and bindnetaddr."""
    config = validate(DEBIAN_3_NODES, hostname="node3")
    typed = convert_entries(parse_config(DEBIAN_3_NODES).entries)
    assert len(typed) == 33
    assert dict(config.keys) == {
        **{key: t.value for key, t in typed.items()},
        "totem.interface.0.bindnetaddr": ConfigValue(STR, "10.231.0.3"),
        "totem.interface.1.bindnetaddr": ConfigValue(STR, "10.232.0.3"),
        "nodelist.local_node_pos": ConfigValue(U32, 2),
    }
    assert config.origins["totem.token"].line == line_of(DEBIAN_3_NODES, "token: 3000")


def test_debian_three_nodes_runtime_keys():
    """runtime.config.totem.* holds the values in force, as corosync publishes them."""
    config = validate(DEBIAN_3_NODES, hostname="node1")
    prefix = "runtime.config.totem."
    assert dict(config.runtime_keys) == {
        prefix + "token": ConfigValue(U32, 3650),
        prefix + "token_retransmit": ConfigValue(U32, 869),
        prefix + "hold": ConfigValue(U32, 685),
        prefix + "consensus": ConfigValue(U32, 4380),
        prefix + "join": ConfigValue(U32, 50),
        prefix + "send_join": ConfigValue(U32, 0),
        prefix + "merge": ConfigValue(U32, 200),
        prefix + "downcheck": ConfigValue(U32, 1000),
        prefix + "fail_recv_const": ConfigValue(U32, 2500),
        prefix + "seqno_unchanged_const": ConfigValue(U32, 30),
        prefix + "window_size": ConfigValue(U32, 50),
        prefix + "max_messages": ConfigValue(U32, 17),
        prefix + "miss_count_const": ConfigValue(U32, 5),
        prefix + "token_retransmits_before_loss_const": ConfigValue(U32, 4),
        prefix + "token_warning": ConfigValue(U32, 75),
        prefix + "heartbeat_failures_allowed": ConfigValue(U32, 0),
        prefix + "max_network_delay": ConfigValue(U32, 50),
        prefix + "knet_pmtud_interval": ConfigValue(U32, 30),
        prefix + "knet_mtu": ConfigValue(U32, 0),
        prefix + "knet_compression_threshold": ConfigValue(U32, 0),
        prefix + "knet_compression_level": ConfigValue(I32, 0),
        prefix + "knet_compression_model": ConfigValue(STR, "none"),
        prefix + "block_unlisted_ips": ConfigValue(U32, 1),
        prefix + "cancel_token_hold_on_retransmit": ConfigValue(U32, 0),
        prefix + "interface.0.knet_ping_interval": ConfigValue(U32, 912),
        prefix + "interface.0.knet_ping_timeout": ConfigValue(U32, 1825),
        prefix + "interface.0.mcastport": ConfigValue(U16, 5405),
        prefix + "interface.1.knet_ping_interval": ConfigValue(U32, 608),
        prefix + "interface.1.knet_ping_timeout": ConfigValue(U32, 1216),
        prefix + "interface.1.mcastport": ConfigValue(U16, 5406),
    }
    assert config.cmap_keys() == {**config.keys, **config.runtime_keys}


# -- derived timers (reference 1.2) -------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "token", "retransmit", "hold", "consensus", "interval", "timeout", "warning"),
    [
        (1, 3000, 714, 561, 3600, 750, 1500, 2250),
        (2, 3000, 714, 561, 3600, 750, 1500, 2250),
        (3, 3650, 869, 685, 4380, 912, 1825, 2737),
        (5, 4950, 1178, 932, 5940, 1237, 2475, 3712),
    ],
)
def test_derived_timers_match_the_reference_table(
    count: int,
    token: int,
    retransmit: int,
    hold: int,
    consensus: int,
    interval: int,
    timeout: int,
    warning: int,
):
    """token, token_retransmit, hold, consensus, knet pings and warning for N nodes."""
    nodes = [node(f"node{i}", i, f"10.0.0.{i}") for i in range(1, count + 1)]
    config = validate(conf(nodes=nodes))
    runtime = {key: value.value for key, value in config.runtime_keys.items()}
    prefix = "runtime.config.totem."
    assert runtime[prefix + "token"] == token
    assert runtime[prefix + "token_retransmit"] == retransmit
    assert runtime[prefix + "hold"] == hold
    assert runtime[prefix + "consensus"] == consensus
    assert runtime[prefix + "interface.0.knet_ping_interval"] == interval
    assert runtime[prefix + "interface.0.knet_ping_timeout"] == timeout
    assert runtime[prefix + "token_warning"] == 75
    assert config.totem_effective.token_warning == warning
    assert config.totem_effective.token == token


def test_token_coefficient_zero_disables_the_node_term():
    """token_coefficient: 0 keeps the configured token for any node count."""
    nodes = [node(f"node{i}", i, f"10.0.0.{i}") for i in range(1, 6)]
    config = validate(conf(totem=" token_coefficient: 0\n", nodes=nodes))
    assert config.totem_effective.token == 3000


def test_explicit_timers_are_kept():
    """Explicit token_retransmit, hold and consensus override the derivations."""
    config = validate(
        conf(totem=" token: 5000\n token_retransmit: 400\n hold: 300\n consensus: 9000\n")
    )
    effective = config.totem_effective
    assert (effective.token, effective.token_retransmit, effective.hold, effective.consensus) == (
        5650,
        400,
        300,
        9000,
    )
    assert config.totem.token == 5000


def test_zero_means_default_for_corosync_timers():
    """token: 0 and window_size: 0 fall back to the defaults, as in corosync."""
    config = validate(conf(totem=" token: 0\n window_size: 0\n send_join: 0\n"))
    assert config.totem_effective.token == 3650
    assert config.totem_effective.window_size == 50
    assert config.totem_effective.send_join == 0


@pytest.mark.parametrize(
    ("totem", "reason", "key"),
    [
        (
            " token: 10\n token_coefficient: 0\n",
            "The token timeout parameter (10 ms) may not be less than (30 ms).",
            "totem.token",
        ),
        (
            " max_network_delay: 20\n",
            "The max_network_delay parameter (20 ms) may not be less than (30 ms).",
            "totem.max_network_delay",
        ),
        (
            " token_warning: 101\n",
            "The token warning parameter (101%) must be between 0 (disabled) and 100.",
            "totem.token_warning",
        ),
        (
            " token_retransmit: 20\n",
            "The token retransmit timeout parameter (20 ms) may not be less than (30 ms).",
            "totem.token_retransmit",
        ),
        (
            " token_retransmits_before_loss_const: 1000\n",
            "Not appropriate token or token_retransmits_before_loss_const value set",
            "totem.token_retransmits_before_loss_const",
        ),
        (
            " hold: 10\n",
            "The token hold timeout parameter (10 ms) may not be less than (14 ms).",
            "totem.hold",
        ),
        (
            " join: 20\n",
            "The join timeout parameter (20 ms) may not be less than (30 ms).",
            "totem.join",
        ),
        (
            " consensus: 25\n",
            "The consensus timeout parameter (25 ms) may not be less than (30 ms).",
            "totem.consensus",
        ),
        (
            " join: 500\n consensus: 400\n",
            "The consensus timeout parameter (400 ms) may not be less than join timeout (500 ms).",
            "totem.consensus",
        ),
        (
            " merge: 29\n",
            "The merge timeout parameter (29 ms) may not be less than (30 ms).",
            "totem.merge",
        ),
        (
            " downcheck: 1\n",
            "The downcheck timeout parameter (1 ms) may not be less than (30 ms).",
            "totem.downcheck",
        ),
    ],
)
def test_timer_limits(totem: str, reason: str, key: str):
    """Each totem timer limit gives corosync's message and names the key's line."""
    text = conf(totem=totem)
    error = config_error(text)
    assert error.reason == reason
    assert error.key == key
    assert error.line == line_of(text, key.split(".", 1)[1] + ":")
    assert str(error) == f"parse error in config: {reason} (corosync.conf:{error.line})"


def test_timer_limits_good_values():
    """Values at the limits are accepted."""
    config = validate(
        conf(
            totem=" token: 30\n token_coefficient: 0\n token_retransmit: 30\n hold: 14\n"
            " join: 30\n consensus: 30\n merge: 30\n downcheck: 30\n max_network_delay: 30\n"
            " token_warning: 100\n"
        )
    )
    assert config.totem_effective.hold == 14
    assert config.totem_effective.token_warning == 30


def test_totem_only_limits_are_reported():
    """Limits totem adds (max_messages <= window_size) become ConfigError too."""
    error = config_error(conf(totem=" window_size: 10\n max_messages: 20\n"))
    assert "max_messages" in error.reason
    assert str(error).startswith("parse error in config: ")


# -- totem section ------------------------------------------------------------------------


def test_version_must_be_2():
    """totem.version is required and must be 2."""
    for version in (None, "1", "3"):
        text = conf(version=version)
        error = config_error(text)
        assert error.reason == "This totem parser can only parse version 2 configurations."
    assert validate(conf(version="2")).keys["totem.version"] == ConfigValue(U32, 2)


def test_version_error_names_the_line():
    """A wrong version names its line."""
    text = conf(version="3")
    error = config_error(text)
    assert str(error) == (
        "parse error in config: This totem parser can only parse version 2 configurations. "
        f"(corosync.conf:{line_of(text, 'version: 3')})"
    )


@pytest.mark.parametrize("transport", ["udp", "udpu"])
def test_udp_transports_are_not_supported(transport: str):
    """udp and udpu are refused with a clear message naming the line."""
    text = conf(totem=f" transport: {transport}\n")
    error = config_error(text)
    assert error.reason == (
        f'totem.transport "{transport}" is not supported: pycorosync implements only the knet '
        "transport (remove the transport line or set it to knet)"
    )
    assert error.line == line_of(text, "transport:")


def test_unknown_transport_is_refused():
    """A transport that is neither knet nor udp(u) is refused."""
    error = config_error(conf(totem=" transport: tcp\n"))
    assert error.reason == 'Invalid totem.transport "tcp": the only transport is knet'


def test_knet_transport_is_accepted():
    """transport: knet is the default and accepted explicitly."""
    assert validate(conf(totem=" transport: knet\n")).local_nodeid == 1


def test_link_mode_is_a_knet_policy():
    """link_mode maps to knet's LinkPolicy; other words fail at their line."""
    assert validate(conf(totem=" link_mode: rr\n")).link_mode is knet.LinkPolicy.RR
    assert validate(conf(totem=" link_mode: active\n")).link_mode is knet.LinkPolicy.ACTIVE
    with pytest.raises(ConfigParseError) as info:
        validate(conf(totem=" link_mode: both\n"))
    assert info.value.reason == (
        'The Knet link mode "both" specified is invalid.  It must be active, passive or rr.'
    )


def test_ip_version_and_dscp():
    """ip_version and ip_dscp (number or name) are typed."""
    config = validate(conf(totem=" ip_version: ipv4\n ip_dscp: af21\n"))
    assert config.ip_version is IpVersion.IPV4
    assert config.ip_dscp == 18
    assert validate(conf(totem=" ip_dscp: 46\n")).ip_dscp == 46
    assert validate(conf()).ip_dscp == 0


# -- crypto -------------------------------------------------------------------------------------


def test_no_crypto_by_default():
    """Without crypto keys there is no crypto (corosync 3.1)."""
    crypto = validate(conf()).crypto
    assert (crypto.cipher, crypto.hash, crypto.model) == ("none", "none", "nss")
    assert not crypto.enabled


def test_crypto_none_is_accepted():
    """crypto_cipher: none and crypto_hash: none are a valid, unencrypted cluster."""
    crypto = validate(conf(totem=" crypto_cipher: none\n crypto_hash: none\n")).crypto
    assert not crypto.enabled


def test_hash_only_is_accepted():
    """A hash without a cipher signs without encrypting."""
    crypto = validate(conf(totem=" crypto_hash: sha1\n")).crypto
    assert (crypto.cipher, crypto.hash) == ("none", "sha1")
    assert crypto.enabled


def test_cipher_requires_hash():
    """A cipher with hash none is refused."""
    text = conf(totem=" crypto_cipher: aes128\n crypto_hash: none\n")
    error = config_error(text)
    assert error.reason == "crypto_cipher requires crypto_hash with value other than none"
    assert error.line == line_of(text, "crypto_hash")
    error = config_error(conf(totem=" crypto_cipher: aes128\n"))
    assert error.reason == "crypto_cipher requires crypto_hash with value other than none"


def test_secauth_on_means_aes256_sha256():
    """Legacy secauth: on turns on aes256 + sha256 unless set explicitly."""
    assert validate(conf(totem=" secauth: on\n")).crypto.cipher == "aes256"
    assert validate(conf(totem=" secauth: on\n")).crypto.hash == "sha256"
    crypto = validate(conf(totem=" secauth: on\n crypto_hash: sha512\n")).crypto
    assert (crypto.cipher, crypto.hash) == ("aes256", "sha512")
    crypto = validate(conf(totem=" secauth: on\n crypto_cipher: none\n")).crypto
    assert (crypto.cipher, crypto.hash) == ("none", "sha256")
    crypto = validate(conf(totem=" secauth: off\n")).crypto
    assert not crypto.enabled


def test_secauth_on_with_hash_none_is_refused():
    """secauth: on with crypto_hash: none leaves a cipher without a hash."""
    error = config_error(conf(totem=" secauth: on\n crypto_hash: none\n"))
    assert error.reason == "crypto_cipher requires crypto_hash with value other than none"


def test_keyfile_and_inline_key():
    """keyfile and key are passed on; the key is kept out of repr."""
    crypto = validate(
        conf(totem=" crypto_hash: sha256\n keyfile: /tmp/k\n key: secret-material\n")
    ).crypto
    assert crypto.keyfile == "/tmp/k"
    assert crypto.key == "secret-material"
    assert "secret-material" not in repr(crypto)


# -- nodelist -----------------------------------------------------------------------------------


def test_no_nodelist_means_no_interfaces():
    """A configuration without nodes has no interfaces."""
    error = config_error(conf(nodes=[]))
    assert str(error) == "parse error in config: No interfaces defined"


def test_interface_without_nodelist_has_no_local_node():
    """Legacy interface-only configurations cannot find the local node."""
    error = config_error(conf(nodes=[], totem=" interface {\n  bindnetaddr: 10.0.0.0\n }\n"))
    assert error.reason == "No valid name found for local host"


def test_ring0_addr_is_required():
    """Every node needs a ring0_addr."""
    nodes = [node("node1", 1, "10.0.0.1"), " node {\n  name: node2\n  nodeid: 2\n }\n"]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert error.reason == "nodelist.node.1 has no ring0_addr: every node needs one"
    assert error.line == line_of(text, "name: node2")


def test_local_nodeid_is_required():
    """knet needs an explicit nodeid for the local node."""
    nodes = [node("node1", None, "10.0.0.1"), node("node2", 2, "10.0.0.2")]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert error.reason == "Knet requires an explicit nodeid for the local node"
    assert error.line == line_of(text, "name: node1")


def test_totem_nodeid_is_used_when_the_local_node_has_none():
    """A deprecated totem.nodeid serves when the nodelist has none for the local node."""
    nodes = [node("node1", None, "10.0.0.1"), node("node2", 2, "10.0.0.2")]
    config = validate(conf(nodes=nodes, totem=" nodeid: 7\n"))
    assert config.local_nodeid == 7
    assert config.local_node.nodeid == 7
    assert config.warnings == ()


def test_totem_nodeid_is_ignored_when_the_nodelist_has_one():
    """The nodelist nodeid wins over totem.nodeid, with a warning."""
    text = conf(totem=" nodeid: 7\n")
    config = validate(text)
    assert config.local_nodeid == 1
    assert config.warnings == (
        (
            f"corosync.conf:{line_of(text, 'nodeid: 7')}: nodeid in the totem section is "
            "deprecated and ignored; the nodeid of the local node in the nodelist is used"
        ),
    )


def test_every_node_needs_a_nodeid():
    """Other nodes need a nodeid too: knet host ids are node ids."""
    nodes = [node("node1", 1, "10.0.0.1"), node("node2", None, "10.0.0.2")]
    error = config_error(conf(nodes=nodes))
    assert (
        error.reason == "Knet requires an explicit nodeid for every node: nodelist.node.1 has none"
    )
    nodes = [node("node1", 1, "10.0.0.1"), node("node2", 0, "10.0.0.2")]
    assert config_error(conf(nodes=nodes)).reason.endswith("nodelist.node.1 has none")


def test_nodeid_must_fit_knet():
    """knet host ids are 16 bits: 65535 is fine, 65536 is not."""
    nodes = [node("node1", 65535, "10.0.0.1"), node("node2", 2, "10.0.0.2")]
    assert validate(conf(nodes=nodes)).local_nodeid == 65535
    nodes = [node("node1", 1, "10.0.0.1"), node("node2", 65536, "10.0.0.2")]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert error.reason == "nodeid 65536 of nodelist.node.1 is too large for knet (1..65535)"
    assert error.line == line_of(text, "nodeid: 65536")


def test_duplicate_nodeids_are_refused():
    """Two nodes with one nodeid are refused, naming the second."""
    nodes = [
        node("node1", 1, "10.0.0.1"),
        node("node2", 2, "10.0.0.2"),
        node("node3", 2, "10.0.0.3"),
    ]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert error.reason == "Nodeid 2 appears twice in corosync.conf"
    assert error.key == "nodelist.node.2.nodeid"
    assert error.line == line_of(text, "ring0_addr: 10.0.0.3") - 1


def test_ring_numbers_above_7_are_refused():
    """ring8_addr and an interface linknumber 8 exceed knet's 8 links."""
    nodes = [
        " node {\n  name: node1\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n  ring8_addr: 10.1.0.1\n }\n"
    ]
    error = config_error(conf(nodes=nodes))
    assert error.reason == "interface ring number 8 is bigger than allowed maximum 7"
    error = config_error(conf(totem=" interface {\n  linknumber: 8\n  knet_link_priority: 2\n }\n"))
    assert error.reason == "interface ring number 8 is bigger than allowed maximum 7"


def test_multi_link_needs_names():
    """With more than one link every node needs a name."""
    nodes = [node("node1", 1, "10.0.0.1", "10.1.0.1"), node(None, 2, "10.0.0.2", "10.1.0.2")]
    error = config_error(conf(nodes=nodes))
    assert error.reason == "for a multi-link configuration, all nodes must have a 'name' attribute"


def test_single_link_needs_no_names():
    """One link works with nameless nodes (found by address)."""
    nodes = [node(None, 1, "10.0.0.1"), node(None, 2, "10.0.0.2")]
    config = validate(conf(nodes=nodes), hostname="host", local_addresses=("10.0.0.2",))
    assert config.local_nodeid == 2


def test_all_nodes_need_the_same_links():
    """Every node must have an address on every configured link."""
    nodes = [node("node1", 1, "10.0.0.1", "10.1.0.1"), node("node2", 2, "10.0.0.2")]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert error.reason == "Not all nodes have the same number of links"
    assert error.line == line_of(text, "ring0_addr: 10.0.0.2")


def test_interface_section_counts_as_a_link():
    """An interface section for a link no node has makes the link counts differ."""
    error = config_error(conf(totem=" interface {\n  linknumber: 1\n  knet_link_priority: 5\n }\n"))
    assert error.reason == "Not all nodes have the same number of links"
    # An interface section with nothing but linknumber stores no key, as in corosync.
    assert len(validate(conf(totem=" interface {\n  linknumber: 1\n }\n")).links) == 1


def test_ip_family_must_match_per_link():
    """All addresses of one link have the same family; links may differ."""
    nodes = [node("node1", 1, "10.0.0.1", "fd00::1"), node("node2", 2, "10.0.0.2", "fd00::2")]
    config = validate(conf(nodes=nodes))
    assert [a.ip for a in config.nodes[1].addresses] == [
        ipaddress.ip_address("10.0.0.2"),
        ipaddress.ip_address("fd00::2"),
    ]
    nodes = [node("node1", 1, "10.0.0.1"), node("node2", 2, "fd00::2")]
    text = conf(nodes=nodes)
    error = config_error(text)
    assert (
        error.reason
        == "Nodes for link 0 have different IP families (compared fd00::2 with 10.0.0.1)"
    )
    assert error.line == line_of(text, "fd00::2")


def test_host_names_stay_unresolved_without_a_resolver():
    """Host names are allowed as addresses; without a resolver their ip is None."""
    nodes = [node("node1", 1, "node1.example.com"), node("node2", 2, "node2")]
    config = validate(conf(nodes=nodes))
    assert [n.addresses[0].ip for n in config.nodes] == [None, None]


def test_resolver_resolves_host_names():
    """Host names are resolved by the injected resolver for the ip_version."""
    table = {"node1.lab": "10.9.0.1", "node2.lab": "10.9.0.2"}
    calls = []

    def resolve(name: str, version: IpVersion):
        calls.append((name, version))
        return ipaddress.ip_address(table[name]) if name in table else None

    nodes = [node("node1", 1, "node1.lab"), node("node2", 2, "node2.lab")]
    config = validate(conf(nodes=nodes, totem=" ip_version: ipv4\n"), resolve_address=resolve)
    assert config.nodes[1].addresses[0].ip == ipaddress.ip_address("10.9.0.2")
    assert ("node1.lab", IpVersion.IPV4) in calls
    nodes = [node("node1", 1, "node1.lab"), node("node2", 2, "missing.lab")]
    text = conf(nodes=nodes)
    error = config_error(text, resolve_address=resolve)
    assert error.reason == "failed to parse node address 'missing.lab'"
    assert error.line == line_of(text, "missing.lab")


@pytest.mark.parametrize("address", ["not an address", "10.0.0.1:5405", "bad_%chars"])
def test_unparseable_addresses_are_refused(address: str):
    """An address that is neither an IP nor a host name is refused."""
    nodes = [node("node1", 1, "10.0.0.1"), node("node2", 2, address)]
    error = config_error(conf(nodes=nodes))
    assert error.reason == f"failed to parse node address '{address}'"


@pytest.mark.parametrize("address", ["0.0.0.0", "224.0.0.1", "::", "ff02::1"])
def test_multicast_and_unspecified_addresses_are_refused(address: str):
    """knet links need unicast endpoint addresses."""
    nodes = [
        node("node1", 1, "10.0.0.1" if ":" not in address else "fd00::1"),
        node("node2", 2, address),
    ]
    error = config_error(conf(nodes=nodes))
    assert error.reason == (
        f"node address '{address}' cannot be used by knet (multicast or unspecified)"
    )


# -- local node discovery ----------------------------------------------------------------------


def test_local_node_by_name():
    """The host name matching a node name selects that node."""
    assert validate(conf(), hostname="node3").local_node_pos == 2


def test_local_node_by_ring0_addr_as_name():
    """ring0_addr is a fallback name."""
    nodes = [node(None, 1, "alpha"), node(None, 2, "beta")]
    assert validate(conf(nodes=nodes), hostname="beta").local_nodeid == 2


def test_local_node_by_hostname_without_domain():
    """A fully qualified host name matches a short node name."""
    assert validate(conf(), hostname="node2.cluster.example.com").local_node_pos == 1


def test_local_node_by_short_name_of_fqdn_nodes():
    """A short host name matches a node name with a domain."""
    nodes = [node(f"node{i}.lab.example", i, f"10.0.0.{i}") for i in (1, 2, 3)]
    assert validate(conf(nodes=nodes), hostname="node3").local_node_pos == 2


def test_exact_name_wins_over_address():
    """Names are tried before addresses."""
    config = validate(conf(), hostname="node1", local_addresses=("10.0.0.3",))
    assert config.local_node_pos == 0


def test_local_node_by_local_address():
    """Without a matching name, a local interface address finds the node."""
    config = validate(conf(), hostname="otherhost", local_addresses=("127.0.0.1", "10.0.0.3"))
    assert config.local_node_pos == 2
    config = validate(
        conf(nodes=[node("a", 1, "fd00::1"), node("b", 2, "fd00::2")]),
        hostname="",
        local_addresses=(ipaddress.ip_address("fd00:0::2"),),
    )
    assert config.local_nodeid == 2


def test_local_node_by_resolved_name():
    """Names resolved by the resolver are compared with the local addresses last."""

    def resolve(name: str, version: IpVersion):
        return {"n1": ipaddress.ip_address("10.5.0.1"), "n2": ipaddress.ip_address("10.5.0.2")}.get(
            name
        )

    nodes = [node("n1", 1, "10.0.0.1"), node("n2", 2, "10.0.0.2")]
    config = validate(
        conf(nodes=nodes), hostname="x", local_addresses=("10.5.0.2",), resolve_address=resolve
    )
    assert config.local_nodeid == 2


def test_local_node_not_found():
    """No matching name or address gives corosync's error."""
    error = config_error(conf(), hostname="elsewhere", local_addresses=("192.168.1.1",))
    assert str(error) == "parse error in config: No valid name found for local host"


# -- links --------------------------------------------------------------------------------------


def test_link_options_from_interface_sections():
    """Interface sections set priority, ports and knet ping parameters."""
    config = validate(
        conf(
            totem=" interface {\n  linknumber: 0\n  mcastport: 6000\n  knet_link_priority: 0\n"
            "  knet_ping_interval: 200\n  knet_ping_timeout: 1000\n  knet_ping_precision: 64\n"
            "  knet_pong_count: 0\n }\n"
        )
    )
    (link,) = config.links
    assert link.mcastport == 6000
    assert link.options == knet.LinkOptions(
        priority=0, ping_interval_ms=200, ping_timeout_ms=1000, ping_precision=64, pong_count=2
    )
    assert config.runtime_keys["runtime.config.totem.interface.0.mcastport"] == ConfigValue(
        U16, 6000
    )


def test_link_options_knet_cannot_use_are_refused():
    """Values knet refuses (pong_count above 255) are reported with the key's line."""
    text = conf(totem=" interface {\n  knet_pong_count: 300\n }\n")
    error = config_error(text)
    assert error.reason == "link 0: pong_count must be an integer 1..255, got 300"
    assert error.line == line_of(text, "knet_pong_count")


def test_mcastport_zero_is_refused():
    """Port 0 is "No multicast port specified"."""
    error = config_error(conf(totem=" interface {\n  mcastport: 0\n }\n"))
    assert error.reason == "No multicast port specified"


def test_ttl_only_for_multicast():
    """ttl other than 1 is refused (knet is not a multicast transport)."""
    assert validate(conf(totem=" interface {\n  ttl: 1\n }\n")).links[0].linknumber == 0
    error = config_error(conf(totem=" interface {\n  ttl: 2\n }\n"))
    assert error.reason == "Can only set ttl on multicast transport types"


def test_knet_transport_udp_only():
    """knet_transport udp is accepted; sctp and others are refused."""
    assert (
        validate(conf(totem=" interface {\n  knet_transport: udp\n }\n")).links[0].transport
        == "udp"
    )
    error = config_error(conf(totem=" interface {\n  knet_transport: sctp\n }\n"))
    assert error.reason == "knet_transport sctp is not supported by pycorosync: use udp"
    error = config_error(conf(totem=" interface {\n  knet_transport: tcp\n }\n"))
    assert error.reason == "Unrecognised knet_transport. expected 'udp' or 'sctp'"


def test_udp_only_interface_keys_are_warned_about():
    """mcastaddr, broadcast and member lists are ignored with knet, with warnings."""
    text = conf(
        totem=" interface {\n  mcastaddr: 239.1.1.1\n  broadcast: yes\n"
        "  member {\n   memberaddr: 10.0.0.9\n  }\n }\n"
    )
    config = validate(text)
    assert len(config.warnings) == 3
    assert config.warnings[0] == (
        f"corosync.conf:{line_of(text, 'mcastaddr')}: totem.interface.0.mcastaddr is only "
        "used by the udp transport; ignored with knet"
    )
    assert "member lists are ignored" in config.warnings[2]


def test_bindnetaddr_comes_from_the_nodelist():
    """A configured bindnetaddr is replaced by the local node's address, with a warning."""
    text = conf(totem=" interface {\n  bindnetaddr: 10.0.0.0\n }\n")
    config = validate(text, hostname="node2")
    assert config.keys["totem.interface.0.bindnetaddr"] == ConfigValue(STR, "10.0.0.2")
    assert config.warnings == (
        (
            f"corosync.conf:{line_of(text, 'bindnetaddr')}: interface section bindnetaddr is used "
            "together with nodelist; the nodelist address of the local node is used"
        ),
    )


def test_compression_settings():
    """knet compression settings are checked by knet's rules (the level only with a model)."""
    config = validate(
        conf(
            totem=" knet_compression_model: zlib\n knet_compression_level: 9\n"
            " knet_compression_threshold: 200\n"
        )
    )
    assert config.compression == knet.CompressionConfig(model="zlib", threshold=200, level=9)
    assert config.runtime_keys["runtime.config.totem.knet_compression_model"] == ConfigValue(
        STR, "zlib"
    )
    config = validate(conf(totem=" knet_compression_level: 10\n"))
    assert config.compression == knet.CompressionConfig()
    assert config.runtime_keys["runtime.config.totem.knet_compression_level"] == ConfigValue(
        I32, 10
    )
    text = conf(totem=" knet_compression_model: zlib\n knet_compression_level: 10\n")
    error = config_error(text)
    assert "compression level" in error.reason
    assert error.line == line_of(text, "knet_compression_level")


def test_block_unlisted_ips_and_cancel_token_hold():
    """yes/no totem options are booleans and appear in runtime.config as 0/1."""
    config = validate(
        conf(totem=" block_unlisted_ips: no\n cancel_token_hold_on_retransmit: yes\n")
    )
    assert config.block_unlisted_ips is False
    assert config.totem_effective.cancel_token_hold_on_retransmit is True
    runtime = config.runtime_keys
    assert runtime["runtime.config.totem.block_unlisted_ips"] == ConfigValue(U32, 0)
    assert runtime["runtime.config.totem.cancel_token_hold_on_retransmit"] == ConfigValue(U32, 1)


# -- quorum -------------------------------------------------------------------------------------


def test_no_quorum_provider():
    """Without a provider there is no quorum (always quorate)."""
    assert validate(conf()).quorum.provider is None


def test_unknown_quorum_provider():
    """Only corosync_votequorum is supported."""
    error = config_error(conf(quorum=" provider: corosync_ykd\n"))
    assert (
        error.reason == 'quorum provider "corosync_ykd" is not supported: use corosync_votequorum'
    )


def test_votequorum_defaults_from_the_nodelist():
    """expected_votes is the sum of the nodes' votes; votes is the local node's."""
    nodes = [node("node1", 1, "10.0.0.1", votes=3), node("node2", 2, "10.0.0.2")]
    quorum = validate(conf(nodes=nodes, quorum=" provider: corosync_votequorum\n")).quorum
    assert (quorum.expected_votes, quorum.votes) == (4, 3)
    quorum = validate(
        conf(nodes=nodes, quorum=" provider: corosync_votequorum\n expected_votes: 9\n")
    ).quorum
    assert quorum.expected_votes == 9


def test_two_node_implies_wait_for_all():
    """two_node turns on wait_for_all unless it is set explicitly."""
    nodes = three_nodes()[:2]
    quorum = validate(
        conf(nodes=nodes, quorum=" provider: corosync_votequorum\n two_node: 1\n")
    ).quorum
    assert (quorum.two_node, quorum.wait_for_all) == (True, True)
    quorum = validate(
        conf(nodes=nodes, quorum=" provider: corosync_votequorum\n two_node: 1\n wait_for_all: 0\n")
    ).quorum
    assert (quorum.two_node, quorum.wait_for_all) == (True, False)


def test_two_node_and_qdevice_are_incompatible():
    """two_node with a quorum device is a configuration error."""
    text = conf(
        quorum=" provider: corosync_votequorum\n two_node: 1\n device {\n  model: net\n }\n"
    )
    error = config_error(text)
    assert str(error) == (
        "configuration error: two_node and quorum device cannot be configured at the same time! "
        f"(corosync.conf:{line_of(text, 'two_node')})"
    )


def test_two_node_with_auto_tie_breaker_is_disabled():
    """two_node and auto_tie_breaker together: two_node is disabled with a warning."""
    nodes = three_nodes()[:2]
    config = validate(
        conf(
            nodes=nodes,
            quorum=" provider: corosync_votequorum\n two_node: 1\n auto_tie_breaker: 1\n",
        )
    )
    assert config.quorum.two_node is False
    assert config.quorum.auto_tie_breaker is AtbMode.LOWEST
    assert any("two_node has been disabled" in w for w in config.warnings)


def test_auto_tie_breaker_in_odd_cluster_needs_wait_for_all():
    """ATB with an odd node count is disabled without wait_for_all; fine with it."""
    config = validate(conf(quorum=" provider: corosync_votequorum\n auto_tie_breaker: 1\n"))
    assert config.quorum.auto_tie_breaker is AtbMode.NONE
    assert any("auto_tie_breaker has been disabled" in w for w in config.warnings)
    config = validate(
        conf(quorum=" provider: corosync_votequorum\n auto_tie_breaker: 1\n wait_for_all: 1\n")
    )
    assert config.quorum.auto_tie_breaker is AtbMode.LOWEST


def test_auto_tie_breaker_and_lms_in_odd_cluster_is_fatal():
    """ATB + last_man_standing with an odd node count and no WFA is an error."""
    error = config_error(
        conf(quorum=" provider: corosync_votequorum\n auto_tie_breaker: 1\n last_man_standing: 1\n")
    )
    assert error.reason == (
        "configuration error: auto_tie_breaker & last_man_standing not available in odd sized "
        "cluster"
    )


def test_auto_tie_breaker_node_values():
    """auto_tie_breaker_node takes lowest, highest or a list of node ids."""
    nodes = [node(f"node{i}", i, f"10.0.0.{i}") for i in (1, 2, 3, 4)]
    base = " provider: corosync_votequorum\n auto_tie_breaker: 1\n"
    quorum = validate(conf(nodes=nodes, quorum=base + " auto_tie_breaker_node: highest\n")).quorum
    assert quorum.auto_tie_breaker is AtbMode.HIGHEST
    quorum = validate(conf(nodes=nodes, quorum=base + " auto_tie_breaker_node: 3 1\n")).quorum
    assert (quorum.auto_tie_breaker, quorum.auto_tie_breaker_nodes) == (AtbMode.LIST, (3, 1))
    error = config_error(conf(nodes=nodes, quorum=base + " auto_tie_breaker_node: first\n"))
    assert error.reason == (
        'Value of key "quorum.auto_tie_breaker_node" is expected to be lowest, highest or a list '
        'of node ids, but "first" was given'
    )


def test_auto_tie_breaker_node_without_atb_warns():
    """auto_tie_breaker_node without auto_tie_breaker is meaningless."""
    config = validate(conf(quorum=" provider: corosync_votequorum\n auto_tie_breaker_node: 1\n"))
    assert any("meaningless" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("option", "name"),
    [
        (" last_man_standing: 1\n", "last_man_standing"),
        (" auto_tie_breaker: 1\n wait_for_all: 1\n", "auto_tie_breaker"),
        (" allow_downscale: 1\n", "allow_downscale"),
    ],
)
def test_qdevice_incompatibilities(option: str, name: str):
    """A quorum device excludes LMS, ATB and allow_downscale."""
    error = config_error(
        conf(quorum=" provider: corosync_votequorum\n" + option + " device {\n  model: net\n }\n")
    )
    assert error.reason == f"configuration error: quorum.device is not compatible with {name}"


def test_qdevice_votes_are_derived():
    """Without device votes and expected_votes, the device gets nodes - 1 votes."""
    quorum = validate(
        conf(
            quorum=" provider: corosync_votequorum\n device {\n  model: net\n  timeout: 5000\n }\n"
        )
    ).quorum
    assert quorum.device == QuorumDevice(model="net", votes=2, timeout=5000)
    assert quorum.expected_votes == 5


def test_qdevice_votes_rules():
    """Device votes are required with expected_votes or uneven votes, and bounded."""
    base = " provider: corosync_votequorum\n"
    error = config_error(conf(quorum=base + " expected_votes: 5\n device {\n  model: net\n }\n"))
    assert error.reason == (
        "configuration error: quorum.device.votes must be specified when quorum.expected_votes "
        "is set"
    )
    nodes = [node("node1", 1, "10.0.0.1", votes=2), node("node2", 2, "10.0.0.2")]
    error = config_error(conf(nodes=nodes, quorum=base + " device {\n  model: net\n }\n"))
    assert error.reason == (
        "configuration error: quorum.device.votes must be specified when not all nodes votes 1"
    )
    error = config_error(
        conf(quorum=base + " expected_votes: 3\n device {\n  model: net\n  votes: 2\n }\n")
    )
    assert error.reason == (
        "configuration error: quorum.device.votes is too high or expected_votes is too low"
    )
    quorum = validate(
        conf(quorum=base + " expected_votes: 5\n device {\n  model: net\n  votes: 2\n }\n")
    ).quorum
    assert quorum.device is not None
    assert (quorum.device.votes, quorum.expected_votes) == (2, 5)


def test_allow_downscale_implies_expected_votes_tracking():
    """allow_downscale turns on expected_votes_tracking."""
    quorum = validate(conf(quorum=" provider: corosync_votequorum\n allow_downscale: 1\n")).quorum
    assert quorum.allow_downscale
    assert quorum.expected_votes_tracking


def test_quorum_flags_are_u8():
    """quorum flags are numbers; yes/no is a type error at its line."""
    text = conf(quorum=" provider: corosync_votequorum\n two_node: yes\n")
    with pytest.raises(ConfigParseError) as info:
        validate(text)
    assert info.value.line == line_of(text, "two_node")


# -- logging, system, uidgid -------------------------------------------------------------------


def test_logging_defaults():
    """Without a logging section: stderr and syslog at info, hires timestamps, blackbox on."""
    logging = validate(conf()).logging
    assert logging.default.to_stderr
    assert logging.default.to_syslog
    assert not logging.default.to_logfile
    assert logging.default.syslog_priority is LogPriority.INFO
    assert logging.default.syslog_facility == "daemon"
    assert logging.timestamp is TimestampMode.HIRES
    assert logging.blackbox
    assert logging.subsystems == {}


def test_logging_settings_and_subsystem_inheritance():
    """logger_subsys entries start from the section's settings."""
    config = validate(
        conf(
            logging=" to_syslog: no\n syslog_facility: local3\n logfile_priority: debug\n"
            " timestamp: off\n fileline: on\n blackbox: off\n"
            " logger_subsys {\n  subsys: TOTEM\n  debug: trace\n  syslog_priority: err\n }\n"
        )
    )
    logging = config.logging
    assert logging.default.to_syslog is False
    assert logging.default.syslog_facility == "local3"
    assert logging.default.logfile_priority is LogPriority.DEBUG
    assert (logging.timestamp, logging.fileline, logging.blackbox) == (
        TimestampMode.OFF,
        True,
        False,
    )
    totem_log = logging.for_subsys("TOTEM")
    assert totem_log.debug is DebugLevel.TRACE
    assert totem_log.syslog_priority is LogPriority.ERR
    assert totem_log.syslog_facility == "local3"
    assert totem_log.to_syslog is False


def test_logging_deprecated_keys_warn():
    """to_file and syslog_level still work, with warnings."""
    config = validate(conf(logging=" to_file: yes\n logfile: /tmp/x.log\n syslog_level: warning\n"))
    assert config.logging.default.to_logfile is True
    assert config.logging.default.syslog_priority is LogPriority.WARNING
    assert sum("obsoleted" in w for w in config.warnings) == 2


def test_to_logfile_without_logfile_warns():
    """to_logfile without a logfile logs nothing to a file, with a warning."""
    config = validate(conf(logging=" to_logfile: yes\n"))
    assert any("no logfile is set" in w for w in config.warnings)


def test_system_settings():
    """The system section is typed."""
    config = validate(
        conf(extra="system {\n qb_ipc_type: socket\n sched_rr: no\n state_dir: /run/x\n}\n")
    )
    assert config.system.qb_ipc_type == "socket"
    assert config.system.sched_rr is False
    assert config.system.state_dir == "/run/x"


def test_uidgid_sets():
    """uidgid entries become the sets of users and groups allowed on IPC."""
    parsed = parse_config(
        conf(extra="uidgid {\n uid: 1000\n gid: 27\n}\n"),
        uidgid_files=[("uidgid.d/extra", "uidgid {\n uid: 1001\n}\n")],
    )
    config = validate_config(parsed, hostname="node1")
    assert config.uids == frozenset({1000, 1001})
    assert config.gids == frozenset({27})
    assert config.keys["uidgid.config.uid.1001"] == ConfigValue(U8, 1)


def test_nozzle_warning_reaches_the_config():
    """The parser's nozzle warning is part of Config.warnings."""
    config = validate(conf(extra="nozzle {\n name: noz\n}\n"))
    assert any("nozzle" in w for w in config.warnings)
    assert config.keys["nozzle.name"] == ConfigValue(STR, "noz")


def test_unknown_keys_are_kept_as_strings():
    """Keys corosync does not know land in cmap as strings."""
    config = validate(conf(totem=" my_option: 5\n", extra="custom {\n thing: x y\n}\n"))
    assert config.keys["totem.my_option"] == ConfigValue(STR, "5")
    assert config.keys["custom.thing"] == ConfigValue(STR, "x y")


# -- fuzzing -------------------------------------------------------------------------------------

_TOTEM_LINES = [
    " token: 3000",
    " token: 10",
    " token: 0",
    " join: 5",
    " consensus: 40",
    " token_warning: 200",
    " crypto_cipher: aes256",
    " crypto_hash: none",
    " crypto_hash: sha1",
    " secauth: on",
    " transport: udpu",
    " link_mode: rr",
    " window_size: 5",
    " max_messages: 30",
    " nodeid: 4",
    " knet_compression_model: lz4",
    " knet_compression_level: 99",
]
_INTERFACE_LINES = [
    "  linknumber: 1",
    "  linknumber: 9",
    "  knet_pong_count: 0",
    "  knet_pong_count: 999",
    "  knet_link_priority: 3",
    "  knet_ping_interval: 1",
    "  ttl: 3",
    "  mcastport: 0",
    "  mcastaddr: 239.0.0.1",
]
_NODE_EXTRA_LINES = [
    "  nodeid: 1",
    "  nodeid: 70000",
    "  ring0_addr: fd00::2",
    "  ring0_addr: some-host",
    "  ring0_addr: bad address",
    "  ring1_addr: 10.1.0.9",
    "  ring9_addr: 10.1.0.1",
    "  quorum_votes: 2",
]
_QUORUM_LINES = [
    " provider: corosync_votequorum",
    " provider: other",
    " two_node: 1",
    " wait_for_all: 1",
    " auto_tie_breaker: 1",
    " auto_tie_breaker_node: 2 x",
    " last_man_standing: 1",
    " allow_downscale: 1",
    " expected_votes: 3",
    " device {\n  model: net\n }",
    " device {\n  model: net\n  votes: 1\n }",
]


@st.composite
def _node(draw, index: int) -> str:
    lines = []
    if draw(st.integers(0, 9)):
        lines.append(f"  name: node{index}")
    if draw(st.integers(0, 9)):
        lines.append(f"  nodeid: {index}")
    if draw(st.integers(0, 9)):
        lines.append(f"  ring0_addr: 10.0.0.{index}")
    if draw(st.booleans()):
        lines.append(f"  ring1_addr: 10.1.0.{index}")
    lines += draw(st.lists(st.sampled_from(_NODE_EXTRA_LINES), max_size=2))
    return " node {\n" + "\n".join(draw(st.permutations(lines))) + "\n }\n"


@st.composite
def _config_texts(draw) -> str:
    """Mostly well-formed configurations with random, often conflicting options."""
    totem = draw(st.lists(st.sampled_from(_TOTEM_LINES), max_size=4))
    for _ in range(draw(st.integers(0, 2))):
        lines = draw(st.lists(st.sampled_from(_INTERFACE_LINES), max_size=3))
        totem.append(" interface {\n" + "\n".join(lines) + "\n }")
    version = draw(st.sampled_from(["2", "2", "2", "1"]))
    nodes = [draw(_node(index)) for index in range(1, draw(st.integers(0, 5)) + 1)]
    quorum = draw(st.lists(st.sampled_from(_QUORUM_LINES), max_size=4))
    text = "totem {\n version: " + version + "\n" + "\n".join(totem) + "\n}\n"
    text += "nodelist {\n" + "".join(nodes) + "}\n"
    text += "quorum {\n" + "\n".join(quorum) + "\n}\n"
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.text(max_size=20))
    return text


@given(_config_texts(), st.sampled_from(["node1", "node2", "", "some-host"]))
@settings(max_examples=500, deadline=None)
def test_fuzz_validation_only_raises_config_errors(text: str, hostname: str):
    """Random configurations either validate or raise ConfigError, never anything else."""
    try:
        config = validate(text, hostname=hostname, local_addresses=("10.0.0.2",))
    except ConfigError:
        return
    assert config.local_node.nodeid == config.local_nodeid
    assert 1 <= config.local_nodeid <= 65535
    assert config.keys["nodelist.local_node_pos"] == ConfigValue(U32, config.local_node_pos)


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_fuzz_random_bytes_only_raise_config_errors(data: bytes):
    """Arbitrary bytes through parse and validate raise only ConfigError."""
    with contextlib.suppress(ConfigError):
        validate_config(parse_config(data), hostname="node1", local_addresses=("10.0.0.1",))


def test_local_node_pos_is_the_nodelist_index():
    """local_node_pos is the node's index in nodelist.node.<i>, even with gaps."""
    entries = [
        ConfigEntry("totem.version", "2", 1, "c.conf"),
        ConfigEntry("nodelist.node.0.nodeid", "1", 2, "c.conf"),
        ConfigEntry("nodelist.node.0.ring0_addr", "10.0.0.1", 3, "c.conf"),
        ConfigEntry("nodelist.node.5.nodeid", "6", 4, "c.conf"),
        ConfigEntry("nodelist.node.5.ring0_addr", "10.0.0.6", 5, "c.conf"),
    ]
    config = validate_config(
        ParsedConfig(file="c.conf", entries=tuple(entries)),
        hostname="x",
        local_addresses=("10.0.0.6",),
    )
    assert config.local_node_pos == 5
    assert config.local_node.nodeid == 6
    assert config.keys["nodelist.local_node_pos"] == ConfigValue(U32, 5)
