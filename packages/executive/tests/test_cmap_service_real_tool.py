"""The real corosync-cmapctl (Debian's corosync 3.1.7) against our cmap service.

A small server script loads ``data/debian-3-nodes.conf`` into a CmapStore, serves it
with :class:`CmapService` over the SHM transport (corosync's default) or SOCKET in a
fresh network namespace
(abstract socket names are per namespace), and the unmodified tool runs in the same
namespace: listing, get, set, delete, prefix delete, batch, binary, tracking, the
stats map and the read-only refusal must come out as they do against corosync.

Needs root (``ip netns``) and the corosync package (``./dev.sh setup`` installs it).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from corosync_executive import load_config, load_config_into_cmap, validate_config
from corosync_executive._cmap_store import CmapStore

pytestmark = pytest.mark.netns

PACKAGES = Path(__file__).resolve().parents[2]
SRC_PATHS = [str(PACKAGES / name / "src") for name in ("executive", "clients", "knet", "totem")]
CONF = Path(__file__).parent / "data" / "debian-3-nodes.conf"

SERVER_SCRIPT = """
import os
import signal
import sys

import structlog
import trio

from corosync_executive import CmapService, load_config, load_config_into_cmap, validate_config
from corosync_executive._cmap_store import CmapStore, ValueType


async def main():
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    config = validate_config(load_config(sys.argv[1]), hostname="node1")
    store = CmapStore()
    load_config_into_cmap(store, config)
    service = CmapService(store)
    service.stats_store.set("stats.srp.orf_token_rx", ValueType.UINT64, 5, writer=True)
    server = service.make_server(transport=sys.argv[2])
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print("READY", os.getpid(), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    print("STATS", service.session_count, len(store._tracks), flush=True)


trio.run(main)
"""


def _run(
    args: list[str], timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the cmap server did not answer in time"
    line: str = stream.readline()
    return line


def _connection_dirs(server_pid: int) -> list[str]:
    """The per-connection directories our server has in /dev/shm now."""
    return [d for d in os.listdir("/dev/shm") if d.startswith(f"qb-{server_pid}-")]


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _expected_listing(prefix: str = "") -> list[str]:
    """The ``key (type) = value`` lines the config should give, sorted by key."""
    store = CmapStore()
    load_config_into_cmap(store, validate_config(load_config(CONF), hostname="node1"))
    return [
        f"{key} ({typed.type.short_name}) = {typed.value}" for key, typed in store.iterate(prefix)
    ]


@pytest.mark.parametrize("transport", ["shm", "socket"])
def test_real_cmapctl_against_cmap_service(netns: str, tmp_path: Path, transport: str) -> None:
    """corosync-cmapctl lists, gets, sets, deletes, batches, tracks and is refused
    read-only keys by our cmap service exactly as by corosync, over either transport."""
    script = tmp_path / "cmap_server.py"
    script.write_text(SERVER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(SRC_PATHS))
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, str(script), str(CONF), transport],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = _read_line(server.stdout, 30).split()
        assert ready[0] == "READY", ready
        server_pid = int(ready[1])
        tool = ["ip", "netns", "exec", netns, "corosync-cmapctl"]

        listing = _run(tool)
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines() == _expected_listing()
        assert "totem.token (u32) = 3000" in listing.stdout.splitlines()
        assert "runtime.config.totem.token (u32) = 3650" in listing.stdout.splitlines()
        totem = _run([*tool, "totem."])
        assert totem.stdout.splitlines() == _expected_listing("totem.")

        token = _run([*tool, "-g", "totem.token"])
        assert (token.returncode, token.stdout) == (0, "totem.token (u32) = 3000\n")
        quiet = _run([*tool, "-q", "-g", "totem.token"])
        assert quiet.stdout == "3000\n"

        assert _run([*tool, "-s", "test.key", "u32", "5"]).returncode == 0
        assert _run([*tool, "-g", "test.key"]).stdout == "test.key (u32) = 5\n"
        assert _run([*tool, "-d", "test.key"]).returncode == 0
        gone = _run([*tool, "-g", "test.key"])
        assert gone.returncode == 1
        assert "Can't get key test.key. Error CS_ERR_NOT_EXIST" in gone.stderr

        refused = _run([*tool, "-s", "nodelist.node.0.nodeid", "u32", "9"])
        assert refused.returncode == 1
        assert "Failed to set key nodelist.node.0.nodeid. Error CS_ERR_ACCESS" in refused.stderr
        assert _run([*tool, "-g", "nodelist.node.0.nodeid"]).stdout == (
            "nodelist.node.0.nodeid (u32) = 1\n"
        )

        batch = tmp_path / "batch"
        batch.write_text("test.p u32 3\ntest.q str x\ntest.r i8 -1\ntest.s u8 1\n^test.s\n")
        assert _run([*tool, "-p", str(batch)]).returncode == 0
        assert _run([*tool, "test."]).stdout.splitlines() == [
            "test.p (u32) = 3",
            "test.q (str) = x",
            "test.r (i8) = -1",
        ]
        assert _run([*tool, "-D", "test."]).returncode == 0
        assert _run([*tool, "test."]).stdout == ""

        binary = tmp_path / "value.bin"
        binary.write_bytes(b"ab\\\n\x01")
        assert _run([*tool, "-s", "test.bin", "bin", str(binary)]).returncode == 0
        assert _run([*tool, "test.bin"]).stdout == "test.bin (bin)\n"
        assert _run([*tool, "-b", "test.bin"]).stdout == "test.bin (bin) = ab\\\\\\x0A\\x01\n"

        stats = _run([*tool, "-m", "stats"])
        assert stats.stdout == "stats.srp.orf_token_rx (u64) = 5\n"

        # One tracker of the prefix, one of the exact key, one of another key.
        trackers = [
            subprocess.Popen(
                [*tool, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in (["-T", "test."], ["-t", "test.foo"], ["-t", "test.other"])
        ]
        outputs = []
        try:
            time.sleep(1)  # let them add their tracks
            for command in (
                ["-s", "test.foo", "u32", "7"],
                ["-s", "test.foo", "u32", "8"],
                ["-d", "test.foo"],
            ):
                assert _run([*tool, *command]).returncode == 0
            time.sleep(1)
            for tracker in trackers:
                out, err = tracker.communicate("q\n", timeout=30)
                assert tracker.returncode == 0, err
                outputs.append(out.splitlines())
        finally:
            for tracker in trackers:
                if tracker.poll() is None:
                    tracker.kill()
                    tracker.communicate()
        events = [
            "create> test.foo (u32) = 7",
            "modify> test.foo (u32) = 8",
            "delete> test.foo (u32) = 8",
        ]
        assert outputs == [
            ['Type "q" to finish', *events],
            ['Type "q" to finish', *events],
            ['Type "q" to finish'],
        ]

        # A client killed outright: the server sees its setup socket close and removes
        # the connection's files (libqb clients never remove them while we live).
        killed = subprocess.Popen(
            [*tool, "-t", "test.killed"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert _wait_for(lambda: len(_connection_dirs(server_pid)) == 1)
        finally:
            killed.kill()
            killed.wait()
            assert killed.stdin is not None
            killed.stdin.close()
        assert _wait_for(lambda: _connection_dirs(server_pid) == [])

        server.send_signal(signal.SIGTERM)
        # Every tool run has gone: no session and no track is left in the service.
        assert _read_line(server.stdout, 30).split() == ["STATS", "0", "0"]
        assert server.wait(30) == 0
        assert _connection_dirs(server_pid) == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stdout is not None
        server.stdout.close()
