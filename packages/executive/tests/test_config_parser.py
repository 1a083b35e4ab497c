"""Tests of the corosync.conf grammar and of the typed keys (corosync reference 1, 2).

The expected keys, types and messages are corosync's (``exec/coroparse.c``): every
grammar error is checked with its exact text and line, every typed key family with
its range, and random input may only ever raise ConfigParseError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync_executive import (
    ConfigEntry,
    ConfigError,
    ConfigParseError,
    ConfigValue,
    load_config,
    parse_config,
)
from corosync_executive._cmap_store import ValueType
from corosync_executive._config_schema import convert_entries, convert_entry, key_spec

U8, U16, U32, I32, U64, STR = (
    ValueType.UINT8,
    ValueType.UINT16,
    ValueType.UINT32,
    ValueType.INT32,
    ValueType.UINT64,
    ValueType.STRING,
)

#: Debian's example corosync.conf, with two knet links and a three-node nodelist.
DEBIAN_3_NODES = (Path(__file__).parent / "data" / "debian-3-nodes.conf").read_text()

#: (key, raw value, line) of DEBIAN_3_NODES, in the order the parser yields them.
DEBIAN_3_NODES_ENTRIES = [
    ("system.allow_knet_handle_fallback", "yes", 5),
    ("totem.version", "2", 9),
    ("totem.cluster_name", "debian", 12),
    ("totem.crypto_cipher", "aes256", 15),
    ("totem.crypto_hash", "sha256", 16),
    ("totem.token", "3000", 17),
    ("totem.config_version", "7", 18),
    ("totem.interface.0.knet_link_priority", "20", 22),
    ("totem.interface.1.knet_link_priority", "10", 26),
    ("totem.interface.1.knet_pong_count", "3", 27),
    ("logging.fileline", "off", 32),
    ("logging.to_stderr", "yes", 33),
    ("logging.to_logfile", "yes", 34),
    ("logging.logfile", "/var/log/corosync/corosync.log", 35),
    ("logging.to_syslog", "yes", 36),
    ("logging.debug", "off", 37),
    ("logging.timestamp", "hires", 38),
    ("logging.logger_subsys.QUORUM.debug", "on", 41),
    ("logging.logger_subsys.QUORUM.subsys", "QUORUM", 40),
    ("quorum.provider", "corosync_votequorum", 46),
    ("nodelist.node.0.name", "node1", 51),
    ("nodelist.node.0.nodeid", "1", 52),
    ("nodelist.node.0.ring0_addr", "10.231.0.1", 53),
    ("nodelist.node.0.ring1_addr", "10.232.0.1", 54),
    ("nodelist.node.1.name", "node2", 57),
    ("nodelist.node.1.nodeid", "2", 58),
    ("nodelist.node.1.ring0_addr", "10.231.0.2", 59),
    ("nodelist.node.1.ring1_addr", "10.232.0.2", 60),
    ("nodelist.node.2.name", "node3", 63),
    ("nodelist.node.2.nodeid", "3", 64),
    ("nodelist.node.2.quorum_votes", "2", 65),
    ("nodelist.node.2.ring0_addr", "10.231.0.3", 66),
    ("nodelist.node.2.ring1_addr", "10.232.0.3", 67),
]

#: The typed values cmap holds for DEBIAN_3_NODES.
DEBIAN_3_NODES_TYPED = {
    "system.allow_knet_handle_fallback": ConfigValue(STR, "yes"),
    "totem.version": ConfigValue(U32, 2),
    "totem.cluster_name": ConfigValue(STR, "debian"),
    "totem.crypto_cipher": ConfigValue(STR, "aes256"),
    "totem.crypto_hash": ConfigValue(STR, "sha256"),
    "totem.token": ConfigValue(U32, 3000),
    "totem.config_version": ConfigValue(U64, 7),
    "totem.interface.0.knet_link_priority": ConfigValue(U8, 20),
    "totem.interface.1.knet_link_priority": ConfigValue(U8, 10),
    "totem.interface.1.knet_pong_count": ConfigValue(U32, 3),
    "logging.fileline": ConfigValue(STR, "off"),
    "logging.to_stderr": ConfigValue(STR, "yes"),
    "logging.to_logfile": ConfigValue(STR, "yes"),
    "logging.logfile": ConfigValue(STR, "/var/log/corosync/corosync.log"),
    "logging.to_syslog": ConfigValue(STR, "yes"),
    "logging.debug": ConfigValue(STR, "off"),
    "logging.timestamp": ConfigValue(STR, "hires"),
    "logging.logger_subsys.QUORUM.debug": ConfigValue(STR, "on"),
    "logging.logger_subsys.QUORUM.subsys": ConfigValue(STR, "QUORUM"),
    "quorum.provider": ConfigValue(STR, "corosync_votequorum"),
    "nodelist.node.0.name": ConfigValue(STR, "node1"),
    "nodelist.node.0.nodeid": ConfigValue(U32, 1),
    "nodelist.node.0.ring0_addr": ConfigValue(STR, "10.231.0.1"),
    "nodelist.node.0.ring1_addr": ConfigValue(STR, "10.232.0.1"),
    "nodelist.node.1.name": ConfigValue(STR, "node2"),
    "nodelist.node.1.nodeid": ConfigValue(U32, 2),
    "nodelist.node.1.ring0_addr": ConfigValue(STR, "10.231.0.2"),
    "nodelist.node.1.ring1_addr": ConfigValue(STR, "10.232.0.2"),
    "nodelist.node.2.name": ConfigValue(STR, "node3"),
    "nodelist.node.2.nodeid": ConfigValue(U32, 3),
    "nodelist.node.2.quorum_votes": ConfigValue(U32, 2),
    "nodelist.node.2.ring0_addr": ConfigValue(STR, "10.231.0.3"),
    "nodelist.node.2.ring1_addr": ConfigValue(STR, "10.232.0.3"),
}


def entries(text: str | bytes, file: str = "corosync.conf") -> list[tuple[str, str, int]]:
    """The (key, value, line) triples ``text`` parses to."""
    parsed = parse_config(text, file=file)
    return [(e.key, e.value, e.line) for e in parsed.entries]


def parse_error(text: str | bytes, file: str = "corosync.conf") -> ConfigParseError:
    """The ConfigParseError parsing ``text`` raises."""
    with pytest.raises(ConfigParseError) as info:
        parse_config(text, file=file)
    return info.value


def typed(key: str, value: str, line: int = 1) -> ConfigValue:
    """The typed value of one entry."""
    return convert_entry(ConfigEntry(key=key, value=value, line=line, file="corosync.conf"))


def type_error(key: str, value: str, line: int = 7) -> str:
    """The message converting ``value`` for ``key`` raises."""
    with pytest.raises(ConfigParseError) as info:
        typed(key, value, line)
    return str(info.value)


# -- the realistic file ----------------------------------------------------------------


def test_debian_three_nodes_parses_to_the_expected_entries():
    """Debian's example with 2 links and 3 nodes gives exactly corosync's keys and lines."""
    assert entries(DEBIAN_3_NODES) == DEBIAN_3_NODES_ENTRIES


def test_debian_three_nodes_has_the_expected_types():
    """Every key of the example has corosync's cmap type and value."""
    parsed = parse_config(DEBIAN_3_NODES)
    converted = convert_entries(parsed.entries)
    assert {key: t.value for key, t in converted.items()} == DEBIAN_3_NODES_TYPED
    assert parsed.warnings == ()


