"""Tests of the daemon's logging: line format, per-subsystem filters, destinations
(stderr, log file, syslog), runtime reconfiguration, the blackbox and crash dumps."""

from __future__ import annotations

import calendar
import io
import os
import stat
import subprocess
import sys
import syslog
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from corosync.tools.blackbox import format_replay, parse_dump
from corosync_executive import (
    BLACKBOX_FILE_NAME,
    Blackbox,
    DebugLevel,
    LoggingSettings,
    LogPriority,
    LogSetupError,
    LogSystem,
    LogTarget,
    TimestampMode,
    configure_logging,
    install_crash_dump,
    reset_logging,
)
from corosync_executive._logging import BLACKBOX_MAGIC, TRACE, format_line

# Nov 26 23:00:05.249 UTC (the reference's example line).
T0 = calendar.timegm((2023, 11, 26, 23, 0, 5, 0, 0, 0)) * 1_000_000_000 + 249_000_000
QUIET = LogTarget(to_stderr=False, to_syslog=False)
MEMBERSHIP = "A new membership (1.9) was formed. Members joined: 2 3"
SRC = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Local time is UTC, so the timestamps are fixed text."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


class FakeSyslog:
    def __init__(self) -> None:
        self.opened: list[tuple[str, int, int]] = []
        self.messages: list[tuple[int, str]] = []
        self.closed = 0

    def openlog(self, ident: str, logoption: int, facility: int) -> None:
        self.opened.append((ident, logoption, facility))

    def syslog(self, priority: int, message: str) -> None:
        self.messages.append((priority, message))

    def closelog(self) -> None:
        self.closed += 1


@pytest.fixture(autouse=True)
def fake_syslog(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSyslog]:
    """No test writes to the machine's syslog; every test leaves structlog as it was."""
    fake = FakeSyslog()
    monkeypatch.setattr(syslog, "openlog", fake.openlog)
    monkeypatch.setattr(syslog, "syslog", fake.syslog)
    monkeypatch.setattr(syslog, "closelog", fake.closelog)
    before = structlog.get_config()
    yield fake
    reset_logging()
    assert structlog.get_config() == before


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def setup(
    settings: LoggingSettings, *, blackbox: Blackbox | None = None
) -> tuple[LogSystem, io.StringIO]:
    err = io.StringIO()
    system = configure_logging(settings, stderr=err, blackbox=blackbox, clock=Clock())
    return system, err


def log(subsystem: str | None = "TOTEM") -> Any:
    logger = structlog.get_logger("test")
    return logger if subsystem is None else logger.bind(subsystem=subsystem)


# --------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("mode", "prefix"),
    [
        (TimestampMode.HIRES, "Nov 26 23:00:05.249 "),
        (TimestampMode.ON, "Nov 26 23:00:05 "),
        (TimestampMode.OFF, ""),
    ],
)
def test_line_format_for_each_timestamp_mode(mode: TimestampMode, prefix: str) -> None:
    _, err = setup(LoggingSettings(default=LogTarget(to_syslog=False), timestamp=mode))
    log().notice(MEMBERSHIP)
    log("KNET").warning("link down")
    assert err.getvalue().splitlines() == [
        f"{prefix}notice  [TOTEM ] {MEMBERSHIP}",
        f"{prefix}warning [KNET  ] link down",
    ]


def test_fields_placeholders_and_subsystem_names() -> None:
    _, err = setup(LoggingSettings(default=LogTarget(to_syslog=False), timestamp=TimestampMode.OFF))
    log("knet").info("host {host} link {link} is up", host=2, link=0, latency_us=120)
    log(None).error("exiting", reason="bad config file", path="/etc/x")
    log("VOTEQUORUM").critical("lost quorum", old="a=b", quote='say "hi"', empty="")
    log().info("retransmit %d messages", 4, ring_id="1.9")
    assert err.getvalue().splitlines() == [
        "info    [KNET  ] host 2 link 0 is up latency_us=120",
        'error   [MAIN  ] exiting reason="bad config file" path=/etc/x',
        'crit    [VOTEQU] lost quorum old="a=b" quote="say \\"hi\\"" empty=""',
        "info    [TOTEM ] retransmit 4 messages ring_id=1.9",
    ]


