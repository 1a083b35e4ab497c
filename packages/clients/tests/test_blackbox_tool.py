"""Tests of ``pycorosync-blackbox``: printing dump files, its errors, and a live run
against an in-process cmap service whose fake daemon dumps a real blackbox when the
trigger keys are set (as the executive does)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from corosync.cmap import CmapValueType
from corosync.tools.blackbox import (
    DUMP_MAGIC,
    TRIGGER_KEYS,
    BlackboxDump,
    BlackboxFormatError,
    format_replay,
    main,
    parse_dump,
)
from corosync_executive import (
    BLACKBOX_FILE_NAME,
    Blackbox,
    CmapService,
    LoggingSettings,
    LogTarget,
    configure_logging,
    reset_logging,
)
from corosync_executive._cmap_store import CmapStore, Notification, TrackType
from corosync_executive._ipc_server import AccessPolicy

ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))

MEMBERSHIP = "A new membership (1.9) was formed. Members joined: 2 3"
DUMP = f"""{DUMP_MAGIC}
# records=3 dropped=7 capacity=10 pid=1 dumped=1.0
Nov 26 23:00:05.249 notice  [TOTEM ] A new membership (1.9) was formed. Members joined: 2 3
Nov 26 23:00:05.250 error   [MAIN  ] crashed
\tTraceback (most recent call last):
\tRuntimeError: bug
Nov 26 23:00:05.251 debug   [KNET  ] pong host=2
"""


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------- offline


def test_print_an_existing_dump(tmp_path: Path) -> None:
    path = tmp_path / "fdata"
    path.write_text(DUMP)
    code, out, err = run(str(path))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"Dumping the contents of {path}",
        "Starting replay: records [3] dropped [7]",
        "rec=[8] Log Message=Nov 26 23:00:05.249 notice  [TOTEM ] " + MEMBERSHIP,
        "rec=[9] Log Message=Nov 26 23:00:05.250 error   [MAIN  ] crashed",
        "\tTraceback (most recent call last):",
        "\tRuntimeError: bug",
        "rec=[10] Log Message=Nov 26 23:00:05.251 debug   [KNET  ] pong host=2",
        "Finishing replay: records found [3]",
    ]


def test_empty_dump(tmp_path: Path) -> None:
    path = tmp_path / "fdata"
    path.write_text(f"{DUMP_MAGIC}\n# records=0 dropped=0\n")
    code, out, _ = run(str(path))
    assert code == 0
    assert out.splitlines()[1:] == [
        "Starting replay: records [0] dropped [0]",
        "Finishing replay: records found [0]",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"root:x:0:0::/root:/bin/sh\n", "not a pycorosync blackbox dump"),
        (b"", "not a pycorosync blackbox dump"),
        (f"{DUMP_MAGIC}\n".encode(), "the header line is missing"),
        (f"{DUMP_MAGIC}\n# records\n".encode(), "bad header field"),
        (f"{DUMP_MAGIC}\n# dropped=-1\n".encode(), "bad dropped count"),
        (f"{DUMP_MAGIC}\n# dropped=0\n\tcontinued\n".encode(), "continuation without a record"),
        (f"{DUMP_MAGIC}\n# dropped=0\n line\n".encode(), "line 3: not a record"),
        (f"{DUMP_MAGIC}\n# records=2 dropped=0\nline\n".encode(), "announces 2 records"),
    ],
)
def test_damaged_dumps(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "fdata"
    path.write_bytes(content)
    code, out, err = run(str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"pycorosync-blackbox: {path}: ")
    assert message in err


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope"))
    assert code == 1
    missing = tmp_path / "nope"
    assert err == f"pycorosync-blackbox: cannot read {missing}: No such file or directory\n"


def test_bad_arguments() -> None:
    code, _, err = run("--bogus")
    assert code == 1
    assert err.startswith("pycorosync-blackbox: unrecognized arguments: --bogus\nusage: ")
    code, _, err = run("--timeout", "0", "x")
    assert (code, err) == (1, "pycorosync-blackbox: --timeout must be positive, got 0\n")
    code, out, _ = run("-h")
    assert code == 0
    assert "--state-dir" in out


def test_daemon_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCOROSYNC_IPC_PREFIX", f"absent{uuid.uuid4().hex[:8]}-")
    code, out, err = run("--state-dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.startswith("pycorosync-blackbox: cannot reach the pycorosync daemon: CS_ERR_LIBRARY")
    assert not (tmp_path / "fdata").exists()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_dump_never_crashes(data: bytes) -> None:
    try:
        dump = parse_dump(data)
    except BlackboxFormatError:
        return
    assert isinstance(dump, BlackboxDump)


_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    min_size=1,
    max_size=30,
).filter(lambda s: not s[0].isspace() and "\x85" not in s)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_line, st.lists(_line, max_size=3)), max_size=8),
    st.integers(min_value=0, max_value=10**6),
)
def test_parse_dump_round_trip(records: list[tuple[str, list[str]]], dropped: int) -> None:
    text = [DUMP_MAGIC, f"# records={len(records)} dropped={dropped}"]
    for first, rest in records:
        text.append(first)
        text.extend("\t" + line for line in rest)
    dump = parse_dump(("\n".join(text) + "\n").encode())
    assert dump.records == tuple((first, *rest) for first, rest in records)
    assert dump.dropped == dropped
    replay = format_replay(dump, "f").splitlines()
    assert replay[-1] == f"Finishing replay: records found [{len(records)}]"


# --------------------------------------------------------------------- live


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pcs-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def blackbox() -> Iterator[Blackbox]:
    """The daemon's logging: nothing to stderr or syslog, everything in the blackbox."""
    box = Blackbox(capacity=100)
    configure_logging(
        LoggingSettings(default=LogTarget(to_stderr=False, to_syslog=False)),
        stderr=io.StringIO(),
        blackbox=box,
    )
    yield box
    reset_logging()