def test_entries_carry_the_file_name():
    """Each entry names the file it came from."""
    parsed = parse_config("totem {\n version: 2\n}\n", file="/etc/corosync/corosync.conf")
    assert parsed.entries == (ConfigEntry("totem.version", "2", 2, "/etc/corosync/corosync.conf"),)
    assert parsed.file == "/etc/corosync/corosync.conf"


# -- lines, whitespace, comments -------------------------------------------------------


def test_whitespace_includes_tab_and_no_break_space():
    """Spaces, tabs, the byte 0xA0 and UTF-8 U+00A0 all count as blanks."""
    text = b"totem {\n\t\xa0token:\xa0 3000\xa0\n\xc2\xa0join :\xc2\xa050\xc2\xa0\n}\n"
    assert entries(text) == [("totem.token", "3000", 2), ("totem.join", "50", 3)]


def test_text_input_with_lone_surrogates_is_not_a_crash():
    """A str with any lone surrogate parses like bytes would (no UnicodeError)."""
    assert entries("totem {\n cluster_name: a\udc80b\ud800\n}\n") == [
        ("totem.cluster_name", "a\udced\udcb2\udc80b\udced\udca0\udc80", 2)
    ]
    assert entries("totem {\n cluster_name: a\udc80b\n}\n") == [
        ("totem.cluster_name", "a\udc80b", 2)
    ]


def test_crlf_line_endings_are_accepted():
    """A trailing CR is removed from each line."""
    assert entries("totem {\r\n token: 3000\r\n}\r\n") == [("totem.token", "3000", 2)]


def test_last_line_without_newline():
    """The last line needs no newline."""
    assert entries("totem {\n token: 3000\n}") == [("totem.token", "3000", 2)]


