"""pycorosync-cfgtool without a daemon: arguments, usage, and output for fake states.

The tool takes the functions that connect to cfg and cmap, so these tests feed it
fakes holding the state corosync would report. The tool against our cfg service is
tested in packages/executive/tests/test_cfg_service.py; against a real corosync
cluster in test_cfgtool_real_corosync.py.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from corosync import CsError, CsErrorCode
from corosync.cfg import CfgLinkStatus, CfgNodeAddrs, CfgNodeStatus, CfgShutdownFlags
from corosync.cmap import CmapIterEntry, CmapTypedValue, CmapValueType
from corosync.tools import cfgtool

USAGE_HEAD = (
    "corosync-cfgtool [[-i <interface ip>] [-b] -s] [-R] [-L] [-k nodeid] [-a nodeid] "
    "[-h] [-H]\n\nA tool for displaying and configuring active parameters within corosync.\n"
)


@attrs.define
class FakeCmap:
    values: dict[str, CmapTypedValue]
    closed: bool = False

    def get_typed(self, key: str) -> CmapTypedValue:
        if key not in self.values:
            raise CsError(CsErrorCode.NOT_EXIST, key)
        return self.values[key]

    def iterate(self, prefix: str = "") -> Iterator[CmapIterEntry]:
        for key in sorted(self.values):
            if key.startswith(prefix):
                typed = self.values[key]
                yield CmapIterEntry(key, typed.value_type, 4)

    def finalize(self) -> None:
        self.closed = True


@attrs.define
class FakeCfg:
    local: int = 1
    statuses: dict[int, CfgNodeStatus] = attrs.Factory(dict)
    errors: dict[str, list[CsErrorCode]] = attrs.Factory(dict)
    calls: list[tuple[str, Any]] = attrs.Factory(list)
    closed: bool = False

    def _maybe_fail(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        pending = self.errors.get(name)
        if pending:
            raise CsError(pending.pop(0), name)

    def local_get(self) -> int:
        self._maybe_fail("local_get")
        return self.local

    def node_status_get(self, nodeid: int) -> CfgNodeStatus:
        self._maybe_fail("node_status_get", nodeid)
        if nodeid not in self.statuses:
            raise CsError(CsErrorCode.FAILED_OPERATION, "unknown")
        return self.statuses[nodeid]

    def get_node_addrs(self, nodeid: int) -> CfgNodeAddrs:
        self._maybe_fail("get_node_addrs", nodeid)
        return CfgNodeAddrs(10, ("fd00::1", "fd01::1"))

    def reload_config(self) -> None:
        self._maybe_fail("reload_config")

    def reopen_log_files(self) -> None:
        self._maybe_fail("reopen_log_files")

    def kill_node(self, nodeid: int, reason: str) -> None:
        self._maybe_fail("kill_node", (nodeid, reason))

    def try_shutdown(self, flags: CfgShutdownFlags = CfgShutdownFlags.REQUEST) -> None:
        self._maybe_fail("try_shutdown", flags)

    def finalize(self) -> None:
        self.closed = True


def u32(value: int) -> CmapTypedValue:
    return CmapTypedValue(CmapValueType.UINT32, value)


def text(value: str) -> CmapTypedValue:
    return CmapTypedValue(CmapValueType.STRING, value)


def two_nodes() -> tuple[FakeCfg, FakeCmap]:
    link = CfgLinkStatus(True, False, False, 2**32 - 1, "fd00::1", "fd00::2")
    cfg = FakeCfg(
        local=1,
        statuses={
            1: CfgNodeStatus(1, True, link_status=[CfgLinkStatus(True, True, False, 9, "a", "a")]),
            2: CfgNodeStatus(2, True, link_status=[link]),
        },
    )
    cmap = FakeCmap(
        {
            "nodelist.node.0.nodeid": u32(2),
            "nodelist.node.1.nodeid": u32(1),
            "nodelist.node.1.nodeidx": u32(7),
            "totem.transport": text("udpu"),
        }
    )
    return cfg, cmap


def run(
    *args: str, cfg: FakeCfg | None = None, cmap: FakeCmap | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def open_cfg(prefix: str) -> FakeCfg:
        if cfg is None:
            raise CsError(CsErrorCode.LIBRARY, "nothing listens")
        return cfg

    def open_cmap(prefix: str) -> FakeCmap:
        if cmap is None:
            raise CsError(CsErrorCode.LIBRARY, "nothing listens")
        return cmap

    rc = cfgtool.main(list(args), stdout=out, stderr=err, open_cfg=open_cfg, open_cmap=open_cmap)
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("args", [(), ("-h",), ("-b",), ("-r",), ("--force",), ("-i", "1")])
def test_usage_when_no_action(args: tuple[str, ...]) -> None:
    """No action prints the usage on stdout and exits 0 (-h itself is no action)."""
    rc, out, err = run(*args)
    assert (rc, err) == (0, "")
    assert out.startswith(USAGE_HEAD)
    assert "\t\t--force will shut down corosync regardless of daemon vetos\n" in out
    assert "--ipc-prefix=PREFIX" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-x",), "pycorosync-cfgtool: invalid option -- 'x'\n"),
        (("-sx",), "pycorosync-cfgtool: invalid option -- 'x'\n"),
        (("-k",), "pycorosync-cfgtool: option requires an argument -- 'k'\n"),
        (("-s", "-a"), "pycorosync-cfgtool: option requires an argument -- 'a'\n"),
        (("--foo",), "pycorosync-cfgtool: unrecognized option '--foo'\n"),
        (("--kil",), "pycorosync-cfgtool: option '--kill' requires an argument\n"),
        (("--status=1",), "pycorosync-cfgtool: option '--status' doesn't allow an argument\n"),
        (
            ("--re",),
            (
                "pycorosync-cfgtool: option '--re' is ambiguous; possibilities: "
                "'--reload' '--reopen'\n"
            ),
        ),
        (("-x", "-k", "abc"), "pycorosync-cfgtool: invalid option -- 'x'\n"),
    ],
)
def test_getopt_errors(args: tuple[str, ...], message: str) -> None:
    """getopt_long's messages on stderr, exit 1, nothing done."""
    assert run(*args, cfg=FakeCfg()) == (1, "", message)


