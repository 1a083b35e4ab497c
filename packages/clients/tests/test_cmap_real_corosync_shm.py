"""corosync.cmap (blocking and trio) and pycorosync-cmapctl against a real corosync 3
(Debian package) over the SHM transport, real corosync's default.

A module fixture starts ``corosync -f`` in a network namespace with a single-node
config on 127.0.0.1 and no ``qb_ipc_type`` (so it answers SHM), as
test_cmapctl_real_corosync.py does for the SOCKET transport. Our library must read the
same values as ``corosync-cmapctl`` prints, and our tool must print what the real one
prints.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

CLIENTS_SRC = Path(__file__).resolve().parents[1] / "src"

LINE = re.compile(r"^(\S+) \((i8|u8|i16|u16|i32|u32|i64|u64|flt|dbl|str|bin)\)( = (.*))?$")
VOLATILE = ("runtime.", "stats.", "resources.")
INTS = {"i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"}


@attrs.frozen
class Result:
    rc: int
    out: str
    err: str


@attrs.frozen
class Namespace:
    name: str
    tmp: Path

    def run(self, argv: list[str], stdin: bytes = b"") -> Result:
        env = dict(os.environ, PYTHONPATH=str(CLIENTS_SRC))
        env.pop("PYCOROSYNC_IPC_PREFIX", None)
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            timeout=60,
            env=env,
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    def real(self, *args: str) -> Result:
        return self.run(["corosync-cmapctl", *args])

    def ours(self, *args: str) -> Result:
        return self.run([sys.executable, "-m", "corosync.tools.cmapctl", *args])

    def python(self, script: str) -> Result:
        return self.run([sys.executable, "-c", textwrap.dedent(script)])


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "corosync", "corosync-cmapctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt package iproute2/corosync)"
    return None


@pytest.fixture(scope="module")
def ns(
    tmp_path_factory: pytest.TempPathFactory, make_corosync_conf: Callable[..., str]
) -> Iterator[Namespace]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("corosync-shm")
    conf = tmp / "corosync.conf"
    conf.write_text(make_corosync_conf(tmp, "pyshm", {1: ("127.0.0.1",)}, ipc=None))
    name = f"pyshm-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        # corosync refuses to start while another one holds /run/corosync.pid: a private
        # /run in the mount namespace of `ip netns exec` lets it run beside any other.
        start = f"mount -t tmpfs pyshm /run && exec corosync -f -c {conf}"
        with (tmp / "corosync.stderr").open("wb") as log_file:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", name, "sh", "-c", start],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        space = Namespace(name, tmp)
        deadline = time.monotonic() + 30
        while space.real("-g", "runtime.votequorum.this_node_id").rc != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "corosync.stderr").read_text(errors="replace")
                pytest.fail(f"corosync did not start (rc {proc.poll()}): {log}")
            time.sleep(0.2)
        yield space
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _parse(listing: str) -> dict[str, tuple[str, str | None]]:
    result: dict[str, tuple[str, str | None]] = {}
    for line in listing.splitlines():
        match = LINE.match(line)
        assert match is not None, f"bad line {line!r}"
        result[match.group(1)] = (match.group(2), match.group(4))
    return result


def test_real_corosync_answers_shm(ns: Namespace) -> None:
    """The default corosync answers SHM, and our client follows it."""
    result = ns.python(
        """
        from corosync.cmap import initialize
        from corosync.ipc import IpcType
        with initialize() as h:
            assert h.transport is IpcType.SHM, h.transport
            print(h.get("totem.cluster_name"))
        """
    )
    assert result == Result(0, "pyshm\n", "")


def test_library_reads_the_values_cmapctl_prints(ns: Namespace) -> None:
    """Every key the real tool lists, our library (over SHM) iterates with the same
    type and, for keys that do not change by themselves, reads the same value."""
    real = _parse(ns.real().out)
    result = ns.python(
        """
        import json
        from corosync.cmap import initialize
        out = {}
        with initialize() as h:
            for entry in h.iterate():
                value = h.get_typed(entry.key)
                shown = value.value.hex() if isinstance(value.value, bytes) else value.value
                out[entry.key] = [value.value_type.name, shown]
        print(json.dumps(out))
        """
    )
    assert (result.rc, result.err) == (0, "")
    ours: dict[str, list[object]] = json.loads(result.out)
    assert list(ours) == list(real)
    type_names = {
        "INT8": "i8",
        "UINT8": "u8",
        "INT16": "i16",
        "UINT16": "u16",
        "INT32": "i32",
        "UINT32": "u32",
        "INT64": "i64",
        "UINT64": "u64",
        "FLOAT": "flt",
        "DOUBLE": "dbl",
        "STRING": "str",
        "BINARY": "bin",
    }
    compared = 0
    for key, (type_name, text) in real.items():
        our_type, our_value = ours[key]
        assert type_names[str(our_type)] == type_name, key
        if key.startswith(VOLATILE) or text is None:
            continue
        if type_name in INTS:
            assert our_value == int(text), key
        elif type_name == "str":
            assert our_value == text, key
        elif type_name in {"flt", "dbl"}:
            assert isinstance(our_value, float)
            assert math.isclose(our_value, float(text), rel_tol=1e-6), key
        compared += 1
    assert compared > 20
    assert ours["totem.cluster_name"] == ["STRING", "pyshm"]


def test_cmapctl_over_shm_matches_the_real_tool(ns: Namespace) -> None:
    """pycorosync-cmapctl over SHM: listings, -g and a set/get/delete round trip print
    what corosync-cmapctl prints."""
    for args in (("totem.",), ("nodelist.",), ("-g", "totem.cluster_name"), ("-g", "nope.x")):
        assert ns.ours(*args) == ns.real(*args)
    assert ns.ours("-s", "pytest.shm.v", "u64", "18446744073709551615") == Result(0, "", "")
    assert ns.ours("-g", "pytest.shm.v") == ns.real("-g", "pytest.shm.v")
    assert ns.real("-g", "pytest.shm.v").out == "pytest.shm.v (u64) = 18446744073709551615\n"
    assert ns.ours("-d", "pytest.shm.v") == Result(0, "", "")
    assert ns.real("-g", "pytest.shm.v").rc == 1


def test_tracking_over_shm(ns: Namespace) -> None:
    """pycorosync-cmapctl -t prints the changes the real tool makes (events come
    through the event ring and the setup socket)."""
    env = dict(os.environ, PYTHONPATH=str(CLIENTS_SRC))
    env.pop("PYCOROSYNC_IPC_PREFIX", None)
    key = "pytest.shmtrack.k"
    argv = [sys.executable, "-m", "corosync.tools.cmapctl", "-t", key]
    with subprocess.Popen(
        ["ip", "netns", "exec", ns.name, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline() == b'Type "q" to finish\n'
            assert ns.real("-s", key, "str", "one").rc == 0
            assert ns.real("-d", key).rc == 0
            assert proc.stdout.readline() == f"create> {key} (str) = one\n".encode()
            assert proc.stdout.readline() == f"delete> {key} (str) = one\n".encode()
            proc.stdin.write(b"q\n")
            proc.stdin.flush()
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_trio_api_over_shm(ns: Namespace) -> None:
    """open_cmap against real corosync: calls, a track, and its notification."""
    result = ns.python(
        """
        import trio
        from corosync import CmapTrackType, CmapValueType
        from corosync.cmap import open_cmap

        async def main():
            async with open_cmap() as cmap:
                assert await cmap.get("totem.cluster_name") == "pyshm"
                track = await cmap.track_add("pytest.trio.", CmapTrackType.ADD
                                             | CmapTrackType.PREFIX)
                await cmap.set("pytest.trio.k", 7, CmapValueType.UINT32)
                async for note in cmap.notifications():
                    print(note.event.name, note.key, note.new_value.value)
                    break
                await cmap.track_delete(track)
                await cmap.delete("pytest.trio.k")
                print(len(await cmap.iterate("totem.")) > 3)

        trio.run(main)
        """
    )
    assert result == Result(0, "ADD pytest.trio.k 7\nTrue\n", "")