def test_comments_are_whole_lines_only():
    """A # starts a comment only as the first non-blank character of a line."""
    text = "# top\ntotem {\n   # indented comment\n cluster_name: a # not a comment\n}\n"
    assert entries(text) == [("totem.cluster_name", "a # not a comment", 4)]


def test_trailing_comment_makes_a_number_invalid():
    """A # after a number is part of the value, so the typed conversion refuses it."""
    parsed = parse_config("totem {\n token: 3000 # ms\n}\n")
    with pytest.raises(ConfigParseError) as info:
        convert_entries(parsed.entries)
    assert str(info.value) == (
        'parser error: /etc/corosync/corosync.conf:2: Value of key "totem.token" is expected '
        'to be integer in range (0..4294967295), but "3000 # ms" was given'
    )


def test_blank_lines_are_skipped():
    """Empty and all-blank lines count for line numbers but yield nothing."""
    assert entries("\n \t\n\ntotem {\n\n version: 2\n}\n") == [("totem.version", "2", 6)]


def test_value_is_split_at_the_first_colon():
    """Values keep further colons (IPv6) and inner spaces; key and value are trimmed."""
    text = "nodelist {\n node {\n  ring0_addr :  fd00::1:2  \n  name: a b  c\n }\n}\n"
    assert entries(text) == [
        ("nodelist.node.0.ring0_addr", "fd00::1:2", 3),
        ("nodelist.node.0.name", "a b  c", 4),
    ]


def test_empty_value_is_allowed():
    """``key:`` alone gives an empty string."""
    assert entries("totem {\n cluster_name:\n}\n") == [("totem.cluster_name", "", 2)]


def test_section_name_may_end_with_a_colon():
    """``totem: {`` opens the totem section (corosync trims ':' and '{')."""
    assert entries("totem: {\n version: 2\n}\n") == [("totem.version", "2", 2)]


def test_line_of_510_bytes_is_accepted():
    """510 bytes before the newline fit corosync's 512-byte buffer."""
    value = "x" * (510 - len("cluster_name: "))
    line = f"cluster_name: {value}"
    assert len(line) == 510
    assert entries(f"totem {{\n{line}\n}}\n") == [("totem.cluster_name", value, 2)]


def test_unknown_sections_and_keys_are_strings():
    """Sections and keys corosync does not know are stored as strings."""
    text = "mysection {\n sub {\n  answer: 42\n }\n}\nfoo: bar\n"
    parsed = parse_config(text)
    assert [(e.key, e.value) for e in parsed.entries] == [
        ("mysection.sub.answer", "42"),
        ("foo", "bar"),
    ]
    assert typed("mysection.sub.answer", "42") == ConfigValue(STR, "42")


def test_a_key_written_twice_keeps_the_last_value():
    """Like cmap, a repeated key takes the later value."""
    parsed = parse_config("totem {\n token: 1000\n}\ntotem {\n token: 2000\n}\n")
    converted = convert_entries(parsed.entries)
    assert converted["totem.token"].value == ConfigValue(U32, 2000)
    assert converted["totem.token"].entry.line == 5


# -- repeated sections ----------------------------------------------------------------------


def test_interface_sections_are_keyed_by_linknumber():
    """``interface`` keys land under ``totem.interface.<linknumber>``; default link is 0."""
    text = (
        "totem {\n"
        " interface {\n  knet_link_priority: 5\n }\n"
        " interface {\n  mcastport: 6000\n  linknumber: 3\n  knet_ping_timeout: 900\n }\n"
        "}\n"
    )
    assert entries(text) == [
        ("totem.interface.0.knet_link_priority", "5", 3),
        ("totem.interface.3.mcastport", "6000", 6),
        ("totem.interface.3.knet_ping_timeout", "900", 8),
    ]


def test_interface_linknumber_must_be_a_u8():
    """linknumber is parsed as u8 with corosync's range message."""
    error = parse_error("totem {\n interface {\n  linknumber: 256\n }\n}\n")
    assert str(error) == (
        'parser error: corosync.conf:3: Value of key "totem.interface.linknumber" is expected '
        'to be integer in range (0..255), but "256" was given'
    )


def test_interface_member_list():
    """Legacy ``member { memberaddr }`` lists become ``totem.interface.<L>.member.<i>``."""
    text = (
        "totem {\n interface {\n  linknumber: 1\n"
        "  member {\n   memberaddr: 10.0.0.1\n  }\n"
        "  member {\n   memberaddr: 10.0.0.2\n  }\n }\n}\n"
    )
    assert entries(text) == [
        ("totem.interface.1.member.0", "10.0.0.1", 5),
        ("totem.interface.1.member.1", "10.0.0.2", 8),
    ]


