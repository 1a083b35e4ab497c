"""pycorosync-cmapctl and corosync.cmap against a real corosync 3 (Debian package).

A module fixture creates a network namespace, starts ``corosync -f`` there with a
single-node knet config on 127.0.0.1 and the SOCKET IPC transport (SHM, corosync's
default, is covered by test_cmap_real_corosync_shm.py), and every test compares
``corosync-cmapctl ARGS`` with ``python -m corosync.tools.cmapctl ARGS`` run in that
namespace: same stdout, same stderr (apart from the program name), same exit code,
same effect on cmap.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator

import pytest

from real_corosync import Namespace, Result, running_corosync

LINE = re.compile(r"^(\S+) \((i8|u8|i16|u16|i32|u32|i64|u64|flt|dbl|str|bin)\)( = .*)?$")
# Keys whose values may change between two runs of the tools.
VOLATILE = ("runtime.", "stats.", "resources.")


@pytest.fixture(scope="module")
def ns(
    tmp_path_factory: pytest.TempPathFactory, make_corosync_conf: Callable[..., str]
) -> Iterator[Namespace]:
    tmp = tmp_path_factory.mktemp("corosync")
    config = make_corosync_conf(tmp, "pycmapctl", {1: ("127.0.0.1",)}, ipc="socket")
    with running_corosync(tmp, config, "pycmap") as space:
        yield space


def _same(a: Result, b: Result) -> None:
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)


def _parse(listing: str) -> dict[str, tuple[str, str | None]]:
    result: dict[str, tuple[str, str | None]] = {}
    for line in listing.splitlines():
        match = LINE.match(line)
        assert match is not None, f"bad line {line!r}"
        result[match.group(1)] = (match.group(2), match.group(3))
    return result


def test_list_all_matches(ns: Namespace) -> None:
    """Listing every key gives the same keys, types and config values as corosync-cmapctl."""
    real, ours = ns.real(), ns.ours()
    assert (ours.rc, ours.err) == (real.rc, real.err) == (0, "")
    real_keys, our_keys = _parse(real.out), _parse(ours.out)
    assert list(our_keys) == list(real_keys)
    for key, (value_type, value) in real_keys.items():
        assert our_keys[key][0] == value_type
        if not key.startswith(VOLATILE):
            assert our_keys[key][1] == value, key
    assert "totem.cluster_name (str) = pycmapctl" in ours.out.splitlines()


def test_list_by_prefix(ns: Namespace) -> None:
    """Prefix listings, several prefixes and an unmatched prefix agree with the real tool."""
    for args in (("totem.",), ("nodelist.", "quorum."), ("nonexistent.",), ("x.", "totem.c")):
        _same(ns.real(*args), ns.ours(*args))
    assert ns.ours("nonexistent.").rc == 1


def test_get_every_present_type(ns: Namespace) -> None:
    """-g and -q -g print each type present in the map exactly like the real tool."""
    seen: dict[str, str] = {}
    for key, (value_type, _) in _parse(ns.real().out).items():
        if not key.startswith(VOLATILE) or key.startswith("runtime.config."):
            seen.setdefault(value_type, key)
    seen.setdefault("dbl", "resources.system.load_15min.current")
    seen.setdefault("i32", "resources.system.memory_used.current")
    assert {"str", "u32", "dbl", "i32"} <= set(seen)
    for key in seen.values():
        _same(ns.real("-g", key), ns.ours("-g", key))
        _same(ns.real("-q", "-g", key), ns.ours("-q", "-g", key))
    _same(
        ns.real("-g", "totem.cluster_name", "nodelist.node.0.nodeid"),
        ns.ours("-g", "totem.cluster_name", "nodelist.node.0.nodeid"),
    )


ROUND_TRIPS = [
    ("i8", "-5"),
    ("i8", "127"),
    ("u8", "255"),
    ("i16", "-300"),
    ("u16", "65535"),
    ("i32", "-70000"),
    ("u32", "4000000000"),
    ("i64", "-1099511627776"),
    ("u64", "18446744073709551615"),
    ("u64", "18446744073709551616"),
    ("i32", "12abc"),
    ("flt", "1.5"),
    ("flt", "1e40"),
    ("flt", "0x1p3"),
    ("dbl", "2.25"),
    ("dbl", "-0.0"),
    ("dbl", "1e300"),
    ("dbl", "nan"),
    ("str", "hello world"),
    ("str", ""),
]


@pytest.mark.parametrize(("type_name", "value"), ROUND_TRIPS)
def test_set_get_delete_round_trip(ns: Namespace, type_name: str, value: str) -> None:
    """A value set by either tool reads back identically through both, and -d removes it."""
    key = f"pytest.rt.{type_name}"
    for setter, other in ((ns.ours, ns.real), (ns.real, ns.ours)):
        assert setter("-s", key, type_name, "--", value) == Result(0, "", "")
        _same(ns.real("-g", key), ns.ours("-g", key))
        _same(ns.real("-q", "-g", key), ns.ours("-q", "-g", key))
        assert ns.real("-g", key).out.startswith(f"{key} ({type_name}) = ")
        assert other("-d", key) == Result(0, "", "")
        _same(ns.real("-g", key), ns.ours("-g", key))
        assert ns.ours("-g", key).err == f"Can't get key {key}. Error CS_ERR_NOT_EXIST\n"


def test_binary_values(ns: Namespace) -> None:
    """bin values from a file and from stdin print hidden, escaped with -b, and as bin) with -q."""
    data = b"ab\n\\c\xff\x00z"
    path = ns.tmp / "value.bin"
    path.write_bytes(data)
    assert ns.ours("-s", "pytest.bin.file", "bin", str(path)).rc == 0
    assert ns.ours("-s", "pytest.bin.stdin", "bin", "-", stdin=data).rc == 0
    for args in (
        ("pytest.bin.",),
        ("-b", "pytest.bin."),
        ("-g", "pytest.bin.file"),
        ("-b", "-g", "pytest.bin.stdin"),
        ("-q", "-g", "pytest.bin.file"),
        ("-q", "-b", "-g", "pytest.bin.file"),
    ):
        _same(ns.real(*args), ns.ours(*args))
    assert ns.ours("-b", "-g", "pytest.bin.file").out == (
        "pytest.bin.file (bin) = ab\\x0A\\\\c\\xFFFFFFFF\\x00z\n"
    )
    assert ns.ours("-D", "pytest.bin.").rc == 0


def test_delete_by_prefix(ns: Namespace) -> None:
    """-D removes every key under a prefix; failures on read-only keys are reported, exit 0."""
    for index in range(3):
        assert ns.real("-s", f"pytest.del.k{index}", "u32", str(index)).rc == 0
    assert ns.ours("-D", "pytest.del.") == Result(0, "", "")
    _same(ns.real("pytest.del."), ns.ours("pytest.del."))
    assert ns.real("pytest.del.").rc == 1
    _same(ns.real("-D", "system."), ns.ours("-D", "system."))
    assert (
        "Can't delete key system.qb_ipc_type. Error CS_ERR_ACCESS" in ns.ours("-D", "system.").err
    )
    _same(ns.real("-D", "nonexistent."), ns.ours("-D", "nonexistent."))


@pytest.mark.parametrize(
    "args",
    [
        ("-g", "totem.x"),
        ("-g", "nonexist", "totem.cluster_name"),
        ("-d", "pytest.none"),
        ("-s", "pytest.e", "foo", "1"),
        ("-s", "totem.cluster_name", "str", "x"),
        ("-s", "pytest.e", "u8", "300"),
        ("-s", "pytest.e", "u8", "abc"),
        ("-s", "pytest.e", "u32", "--", "-1"),
        ("-s", "pytest.e", "i8", "--", "-129"),
        ("-s", "pytest.e", "flt", "abc"),
        ("-s", "pytest.e", "i32", ""),
        ("-s", "ab", "u8", "1"),
        ("-s", "pytest.e", "str"),
        ("-g",),
        ("-t",),
        ("-x",),
        ("-m",),
        ("-m", "foo"),
        ("-C", "foo"),
        ("-m", "stats", "-s", "stats.foo", "u8", "1"),
        ("-p", "/nonexistent/file"),
    ],
)
def test_errors_match(ns: Namespace, args: tuple[str, ...]) -> None:
    """Error texts (stderr) and exit codes are the real tool's."""
    _same(ns.real(*args), ns.ours(*args))