@pytest.mark.parametrize(
    "value", ["abc", "0", "-1", "3abc", "3 ", "0x3", "", "1e3", "4294967296", "-0"]
)
@pytest.mark.parametrize("option", ["-k", "-a", "--kill", "--address"])
def test_invalid_nodeids(option: str, value: str) -> None:
    """A nodeid must be a whole number in 1..UINT_MAX (util_strtonum)."""
    cfg = FakeCfg()
    assert run(option, value, cfg=cfg) == (
        1,
        "",
        "The nodeid was not valid, try a positive number\n",
    )
    assert cfg.calls == []


@pytest.mark.parametrize(
    ("value", "nodeid"), [(" 3", 3), ("+3", 3), ("03", 3), ("4294967295", 2**32 - 1)]
)
def test_valid_nodeid_forms(value: str, nodeid: int) -> None:
    """Leading blanks, a plus sign and zeros are accepted, as strtoll does."""
    cfg = FakeCfg()
    assert run("-k", value, cfg=cfg) == (0, f"Killing node {nodeid}\n", "")
    assert cfg.calls == [("kill_node", (nodeid, "Killed by corosync-cfgtool"))]


def test_last_action_wins_and_arguments_are_ignored() -> None:
    """The last action flag decides; other words on the command line are skipped."""
    cfg = FakeCfg()
    assert run("-R", "-k", "3", "extra", "-a", "2", cfg=cfg)[0] == 0
    assert cfg.calls == [("get_node_addrs", 2)]


# ---------------------------------------------------------- connection errors


@pytest.mark.parametrize(
    ("args", "out", "err"),
    [
        (("-s",), "", "Could not initialize corosync configuration API error 2\n"),
        (("-n",), "", "Could not initialize corosync configuration API error 2\n"),
        (("-a", "2"), "", "Could not initialize corosync configuration API error 2\n"),
        (("-H",), "", "Could not initialize corosync configuration API error 2\n"),
        (
            ("-k", "3"),
            "Killing node 3\n",
            "Could not initialize corosync configuration API error 2\n",
        ),
        (
            ("-R",),
            "Reloading corosync.conf...\n",
            "Could not initialize corosync configuration API error CS_ERR_LIBRARY\n",
        ),
        (("-L",), "", "Could not initialize corosync configuration API error CS_ERR_LIBRARY\n"),
    ],
)
def test_no_daemon(args: tuple[str, ...], out: str, err: str) -> None:
    """Without a daemon every action fails with exit 1 and corosync's line."""
    assert run(*args) == (1, out, err)


def test_status_failures() -> None:
    """cmap unreachable, local node id unknown, no node in the nodelist."""
    assert run("-s", cfg=FakeCfg()) == (
        1,
        "",
        "Could not initialize corosync cmap API error 2\n",
    )
    cfg = FakeCfg(errors={"local_get": [CsErrorCode.TRY_AGAIN]})
    assert run("-s", cfg=cfg, cmap=FakeCmap({})) == (
        1,
        "",
        "Could not get the local node id, the error is: 6\n",
    )
    assert cfg.closed
    assert run("-n", cfg=FakeCfg(), cmap=FakeCmap({})) == (1, "", "No nodes found in nodelist\n")


# --------------------------------------------------------------------- output