def test_member_section_only_takes_memberaddr():
    """Anything but memberaddr in a member section is refused."""
    error = parse_error("totem {\n interface {\n  member {\n   foo: 1\n  }\n }\n}\n")
    assert str(error) == (
        "parser error: corosync.conf:4: Only memberaddr is allowed in member section"
    )


def test_member_section_takes_no_subsections():
    """A section inside a member section is refused."""
    error = parse_error("totem {\n interface {\n  member {\n   x {\n")
    assert str(error) == (
        "parser error: corosync.conf:4: Subsections are not allowed within "
        "totem.interface.member section"
    )


def test_nodes_are_numbered_in_file_order():
    """Each ``node`` gets the next index, also across repeated nodelist sections."""
    text = (
        "nodelist {\n node {\n  nodeid: 1\n }\n node {\n  nodeid: 2\n }\n}\n"
        "nodelist {\n node {\n  nodeid: 3\n }\n}\n"
    )
    assert entries(text) == [
        ("nodelist.node.0.nodeid", "1", 3),
        ("nodelist.node.1.nodeid", "2", 6),
        ("nodelist.node.2.nodeid", "3", 11),
    ]


def test_logger_subsys_is_keyed_by_subsys():
    """``logger_subsys`` keys land under ``logging.logger_subsys.<subsys>``."""
    text = "logging {\n logger_subsys {\n  debug: on\n  subsys: TOTEM\n }\n}\n"
    assert entries(text) == [
        ("logging.logger_subsys.TOTEM.debug", "on", 3),
        ("logging.logger_subsys.TOTEM.subsys", "TOTEM", 4),
    ]


def test_logger_subsys_needs_a_subsys_key():
    """A logger_subsys without subsys is refused at its closing brace."""
    error = parse_error("logging {\n logger_subsys {\n  debug: on\n }\n}\n")
    assert str(error) == "parser error: corosync.conf:4: No subsys key in logger_subsys directive"


def test_logging_daemon_sections():
    """``logging_daemon`` maps like corosync: name corosync means this daemon."""
    text = (
        "logging {\n"
        " logging_daemon {\n  name: corosync\n  debug: on\n }\n"
        " logging_daemon {\n  name: corosync\n  subsys: CPG\n  debug: trace\n }\n"
        " logging_daemon {\n  name: other\n  to_syslog: no\n }\n"
        "}\n"
    )
    assert entries(text) == [
        ("logging.debug", "on", 4),
        ("logging.logger_subsys.CPG.debug", "trace", 9),
        ("logging.logger_subsys.CPG.subsys", "CPG", 8),
        ("logging.logging_daemon.other.to_syslog", "no", 13),
        ("logging.logging_daemon.other.name", "other", 12),
    ]


def test_logging_daemon_needs_a_name():
    """A logging_daemon without name is refused at its closing brace."""
    error = parse_error("logging {\n logging_daemon {\n  debug: on\n }\n}\n")
    assert str(error) == "parser error: corosync.conf:4: No name key in logging_daemon directive"


def test_nozzle_is_read_and_reported_unsupported():
    """``nozzle {}`` keys are kept, and a warning says nozzle is not supported."""
    parsed = parse_config("nozzle {\n name: noz01\n ipaddr: 192.168.0.1\n}\n")
    assert [(e.key, e.value) for e in parsed.entries] == [
        ("nozzle.name", "noz01"),
        ("nozzle.ipaddr", "192.168.0.1"),
    ]
    assert len(parsed.warnings) == 1
    assert parsed.warnings[0].startswith("/etc/corosync/corosync.conf:1: the nozzle section")
    assert "not supported" in parsed.warnings[0]


# -- uidgid ---------------------------------------------------------------------------------


def test_uidgid_numeric_ids_by_default():
    """Without a resolver only numbers are accepted; they become uidgid.config keys."""
    parsed = parse_config("uidgid {\n uid: 1000\n gid: 27\n}\n")
    assert [(e.key, e.value, e.line) for e in parsed.entries] == [
        ("uidgid.config.uid.1000", "1", 2),
        ("uidgid.config.gid.27", "1", 3),
    ]
    converted = convert_entries(parsed.entries)
    assert converted["uidgid.config.uid.1000"].value == ConfigValue(U8, 1)


def test_uidgid_names_go_through_the_resolvers():
    """User and group names are resolved by the injected functions."""
    users = {"hacluster": 189}.get
    groups = {"haclient": 189}.get
    parsed = parse_config(
        "uidgid {\n uid: hacluster\n gid: haclient\n}\n",
        resolve_user=users,
        resolve_group=groups,
    )
    assert [e.key for e in parsed.entries] == ["uidgid.config.uid.189", "uidgid.config.gid.189"]