def test_error_texts(ns: Namespace) -> None:
    """The documented error lines come out literally."""
    assert ns.ours("-g", "totem.x") == Result(
        1, "", "Can't get key totem.x. Error CS_ERR_NOT_EXIST\n"
    )
    assert ns.ours("-s", "totem.cluster_name", "str", "x").err == (
        "Failed to set key totem.cluster_name. Error CS_ERR_ACCESS\n"
    )
    assert ns.ours("-s", "k.x", "foo", "1") == Result(1, "", "Unknown type foo\n")


def test_stats_map_listing(ns: Namespace) -> None:
    """-m stats lists the same keys (per-connection ipcs keys normalised) in the same format."""
    conn = re.compile(r"^stats\.ipcs\.service\d+\.\d+\.0x[0-9a-f]+\.")
    real, ours = ns.real("-m", "stats"), ns.ours("-m", "stats")
    assert (ours.rc, ours.err) == (real.rc, real.err) == (0, "")

    def shape(out: str) -> list[tuple[str, str]]:
        return sorted({(conn.sub("stats.ipcs.CONN.", k), t) for k, (t, _) in _parse(out).items()})

    assert shape(ours.out) == shape(real.out)
    assert any(line.startswith("stats.srp.orf_token_rx (u64) = ") for line in ours.out.splitlines())
    _same(
        ns.real("-m", "stats", "-g", "stats.srp.memb_join_tx"),
        ns.ours("-m", "stats", "-g", "stats.srp.memb_join_tx"),
    )
    assert ns.ours("-C", "all") == Result(0, "", "")


