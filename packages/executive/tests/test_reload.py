"""Tests of the runtime reload plan (corosync reference 1.12): each kind of change,
the refused ones with corosync's log line, the failures, and the plan applied to a
real CmapStore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import knet
from corosync import CsErrorCode
from corosync_executive import (
    BLACKBOX_KEYS,
    Config,
    ConfigValue,
    CryptoSettings,
    DebugLevel,
    ReloadFailure,
    ReloadPlan,
    apply_plan_to_cmap,
    begin_reload,
    finish_reload,
    load_config_into_cmap,
    parse_config,
    plan_reload,
    reload_config_file,
    validate_config,
)
from corosync_executive._cmap_store import CmapStore, TrackEvent, TrackType, ValueType
from corosync_executive._reload import cannot_change_message, is_runtime_read_only

U8, U16, U32, I32, STR = (
    ValueType.UINT8,
    ValueType.UINT16,
    ValueType.UINT32,
    ValueType.INT32,
    ValueType.STRING,
)


def node(nodeid: int, *addresses: str, name: str | None = None) -> str:
    lines = [f"  name: {name or f'node{nodeid}'}", f"  nodeid: {nodeid}"]
    lines += [f"  ring{link}_addr: {address}" for link, address in enumerate(addresses)]
    return " node {\n" + "\n".join(lines) + "\n }\n"


def conf(
    *,
    totem: str = "",
    nodes: list[str] | None = None,
    logging: str = "",
    extra: str = "",
    cluster_name: str = "test",
) -> str:
    """A corosync.conf with three single-link nodes on 10.0.0.1..3 unless given."""
    if nodes is None:
        nodes = [node(i, f"10.0.0.{i}") for i in (1, 2, 3)]
    text = f"totem {{\n version: 2\n cluster_name: {cluster_name}\n{totem}}}\n"
    text += "nodelist {\n" + "".join(nodes) + "}\n"
    if logging:
        text += "logging {\n" + logging + "}\n"
    return text + extra


def validate(text: str, hostname: str = "node1") -> Config:
    return validate_config(parse_config(text, file="corosync.conf"), hostname=hostname)


def plan(before: str, after: str, hostname: str = "node1") -> ReloadPlan:
    return plan_reload(validate(before, hostname), validate(after, hostname))


def store_of(config: Config) -> CmapStore:
    store = CmapStore()
    load_config_into_cmap(store, config)
    return store


def contents(store: CmapStore) -> dict[str, tuple[ValueType, object]]:
    return {key: (value.type, value.value) for key, value in store.iterate("")}


# ---------------------------------------------------------------- no change


def test_same_file_gives_an_empty_plan() -> None:
    config = validate(conf(logging=" debug: on\n", extra="uidgid {\n uid: 1000\n}\n"))
    result = plan_reload(config, config)
    assert result.is_empty
    assert result.config == config
    store = store_of(config)
    before = contents(store)
    apply_plan_to_cmap(store, result)
    assert contents(store) == before


# ---------------------------------------------------------------- nodes and links


def test_add_node() -> None:
    four = [node(i, f"10.0.0.{i}") for i in (1, 2, 3, 4)]
    result = plan(conf(), conf(nodes=four))
    assert [n.nodeid for n in result.nodes_added] == [4]
    assert result.nodes_added[0].addresses[0].address == "10.0.0.4"
    assert not result.nodes_removed
    assert not result.nodes_changed
    assert result.sets["nodelist.node.3.nodeid"] == ConfigValue(U32, 4)
    assert result.sets["nodelist.node.3.ring0_addr"] == ConfigValue(STR, "10.0.0.4")
    # A fourth node adds a token_coefficient to the effective token: 3000 + 2 * 650.
    assert result.sets["runtime.config.totem.token"] == ConfigValue(U32, 4300)
    assert result.totem_changed == result.config.totem
    assert result.config.totem_effective.token == 4300
    # The ping timers follow the effective token, so link 0 is re-applied.
    assert [link.linknumber for link in result.links_changed] == [0]
    assert result.links_changed[0].options.ping_timeout_ms == 4300 // 2
    assert not result.rejected


def test_remove_node() -> None:
    two = [node(i, f"10.0.0.{i}") for i in (1, 2)]
    result = plan(conf(), conf(nodes=two))
    assert [n.nodeid for n in result.nodes_removed] == [3]
    assert not result.nodes_added
    assert "nodelist.node.2.nodeid" in result.deletes
    assert "nodelist.node.2.ring0_addr" in result.deletes
    assert list(result.deletes) == sorted(result.deletes)
    assert result.sets["runtime.config.totem.token"] == ConfigValue(U32, 3000)


def test_change_ring_address_of_another_node() -> None:
    moved = [node(1, "10.0.0.1"), node(2, "10.0.0.22"), node(3, "10.0.0.3")]
    result = plan(conf(), conf(nodes=moved))
    assert [n.nodeid for n in result.nodes_changed] == [2]
    assert result.nodes_changed[0].address(0).address == "10.0.0.22"  # type: ignore[union-attr]
    assert result.sets == {"nodelist.node.1.ring0_addr": ConfigValue(STR, "10.0.0.22")}
    assert not result.deletes
    assert not result.rejected


def test_reordered_nodelist_is_no_node_change() -> None:
    reordered = [node(i, f"10.0.0.{i}") for i in (3, 1, 2)]
    result = plan(conf(), conf(nodes=reordered))
    assert not (result.nodes_added)
    assert not (result.nodes_removed)
    assert not (result.nodes_changed)
    assert result.sets["nodelist.local_node_pos"] == ConfigValue(U32, 1)


def test_this_nodes_address_on_a_kept_link_is_refused() -> None:
    moved = [node(1, "10.0.0.11"), node(2, "10.0.0.2"), node(3, "10.0.0.3")]
    before = validate(conf())
    result = plan_reload(before, validate(conf(nodes=moved)))
    [(key, message)] = result.rejected
    assert key == "nodelist.node.0.ring0_addr"
    assert message.startswith(cannot_change_message(key))
    assert "10.0.0.1" in message
    assert result.is_empty is False
    assert not result.sets
    assert not result.deletes
    assert not result.nodes_changed
    assert result.config.local_node.address(0).address == "10.0.0.1"  # type: ignore[union-attr]
    assert result.config.keys["totem.interface.0.bindnetaddr"] == ConfigValue(STR, "10.0.0.1")


def two_links(*, link1: bool = True, priority: int | None = None) -> str:
    nodes = [
        node(i, f"10.0.0.{i}", *([f"10.1.0.{i}"] if link1 else []), name=f"node{i}")
        for i in (1, 2, 3)
    ]
    totem = ""
    if priority is not None:
        totem = f" interface {{\n  linknumber: 0\n  knet_link_priority: {priority}\n }}\n"
    return conf(nodes=nodes, totem=totem)


def test_add_and_remove_a_link() -> None:
    added = plan(two_links(link1=False), two_links())
    assert [link.linknumber for link in added.links_added] == [1]
    assert [n.nodeid for n in added.nodes_changed] == [1, 2, 3]  # every node gains link 1
    assert added.sets["totem.interface.1.bindnetaddr"] == ConfigValue(STR, "10.1.0.1")
    assert added.sets["runtime.config.totem.interface.1.mcastport"] == ConfigValue(U16, 5406)
    assert not added.rejected

    removed = plan(two_links(), two_links(link1=False))
    assert [link.linknumber for link in removed.links_removed] == [1]
    assert "totem.interface.1.bindnetaddr" in removed.deletes
    assert "runtime.config.totem.interface.1.knet_ping_timeout" in removed.deletes
    assert not removed.rejected


def test_link_priority_change() -> None:
    result = plan(two_links(priority=20), two_links(priority=5))
    [link] = result.links_changed
    assert link.linknumber == 0
    assert link.options.priority == 5
    assert result.sets == {"totem.interface.0.knet_link_priority": ConfigValue(U8, 5)}


def test_mcastport_of_a_kept_link_is_refused_but_a_new_link_takes_it() -> None:
    port = " interface {\n  linknumber: 0\n  mcastport: 6000\n }\n"
    result = plan(conf(), conf(totem=port))
    assert result.rejected == (
        ("totem.interface.0.mcastport", cannot_change_message("totem.interface.0.mcastport")),
    )
    assert not result.sets
    assert not result.links_changed
    assert result.config.links[0].mcastport == 5405

    nodes = [node(i, f"10.0.0.{i}", f"10.1.0.{i}") for i in (1, 2, 3)]
    port1 = " interface {\n  linknumber: 1\n  mcastport: 6001\n }\n"
    result = plan(conf(), conf(nodes=nodes, totem=port1))
    assert not result.rejected
    assert result.links_added[0].mcastport == 6001
    assert result.sets["runtime.config.totem.interface.1.mcastport"] == ConfigValue(U16, 6001)


# ---------------------------------------------------------------- timers, logging, crypto


def test_token_change_recomputes_runtime_totem() -> None:
    result = plan(conf(), conf(totem=" token: 5000\n"))
    assert result.sets["totem.token"] == ConfigValue(U32, 5000)
    # three nodes: 5000 + 650; the derived timers follow.
    assert result.sets["runtime.config.totem.token"] == ConfigValue(U32, 5650)
    assert result.sets["runtime.config.totem.consensus"] == ConfigValue(U32, int(1.2 * 5650))
    assert result.sets["runtime.config.totem.token_retransmit"] == ConfigValue(U32, int(5650 / 4.2))
    assert result.totem_changed is not None
    assert result.totem_changed.token == 5000
    assert not result.rejected
    store = store_of(validate(conf()))
    apply_plan_to_cmap(store, result)
    assert store.get("runtime.config.totem.token") == (U32, 5650)
    assert store.get("runtime.config.totem.interface.0.knet_ping_timeout") == (U32, 5650 // 2)


def test_logging_change() -> None:
    result = plan(conf(logging=" debug: off\n"), conf(logging=" debug: on\n"))
    assert result.logging_changed is not None
    assert result.logging_changed.default.debug is DebugLevel.ON
    assert result.sets == {"logging.debug": ConfigValue(STR, "on")}
    assert result.totem_changed is None
    assert result.crypto_changed is None


def test_logger_subsys_removed() -> None:
    subsys = " logger_subsys {\n  subsys: QUORUM\n  debug: on\n }\n"
    result = plan(conf(logging=subsys), conf(logging=" to_syslog: yes\n"))
    assert result.deletes == (
        "logging.logger_subsys.QUORUM.debug",
        "logging.logger_subsys.QUORUM.subsys",
    )
    assert result.logging_changed is not None
    assert not result.logging_changed.subsystems


def test_crypto_settings_change_is_a_crypto_change() -> None:
    crypto = " crypto_cipher: aes256\n crypto_hash: sha256\n"
    result = plan(conf(totem=crypto), conf(totem=crypto + " keyfile: /etc/corosync/new\n"))
    assert result.crypto_changed == CryptoSettings(
        model="nss", cipher="aes256", hash="sha256", keyfile="/etc/corosync/new"
    )
    assert result.sets == {"totem.keyfile": ConfigValue(STR, "/etc/corosync/new")}
    assert not result.rejected

    off = plan(conf(totem=crypto), conf())
    assert off.crypto_changed == CryptoSettings()
    assert off.deletes == ("totem.crypto_cipher", "totem.crypto_hash")


def test_knet_settings_change() -> None:
    result = plan(conf(), conf(totem=" link_mode: active\n knet_compression_model: zlib\n"))
    assert result.knet_changed is not None
    assert result.knet_changed.link_mode is knet.LinkPolicy.ACTIVE
    assert result.knet_changed.compression.model is knet.CompressionModel.ZLIB
    assert result.sets["runtime.config.totem.knet_compression_model"] == ConfigValue(STR, "zlib")


def test_uidgid_grant_added_and_tool_grants_untouched() -> None:
    before = validate(conf())
    after = validate(conf(extra="uidgid {\n uid: 1000\n gid: 50\n}\n"))
    result = plan_reload(before, after)
    assert result.uids_changed == frozenset({1000})
    assert result.gids_changed == frozenset({50})
    assert result.sets == {
        "uidgid.config.gid.50": ConfigValue(U8, 1),
        "uidgid.config.uid.1000": ConfigValue(U8, 1),
    }
    store = store_of(before)
    store.set("uidgid.uid.500", U8, 1)  # a grant made by corosync-cmapctl
    apply_plan_to_cmap(store, result)
    assert store.get("uidgid.config.uid.1000") == (U8, 1)
    # And dropped again by the next reload, the tool's grant still untouched.
    back = plan_reload(result.config, before)
    assert back.deletes == ("uidgid.config.gid.50", "uidgid.config.uid.1000")
    assert back.uids_changed == frozenset()
    apply_plan_to_cmap(store, back)
    assert "uidgid.config.uid.1000" not in store
    assert store.get("uidgid.uid.500") == (U8, 1)


# ---------------------------------------------------------------- refused changes


def test_read_only_key_change_is_refused_with_the_log_line() -> None:
    before = validate(conf())
    result = plan_reload(before, validate(conf(totem=" netmtu: 1500\n token: 4000\n")))
    assert result.rejected == (
        (
            "totem.netmtu",
            "Modified entry 'totem.netmtu' in corosync.conf cannot be changed at run-time",
        ),
    )
    assert "totem.netmtu" not in result.sets
    assert result.sets["totem.token"] == ConfigValue(U32, 4000)  # the rest is applied
    assert result.config.netmtu == before.netmtu
    store = store_of(before)
    apply_plan_to_cmap(store, result)
    assert "totem.netmtu" not in store  # it was not there and stays away


def test_cluster_name_change_is_refused_and_old_value_kept() -> None:
    before = validate(conf(cluster_name="alpha"))
    result = plan_reload(before, validate(conf(cluster_name="beta")))
    assert result.rejected == (
        (
            "totem.cluster_name",
            "Modified entry 'totem.cluster_name' in corosync.conf cannot be changed at run-time",
        ),
    )
    assert not result.sets
    assert not result.deletes
    assert result.config.cluster_name == "alpha"
    store = store_of(before)
    apply_plan_to_cmap(store, result)
    assert store.get("totem.cluster_name") == (STR, "alpha")
    # Refused again on the next reload: the configuration in force still says alpha.
    again = plan_reload(result.config, validate(conf(cluster_name="beta")))
    assert [key for key, _ in again.rejected] == ["totem.cluster_name"]


def test_deleting_a_read_only_key_is_refused() -> None:
    result = plan(conf(cluster_name="alpha"), conf().replace(" cluster_name: test\n", ""))
    assert [key for key, _ in result.rejected] == ["totem.cluster_name"]
    assert not result.deletes


def test_system_and_quorum_provider_are_refused() -> None:
    before = validate(conf(extra="system {\n sched_rr: yes\n}\n"))
    after = validate(
        conf(extra="system {\n sched_rr: no\n}\nquorum {\n provider: corosync_votequorum\n}\n")
    )
    result = plan_reload(before, after)
    assert [key for key, _ in result.rejected] == ["quorum.provider", "system.sched_rr"]
    assert result.config.system == before.system
    assert result.config.quorum == before.quorum
    assert result.quorum_changed is None
    assert not result.sets


def test_read_only_rules() -> None:
    assert is_runtime_read_only("totem.version")
    assert is_runtime_read_only("system.state_dir")
    assert is_runtime_read_only("totem.interface.3.ttl")
    assert is_runtime_read_only("totem.interface.0.mcastport", kept_links=[0])
    assert not is_runtime_read_only("totem.interface.1.mcastport", kept_links=[0])
    assert not is_runtime_read_only("totem.token")
    assert not is_runtime_read_only("totem.crypto_cipher")
    assert not is_runtime_read_only("nodelist.node.0.ring0_addr")


# ---------------------------------------------------------------- cmap progress keys


def test_progress_and_result_keys() -> None:
    store = CmapStore()
    store.track_add(
        "config.", int(TrackType.PREFIX | TrackType.ADD | TrackType.MODIFY | TrackType.DELETE)
    )
    begin_reload(store)
    assert store.get("config.reload_in_progress") == (U8, 1)
    assert store.get("config.totemconfig_reload_in_progress") == (U8, 1)
    assert store.is_read_only("config.reload_in_progress")
    finish_reload(store, CsErrorCode.OK, "")
    assert store.get("config.reload_status") == (I32, 1)
    assert store.get("config.reload_in_progress") == (U8, 0)
    assert store.get("config.totemconfig_reload_in_progress") == (U8, 0)
    assert "config.reload_error_message" not in store

    # A failure before anything started: status and message only.
    other = CmapStore()
    finish_reload(other, CsErrorCode.INVALID_PARAM, "parser error: x:3: Missing closing brace")
    assert other.get("config.reload_status") == (I32, int(CsErrorCode.INVALID_PARAM))
    assert other.get("config.reload_error_message") == (
        STR,
        "parser error: x:3: Missing closing brace",
    )
    assert "config.reload_in_progress" not in other
    # The next successful reload clears the message.
    finish_reload(other, CsErrorCode.OK)
    assert "config.reload_error_message" not in other
    events = [(n.key, n.event) for n in store.drain_notifications()]
    assert events[:2] == [
        ("config.reload_in_progress", TrackEvent.ADD),
        ("config.totemconfig_reload_in_progress", TrackEvent.ADD),
    ]


def test_apply_notifies_deletes_before_sets() -> None:
    before = validate(conf())
    result = plan_reload(
        before,
        validate(conf(nodes=[node(1, "10.0.0.1"), node(2, "10.0.0.2")], totem=" token: 4000\n")),
    )
    store = store_of(before)
    store.track_add("", int(TrackType.PREFIX | TrackType.ADD | TrackType.MODIFY | TrackType.DELETE))
    apply_plan_to_cmap(store, result)
    events = [n.event for n in store.drain_notifications()]
    deletes = events.count(TrackEvent.DELETE)
    assert deletes == len(result.deletes) > 0
    assert events[:deletes] == [TrackEvent.DELETE] * deletes
    assert TrackEvent.DELETE not in events[deletes:]


# ---------------------------------------------------------------- the file


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "corosync.conf"
    path.write_text(text)
    return path


def reload(path: Path, current: Config, **kwargs: object) -> ReloadPlan | ReloadFailure:
    return reload_config_file(
        path,
        hostname="node1",
        local_addresses=(),
        current=current,
        resolve_user=lambda name: int(name) if name.isdigit() else None,
        resolve_group=lambda name: int(name) if name.isdigit() else None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_reload_file_plans(conf_dir: Path) -> None:
    current = validate(conf())
    path = write(conf_dir, conf(totem=" token: 4000\n"))
    result = reload(path, current)
    assert isinstance(result, ReloadPlan)
    assert result.sets["totem.token"] == ConfigValue(U32, 4000)
    assert result.config.file == str(path)


def test_reload_file_with_a_parse_error_fails_naming_the_line(conf_dir: Path) -> None:
    path = write(conf_dir, "totem {\n version: 2\n token 3000\n}\n")
    result = reload(path, validate(conf()))
    assert result == ReloadFailure(
        CsErrorCode.INVALID_PARAM,
        f"parser error: {path}:3: Line is not opening or closing section or key value",
    )
    assert isinstance(result, ReloadFailure)
    assert result.log_message.startswith("Unable to reload config file: parser error:")


def test_reload_file_with_an_invalid_value_fails(conf_dir: Path) -> None:
    path = write(conf_dir, conf(totem=" join: 10\n"))
    result = reload(path, validate(conf()))
    assert isinstance(result, ReloadFailure)
    assert "join timeout parameter (10 ms)" in result.message
    assert f"{path}:" in result.message


def test_reload_missing_file_fails(conf_dir: Path) -> None:
    result = reload(conf_dir / "nothing.conf", validate(conf()))
    assert isinstance(result, ReloadFailure)
    assert "Can't read file" in result.message


def test_reload_with_this_node_removed_fails(conf_dir: Path) -> None:
    path = write(conf_dir, conf(nodes=[node(i, f"10.0.0.{i}") for i in (2, 3)]))
    result = reload(path, validate(conf()))
    assert isinstance(result, ReloadFailure)
    assert result.code is CsErrorCode.INVALID_PARAM
    assert "No valid name found for local host" in result.message
    assert "this node (nodeid 1) is not in the nodelist" in result.message


def test_reload_with_a_new_local_nodeid_fails(conf_dir: Path) -> None:
    nodes = [node(7, "10.0.0.1", name="node1"), node(2, "10.0.0.2"), node(3, "10.0.0.3")]
    path = write(conf_dir, conf(nodes=nodes))
    result = reload(path, validate(conf()))
    assert isinstance(result, ReloadFailure)
    assert "nodeid of this node cannot change" in result.message
    assert "it is 1, the file says 7" in result.message
    assert f"({path}:" in result.message


def key_file(directory: Path, name: str, fill: bytes) -> Path:
    path = directory / name
    path.write_bytes(fill * 128)
    os.chmod(path, 0o400)
    return path


def test_new_key_file_content_is_a_crypto_change(conf_dir: Path) -> None:
    keyfile = key_file(conf_dir, "authkey", b"a")
    text = conf(totem=f" crypto_cipher: aes256\n crypto_hash: sha256\n keyfile: {keyfile}\n")
    current = validate(text)
    path = write(conf_dir, text)

    same = reload(path, current, current_key=b"a" * 128)
    assert isinstance(same, ReloadPlan)
    assert same.is_empty
    assert same.new_key is None

    os.chmod(keyfile, 0o600)
    keyfile.write_bytes(b"b" * 256)
    changed = reload(path, current, current_key=b"a" * 128)
    assert isinstance(changed, ReloadPlan)
    assert changed.crypto_changed == current.crypto
    assert changed.new_key == b"b" * 256
    assert not changed.sets  # nothing in cmap changes, only the key

    keyfile.write_bytes(b"short")
    short = reload(path, current, current_key=b"a" * 128)
    assert isinstance(short, ReloadFailure)
    assert short.message == f"Could only read 40 bits of minimum 1024 bits from {keyfile}."


# ---------------------------------------------------------------- properties


@st.composite
def configs(draw: st.DrawFn) -> Config:
    count = draw(st.integers(min_value=1, max_value=5))
    links = draw(st.integers(min_value=1, max_value=2))
    nodes = [node(i, *[f"10.{link}.0.{i}" for link in range(links)]) for i in range(1, count + 1)]
    totem = ""
    if draw(st.booleans()):
        totem += f" token: {draw(st.integers(min_value=1000, max_value=10000))}\n"
    if draw(st.booleans()):
        totem += f" token_coefficient: {draw(st.integers(min_value=0, max_value=1000))}\n"
    if draw(st.booleans()):
        totem += " crypto_cipher: aes256\n crypto_hash: sha256\n"
    if draw(st.booleans()):
        totem += " netmtu: 1500\n"
    if draw(st.booleans()):
        totem += " interface {\n  linknumber: 0\n  mcastport: 6000\n }\n"
    logging = draw(st.sampled_from(["", " debug: on\n", " to_syslog: no\n"]))
    uids = draw(st.sets(st.integers(min_value=1, max_value=5), max_size=3))
    extra = "".join(f"uidgid {{\n uid: {uid}\n}}\n" for uid in sorted(uids))
    name = draw(st.sampled_from(["alpha", "beta"]))
    return validate(conf(nodes=nodes, totem=totem, logging=logging, extra=extra, cluster_name=name))


@settings(max_examples=40, deadline=None)
@given(configs())
def test_reloading_the_same_config_changes_nothing(config: Config) -> None:
    assert plan_reload(config, config).is_empty


@settings(max_examples=60, deadline=None)
@given(configs(), configs())
def test_applied_plan_gives_the_new_cmap_except_rejected_keys(
    first: Config, second: Config
) -> None:
    result = plan_reload(first, second)
    store = store_of(first)
    apply_plan_to_cmap(store, result)
    after = contents(store)
    # Exactly the cmap of the configuration now in force ...
    assert after == contents(store_of(result.config))
    # ... which is the new one except for the refused keys (old values kept) and what
    # derives from them.
    rejected = {key for key, _ in result.rejected}
    derived = {
        key
        for key in second.cmap_keys()
        if key.startswith("runtime.config.totem.interface.") and key.endswith(".mcastport")
    } | {key for key in second.keys if key.endswith(".bindnetaddr")}
    wanted = {key: (v.type, v.value) for key, v in second.cmap_keys().items()}
    for key in sorted(wanted.keys() | (after.keys() - set(BLACKBOX_KEYS))):
        if key in rejected or key in derived:
            old = first.keys.get(key)
            if key in rejected:
                assert after.get(key) == (None if old is None else (old.type, old.value))
            continue
        assert after.get(key) == wanted.get(key), key
    # A second reload of the same file refuses the same keys and changes nothing else.
    again = plan_reload(result.config, second)
    assert [key for key, _ in again.rejected] == [key for key, _ in result.rejected]
    assert not again.sets
    assert not again.deletes