def test_uidgid_unknown_user_and_group():
    """Unknown names give corosync's messages."""
    error = parse_error("uidgid {\n uid: nobody-here\n}\n")
    assert str(error) == (
        "parser error: corosync.conf:2: The 'nobody-here' user is not found in /etc/passwd, "
        "please read the documentation."
    )
    error = parse_error("uidgid {\n gid: nogroup-here\n}\n")
    assert str(error) == (
        "parser error: corosync.conf:2: The 'nogroup-here' group is not found in /etc/group, "
        "please read the documentation."
    )


def test_uidgid_takes_only_uid_and_gid():
    """Other keys and subsections are refused in uidgid."""
    assert str(parse_error("uidgid {\n user: 5\n}\n")) == (
        "parser error: corosync.conf:2: uidgid: Only uid and gid are allowed items"
    )
    assert str(parse_error("uidgid {\n sub {\n")) == (
        "parser error: corosync.conf:2: Subsections are not allowed within uidgid section"
    )


def test_uidgid_d_files():
    """uidgid.d files hold only uidgid sections, and are parsed after the main file."""
    parsed = parse_config(
        "totem {\n version: 2\n}\n",
        uidgid_files=[
            ("uidgid.d/a", "uidgid {\n uid: 5\n}\n"),
            ("uidgid.d/b", b"uidgid {\n gid: 6\n}\n"),
        ],
    )
    assert [(e.key, e.line, e.file) for e in parsed.entries] == [
        ("totem.version", 2, "/etc/corosync/corosync.conf"),
        ("uidgid.config.uid.5", 2, "uidgid.d/a"),
        ("uidgid.config.gid.6", 2, "uidgid.d/b"),
    ]


def test_uidgid_d_files_refuse_other_content():
    """Top-level keys and other sections in a uidgid.d file are errors naming that file."""
    with pytest.raises(ConfigParseError) as info:
        parse_config("", uidgid_files=[("uidgid.d/x", "uid: 5\n")])
    assert (
        str(info.value) == "parser error: uidgid.d/x:1: uidgid: Only uid and gid are allowed items"
    )
    with pytest.raises(ConfigParseError) as info:
        parse_config("", uidgid_files=[("uidgid.d/y", "# c\ntotem {\n")])
    assert str(info.value) == (
        "parser error: uidgid.d/y:2: uidgid: Can't add subsection different than uidgid"
    )


# -- grammar errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("totem {\n version: 2\n", 2, "Missing closing brace"),
        ("totem {\n version: 2\n\n# trailing\n", 4, "Missing closing brace"),
        ("totem {\n}\n}\n", 3, "Unexpected closing brace"),
        ("totem {\n version 2\n}\n", 2, "Line is not opening or closing section or key value"),
        ("just-a-word\n", 1, "Line is not opening or closing section or key value"),
        ("{\n}\n", 1, "Missing section name before opening bracket '{'"),
        ("  \t{\n", 1, "Missing section name before opening bracket '{'"),
        ("totem { version: 2\n", 1, "Extra characters after opening bracket '{'"),
        ("quorum {\n provider: a{b}\n", 2, "Extra characters after opening bracket '{'"),
        ("totem {\n} x\n", 2, "Extra characters before or after closing bracket '}'"),
        ("totem {\nversion: 2 }\n", 2, "Missing closing brace"),
        ("totem {\n : 2\n}\n", 2, "Key name can't be empty"),
        (
            "a b: c\n",
            1,
            'Invalid key name "a b" (key names are 3..255 characters of [A-Za-z0-9._/:-])',
        ),
        (
            "ab: c\n",
            1,
            'Invalid key name "ab" (key names are 3..255 characters of [A-Za-z0-9._/:-])',
        ),
        (
            "totem {\n tök: 1\n}\n",
            2,
            'Invalid key name "totem.tök" (key names are 3..255 characters of [A-Za-z0-9._/:-])',
        ),
        ("totem {\n to\0ken: 1\n}\n", 2, "Line contains a NUL byte"),
    ],
)
def test_grammar_errors(text: str, line: int, reason: str):
    """Each grammar error gives corosync's message at the right line."""
    error = parse_error(text)
    assert error.reason == reason
    assert error.line == line
    assert error.file == "corosync.conf"
    assert str(error) == f"parser error: corosync.conf:{line}: {reason}"