def test_unknown_placeholder_and_braces_stay() -> None:
    _, err = setup(LoggingSettings(default=LogTarget(to_syslog=False), timestamp=TimestampMode.OFF))
    log().info("config {section} has {x y}", section="totem")
    assert err.getvalue() == "info    [TOTEM ] config totem has {x y}\n"


def test_fileline_and_function_name() -> None:
    settings = LoggingSettings(
        default=LogTarget(to_syslog=False),
        timestamp=TimestampMode.OFF,
        fileline=True,
        function_name=True,
    )
    _, err = setup(settings)
    log().info("here")
    line = sys._getframe().f_lineno - 1
    expected = f"info    [TOTEM ] test_fileline_and_function_name:test_logging.py:{line} here\n"
    assert err.getvalue() == expected


def test_exception_traceback_follows_the_line(fake_syslog: FakeSyslog) -> None:
    _, err = setup(LoggingSettings(timestamp=TimestampMode.OFF))
    try:
        raise ValueError("boom")
    except ValueError:
        log("IPC").exception("handler failed", conn=3)
    lines = err.getvalue().splitlines()
    assert lines[0] == "error   [IPC   ] handler failed conn=3"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
    assert fake_syslog.messages == [
        (syslog.LOG_DAEMON | syslog.LOG_ERR, "[IPC   ] handler failed conn=3 ValueError: boom")
    ]


# ---------------------------------------------------------------- filtering


def test_debug_on_for_one_subsystem_only() -> None:
    settings = LoggingSettings(
        default=LogTarget(to_syslog=False),
        subsystems={"TOTEM": LogTarget(to_syslog=False, debug=DebugLevel.ON)},
        timestamp=TimestampMode.OFF,
    )
    _, err = setup(settings)
    log().debug("token received", seq=5)
    log().trace("token details")
    log("KNET").debug("pong")
    log("KNET").info("link up")
    log(None).debug("main debug")
    assert err.getvalue().splitlines() == [
        "debug   [TOTEM ] token received seq=5",
        "info    [KNET  ] link up",
    ]


def test_debug_trace(fake_syslog: FakeSyslog) -> None:
    settings = LoggingSettings(
        default=LogTarget(debug=DebugLevel.TRACE), timestamp=TimestampMode.OFF
    )
    _, err = setup(settings)
    log().trace("token details", aru=7)
    log().debug("token")
    assert err.getvalue().splitlines() == [
        "trace   [TOTEM ] token details aru=7",
        "debug   [TOTEM ] token",
    ]
    # syslog has no trace priority: only the debug record goes there.
    assert fake_syslog.messages == [(syslog.LOG_DAEMON | syslog.LOG_DEBUG, "[TOTEM ] token")]


def test_logfile_priority_also_filters_stderr() -> None:
    """As corosync's logsys: stderr gets what the log file would get."""
    settings = LoggingSettings(
        default=LogTarget(to_syslog=False, logfile_priority=LogPriority.WARNING),
        timestamp=TimestampMode.OFF,
    )
    _, err = setup(settings)
    log().info("not shown")
    log().notice("not shown either")
    log().warning("shown")
    assert err.getvalue() == "warning [TOTEM ] shown\n"


def test_unwanted_records_cost_nothing() -> None:
    """Without a blackbox, a record no destination wants never reaches the chain."""
    target = LogTarget(to_syslog=False, logfile_priority=LogPriority.WARNING)
    system, _ = setup(LoggingSettings(default=target))
    log().debug("nobody wants this")
    log("KNET").info("nor this")
    assert system.stats.records == 0
    log().error("stderr wants this")
    assert system.stats.records == 1
    system.reconfigure(LoggingSettings(default=QUIET))
    log().error("nobody wants this now")
    assert system.stats.records == 1


