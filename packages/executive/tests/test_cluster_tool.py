"""pycorosync-cluster: generated configs, the view, and whole runs that must leave
nothing behind (daemons, IPC files, namespaces, work directory)."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from corosync_executive import load_config, validate_config
from corosync_executive._cluster_config import (
    AUTHKEY_BYTES,
    ClusterLayout,
    LabMode,
    check_node_config,
    find_free_slot,
    write_cluster_files,
)
from corosync_executive._cluster_view import (
    LinkState,
    LogWatcher,
    NodeSnapshot,
    ProcessState,
    ViewState,
    membership_formed,
    render_view,
)
from corosync_executive._netlab import list_netns, netns_unavailable_reason
from corosync_executive.cluster import main

TOOL = [sys.executable, "-m", "corosync_executive.cluster"]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("mode", "n_nodes", "n_links", "crypto"),
    [
        (LabMode.LOOPBACK, 3, 2, True),
        (LabMode.LOOPBACK, 1, 1, False),
        (LabMode.NETNS, 16, 8, True),
        (LabMode.NETNS, 2, 1, False),
    ],
)
def test_generated_configs_validate_and_each_node_finds_itself(
    tmp_path: Path, mode: LabMode, n_nodes: int, n_links: int, crypto: bool
) -> None:
    layout = ClusterLayout(n_nodes, n_links, mode, crypto=crypto, slot=42, netns_prefix="pcs1234")
    nodes = write_cluster_files(layout, tmp_path)
    assert [files.nodeid for files in nodes] == list(range(1, n_nodes + 1))
    for files in nodes:
        config = validate_config(
            load_config(files.config),
            hostname="",
            local_addresses=layout.addresses(files.nodeid),
        )
        assert config.local_nodeid == files.nodeid
        assert check_node_config(layout, files).local_nodeid == files.nodeid
        assert [node.nodeid for node in config.nodes] == list(range(1, n_nodes + 1))
        assert [link.linknumber for link in config.links] == list(range(n_links))
        assert [link.mcastport for link in config.links] == [5405 + L for L in range(n_links)]
        assert config.crypto.enabled is crypto
        assert config.system.state_dir == str(files.state_dir)
        assert files.state_dir.is_dir()
        assert config.logging.default.logfile == str(files.logfile)
        assert config.logging.default.to_logfile
        assert not config.logging.default.to_syslog
        addresses = {str(a.ip) for node in config.nodes for a in node.addresses}
        assert len(addresses) == n_nodes * n_links  # every address distinct
        if mode is LabMode.LOOPBACK:
            assert all(a.startswith("127.42.") for a in addresses)
        else:
            assert all(a.startswith("10.") for a in addresses)
    key = tmp_path / "authkey"
    if crypto:
        assert stat.S_IMODE(key.stat().st_mode) == 0o400
        assert len(key.read_bytes()) == AUTHKEY_BYTES
    else:
        assert not key.exists()


def test_config_where_the_node_cannot_find_itself_is_refused(tmp_path: Path) -> None:
    """check_node_config names the file when the node's addresses are not in it."""
    nodes = write_cluster_files(ClusterLayout(3, 2, LabMode.LOOPBACK, slot=7), tmp_path)
    elsewhere = ClusterLayout(3, 2, LabMode.LOOPBACK, slot=8)
    with pytest.raises(RuntimeError, match=rf"generated {nodes[0].config} is invalid"):
        check_node_config(elsewhere, nodes[0])


