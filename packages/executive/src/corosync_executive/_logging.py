"""The daemon's logging: structlog records routed to stderr, log files and syslog in
corosync's line format with corosync's per-subsystem filters, and the blackbox.

Every package logs through structlog with a bound ``subsystem`` (``"TOTEM"``,
``"KNET"``, ``"IPC"``...). :func:`configure_logging` installs one processor chain whose
last processor, the router, does all the work and then drops the event:

* the level is the logger method's name: ``trace`` (finer than debug), ``debug``,
  ``info``, ``notice`` (corosync's notice lines; a real method of
  :class:`CorosyncLogger`), ``warning``, ``error``/``exception``, ``critical``;
* the subsystem's :class:`LogTarget` (``logger_subsys`` override, else the default)
  decides each destination. As in corosync's logsys, stderr and the log file share
  ``logfile_priority`` and syslog has ``syslog_priority``; ``debug: on`` lowers both
  to debug and ``debug: trace`` to trace (syslog has no trace priority, so trace
  records never reach it, as with libqb's syslog target);
* a line reads ``Nov 26 23:00:05.249 notice  [TOTEM ] A new membership (1.9) was
  formed. Members joined: 2 3``: the timestamp (``hires`` with milliseconds, ``on``
  seconds, ``off`` none), the priority padded to 7, the subsystem padded (and cut, as
  libqb does) to 6, optional ``func:file:line`` (``function_name``/``fileline``), the
  message, then the fields not used by the message as `` key=value``. ``{name}`` in an
  event is replaced by the field ``name`` (which is then not repeated at the end);
* syslog gets ``[TOTEM ] message key=value`` at the record's priority ORed with the
  subsystem's facility (``openlog`` has the default facility);
* the :class:`Blackbox` keeps the last N records of every level, whatever the
  destinations filter, like libqb's flight recorder; :meth:`Blackbox.dump` writes
  them for ``pycorosync-blackbox``, and :func:`install_crash_dump` writes them when
  the daemon dies of an exception.

Loggers assembled (``.bind()``) before :func:`configure_logging` keep the structlog
configuration they were assembled with: configure logging before building services.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import sys
import syslog
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO

import attrs
import structlog

from corosync_executive._config_schema import DebugLevel, TimestampMode
from corosync_executive._config_validate import LoggingSettings, LogTarget

__all__ = [
    "BLACKBOX_FILE_NAME",
    "BLACKBOX_MAGIC",
    "DEFAULT_BLACKBOX_CAPACITY",
    "LEVEL_NAMES",
    "TRACE",
    "Blackbox",
    "BlackboxRecord",
    "CorosyncLogger",
    "CrashDump",
    "LogSetupError",
    "LogSystem",
    "LogSystemStats",
    "configure_logging",
    "format_line",
    "install_crash_dump",
    "reset_logging",
]

#: The blackbox dump in the daemon's state directory, as corosync's ``fdata``.
BLACKBOX_FILE_NAME = "fdata"
#: The first line of a dump file (the format's name and version).
BLACKBOX_MAGIC = "pycorosync-blackbox 1"
#: Records the blackbox keeps unless told otherwise (a few MiB of small tuples).
DEFAULT_BLACKBOX_CAPACITY = 32768

#: libqb's LOG_TRACE: one finer than syslog's LOG_DEBUG (7).
TRACE = 8
#: The priority names corosync prints, indexed by priority.
LEVEL_NAMES = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug", "trace")

_DEBUG = 7
_INFO = 6
_OFF = -1  # a destination threshold no record passes

#: structlog method name -> syslog priority (TRACE beyond LOG_DEBUG).
_METHOD_LEVELS: Mapping[str, int] = {
    "trace": TRACE,
    "debug": _DEBUG,
    "info": _INFO,
    "msg": _INFO,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "err": 3,
    "exception": 3,
    "critical": 2,
    "crit": 2,
    "fatal": 2,
    "alert": 1,
    "emerg": 0,
}

#: syslog.h facility codes (already shifted), by corosync's names.
_FACILITIES: Mapping[str, int] = {
    "kern": 0 << 3,
    "user": 1 << 3,
    "mail": 2 << 3,
    "daemon": 3 << 3,
    "auth": 4 << 3,
    "syslog": 5 << 3,
    "lpr": 6 << 3,
    "news": 7 << 3,
    "uucp": 8 << 3,
    "cron": 9 << 3,
    "authpriv": 10 << 3,
    "ftp": 11 << 3,
    **{f"local{n}": (16 + n) << 3 for n in range(8)},
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NEEDS_QUOTES = re.compile(r'[\s="\\]')
_PRIMITIVES = (str, int, float, bool, type(None))
#: Keys structlog or callers use for control, never printed as fields.
_CONTROL_KEYS = ("event", "subsystem", "exc_info", "stack_info", "positional_args")


class LogSetupError(Exception):
    """A destination could not be set up (a log file that cannot be opened)."""


# --------------------------------------------------------------------- records

#: One blackbox record: (wall clock ns, priority, subsystem, message, fields,
#: call site or None, traceback text or None). Field values are kept as they are
#: when primitive, else as their ``str``, so no record holds on to live objects.
BlackboxRecord = tuple[int, int, str, str, tuple[tuple[str, object], ...], str | None, str | None]


def _timestamp(time_ns: int, mode: TimestampMode) -> str:
    if mode is TimestampMode.OFF:
        return ""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    t = time.localtime(seconds)
    # Month names fixed, not from the locale: the same text whatever LC_TIME says.
    text = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if mode is TimestampMode.HIRES:
        text += f".{rest // 1_000_000:03d}"
    return text + " "


def _field_text(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or _NEEDS_QUOTES.search(text):
        # Quoted like a C string so one field stays one token on the line.
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return f'"{escaped}"'
    return text


def _body(record: BlackboxRecord) -> str:
    """``[SUBSYS] call-site message key=value...``: the part syslog gets too."""
    _time_ns, _level, subsystem, message, fields, callsite, _exc = record
    parts = [f"[{subsystem[:6]:<6}]"]
    if callsite:
        parts.append(callsite)
    parts.append(message)
    parts.extend(f"{key}={_field_text(value)}" for key, value in fields)
    return " ".join(parts)


def format_line(record: BlackboxRecord, timestamp: TimestampMode) -> str:
    """The record as corosync prints it to stderr and its log file (without the
    traceback of an exception record, which follows on lines of its own)."""
    level = record[1]
    name = LEVEL_NAMES[level] if 0 <= level < len(LEVEL_NAMES) else str(level)
    return f"{_timestamp(record[0], timestamp)}{name[:7]:<7} {_body(record)}"


def _exception_text(exc_info: object) -> str | None:
    if exc_info is None or exc_info is False:
        return None
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1] if isinstance(exc_info[1], BaseException) else None
    else:  # True: the exception being handled
        exc = sys.exc_info()[1]
    if exc is None:
        return None
    return "".join(traceback.format_exception(exc)).rstrip("\n")


def _substitute(event: str, fields: dict[str, Any]) -> str:
    """Replace ``{name}`` by the field's value and drop the field (used in the text)."""
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            return match.group(0)
        used.append(name)
        value = fields[name]
        return value if isinstance(value, str) else str(value)

    text = _PLACEHOLDER.sub(replace, event)
    for name in used:
        fields.pop(name, None)
    return text