# -------------------------------------------------------------------- files


def test_logfile_and_reopen_after_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "corosync.log"
    target = LogTarget(to_stderr=False, to_syslog=False, to_logfile=True, logfile=str(path))
    system, err = setup(LoggingSettings(default=target, timestamp=TimestampMode.OFF))
    log().info("first")
    path.rename(tmp_path / "corosync.log.1")  # logrotate
    log().info("second")  # still the open file
    system.reopen()  # cfgtool -L
    log().info("third")
    assert (tmp_path / "corosync.log.1").read_text() == (
        "info    [TOTEM ] first\ninfo    [TOTEM ] second\n"
    )
    assert path.read_text() == "info    [TOTEM ] third\n"
    assert err.getvalue() == ""


def test_reopen_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    path = logdir / "corosync.log"
    target = LogTarget(to_stderr=False, to_syslog=False, to_logfile=True, logfile=str(path))
    system, _ = setup(LoggingSettings(default=target, timestamp=TimestampMode.OFF))
    moved = tmp_path / "old-logs"
    logdir.rename(moved)
    with pytest.raises(LogSetupError, match=r"cannot open logfile .*corosync\.log"):
        system.reopen()
    log().info("still written")
    assert (moved / "corosync.log").read_text() == "info    [TOTEM ] still written\n"


def test_logfile_per_subsystem(tmp_path: Path) -> None:
    main_log, knet_log = tmp_path / "main.log", tmp_path / "knet.log"
    settings = LoggingSettings(
        default=LogTarget(to_stderr=False, to_syslog=False, to_logfile=True, logfile=str(main_log)),
        subsystems={
            "KNET": LogTarget(
                to_stderr=True, to_syslog=False, to_logfile=True, logfile=str(knet_log)
            )
        },
        timestamp=TimestampMode.OFF,
    )
    _, err = setup(settings)
    log().info("totem line")
    log("KNET").info("knet line")
    assert main_log.read_text() == "info    [TOTEM ] totem line\n"
    assert knet_log.read_text() == "info    [KNET  ] knet line\n"
    assert err.getvalue() == "info    [KNET  ] knet line\n"


def test_logfile_that_cannot_be_opened(tmp_path: Path) -> None:
    bad = tmp_path / "missing-dir" / "corosync.log"
    target = LogTarget(to_syslog=False, to_logfile=True, logfile=str(bad))
    before = structlog.get_config()
    with pytest.raises(LogSetupError, match=r"cannot open logfile .*missing-dir.*No such file"):
        setup(LoggingSettings(default=target))
    assert structlog.get_config() == before


def test_write_errors_do_not_raise() -> None:
    system, err = setup(LoggingSettings(default=LogTarget(to_syslog=False)))
    err.close()
    log().error("stderr is gone")
    assert system.stats.write_errors == 1


# ------------------------------------------------------------------- syslog


def test_syslog_routing(fake_syslog: FakeSyslog) -> None:
    settings = LoggingSettings(
        default=LogTarget(to_stderr=False, syslog_facility="local3"),
        subsystems={
            "QUORUM": LogTarget(
                to_stderr=False, syslog_facility="local5", syslog_priority=LogPriority.NOTICE
            ),
            "KNET": LogTarget(to_stderr=False, to_syslog=False),
        },
        timestamp=TimestampMode.HIRES,
    )
    system, _ = setup(settings)
    assert fake_syslog.opened == [
        ("pycorosync", syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_LOCAL3)
    ]
    log("QUORUM").info("not at notice")
    log("QUORUM").notice("Members[3]: 1 2 3")
    log("QUORUM").error("quorum lost")
    log("KNET").error("not to syslog")
    log().info(MEMBERSHIP)
    log().debug("debug is off")
    assert fake_syslog.messages == [
        (syslog.LOG_LOCAL5 | syslog.LOG_NOTICE, "[QUORUM] Members[3]: 1 2 3"),
        (syslog.LOG_LOCAL5 | syslog.LOG_ERR, "[QUORUM] quorum lost"),
        (syslog.LOG_LOCAL3 | syslog.LOG_INFO, f"[TOTEM ] {MEMBERSHIP}"),
    ]
    system.close()
    assert fake_syslog.closed == 1