def test_layout_names_and_bounds() -> None:
    netns = ClusterLayout(3, 2, LabMode.NETNS, netns_prefix="pcs99")
    assert netns.netns(2) == "pcs99n2"
    assert netns.ipc_prefix(2) == ""
    assert netns.addresses(3) == ("10.100.0.3", "10.101.0.3")
    loop = ClusterLayout(3, 2, LabMode.LOOPBACK, slot=9)
    assert loop.netns(2) is None
    assert loop.ipc_prefix(2) == "pcs9n2-"
    assert loop.addresses(3) == ("127.9.0.3", "127.9.1.3")
    for bad in ((0, 1), (17, 1), (3, 0), (3, 9)):
        with pytest.raises(ValueError, match="local cluster has"):
            ClusterLayout(*bad, LabMode.LOOPBACK)
    with pytest.raises(ValueError, match="namespace prefix"):
        ClusterLayout(3, 1, LabMode.NETNS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "17"], "within 1..16"),
        (["-n", "x"], "whole number"),
        (["--links", "0"], "within 1..8"),
        (["--duration", "-1"], "positive number"),
        (["--duration", "nan"], "positive number"),
        (["--netns", "--no-netns"], "not allowed with"),
    ],
)
def test_bad_arguments_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_busy_loopback_slot_is_skipped() -> None:
    slot = find_free_slot(3, 2)
    busy = ClusterLayout(3, 2, LabMode.LOOPBACK, slot=slot)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((busy.address(3, 1), busy.port(1)))
        chosen = find_free_slot(3, 2, preferred=[slot])
    assert chosen != slot


# ---------------------------------------------------------------- the view


def test_view_shows_members_links_latency_and_events(tmp_path: Path) -> None:
    layout = ClusterLayout(2, 2, LabMode.LOOPBACK, slot=5)
    up = LinkState(True, 812)
    snapshots = (
        NodeSnapshot(1, 10.0, members=(1, 2), links=((2, (up, LinkState(False, None))),)),
        NodeSnapshot(2, 10.0, error="IPC: connection refused"),
    )
    log = tmp_path / "node1.log"
    log.write_text(
        "Nov 27 03:43:05.087 info    [TOTEM ] A new membership (1.4) was formed. Members\n"
        "Nov 27 03:43:06.000 info    [KNET  ] data MTU changed\n"
        "Nov 27 03:43:06.174 info    [TOTEM ] A new membership (1.c) was formed. Members "
        'joined: 2 node=1 ring_id=1.c members="[1, 2]"\n'
        "Nov 27 03:43:07.000 warning [KNET  ] link: host: 2 link: 1 is down"
    )
    watcher = LogWatcher({1: log})
    watcher.poll()
    assert watcher.ring_ids == {1: "1.c"}
    assert [line for _, line in watcher.lines] == [
        "03:43:05.087 [TOTEM ] A new membership (1.4) was formed. Members",
        "03:43:06.174 [TOTEM ] A new membership (1.c) was formed. Members joined: 2",
    ]
    with log.open("a") as stream:
        stream.write("\n")  # the last line is complete now
    watcher.poll()
    assert watcher.lines[-1] == (1, "03:43:07.000 warning [KNET ] link: host: 2 link: 1 is down")
    state = ViewState(
        layout=layout,
        workdir=tmp_path,
        elapsed=12.3,
        processes=(ProcessState(100, None), ProcessState(101, None)),
        snapshots=snapshots,
        formed_at=None,
        ring_ids=watcher.ring_ids,
        events=tuple(watcher.lines),
        now=10.5,
    )
    text = render_view(state)
    assert "node 1  pid 100     running    ipc prefix pcs5n1-" in text
    assert "   members: 1 2  ring 1.c\n" in text
    assert "   -> node 2  link0 up 812us  link1 down\n" in text
    assert "   no answer: IPC: connection refused\n" in text
    assert "membership: waiting for all 2 nodes" in text
    assert "  node1: 03:43:07.000 warning [KNET ] link: host: 2 link: 1 is down\n" in text
    assert "PYCOROSYNC_IPC_PREFIX=pcs5n1- pycorosync-cmapctl" in text
    assert not membership_formed(layout, snapshots)
    exited = ProcessState(101, -9)
    assert exited.describe() == "killed by signal 9"
    formed = (
        NodeSnapshot(1, 10.0, members=(1, 2)),
        NodeSnapshot(2, 10.0, members=(1, 2)),
    )
    assert membership_formed(layout, formed)
    assert not membership_formed(layout, formed[:1])


# ---------------------------------------------------------------- whole runs


def _daemon_pids(output: str, n_nodes: int) -> list[int]:
    pids = [int(pid) for pid in re.findall(r"^node \d+: pid (\d+) exited 0$", output, re.M)]
    assert len(pids) == n_nodes, output
    return pids


