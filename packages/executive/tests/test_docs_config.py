"""The example corosync.conf blocks of docs/config.md stay valid.

Every fenced block right after a ``<!-- example: valid-config -->`` marker is parsed
and validated as host ``node1``; the derived values the page quotes for its example
are checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

from corosync_executive import Config, parse_config, validate_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"
MARKER = "<!-- example: valid-config -->"

# The marker alone on its line (the page also names it in prose, inside backquotes).
_MARKER_LINE = re.compile("^" + re.escape(MARKER) + "$", re.MULTILINE)
_BLOCK = re.compile(
    "^" + re.escape(MARKER) + r"\n```[A-Za-z0-9_-]*\n(.*?)\n```", re.DOTALL | re.MULTILINE
)


def example_blocks(text: str) -> list[str]:
    """The fenced blocks following the marker, in page order."""
    return _BLOCK.findall(text)


def validate_example(text: str) -> Config:
    """Parse and validate one example as host node1 with no local addresses."""
    parsed = parse_config(text, file="docs/config.md")
    return validate_config(parsed, hostname="node1", local_addresses=())


def test_every_marker_has_a_block() -> None:
    """Each marker is followed by a fenced block, and there is at least one."""
    text = DOC.read_text(encoding="utf-8")
    blocks = example_blocks(text)
    assert blocks
    assert len(blocks) == len(_MARKER_LINE.findall(text))


def test_examples_parse_and_validate_without_warnings() -> None:
    """Every marked example is a valid configuration that draws no warning."""
    for block in example_blocks(DOC.read_text(encoding="utf-8")):
        config = validate_example(block)
        assert config.local_node.name == "node1"
        assert config.warnings == ()


def test_main_example_values() -> None:
    """The first example yields what the page says about it."""
    config = validate_example(example_blocks(DOC.read_text(encoding="utf-8"))[0])
    assert config.cluster_name == "demo"
    assert [node.nodeid for node in config.nodes] == [1, 2, 3]
    assert config.local_nodeid == 1
    assert [(link.linknumber, link.mcastport) for link in config.links] == [(0, 5405), (1, 5406)]
    assert [link.options.priority for link in config.links] == [2, 1]
    assert config.totem_effective.token == 3650
    assert config.totem_effective.consensus == 4380
    assert [link.options.ping_interval_ms for link in config.links] == [912, 912]
    assert [link.options.ping_timeout_ms for link in config.links] == [1825, 1825]
    assert (config.crypto.cipher, config.crypto.hash) == ("aes256", "sha256")
    assert config.quorum.provider == "corosync_votequorum"
    assert config.quorum.expected_votes == 3
    assert config.logging.for_subsys("QUORUM").debug.value == "on"
    assert config.logging.default.logfile == "/var/log/pycorosync/corosync.log"
    assert config.uids == frozenset({189})
    assert config.gids == frozenset({189})


def test_example_found_by_address_too() -> None:
    """With an unknown host name the local node is found by its ring0 address."""
    block = example_blocks(DOC.read_text(encoding="utf-8"))[0]
    config = validate_config(
        parse_config(block), hostname="elsewhere", local_addresses=["192.168.1.2"]
    )
    assert config.local_nodeid == 2


def test_timer_table_matches_code() -> None:
    """The page's derived-timer table for 2, 3 and 5 nodes is what validate_config computes."""
    rows = {
        2: (3000, 714, 561, 3600, 750, 1500, 2250),
        3: (3650, 869, 685, 4380, 912, 1825, 2737),
        5: (4950, 1178, 932, 5940, 1237, 2475, 3712),
    }
    doc = DOC.read_text(encoding="utf-8")
    for count, row in rows.items():
        nodes = "".join(
            f"node {{\nname: node{i}\nnodeid: {i}\nring0_addr: 10.0.0.{i}\n}}\n"
            for i in range(1, count + 1)
        )
        config = validate_example(f"totem {{\nversion: 2\n}}\nnodelist {{\n{nodes}}}\n")
        eff = config.totem_effective
        options = config.links[0].options
        computed = (
            eff.token,
            eff.token_retransmit,
            eff.hold,
            eff.consensus,
            options.ping_interval_ms,
            options.ping_timeout_ms,
            eff.token_warning,
        )
        assert computed == row
        label = "1\N{EN DASH}2" if count == 2 else str(count)
        cells = (label, *map(str, row[:4]), f"{row[4]} / {row[5]}", str(row[6]))
        line = "| " + " | ".join(cells) + " |"
        assert line in doc