def test_line_too_long():
    """511 bytes before the newline is corosync's "Line too long"."""
    line = "cluster_name: " + "x" * (511 - len("cluster_name: "))
    error = parse_error(f"totem {{\n version: 2\n{line}\n}}\n")
    assert str(error) == "parser error: corosync.conf:3: Line too long"


def test_line_too_long_counts_bytes_not_characters():
    """The limit is in bytes: 300 two-byte characters are too long."""
    error = parse_error("totem {\n cluster_name: " + "é" * 300 + "\n}\n")
    assert str(error) == "parser error: corosync.conf:2: Line too long"


def test_section_path_too_long():
    """A section path of 256 characters or more is refused."""
    name = "s" * 250
    error = parse_error(f"{name} {{\n inner {{\n")
    assert str(error) == (
        "parser error: corosync.conf:2: Start of section makes total cmap path too long"
    )


def test_key_path_too_long():
    """A key whose full name reaches 256 characters is refused; 255 is fine."""
    section = "s" * 200
    ok_key = "k" * (255 - 201)
    assert entries(f"{section} {{\n{ok_key}: 1\n}}\n") == [(f"{section}.{ok_key}", "1", 2)]
    error = parse_error(f"{section} {{\n{ok_key}k: 1\n}}\n")
    assert str(error) == "parser error: corosync.conf:2: New key makes total cmap path too long"


def test_node_key_too_long_after_numbering():
    """The node index can push a key over 255 characters: that is refused too."""
    key = "k" * (255 - len("nodelist.node."))
    error = parse_error(f"nodelist {{\n node {{\n  {key}: 1\n }}\n}}\n")
    assert str(error) == "parser error: corosync.conf:3: New key makes total cmap path too long"


# -- typed keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "vtype"),
    [
        ("totem.version", U32),
        ("totem.token", U32),
        ("totem.token_coefficient", U32),
        ("totem.token_warning", U32),
        ("totem.knet_mtu", U32),
        ("totem.knet_pmtud_interval", U32),
        ("totem.netmtu", U32),
        ("totem.knet_compression_level", I32),
        ("totem.config_version", U64),
        ("totem.interface.0.mcastport", U16),
        ("totem.interface.7.ttl", U8),
        ("totem.interface.1.knet_link_priority", U8),
        ("totem.interface.2.knet_ping_interval", U32),
        ("totem.interface.2.knet_ping_timeout", U32),
        ("totem.interface.2.knet_ping_precision", U32),
        ("totem.interface.2.knet_pong_count", U32),
        ("nodelist.node.12.nodeid", U32),
        ("nodelist.node.0.quorum_votes", U32),
        ("quorum.expected_votes", U32),
        ("quorum.two_node", U8),
        ("quorum.wait_for_all", U8),
        ("quorum.last_man_standing_window", U32),
        ("quorum.device.votes", U32),
        ("quorum.device.master_wins", U8),
        ("resources.watchdog_timeout", U32),
        ("resources.system.memory_used.poll_period", U64),
        ("resources.process.poll_period", U64),
        ("uidgid.config.uid.0", U8),
        ("nodelist.node.0.ring0_addr", STR),
        ("totem.cluster_name", STR),
        ("pload.count", STR),
    ],
)
def test_key_types(key: str, vtype: ValueType):
    """Each known key has corosync's cmap type."""
    assert key_spec(key).type is vtype


@pytest.mark.parametrize(
    ("vtype_key", "low", "high"),
    [
        ("totem.interface.0.ttl", 0, 255),
        ("totem.interface.0.mcastport", 0, 65535),
        ("totem.token", 0, 4294967295),
        ("totem.knet_compression_level", -2147483648, 2147483647),
    ],
)
def test_integer_ranges(vtype_key: str, low: int, high: int):
    """The bounds of each integer type are accepted, one past them refused."""
    assert typed(vtype_key, str(low)).value == low
    assert typed(vtype_key, str(high)).value == high
    for bad in (str(low - 1), str(high + 1)):
        assert type_error(vtype_key, bad) == (
            f'parser error: corosync.conf:7: Value of key "{vtype_key}" is expected to be '
            f'integer in range ({low}..{high}), but "{bad}" was given'
        )


@pytest.mark.parametrize("bad", ["", "3s", "0x10", "1.5", "1 000", "٣", "--1"])
def test_integers_are_read_like_strtoll(bad: str):
    """Only an optional sign and ASCII decimal digits make a number."""
    assert type_error("totem.token", bad) == (
        'parser error: corosync.conf:7: Value of key "totem.token" is expected to be integer '
        f'in range (0..4294967295), but "{bad}" was given'
    )