def _last_frame(output: str) -> str:
    return output.rsplit("---- ", 1)[-1]


def _assert_nothing_left(output: str, pids: list[int]) -> None:
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"daemon {pid} still runs"
    shm = [name for name in os.listdir("/dev/shm") for pid in pids if f"-{pid}-" in name]
    assert shm == [], shm
    workdir = re.search(r"work directory (\S+)", output)
    assert workdir is not None
    assert not Path(workdir.group(1)).exists()


def _assert_all_saw_everyone(frame: str, n_nodes: int) -> None:
    members = " ".join(str(i) for i in range(1, n_nodes + 1))
    assert frame.count(f"   members: {members}") == n_nodes, frame
    assert f"membership: all {n_nodes} nodes in one membership" in frame


def test_loopback_cluster_runs_and_leaves_nothing() -> None:
    """Three nodes form one membership, carry a round of load (messages through totem,
    seen at every node), and stop leaving nothing behind."""
    result = subprocess.run(
        [*TOOL, "--no-netns", "-n", "3", "--duration", "10", "--load", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    _assert_all_saw_everyone(_last_frame(output), 3)
    frame = _last_frame(output)
    assert frame.count("link0 up") == 6, frame
    assert frame.count("link1 up") == 6, frame
    # The first load round (5 s after start) went from node 1 to every node.
    frames = output.split("---- ")
    assert any(f.count("messages delivered: from 1: 50") == 3 for f in frames), output
    assert "50 Writes 300 bytes per write" in output
    assert "all 3 nodes formed one membership" in output
    assert "stopped cleanly" in output
    prefix = re.search(r"ipc prefix (pcs\d+)n1-", output)
    assert prefix is not None
    pids = _daemon_pids(output, 3)
    _assert_nothing_left(output, pids)
    unix = Path("/proc/net/unix").read_text()
    assert f"@{prefix.group(1)}n" not in unix


@pytest.mark.netns
def test_netns_cluster_runs_and_leaves_nothing() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    process = subprocess.Popen(
        [*TOOL, "--netns", "-n", "3", "--links", "2", "--duration", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output, errors = process.communicate(timeout=60)
    assert process.returncode == 0, output + errors
    _assert_all_saw_everyone(_last_frame(output), 3)
    assert "  netns  crypto aes256/sha256" in output
    assert [ns for ns in list_netns() if ns.startswith(f"pcs{process.pid}")] == []
    _assert_nothing_left(output, _daemon_pids(output, 3))


def _read_until(stream: IO[str], needle: str, timeout: float) -> str:
    """What ``stream`` gave up to and including the line containing ``needle``."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} did not appear:\n{seen}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            line = stream.readline()
            assert line, f"the tool ended before {needle!r}:\n{seen}"
            seen += line
    return seen


def test_sigint_stops_a_formed_cluster_cleanly() -> None:
    process = subprocess.Popen(
        [*TOOL, "--no-netns", "-n", "3", "--links", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = _read_until(process.stdout, "membership: all 3 nodes in one membership", 30)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = seen + rest
    assert process.returncode == 0, output + errors
    assert "stopped cleanly" in output
    _assert_nothing_left(output, _daemon_pids(output, 3))


def test_sigterm_before_membership_fails_clearly_and_keeps_workdir() -> None:
    """Stopped before the nodes met: exit 1, the logs, and still nothing running."""
    process = subprocess.Popen(
        [*TOOL, "--no-netns", "-n", "2", "--links", "1", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = _read_until(process.stdout, "node 2  pid", 30)  # the first frame
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = seen + rest
    assert process.returncode == 1, output + errors
    assert "FAILED: the 2 nodes never formed one membership" in output
    workdir = re.search(r"kept (\S+)", output)
    assert workdir is not None
    kept = Path(workdir.group(1))
    try:
        assert (kept / "node1" / "corosync.conf").is_file()
        pids = re.findall(r"^node \d+: pid (\d+) ", output, re.M)
        assert len(pids) == 2, output
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists()
    finally:
        subprocess.run(["rm", "-rf", str(kept)], check=True)