def test_no_syslog_no_openlog(fake_syslog: FakeSyslog) -> None:
    setup(LoggingSettings(default=QUIET))
    log().error("x")
    assert fake_syslog.opened == []
    assert fake_syslog.messages == []


# --------------------------------------------------------------- reconfigure


def test_reconfigure_at_runtime(tmp_path: Path, fake_syslog: FakeSyslog) -> None:
    path = tmp_path / "c.log"
    first = LoggingSettings(default=LogTarget(to_syslog=False), timestamp=TimestampMode.OFF)
    system, err = setup(first)
    bound_before = log()
    bound_before.debug("hidden")
    second = LoggingSettings(
        default=LogTarget(
            to_syslog=True,
            to_logfile=True,
            logfile=str(path),
            debug=DebugLevel.ON,
            syslog_facility="local1",
        ),
        timestamp=TimestampMode.ON,
    )
    system.reconfigure(second)
    assert system.settings is second
    bound_before.debug("shown")
    assert err.getvalue() == "Nov 26 23:00:05 debug   [TOTEM ] shown\n"
    assert path.read_text() == "Nov 26 23:00:05 debug   [TOTEM ] shown\n"
    assert fake_syslog.opened == [
        ("pycorosync", syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_LOCAL1)
    ]
    assert fake_syslog.messages == [(syslog.LOG_LOCAL1 | syslog.LOG_DEBUG, "[TOTEM ] shown")]
    # A bad new log file: an error, and the settings in force stay.
    bad = LoggingSettings(
        default=LogTarget(to_logfile=True, logfile=str(tmp_path / "no" / "x.log"))
    )
    with pytest.raises(LogSetupError):
        system.reconfigure(bad)
    assert system.settings is second
    system.reconfigure(first)  # the log file and syslog are no longer used
    assert fake_syslog.closed == 1
    bound_before.info("back")
    assert path.read_text() == "Nov 26 23:00:05 debug   [TOTEM ] shown\n"
    assert err.getvalue().endswith("\ninfo    [TOTEM ] back\n")


def test_reconfigure_loses_no_records(tmp_path: Path) -> None:
    path = tmp_path / "c.log"

    def settings(mode: TimestampMode) -> LoggingSettings:
        target = LogTarget(to_stderr=False, to_syslog=False, to_logfile=True, logfile=str(path))
        return LoggingSettings(default=target, timestamp=mode)

    blackbox = Blackbox(10_000)
    system, _ = setup(settings(TimestampMode.OFF), blackbox=blackbox)
    count = 2000
    started = threading.Event()

    def writer() -> None:
        logger = log()
        started.set()
        for n in range(count):
            logger.info("record {n}", n=n)

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    modes = [TimestampMode.ON, TimestampMode.OFF, TimestampMode.HIRES]
    reconfigures = 0
    while thread.is_alive() or reconfigures < 30:
        system.reconfigure(settings(modes[reconfigures % 3]))
        reconfigures += 1
    thread.join()
    lines = path.read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(n) for n in range(count)]
    assert blackbox.total == count


def test_closed_system_and_repeated_configure() -> None:
    first, _ = setup(LoggingSettings(default=QUIET))
    second, err = setup(LoggingSettings(default=LogTarget(to_syslog=False)))
    with pytest.raises(RuntimeError, match="closed"):
        first.reconfigure(LoggingSettings())
    first.close()  # closing an old one again changes nothing
    log().info("still routed")
    assert "still routed" in err.getvalue()
    with second:
        pass
    log().info("after")
    assert "after" not in err.getvalue()