def test_integers_accept_a_sign_and_leading_zeros():
    """'+5' and '007' are numbers, as for strtoll."""
    assert typed("totem.token", "+5000") == ConfigValue(U32, 5000)
    assert typed("totem.token", "007") == ConfigValue(U32, 7)
    assert typed("totem.knet_compression_level", "-3") == ConfigValue(I32, -3)


def test_u64_messages():
    """u64 keys use corosync's 'unsigned integer' message."""
    assert typed("totem.config_version", "18446744073709551615").value == (1 << 64) - 1
    for bad in ("-1", "18446744073709551616", "x"):
        assert type_error("totem.config_version", bad) == (
            'parser error: corosync.conf:7: Value of key "totem.config_version" is expected to '
            f'be unsigned integer, but "{bad}" was given'
        )


@pytest.mark.parametrize(
    ("key", "good", "bad", "reason"),
    [
        (
            "totem.ip_version",
            ["ipv4", "ipv6", "ipv4-6", "ipv6-4"],
            "ipv5",
            "Invalid ip_version type",
        ),
        (
            "totem.crypto_cipher",
            ["none", "aes256", "aes192", "aes128"],
            "3des",
            "Invalid cipher type. Should be none, aes256, aes192 or aes128",
        ),
        (
            "totem.crypto_hash",
            ["none", "md5", "sha1", "sha256", "sha384", "sha512"],
            "sha3",
            "Invalid hash type. Should be none, md5, sha1, sha256, sha384 or sha512",
        ),
        (
            "totem.crypto_model",
            ["nss", "openssl"],
            "gcrypt",
            "Invalid crypto model. Should be nss or openssl",
        ),
        (
            "totem.knet_compression_model",
            ["none", "zlib", "lz4", "zstd"],
            "lzma",
            "Invalid compression model. Should be none, zlib, lz4 or zstd",
        ),
        (
            "totem.link_mode",
            ["active", "passive", "rr"],
            "Passive",
            'The Knet link mode "Passive" specified is invalid.  It must be active, passive or rr.',
        ),
        (
            "totem.secauth",
            ["on", "off"],
            "yes",
            'Value of key "totem.secauth" is expected to be "on" or "off", but "yes" was given',
        ),
        (
            "totem.block_unlisted_ips",
            ["yes", "no"],
            "true",
            (
                'Value of key "totem.block_unlisted_ips" is expected to be "yes" or "no", '
                'but "true" was given'
            ),
        ),
        (
            "totem.cancel_token_hold_on_retransmit",
            ["yes", "no"],
            "1",
            (
                'Value of key "totem.cancel_token_hold_on_retransmit" is expected to be "yes" or '
                '"no", but "1" was given'
            ),
        ),
        (
            "totem.clear_node_high_bit",
            ["yes", "no"],
            "on",
            (
                'Value of key "totem.clear_node_high_bit" is expected to be "yes" or "no", '
                'but "on" was given'
            ),
        ),
        (
            "totem.ip_dscp",
            ["0", "63", "ef", "cs7", "af43"],
            "64",
            (
                'Value of key "totem.ip_dscp" is expected to be integer in range (0..63) or a DSCP '
                'name (cs0..cs7, af11..af43, ef), but "64" was given'
            ),
        ),
        ("system.qb_ipc_type", ["native", "shm", "socket"], "tcp", "Invalid system.qb_ipc_type"),
        ("system.sched_rr", ["yes", "no"], "maybe", "Invalid system.sched_rr value"),
        (
            "system.move_to_root_cgroup",
            ["yes", "no", "auto"],
            "on",
            "Invalid system.move_to_root_cgroup",
        ),
        (
            "system.allow_knet_handle_fallback",
            ["yes", "no"],
            "1",
            "Invalid system.allow_knet_handle_fallback",
        ),
        ("logging.debug", ["on", "off", "trace"], "yes", "unknown value for debug"),
        (
            "logging.logger_subsys.QUORUM.debug",
            ["on", "off", "trace"],
            "verbose",
            "unknown value for debug",
        ),
        ("logging.timestamp", ["on", "off", "hires"], "ms", "unknown value for timestamp"),
        ("logging.fileline", ["on", "off"], "yes", "unknown value for fileline"),
        ("logging.function_name", ["on", "off"], "1", "unknown value for function_name"),
        ("logging.blackbox", ["on", "off"], "no", "unknown value for blackbox"),
        ("logging.to_stderr", ["yes", "no", "on", "off"], "1", "unknown value for to_stderr"),
        ("logging.to_syslog", ["yes", "no"], "y", "unknown value for to_syslog"),
        ("logging.to_logfile", ["yes", "no"], "file", "unknown value for to_logfile"),
        (
            "logging.syslog_facility",
            ["daemon", "local0", "local7", "user"],
            "local8",
            "unknown syslog facility specified",
        ),
        (
            "logging.syslog_priority",
            ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"],
            "trace",
            "unknown syslog priority specified",
        ),
        (
            "logging.logfile_priority",
            ["info", "debug"],
            "INFO",
            "unknown logfile priority specified",
        ),
        (
            "logging.logger_subsys.TOTEM.syslog_priority",
            ["warning"],
            "loud",
            "unknown syslog priority specified",
        ),
    ],
)
def test_enumerated_keys(key: str, good: list[str], bad: str, reason: str):
    """Words are accepted exactly (case-sensitive); others give corosync's reason."""
    for word in good:
        assert typed(key, word) == ConfigValue(STR, word)
    assert type_error(key, bad) == f"parser error: corosync.conf:7: {reason}"