def test_udpu_views() -> None:
    """With totem.transport udpu links have no knet transport name and -n no arrow;
    nodes sort by id; a u32 MTU over 2^31 prints signed, as %d does."""
    cfg, cmap = two_nodes()
    rc, out, err = run("-s", cfg=cfg, cmap=cmap)
    assert (rc, err) == (0, "")
    assert out == (
        "Local node ID 1, transport udpu\n"
        "LINK ID 0 \n"
        "\taddr\t= fd00::1\n"
        "\tstatus:\n"
        "\t\tnodeid:          1:\tlocalhost\n"
        "\t\tnodeid:          2:\tdisconnected\n"
    )
    assert run("-sb", cfg=cfg, cmap=cmap)[1].endswith("\tstatus\t= n1\n")
    assert run("-n", cfg=cfg, cmap=cmap)[1] == (
        "Local node ID 1, transport udpu\n"
        "nodeid: 2 reachable\n"
        "   LINK: 0  (fd00::1fd00::2) enabled mtu: -1\n"
        "\n"
    )
    assert cmap.closed
    assert cfg.closed


def test_single_node_shows_its_own_links() -> None:
    """Alone in the nodelist, the local node's own link list is shown."""
    cfg = FakeCfg(
        local=5,
        statuses={
            5: CfgNodeStatus(5, True, link_status=[CfgLinkStatus(True, True, False, 1, "x", "x")])
        },
    )
    cmap = FakeCmap({"nodelist.node.0.nodeid": u32(5)})
    assert run("-sb", cfg=cfg, cmap=cmap)[1] == (
        "Local node ID 5, transport knet\nLINK ID 0 udp\n\taddr\t= x\n\tstatus\t= n\n"
    )
    assert run("-n", cfg=cfg, cmap=cmap)[1] == "Local node ID 5, transport knet\n"


def test_addresses_and_other_actions() -> None:
    """-a joins the addresses with spaces; -R, -L and -k failures as corosync 3.1.7."""
    assert run("-a", "2", cfg=FakeCfg()) == (0, "fd00::1 fd01::1\n", "")
    cfg = FakeCfg(errors={"get_node_addrs": [CsErrorCode.NOT_EXIST]})
    assert run("-a", "4294967295", cfg=cfg) == (
        1,
        "",
        "Could not get node address for nodeid -1\n",
    )
    cfg = FakeCfg(errors={"reload_config": [CsErrorCode.TRY_AGAIN]})
    assert run("-R", cfg=cfg) == (
        6,
        "Reloading corosync.conf...\n",
        "Could not reload configuration. Error CS_ERR_TRY_AGAIN\n",
    )
    cfg = FakeCfg(errors={"reopen_log_files": [CsErrorCode.LIBRARY]})
    assert run("-L", cfg=cfg) == (
        2,
        "",
        "Could not reopen corosync logging files. Error CS_ERR_LIBRARY\n",
    )
    cfg = FakeCfg(errors={"kill_node": [CsErrorCode.NOT_EXIST]})
    assert run("--kill=3", cfg=cfg) == (
        1,
        "Killing node 3\n",
        "Could not kill node (error = CS_ERR_NOT_EXIST)\n",
    )


def test_shutdown_retries_try_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """-H retries TRY_AGAIN once a second, 30 times, and exits 0 whatever happens."""
    slept: list[float] = []
    monkeypatch.setattr(cfgtool, "sleep", slept.append)
    cfg = FakeCfg(errors={"try_shutdown": [CsErrorCode.TRY_AGAIN] * 2})
    assert run("-H", "--force", cfg=cfg) == (0, "Shutting down corosync\n", "")
    assert list(cfg.calls) == [("try_shutdown", CfgShutdownFlags.REGARDLESS)] * 3
    assert slept == [1, 1]
    cfg = FakeCfg(errors={"try_shutdown": [CsErrorCode.TRY_AGAIN] * 40})
    assert run("--shutdown", cfg=cfg) == (
        0,
        "Shutting down corosync\n",
        "Could not shutdown (error = 6)\n",
    )
    assert len(cfg.calls) == 30
    cfg = FakeCfg(errors={"try_shutdown": [CsErrorCode.BUSY]})
    assert run("-H", cfg=cfg) == (
        0,
        "Shutting down corosync\n",
        "Could not shutdown (error = 10)\n",
    )
    assert cfg.calls == [("try_shutdown", CfgShutdownFlags.REQUEST)]


def test_ipc_prefix_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--ipc-prefix, else $PYCOROSYNC_IPC_PREFIX, is given to the connections."""
    seen: list[str] = []

    def open_cfg(prefix: str) -> FakeCfg:
        seen.append(prefix)
        return FakeCfg()

    def call(*args: str) -> None:
        cfgtool.main(list(args), stdout=io.StringIO(), stderr=io.StringIO(), open_cfg=open_cfg)

    monkeypatch.setenv(cfgtool.PREFIX_ENV, "env-")
    call("-L")
    call("--ipc-prefix=opt-", "-L")
    call("-L", "--ipc-prefix", "")
    assert seen == ["env-", "opt-", ""]