# ------------------------------------------------------------------ blackbox


def test_blackbox_keeps_every_level_up_to_capacity() -> None:
    blackbox = Blackbox(capacity=3)
    setup(LoggingSettings(default=QUIET), blackbox=blackbox)
    log().trace("t1")
    log().debug("d2", x=1)
    log("KNET").info("i3")
    log().notice("n4")
    log(None).error("e5", y=[1])
    assert len(blackbox) == 3
    assert (blackbox.total, blackbox.dropped, blackbox.capacity) == (5, 2, 3)
    assert blackbox.records() == (
        (T0, 6, "KNET", "i3", (), None, None),
        (T0, 5, "TOTEM", "n4", (), None, None),
        (T0, 3, "MAIN", "e5", (("y", "[1]"),), None, None),
    )


def test_blackbox_follows_the_setting() -> None:
    blackbox = Blackbox(10)
    system, _ = setup(LoggingSettings(default=QUIET, blackbox=False), blackbox=blackbox)
    log().info("not kept")
    system.reconfigure(LoggingSettings(default=QUIET, blackbox=True))
    log().trace("kept")
    assert [r[3] for r in blackbox.records()] == ["kept"]


def test_blackbox_rejects_bad_capacity() -> None:
    with pytest.raises(ValueError, match="positive"):
        Blackbox(0)


def test_blackbox_dump_format(tmp_path: Path) -> None:
    blackbox = Blackbox(capacity=4)
    setup(LoggingSettings(default=QUIET, timestamp=TimestampMode.OFF), blackbox=blackbox)
    log().info("dropped")
    log().notice(MEMBERSHIP)
    log("KNET").debug("pong", host=2)
    log(None).trace("two\nlines")
    try:
        raise OSError("disk")
    except OSError:
        log("MAIN").exception("write failed")
    path = tmp_path / BLACKBOX_FILE_NAME
    assert blackbox.dump(path) == 4
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [BLACKBOX_FILE_NAME]
    lines = path.read_text().splitlines()
    assert lines[0] == BLACKBOX_MAGIC
    header = dict(word.split("=") for word in lines[1][2:].split())
    assert header["records"] == "4"
    assert header["dropped"] == "1"
    assert header["capacity"] == "4"
    assert header["pid"] == str(os.getpid())
    # Always hires in the dump, whatever the configured timestamp mode.
    assert lines[2:6] == [
        f"Nov 26 23:00:05.249 notice  [TOTEM ] {MEMBERSHIP}",
        "Nov 26 23:00:05.249 debug   [KNET  ] pong host=2",
        "Nov 26 23:00:05.249 trace   [MAIN  ] two",
        "\tlines",
    ]
    assert lines[6] == "Nov 26 23:00:05.249 error   [MAIN  ] write failed"
    assert lines[7] == "\tTraceback (most recent call last):"
    assert lines[-1] == "\tOSError: disk"
    # What pycorosync-blackbox prints of it.
    replay = format_replay(parse_dump(path.read_bytes()), str(path)).splitlines()
    assert replay[:4] == [
        f"Dumping the contents of {path}",
        "Starting replay: records [4] dropped [1]",
        f"rec=[2] Log Message=Nov 26 23:00:05.249 notice  [TOTEM ] {MEMBERSHIP}",
        "rec=[3] Log Message=Nov 26 23:00:05.249 debug   [KNET  ] pong host=2",
    ]
    assert replay[-1] == "Finishing replay: records found [4]"


def test_blackbox_dump_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "fdata"
    blackbox = Blackbox(4)
    blackbox.add(6, "MAIN", "one", time_ns=T0)
    blackbox.dump(path)
    reader = path.open()  # a reader of the old dump keeps a whole file
    old_inode = path.stat().st_ino
    blackbox.add(6, "MAIN", "two", time_ns=T0)
    blackbox.dump(path)
    assert path.stat().st_ino != old_inode
    assert reader.read().endswith("[MAIN  ] one\n")
    reader.close()
    assert path.read_text().endswith("[MAIN  ] one\nNov 26 23:00:05.249 info    [MAIN  ] two\n")
    with pytest.raises(FileNotFoundError):
        blackbox.dump(tmp_path / "missing" / "fdata")