def _callsite(fileline: bool, function_name: bool) -> str | None:
    """``func:file.py:12`` of the first frame outside structlog and this module."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__ and not module.startswith("structlog"):
            break
        frame = frame.f_back
    if frame is None:
        return None
    parts = []
    if function_name:
        parts.append(frame.f_code.co_name)
    if fileline:
        parts.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
    return ":".join(parts)


# --------------------------------------------------------------------- blackbox


class Blackbox:
    """The last ``capacity`` records of every level, in memory (libqb's flight recorder).

    Appending is a deque append of a small tuple; formatting happens only when dumped.
    """

    def __init__(self, capacity: int = DEFAULT_BLACKBOX_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"blackbox capacity must be a positive int, got {capacity!r}")
        self._records: deque[BlackboxRecord] = deque(maxlen=capacity)
        self._total = 0

    @property
    def capacity(self) -> int:
        """How many records are kept."""
        maxlen = self._records.maxlen
        assert maxlen is not None
        return maxlen

    @property
    def total(self) -> int:
        """Records ever added."""
        return self._total

    @property
    def dropped(self) -> int:
        """Records pushed out by newer ones."""
        return self._total - len(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def append(self, record: BlackboxRecord) -> None:
        """Keep ``record`` (the oldest one goes when full)."""
        self._records.append(record)
        self._total += 1

    def add(
        self,
        level: int,
        subsystem: str,
        message: str,
        *,
        fields: Iterable[tuple[str, object]] = (),
        exc_text: str | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Keep a record built here (for writers outside structlog: the crash hook)."""
        when = time.time_ns() if time_ns is None else time_ns
        self.append((when, level, subsystem, message, tuple(fields), None, exc_text))

    def records(self) -> tuple[BlackboxRecord, ...]:
        """The kept records, oldest first (a snapshot)."""
        return tuple(self._records)

    def clear(self) -> None:
        """Forget every record (the counters too)."""
        self._records.clear()
        self._total = 0

    def render(self) -> str:
        """The dump file's text (format ``pycorosync-blackbox 1``).

        Line 1 is :data:`BLACKBOX_MAGIC`; line 2 ``# records=N dropped=D capacity=C
        pid=P dumped=EPOCH``; then one line per record, oldest first, as
        :func:`format_line` prints it with ``hires`` timestamps. A record that spans
        several lines (a message with newlines, a traceback) continues on lines that
        start with a tab; a record line never starts with whitespace.
        """
        records = self.records()
        dropped = self._total - len(records)
        meta = (
            f"# records={len(records)} dropped={max(dropped, 0)} capacity={self.capacity}"
            f" pid={os.getpid()} dumped={time.time():.3f}"
        )
        out = [BLACKBOX_MAGIC, meta]
        for record in records:
            text = format_line(record, TimestampMode.HIRES)
            if record[6]:
                text += "\n" + record[6]
            first, *rest = text.split("\n")
            out.append(first)
            out.extend("\t" + line for line in rest)
        return "\n".join(out) + "\n"

    def dump(self, path: str | os.PathLike[str]) -> int:
        """Write the records to ``path`` atomically (a temporary file in the same
        directory, fsync, rename; mode 0600); returns how many were written.
        Raises OSError when the directory is not writable."""
        target = Path(path)
        records = len(self._records)
        data = self.render().encode("utf-8", "backslashreplace")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return records


# ------------------------------------------------------------------- the logger


class CorosyncLogger(structlog.BoundLoggerBase):
    """The bound logger :func:`configure_logging` installs: structlog's level methods
    plus ``trace`` and ``notice`` (corosync's priorities). ``event % args`` formatting
    as structlog's own loggers; records nobody wants are dropped before any work."""

    def _log(self, method: str, level: int, event: str, args: tuple[Any, ...], kw: Any) -> Any:
        if level > _wanted_level:
            return None
        if args:
            event = event % args
        return self._proxy_to_logger(method, event, **kw)

    def trace(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("trace", TRACE, event, args, kw)

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("debug", _DEBUG, event, args, kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("info", _INFO, event, args, kw)

    msg = info

    def notice(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("notice", 5, event, args, kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("warning", 4, event, args, kw)

    warn = warning

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("error", 3, event, args, kw)

    err = error

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._log("error", 3, event, args, kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._log("critical", 2, event, args, kw)

    crit = fatal = critical


#: The finest level anyone (a destination or the blackbox) wants now; the logger
#: drops finer records before building an event dict.
_wanted_level = TRACE


# ------------------------------------------------------------------- destinations


class _LogFile:
    """One log file, shared by the subsystems that name the same path."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = self._open()

    def _open(self) -> TextIO:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise LogSetupError(f"cannot open logfile {self.path}: {exc.strerror}") from None
        # Line buffered: each record reaches the file at once (tail -f, crashes).
        return open(fd, "a", buffering=1, encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        new = self._open()
        old, self.file = self.file, new
        old.close()

    def close(self) -> None:
        self.file.close()


@attrs.frozen(slots=True)
class _Route:
    """One subsystem's destinations: the finest priority each lets through."""

    stderr: int
    file_level: int
    file: _LogFile | None
    syslog: int
    facility: int


def _route(target: LogTarget, files: Mapping[str, _LogFile]) -> _Route:
    if target.debug is DebugLevel.TRACE:
        file_level = syslog_level = TRACE
    elif target.debug is DebugLevel.ON:
        file_level = syslog_level = _DEBUG
    else:
        file_level, syslog_level = int(target.logfile_priority), int(target.syslog_priority)
    logfile = files.get(target.logfile) if target.to_logfile and target.logfile else None
    return _Route(
        stderr=file_level if target.to_stderr else _OFF,
        file_level=file_level if logfile is not None else _OFF,
        file=logfile,
        # syslog has no trace priority: trace records never go there.
        syslog=min(syslog_level, _DEBUG) if target.to_syslog else _OFF,
        facility=_FACILITIES.get(target.syslog_facility, _FACILITIES["daemon"]),
    )


@attrs.frozen
class _State:
    """Everything the router reads, swapped as a whole by reconfigure()."""

    settings: LoggingSettings
    default: _Route
    routes: Mapping[str, _Route]
    files: Mapping[str, _LogFile]
    uses_syslog: bool
    wanted: int
    callsite: bool


@attrs.define
class LogSystemStats:
    """Counters of a :class:`LogSystem`."""

    records: int = 0
    """Records routed (whatever their destinations)."""
    write_errors: int = 0
    """Writes to stderr or a log file that failed (the record is lost there)."""


_active: LogSystem | None = None
_active_lock = threading.Lock()


class LogSystem:
    """The installed logging: routes every structlog record. Use
    :func:`configure_logging` to make one; :meth:`close` (or ``with``) restores the
    structlog configuration that was in force before."""

    def __init__(
        self,
        settings: LoggingSettings,
        *,
        stderr: TextIO,
        syslog_ident: str,
        blackbox: Blackbox | None,
        clock: Callable[[], int],
    ) -> None:
        self._stderr = stderr
        self._ident = syslog_ident
        self._blackbox = blackbox
        self._clock = clock
        self._lock = threading.RLock()
        self._syslog_open: int | None = None  # the facility openlog() got
        self._closed = False
        self._saved: dict[str, Any] | None = None
        self._was_configured = False
        self.stats = LogSystemStats()
        self._state = self._build(settings, {})
        self._apply_syslog(self._state)

    # -- configuration --------------------------------------------------------------

    @property
    def settings(self) -> LoggingSettings:
        """The settings in force."""
        return self._state.settings

    @property
    def blackbox(self) -> Blackbox | None:
        """The blackbox records go to (when ``settings.blackbox`` is on)."""
        return self._blackbox

    def _build(self, settings: LoggingSettings, reuse: Mapping[str, _LogFile]) -> _State:
        """The state for ``settings``; opens the log files not in ``reuse`` (and closes
        them again if one fails, so a failed build changes nothing)."""
        targets = {name.upper(): target for name, target in settings.subsystems.items()}
        paths = sorted(
            {t.logfile for t in (settings.default, *targets.values()) if t.to_logfile and t.logfile}
        )
        files: dict[str, _LogFile] = {}
        opened: list[_LogFile] = []
        try:
            for path in paths:
                if path in reuse:
                    files[path] = reuse[path]
                else:
                    files[path] = _LogFile(path)
                    opened.append(files[path])
        except LogSetupError:
            for logfile in opened:
                logfile.close()
            raise
        default = _route(settings.default, files)
        routes = {name: _route(target, files) for name, target in targets.items()}
        every = (default, *routes.values())
        wanted = max(max(r.stderr, r.file_level, r.syslog) for r in every)
        if self._blackbox is not None and settings.blackbox:
            wanted = TRACE
        return _State(
            settings=settings,
            default=default,
            routes=routes,
            files=files,
            uses_syslog=any(r.syslog > _OFF for r in every),
            wanted=wanted,
            callsite=settings.fileline or settings.function_name,
        )

    def _apply_syslog(self, state: _State) -> None:
        facility = _FACILITIES.get(state.settings.default.syslog_facility, _FACILITIES["daemon"])
        if state.uses_syslog and self._syslog_open != facility:
            syslog.openlog(self._ident, syslog.LOG_PID | syslog.LOG_NDELAY, facility)
            self._syslog_open = facility
        elif not state.uses_syslog and self._syslog_open is not None:
            syslog.closelog()
            self._syslog_open = None

    def reconfigure(self, settings: LoggingSettings) -> None:
        """Apply new settings (a config reload) while logging goes on: records go
        either by the old settings or the new ones, none is lost. Raises
        :class:`LogSetupError`, with the old settings still in force, when a new log
        file cannot be opened."""
        global _wanted_level
        with self._lock:
            self._check_open()
            old = self._state
            new = self._build(settings, old.files)
            self._state = new
            self._apply_syslog(new)
            _wanted_level = new.wanted
            for path, logfile in old.files.items():
                if path not in new.files:
                    logfile.close()

    def reopen(self) -> None:
        """Reopen every log file by its path (``cfgtool -L`` after logrotate moved
        them). Raises :class:`LogSetupError` naming the files that could not be
        reopened; those keep writing to their old file."""
        with self._lock:
            self._check_open()
            failures = []
            for logfile in self._state.files.values():
                try:
                    logfile.reopen()
                except LogSetupError as exc:
                    failures.append(str(exc))
            if failures:
                raise LogSetupError("; ".join(failures))

    def close(self) -> None:
        """Close the log files and syslog and restore the structlog configuration in
        force before :func:`configure_logging`. Calling it again does nothing."""
        global _active, _wanted_level
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for logfile in self._state.files.values():
                logfile.close()
            if self._syslog_open is not None:
                syslog.closelog()
                self._syslog_open = None
        with _active_lock:
            if _active is self:
                _active = None
                _wanted_level = TRACE
                if self._was_configured and self._saved is not None:
                    structlog.configure(**self._saved)
                else:
                    structlog.reset_defaults()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this LogSystem is closed")

    def __enter__(self) -> LogSystem:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the router -----------------------------------------------------------------

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        """structlog's last processor: keep, format and write the record, then drop it."""
        state = self._state
        level = _METHOD_LEVELS.get(method_name, _INFO)
        fields: dict[str, Any] = event_dict  # structlog hands each call a fresh dict
        subsystem = str(fields.pop("subsystem", None) or "MAIN").upper()
        event = fields.pop("event", "")
        event = event if isinstance(event, str) else str(event)
        exc_text = _exception_text(fields.pop("exc_info", None))
        for key in _CONTROL_KEYS:
            fields.pop(key, None)
        if "{" in event:
            event = _substitute(event, fields)
        callsite = (
            _callsite(state.settings.fileline, state.settings.function_name)
            if state.callsite
            else None
        )
        record: BlackboxRecord = (
            self._clock(),
            level,
            subsystem,
            event,
            tuple(
                (key, value if isinstance(value, _PRIMITIVES) else str(value))
                for key, value in fields.items()
            ),
            callsite,
            exc_text,
        )
        self.route(record)
        raise structlog.DropEvent

    def route(self, record: BlackboxRecord) -> None:
        """Send one record to the blackbox and the destinations that want it."""
        with self._lock:
            if self._closed:
                return
            state = self._state
            self.stats.records += 1
            if self._blackbox is not None and state.settings.blackbox:
                self._blackbox.append(record)
            level, subsystem = record[1], record[2]
            route = state.routes.get(subsystem, state.default)
            to_stderr = level <= route.stderr
            to_file = level <= route.file_level
            if to_stderr or to_file:
                line = format_line(record, state.settings.timestamp) + "\n"
                if record[6]:
                    line += record[6] + "\n"
                if to_stderr:
                    self._write(self._stderr, line)
                if to_file and route.file is not None:
                    self._write(route.file.file, line)
            if level <= route.syslog:
                text = _body(record)
                if record[6]:
                    text += " " + record[6].rsplit("\n", 1)[-1]
                syslog.syslog(route.facility | min(level, _DEBUG), text)

    def _write(self, stream: TextIO, line: str) -> None:
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            # A full disk or a closed stderr must not take the daemon down.
            self.stats.write_errors += 1


def configure_logging(
    settings: LoggingSettings,
    *,
    stderr: TextIO | None = None,
    syslog_ident: str = "pycorosync",
    blackbox: Blackbox | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> LogSystem:
    """Install structlog's configuration for ``settings`` and return the
    :class:`LogSystem` that routes the records.

    ``stderr`` defaults to ``sys.stderr`` at call time; ``blackbox`` receives every
    record when ``settings.blackbox`` is on; ``clock`` gives the wall clock in ns.
    Only one LogSystem is active at a time: a previous one is closed first (its
    saved structlog configuration restored), so this may be called repeatedly.
    Raises :class:`LogSetupError` (nothing installed) when a log file cannot be
    opened.
    """
    global _active, _wanted_level
    reset_logging()
    system = LogSystem(
        settings,
        stderr=sys.stderr if stderr is None else stderr,
        syslog_ident=syslog_ident,
        blackbox=blackbox,
        clock=clock,
    )
    with _active_lock:
        system._was_configured = structlog.is_configured()
        system._saved = dict(structlog.get_config())
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars, system],
            wrapper_class=CorosyncLogger,
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        _active = system
        _wanted_level = system._state.wanted
    return system


def reset_logging() -> None:
    """Close the active :class:`LogSystem`, if any (tests call this to leave
    structlog as they found it)."""
    with _active_lock:
        system = _active
    if system is not None:
        system.close()


# ------------------------------------------------------------------- crash dumps


class CrashDump:
    """Writes the blackbox when the daemon dies (see :func:`install_crash_dump`)."""

    def __init__(self, blackbox: Blackbox, path: Path, fatal_path: Path | None) -> None:
        self.blackbox = blackbox
        self.path = path
        self.fatal_path = fatal_path
        self._previous_hook = sys.excepthook
        self._fatal_file: TextIO | None = None
        self._faulthandler_was_enabled = faulthandler.is_enabled()
        self._installed = True

    def _install(self) -> None:
        sys.excepthook = self._excepthook
        atexit.register(self.uninstall)  # at exit: remove an empty fatal-error file
        if self.fatal_path is not None:
            self._fatal_file = open(self.fatal_path, "a", encoding="utf-8")  # noqa: SIM115
            faulthandler.enable(file=self._fatal_file, all_threads=True)

    def on_crash(self, exc: BaseException) -> bool:
        """The daemon's top-level ``except BaseException`` calls this: the exception
        goes into the blackbox as a crit record, then the blackbox is dumped. A clean
        exit (KeyboardInterrupt, SystemExit with status 0) is not a crash. Returns
        whether a dump was written; never raises."""
        if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, SystemExit) and exc.code in (None, 0)
        ):
            return False
        self.blackbox.add(
            2,
            "MAIN",
            f"pycorosync is exiting on an unhandled {type(exc).__name__}",
            exc_text=_exception_text(exc),
        )
        try:
            self.blackbox.dump(self.path)
        except OSError as error:
            print(f"pycorosync: cannot write the blackbox to {self.path}: {error}", file=sys.stderr)
            return False
        return True

    def _excepthook(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        self.on_crash(exc)
        self._previous_hook(exc_type, exc, tb)

    def uninstall(self) -> None:
        """Put back the previous ``sys.excepthook`` and fatal-error handler; an empty
        fatal-error file (nothing crashed) is removed."""
        if not self._installed:
            return
        self._installed = False
        atexit.unregister(self.uninstall)
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_hook
        if self._fatal_file is not None:
            faulthandler.disable()
            self._fatal_file.close()
            self._fatal_file = None
            assert self.fatal_path is not None
            if self.fatal_path.exists() and self.fatal_path.stat().st_size == 0:
                self.fatal_path.unlink()
            if self._faulthandler_was_enabled:
                faulthandler.enable(file=sys.__stderr__ or sys.stderr, all_threads=True)


def install_crash_dump(
    blackbox: Blackbox, path: str | os.PathLike[str], *, fatal_signals: bool = True
) -> CrashDump:
    """Dump ``blackbox`` to ``path`` when the process dies of an exception: through
    ``sys.excepthook`` and :meth:`CrashDump.on_crash` (for the daemon's top-level
    ``except BaseException``).

    With ``fatal_signals``, faulthandler writes the Python traceback of every thread
    to ``<path>.fatal`` on SIGSEGV, SIGFPE, SIGABRT, SIGBUS and SIGILL. No Python code
    can run then, so that file has the tracebacks but not the blackbox records.
    """
    target = Path(path)
    dump = CrashDump(
        blackbox, target, target.with_name(target.name + ".fatal") if fatal_signals else None
    )
    dump._install()
    return dump