def test_conversion_error_carries_key_and_line():
    """The exception names the key, file and line of the bad value."""
    with pytest.raises(ConfigParseError) as info:
        typed("quorum.two_node", "yes", line=42)
    assert info.value.key == "quorum.two_node"
    assert info.value.line == 42
    assert info.value.file == "corosync.conf"
    assert isinstance(info.value, ConfigError)


# -- load_config ----------------------------------------------------------------------------


def test_load_config_reads_main_file_and_uidgid_d(tmp_path: Path):
    """load_config reads corosync.conf and the regular files of uidgid.d in name order."""
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n version: 2\n}\n")
    uidgid = tmp_path / "uidgid.d"
    uidgid.mkdir()
    (uidgid / "b").write_text("uidgid {\n gid: 0\n}\n")
    (uidgid / "a").write_text("uidgid {\n uid: root\n}\n")
    (uidgid / "subdir").mkdir()
    parsed = load_config(conf)
    assert parsed.file == str(conf)
    assert [(e.key, e.file) for e in parsed.entries] == [
        ("totem.version", str(conf)),
        ("uidgid.config.uid.0", str(uidgid / "a")),
        ("uidgid.config.gid.0", str(uidgid / "b")),
    ]


def test_load_config_without_uidgid_d(tmp_path: Path):
    """A missing uidgid.d directory is fine."""
    conf = tmp_path / "corosync.conf"
    conf.write_bytes(b"totem {\n version: 2\n}")
    assert [e.key for e in load_config(conf).entries] == ["totem.version"]


def test_load_config_missing_file(tmp_path: Path):
    """A file that cannot be read gives corosync's "Can't read file" error."""
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"Can't read file {missing}: No such file or directory"


def test_load_config_reports_the_file_in_errors(tmp_path: Path):
    """Grammar errors name the file that was read."""
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n")
    with pytest.raises(ConfigParseError) as info:
        load_config(conf)
    assert str(info.value) == f"parser error: {conf}:1: Missing closing brace"


# -- fuzzing --------------------------------------------------------------------------------

_FRAGMENTS = [
    "totem {",
    "interface {",
    "nodelist {",
    "node {",
    "logging {",
    "logger_subsys {",
    "logging_daemon {",
    "uidgid {",
    "member {",
    "quorum {",
    "device {",
    "nozzle {",
    "}",
    "{",
    "# comment",
    "",
    "linknumber: 1",
    "linknumber: x",
    "subsys: QUORUM",
    "name: corosync",
    "uid: 0",
    "gid: abc",
    "memberaddr: 10.0.0.1",
    "token: 3000",
    "version: 2",
    "nodeid: 1",
    "ring0_addr: 127.0.0.1",
    "debug: on",
    "a: b: c",
    ": x",
    "x" * 600,
    "key\xa0: value\r",
]

_line = st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=40))


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes_only_raise_parse_errors(data: bytes):
    """Arbitrary bytes either parse or raise ConfigParseError, nothing else."""
    try:
        parsed = parse_config(data)
        convert_entries(parsed.entries)
    except ConfigParseError:
        pass


@given(st.lists(_line, max_size=30), st.lists(st.lists(_line, max_size=5), max_size=2))
@settings(max_examples=400, deadline=None)
def test_fuzz_grammar_like_text_only_raises_parse_errors(lines: list[str], extra: list[list[str]]):
    """Text built from grammar fragments either parses or raises ConfigParseError."""
    error = None
    try:
        parsed = parse_config(
            "\n".join(lines),
            uidgid_files=[(f"uidgid.d/{i}", "\n".join(e)) for i, e in enumerate(extra)],
        )
        convert_entries(parsed.entries)
    except ConfigParseError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("parser error: ")
        assert error.line is not None