def test_load_file(ns: Namespace) -> None:
    """-p sets, deletes and deletes by prefix, skipping blank and comment lines."""
    path = ns.tmp / "load.txt"
    path.write_text(
        "# comment\n\npytest.p.a u8 4\n  pytest.p.b str one two\npytest.p.c u32 9\n"
        "^pytest.p.c\n^^pytest.q.\n"
    )
    assert ns.real("-s", "pytest.q.x", "u8", "1").rc == 0
    assert ns.ours("-p", str(path)) == Result(0, "", "")
    listing = ns.real("pytest.")
    assert listing.out == "pytest.p.a (u8) = 4\npytest.p.b (str) = one\n"
    bad = ns.tmp / "bad.txt"
    bad.write_text("pytest.p.z u32\npytest.p.y u8 1\n")
    _same(ns.real("-p", str(bad)), ns.ours("-p", str(bad)))
    assert ns.ours("-D", "pytest.p.").rc == 0


def _read_lines(proc: subprocess.Popen[bytes], count: int) -> list[str]:
    assert proc.stdout is not None
    return [proc.stdout.readline().decode() for _ in range(count)]


@pytest.mark.parametrize("by_prefix", [True, False])
def test_tracking(ns: Namespace, by_prefix: bool) -> None:
    """-T / -t print create>/modify>/delete> lines for changes and stop at "q"."""
    key = "pytest.track.k"
    args = ("-T", "pytest.track.") if by_prefix else ("-t", key)
    with ns.popen_ours(*args) as proc:
        try:
            assert _read_lines(proc, 1) == ['Type "q" to finish\n']
            assert ns.real("-s", key, "u32", "7").rc == 0
            assert ns.real("-s", key, "u32", "8").rc == 0
            assert ns.real("-s", "pytest.track.other", "str", "abc").rc == 0
            assert ns.real("-d", key).rc == 0
            expected = [f"create> {key} (u32) = 7\n", f"modify> {key} (u32) = 8\n"]
            if by_prefix:
                expected.append("create> pytest.track.other (str) = abc\n")
            expected.append(f"delete> {key} (u32) = 8\n")
            assert _read_lines(proc, len(expected)) == expected
            assert proc.stdin is not None
            proc.stdin.write(b"q\n")
            proc.stdin.flush()
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            ns.real("-d", "pytest.track.other")