async def serve_cmap(
    nursery: trio.Nursery, runtime_dir: str, state_dir: Path, blackbox: Blackbox | None
) -> tuple[str, CmapStore]:
    """A cmap service under a unique prefix with a fake daemon that dumps ``blackbox``
    into ``state_dir`` when ``dump_flight_data`` changes (None: never dumps)."""
    store = CmapStore()
    for key in TRIGGER_KEYS:
        store.set(key, CmapValueType.STRING, "no", writer=True)
    store.track_add("runtime.blackbox.", TrackType.MODIFY | TrackType.PREFIX, owner="daemon")

    def on_change(note: Notification) -> None:
        if note.key == "runtime.blackbox.dump_flight_data" and blackbox is not None:
            structlog.get_logger().bind(subsystem="MAIN").notice("Dumping the blackbox")
            blackbox.dump(state_dir / BLACKBOX_FILE_NAME)

    service = CmapService(store, on_foreign_notification=on_change)
    prefix = f"bb{os.getpid()}{uuid.uuid4().hex[:6]}-"
    server = service.make_server(
        prefix=prefix, authorize=ME, runtime_dir=runtime_dir, transport="socket"
    )
    await nursery.start(server.serve)
    return prefix, store


async def test_dump_from_a_live_daemon(
    tmp_path: Path, runtime_dir: str, blackbox: Blackbox
) -> None:
    log = structlog.get_logger("totem").bind(subsystem="TOTEM")
    log.notice("A new membership (1.9) was formed. Members joined: 2 3")
    log.debug("token received", seq=17)
    old = tmp_path / BLACKBOX_FILE_NAME
    old.write_text(f"{DUMP_MAGIC}\n# records=0 dropped=0\n")  # a dump from before
    async with trio.open_nursery() as nursery:
        prefix, store = await serve_cmap(nursery, runtime_dir, tmp_path, blackbox)
        before = int(time.time())
        code, out, err = await trio.to_thread.run_sync(
            run, "--state-dir", str(tmp_path), "--ipc-prefix", prefix
        )
        nursery.cancel_scope.cancel()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Dumping the contents of {tmp_path / BLACKBOX_FILE_NAME}"
    assert lines[1] == "Starting replay: records [4] dropped [0]"
    assert lines[2].startswith("rec=[1] Log Message=")
    assert lines[2].endswith(
        " notice  [TOTEM ] A new membership (1.9) was formed. Members joined: 2 3"
    )
    # The debug record is there although no destination logs debug.
    assert lines[3].endswith(" debug   [TOTEM ] token received seq=17")
    # The IPC server's own debug record of the tool's connection.
    assert f" debug   [IPC   ] ipc_connected service={prefix}cmap conn=" in lines[4]
    assert lines[5].endswith(" notice  [MAIN  ] Dumping the blackbox")
    assert lines[6] == "Finishing replay: records found [4]"
    # Both triggers hold the epoch seconds, as corosync-blackbox sets them.
    for key in TRIGGER_KEYS:
        value = store.get(key)[1]
        assert isinstance(value, str)
        assert before <= int(value) <= int(time.time())


async def test_daemon_that_does_not_dump(tmp_path: Path, runtime_dir: str) -> None:
    async with trio.open_nursery() as nursery:
        prefix, _ = await serve_cmap(nursery, runtime_dir, tmp_path, None)
        code, out, err = await trio.to_thread.run_sync(
            run, "--state-dir", str(tmp_path), "--ipc-prefix", prefix, "--timeout", "0.1"
        )
        nursery.cancel_scope.cancel()
    assert (code, out) == (1, "")
    assert err == (
        f"pycorosync-blackbox: the daemon did not write {tmp_path / 'fdata'} within 0.1 s"
        " (is --state-dir the daemon's state directory?)\n"
    )
