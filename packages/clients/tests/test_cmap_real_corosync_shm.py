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
import re
from collections.abc import Callable, Iterator

import pytest

from real_corosync import Namespace, Result, running_corosync

LINE = re.compile(r"^(\S+) \((i8|u8|i16|u16|i32|u32|i64|u64|flt|dbl|str|bin)\)( = (.*))?$")
VOLATILE = ("runtime.", "stats.", "resources.")
INTS = {"i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"}


@pytest.fixture(scope="module")
def ns(
    tmp_path_factory: pytest.TempPathFactory, make_corosync_conf: Callable[..., str]
) -> Iterator[Namespace]:
    tmp = tmp_path_factory.mktemp("corosync-shm")
    config = make_corosync_conf(tmp, "pyshm", {1: ("127.0.0.1",)}, ipc=None)
    with running_corosync(tmp, config, "pyshm") as space:
        yield space


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
    key = "pytest.shmtrack.k"
    with ns.popen_ours("-t", key) as proc:
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
