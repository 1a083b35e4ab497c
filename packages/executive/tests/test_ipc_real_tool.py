"""The real corosync-cmapctl (Debian's corosync 3.1.7, libcmap + libqb) against our server.

Our IPC server runs in a fresh network namespace (abstract unix socket names are per
namespace, so it cannot meet a real corosync on this host) with a minimal cmap handler,
and answers the handshake with the SHM transport (corosync's default) or SOCKET. The
unmodified tool, started in the same namespace, must print what it prints against
corosync.

Needs root (``ip netns``) and the corosync package (``./dev.sh setup`` installs it as
root); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

pytestmark = pytest.mark.netns

PACKAGES = Path(__file__).resolve().parents[2]
SRC_PATHS = [str(PACKAGES / name / "src") for name in ("executive", "clients", "knet", "totem")]

SERVER_SCRIPT = """
import os
import signal
import sys

import structlog
import trio

from corosync import CsErrorCode
from corosync.ipc import (
    CmapGetRequest,
    CmapGetResponse,
    CmapSetCurrentMapRequest,
    CmapSetCurrentMapResponse,
    CmapNotifyEvent,
    CmapTrackAddRequest,
    CmapTrackAddResponse,
    CmapTrackDeleteRequest,
    CmapTrackDeleteResponse,
    CmapTrackType,
    CmapValueType,
    decode_cmap_request_untrusted,
    encode_cmap_value,
    encode_error_response,
)
from corosync_executive._ipc_server import AccessPolicy, IpcServer

VALUES = {
    "totem.token": (CmapValueType.UINT32, 3000),
    "totem.cluster_name": (CmapValueType.STRING, "pytest"),
}

TRACKS = {}


async def handle(conn, request_id, message):
    request = decode_cmap_request_untrusted(message)
    if isinstance(request, CmapSetCurrentMapRequest):
        return CmapSetCurrentMapResponse().encode()
    if isinstance(request, CmapTrackAddRequest):
        # Tell the tracker at once that totem.token went from 3000 to 3001.
        TRACKS[conn.id] = request.track_inst_handle
        conn.send_event(CmapNotifyEvent(
            track_inst_handle=request.track_inst_handle,
            key="totem.token",
            event=CmapTrackType.MODIFY,
            new_value_type=CmapValueType.UINT32,
            new_value=encode_cmap_value(CmapValueType.UINT32, 3001),
            old_value_type=CmapValueType.UINT32,
            old_value=encode_cmap_value(CmapValueType.UINT32, 3000),
        ).encode())
        return CmapTrackAddResponse(track_handle=77).encode()
    if isinstance(request, CmapTrackDeleteRequest):
        return CmapTrackDeleteResponse(track_inst_handle=TRACKS.pop(conn.id, 0)).encode()
    if not isinstance(request, CmapGetRequest):
        return encode_error_response(CsErrorCode.NOT_SUPPORTED)
    if request.key not in VALUES:
        return CmapGetResponse(error=CsErrorCode.NOT_EXIST).encode(buffer_len=request.value_len)
    value_type, value = VALUES[request.key]
    raw = encode_cmap_value(value_type, value)
    if request.value_len == 0:
        response = CmapGetResponse(value_type=value_type, value_len=len(raw))
        return response.encode(buffer_len=0)
    if request.value_len < len(raw):
        return encode_error_response(CsErrorCode.INVALID_PARAM)
    response = CmapGetResponse(value_type=value_type, value_len=len(raw), value=raw)
    return response.encode(buffer_len=request.value_len)


async def main():
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    # corosync's rule: root, plus what uidgid grants (here the group 4242).
    server = IpcServer(
        "cmap",
        handle,
        authorize=AccessPolicy(allowed_gids=frozenset({4242})),
        transport=sys.argv[1],
    )
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print("READY", os.getpid(), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    stats = server.stats
    print("STATS", stats.accepted, stats.refused, stats.requests, flush=True)


trio.run(main)
"""


EXPECTED_FILES = {
    "shm": sorted(
        f"qb-{ring}-cmap-{part}"
        for ring in ("request", "response", "event")
        for part in ("header", "data")
    ),
    "socket": ["qb-control-cmap"],
}


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the IPC server did not start in time"
    line: str = stream.readline()
    return line


@pytest.mark.parametrize("transport", ["shm", "socket"])
def test_real_cmapctl_reads_our_cmap(netns: str, tmp_path: Path, transport: str) -> None:
    """corosync-cmapctl -g prints our values over either transport, a missing key
    gives its CS_ERR_NOT_EXIST message and exit code 1, -t prints our event, and a
    plain user is refused with CS_ERR_ACCESS unless its group is granted."""
    script = tmp_path / "ipc_cmap_server.py"
    script.write_text(SERVER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(SRC_PATHS))
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, str(script), transport],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _read_line(server.stdout, 30).split()
        assert ready[0] == "READY", ready
        server_pid = int(ready[1])
        tool = ["ip", "netns", "exec", netns, "corosync-cmapctl"]

        token = _run([*tool, "-g", "totem.token"])
        assert (token.returncode, token.stdout) == (0, "totem.token (u32) = 3000\n"), token.stderr
        quiet = _run([*tool, "-q", "-g", "totem.token"])
        assert (quiet.returncode, quiet.stdout) == (0, "3000\n"), quiet.stderr
        name = _run([*tool, "-g", "totem.cluster_name"])
        assert name.stdout == "totem.cluster_name (str) = pytest\n", name.stderr
        missing = _run([*tool, "-g", "nonexist.key"])
        assert missing.returncode == 1
        assert "Can't get key nonexist.key. Error CS_ERR_NOT_EXIST" in missing.stdout + (
            missing.stderr
        )

        tracker = subprocess.Popen(
            [*tool, "-t", "totem.token"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1)  # the event is sent as the track is added; let it be dispatched
            # The connection's files, named as libqb names them, owned by the client.
            (directory,) = [d for d in os.listdir("/dev/shm") if d.startswith(f"qb-{server_pid}-")]
            assert sorted(os.listdir(f"/dev/shm/{directory}")) == EXPECTED_FILES[transport]
            out, err = tracker.communicate("q\n", timeout=30)
        finally:
            if tracker.poll() is None:
                tracker.kill()
                tracker.communicate()
        assert tracker.returncode == 0, err
        assert out.splitlines() == ['Type "q" to finish', "modify> totem.token (u32) = 3001"]

        # Real kernel credentials of a plain user: refused, unless its group is granted.
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        refused = _run([*tool[:4], *as_nobody, *tool[4:], "-g", "totem.token"])
        assert refused.returncode == 1
        assert "Failed to initialize the cmap API. Error CS_ERR_ACCESS" in refused.stderr
        as_granted = ["setpriv", "--reuid=65534", "--regid=4242", "--clear-groups"]
        granted = _run([*tool[:4], *as_granted, *tool[4:], "-g", "totem.token"])
        assert granted.stdout == "totem.token (u32) = 3000\n", granted.stderr

        server.send_signal(signal.SIGTERM)
        stats = _read_line(server.stdout, 30).split()
        # Each -g run sets the map, then asks for the length and the value; a string costs
        # two length queries; a missing key ends after its length query. The tracker sets
        # the map and adds its track (it exits without deleting it).
        assert stats == ["STATS", "6", "1", str(3 + 3 + 4 + 2 + 2 + 3)]
        assert server.wait(30) == 0
        leftovers = [d for d in os.listdir("/dev/shm") if d.startswith(f"qb-{server_pid}-")]
        assert leftovers == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stdout is not None
        server.stdout.close()