def test_format_line_of_unknown_level() -> None:
    assert format_line((T0, TRACE, "X", "m", (), None, None), TimestampMode.OFF) == (
        "trace   [X     ] m"
    )
    assert (
        format_line((T0, 12, "X", "m", (), None, None), TimestampMode.OFF) == "12      [X     ] m"
    )


# ---------------------------------------------------------------- crash dumps


def test_crash_dump_from_the_top_level_handler(tmp_path: Path) -> None:
    blackbox = Blackbox(100)
    setup(LoggingSettings(default=QUIET), blackbox=blackbox)
    previous = sys.excepthook
    crash = install_crash_dump(blackbox, tmp_path / "fdata", fatal_signals=False)
    try:
        assert sys.excepthook is not previous
        log().debug("last words")
        assert not crash.on_crash(KeyboardInterrupt())
        assert not crash.on_crash(SystemExit(0))
        assert not (tmp_path / "fdata").exists()
        try:
            raise RuntimeError("bug")
        except RuntimeError as exc:
            dumped = crash.on_crash(exc)
        assert dumped
    finally:
        crash.uninstall()
    assert sys.excepthook is previous
    text = (tmp_path / "fdata").read_text()
    assert "debug   [TOTEM ] last words\n" in text
    assert "crit    [MAIN  ] pycorosync is exiting on an unhandled RuntimeError\n" in text
    assert text.endswith("\tRuntimeError: bug\n")
    assert crash.on_crash(SystemExit(3))  # a failure exit status is a crash


def test_crash_dump_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crash = install_crash_dump(Blackbox(2), tmp_path / "gone" / "fdata", fatal_signals=False)
    try:
        assert not crash.on_crash(RuntimeError("x"))
    finally:
        crash.uninstall()
    assert "cannot write the blackbox" in capsys.readouterr().err


def _run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(SRC / p / "src") for p in ("knet", "totem", "executive", "clients")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CHILD_PRELUDE = """
    import io, structlog
    from corosync_executive import (
        Blackbox, LoggingSettings, LogTarget, configure_logging, install_crash_dump)
    blackbox = Blackbox(50)
    configure_logging(
        LoggingSettings(default=LogTarget(to_stderr=False, to_syslog=False)),
        stderr=io.StringIO(), blackbox=blackbox)
    install_crash_dump(blackbox, "fdata")
    structlog.get_logger().bind(subsystem="TOTEM").debug("before the crash", seq=9)
"""


def test_crash_dump_on_an_unhandled_exception(tmp_path: Path) -> None:
    child = _run_child(CHILD_PRELUDE + "\n    raise RuntimeError('unhandled bug')\n", tmp_path)
    assert child.returncode == 1
    assert "RuntimeError: unhandled bug" in child.stderr  # the previous hook still prints
    text = (tmp_path / "fdata").read_text()
    assert "debug   [TOTEM ] before the crash seq=9\n" in text
    assert "crit    [MAIN  ] pycorosync is exiting on an unhandled RuntimeError\n" in text
    assert text.endswith("\tRuntimeError: unhandled bug\n")
    assert not (tmp_path / "fdata.fatal").exists()  # nothing fatal: removed at exit


def test_fatal_signal_writes_tracebacks(tmp_path: Path) -> None:
    child = _run_child(
        CHILD_PRELUDE + "\n    import faulthandler; faulthandler._sigsegv()\n", tmp_path
    )
    assert child.returncode == -11
    fatal = (tmp_path / "fdata.fatal").read_text()
    assert "Fatal Python error: Segmentation fault" in fatal
    assert 'File "<string>"' in fatal