def test_library_api(ns: Namespace) -> None:
    """corosync.cmap: typed get/set, inc/dec, iterate, tracking with dispatch, stats map."""
    script = textwrap.dedent(
        """
        import select
        from corosync import CsError, CsErrorCode
        from corosync.cmap import (
            CmapDispatchFlags, CmapMap, CmapTrackType, CmapTypedValue, CmapValueType, initialize,
        )

        with initialize() as h:
            assert h.get("totem.cluster_name") == "pycmapctl"
            h.set("pytest.api.n", 41, CmapValueType.UINT16)
            h.inc("pytest.api.n")
            assert h.get_typed("pytest.api.n") == CmapTypedValue(CmapValueType.UINT16, 42)
            h.dec("pytest.api.n")
            h.dec("pytest.api.n")
            assert h.get("pytest.api.n") == 40
            h.set("pytest.api.s", "x" * 1000, CmapValueType.STRING)
            h.set("pytest.api.b", b"\\x00\\x01", CmapValueType.BINARY)
            h.set("pytest.api.d", 0.5, CmapValueType.DOUBLE)
            entries = list(h.iterate("pytest.api."))
            assert [(e.key, e.value_type, e.value_len) for e in entries] == [
                ("pytest.api.b", CmapValueType.BINARY, 2),
                ("pytest.api.d", CmapValueType.DOUBLE, 8),
                ("pytest.api.n", CmapValueType.UINT16, 2),
                ("pytest.api.s", CmapValueType.STRING, 1001),
            ], entries
            assert h.get("pytest.api.s") == "x" * 1000
            for bad in (lambda: h.get("pytest.api.none"), lambda: h.delete("pytest.api.none")):
                try:
                    bad()
                except CsError as exc:
                    assert exc.code is CsErrorCode.NOT_EXIST
                else:
                    raise AssertionError("no error")
            try:
                h.set("totem.cluster_name", "x", CmapValueType.STRING)
            except CsError as exc:
                assert exc.code is CsErrorCode.ACCESS
            try:
                h.set("pytest.api.z", 300, CmapValueType.UINT8)
            except CsError as exc:
                assert exc.code is CsErrorCode.INVALID_PARAM

            seen = []
            track = h.track_add("pytest.api.", CmapTrackType.ADD | CmapTrackType.MODIFY
                                | CmapTrackType.DELETE | CmapTrackType.PREFIX, seen.append)
            assert h.dispatch(CmapDispatchFlags.ALL) == 0
            h.set("pytest.api.n", 7, CmapValueType.UINT16)
            h.delete("pytest.api.b")
            assert select.select([h.fileno()], [], [], 5)[0]
            h.dispatch(CmapDispatchFlags.ONE)
            h.dispatch(CmapDispatchFlags.ONE)
            assert [(n.event, n.key) for n in seen] == [
                (CmapTrackType.MODIFY, "pytest.api.n"), (CmapTrackType.DELETE, "pytest.api.b")
            ], seen
            assert seen[0].new_value == CmapTypedValue(CmapValueType.UINT16, 7)
            assert seen[0].old_value == CmapTypedValue(CmapValueType.UINT16, 40)
            assert seen[1].new_value is None and seen[0].track_handle == track
            h.track_delete(track)
            h.set("pytest.api.n", 8, CmapValueType.UINT16)
            assert h.dispatch(CmapDispatchFlags.ALL) == 0 and len(seen) == 2
            for key in [e.key for e in h.iterate("pytest.api.")]:
                h.delete(key)
        try:
            h.get("totem.cluster_name")
        except CsError as exc:
            assert exc.code is CsErrorCode.BAD_HANDLE
        with initialize(CmapMap.STATS) as stats:
            assert stats.get_typed("stats.srp.orf_token_rx").value_type is CmapValueType.UINT64
        try:
            initialize(prefix="nothing-here-")
        except CsError as exc:
            assert exc.code is CsErrorCode.LIBRARY
        print("ok")
        """
    )
    result = ns.python(script)
    assert (result.rc, result.out, result.err) == (0, "ok\n", "")


def test_usage_text(ns: Namespace) -> None:
    """-h prints corosync's usage text (our program name) plus our --ipc-prefix section."""
    real, ours = ns.real("-h"), ns.ours("-h")
    assert real.rc == ours.rc == 0
    ours_text = ours.out.replace("pycorosync-cmapctl", "corosync-cmapctl")
    head, _, extension = ours_text.partition("Our extension (not in corosync-cmapctl):\n")
    assert head.rstrip("\n") == real.out.rstrip("\n")
    assert "--ipc-prefix=PREFIX" in extension


def test_ipc_prefix(ns: Namespace) -> None:
    """--ipc-prefix and PYCOROSYNC_IPC_PREFIX name another socket; nothing listens there."""
    failed = Result(1, "", "Failed to initialize the cmap API. Error CS_ERR_LIBRARY\n")
    assert ns.ours("--ipc-prefix=nothing-here-", "-g", "totem.cluster_name") == failed
    env_run = ns.python(
        "import os, sys\n"
        "os.environ['PYCOROSYNC_IPC_PREFIX'] = 'nothing-here-'\n"
        "from corosync.tools.cmapctl import main\n"
        "sys.exit(main(['-g', 'totem.cluster_name']))\n"
    )
    assert (env_run.rc, env_run.err) == (1, failed.err)
    assert ns.ours("--ipc-prefix=", "-q", "-g", "totem.cluster_name") == Result(
        0, "pycmapctl\n", ""
    )
