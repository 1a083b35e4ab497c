"""``pycorosync-blackbox``: dump and print the daemon's blackbox, like corosync-blackbox(8).

corosync-blackbox sets ``runtime.blackbox.dump_state`` and
``runtime.blackbox.dump_flight_data`` to the current epoch seconds, then runs
``qb-blackbox`` on the state directory's ``fdata``. This tool does the same through
:mod:`corosync.cmap`, waits until the daemon has (re)written the dump file, and prints
it the way qb-blackbox replays a flight recorder::

    Dumping the contents of /var/lib/pycorosync/fdata
    Starting replay: records [3] dropped [0]
    rec=[1] Log Message=Nov 26 23:00:05.249 notice  [TOTEM ] A new membership ...
    ...
    Finishing replay: records found [3]

``pycorosync-blackbox FILE`` prints an existing dump without contacting the daemon.
Options (ours; corosync's script has none): ``--state-dir DIR`` (default
/var/lib/pycorosync), ``--ipc-prefix PREFIX`` (or ``PYCOROSYNC_IPC_PREFIX``) as in
pycorosync-cmapctl, ``--timeout SECONDS`` to wait for the dump (default 10).

The dump format (written by the daemon's ``Blackbox.dump``, version 1): the line
``pycorosync-blackbox 1``, a ``# key=value...`` line (records, dropped, capacity...),
then one line per record, oldest first; lines starting with a tab continue the
record before them (a traceback). Exit status 0, or 1 with a message on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import attrs

from corosync._errors import CsError, CsErrorCode, cs_strerror
from corosync.cmap import CmapHandle, CmapValueType, initialize

__all__ = [
    "DEFAULT_STATE_DIR",
    "DUMP_FILE_NAME",
    "DUMP_MAGIC",
    "PREFIX_ENV",
    "BlackboxDump",
    "BlackboxFormatError",
    "format_replay",
    "main",
    "parse_dump",
]

PROG = "pycorosync-blackbox"
PREFIX_ENV = "PYCOROSYNC_IPC_PREFIX"
DEFAULT_STATE_DIR = "/var/lib/pycorosync"
#: The dump's name in the state directory (corosync's ``fdata``).
DUMP_FILE_NAME = "fdata"
DUMP_MAGIC = "pycorosync-blackbox 1"
#: In corosync-blackbox's order: the state dump first, then the flight data.
TRIGGER_KEYS = ("runtime.blackbox.dump_state", "runtime.blackbox.dump_flight_data")
_POLL_INTERVAL = 0.02


class BlackboxFormatError(ValueError):
    """The file is not a pycorosync blackbox dump (or is damaged)."""


@attrs.frozen
class BlackboxDump:
    """A parsed dump: each record's lines (the first, then its continuations)."""

    records: tuple[tuple[str, ...], ...]
    dropped: int
    meta: dict[str, str] = attrs.field(factory=dict, eq=False)


def parse_dump(data: bytes) -> BlackboxDump:
    """Parse a dump file's bytes; raises :class:`BlackboxFormatError` for anything
    that is not a version-1 dump (the file may be damaged or something else)."""
    text = data.decode("utf-8", "backslashreplace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != DUMP_MAGIC:
        raise BlackboxFormatError(f"not a pycorosync blackbox dump (no {DUMP_MAGIC!r} line)")
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise BlackboxFormatError("the header line is missing")
    meta: dict[str, str] = {}
    for word in lines[1][2:].split():
        key, sep, value = word.partition("=")
        if not sep:
            raise BlackboxFormatError(f"bad header field {word!r}")
        meta[key] = value
    dropped = meta.get("dropped", "0")
    if not dropped.isdigit() or not dropped.isascii():
        raise BlackboxFormatError(f"bad dropped count {dropped!r}")
    records: list[list[str]] = []
    for number, line in enumerate(lines[2:], start=3):
        if line.startswith("\t"):
            if not records:
                raise BlackboxFormatError(f"line {number}: a continuation without a record")
            records[-1].append(line[1:])
        elif not line or line[0].isspace():
            raise BlackboxFormatError(f"line {number}: not a record")
        else:
            records.append([line])
    expected = meta.get("records")
    if expected is not None and expected != str(len(records)):
        raise BlackboxFormatError(
            f"the header announces {expected} records but the file has {len(records)}"
        )
    return BlackboxDump(tuple(tuple(r) for r in records), int(dropped), meta)


def format_replay(dump: BlackboxDump, path: str) -> str:
    """The dump as qb-blackbox prints a flight recorder: numbered records between
    "Starting replay" and "Finishing replay"."""
    out = [
        f"Dumping the contents of {path}",
        f"Starting replay: records [{len(dump.records)}] dropped [{dump.dropped}]",
    ]
    for number, lines in enumerate(dump.records, start=dump.dropped + 1):
        out.append(f"rec=[{number}] Log Message={lines[0]}")
        out.extend("\t" + line for line in lines[1:])
    out.append(f"Finishing replay: records found [{len(dump.records)}]")
    return "\n".join(out) + "\n"


class _Fail(Exception):
    """Stop with this message on stderr and exit code 1."""


def _file_id(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the daemon replaces the file (a new inode by rename)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Fail(f"cannot read {path}: {exc.strerror}") from None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _print_file(path: Path, out: TextIO) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Fail(f"cannot read {path}: {exc.strerror}") from None
    try:
        dump = parse_dump(data)
    except BlackboxFormatError as exc:
        raise _Fail(f"{path}: {exc}") from None
    out.write(format_replay(dump, str(path)))
    out.flush()


def _trigger(handle: CmapHandle) -> None:
    """Set the trigger keys to the epoch seconds. cmap ignores a set to the value a
    key already has (no notification, no dump), so wait for the next second then."""
    while True:
        now = str(int(time.time()))
        current = []
        for key in TRIGGER_KEYS:
            try:
                current.append(handle.get(key))
            except CsError as exc:
                if exc.code is not CsErrorCode.NOT_EXIST:
                    raise
        if now not in current:
            break
        time.sleep(1.0 - time.time() % 1.0 + 0.001)
    for key in TRIGGER_KEYS:
        try:
            handle.set(key, now, CmapValueType.STRING)
        except CsError as exc:
            raise _Fail(f"Failed to set key {key}. Error {cs_strerror(exc.code)}") from None


def _dump_from_daemon(path: Path, prefix: str, timeout: float) -> None:
    before = _file_id(path)
    try:
        handle = initialize(prefix=prefix)
    except CsError as exc:
        raise _Fail(f"cannot reach the pycorosync daemon: {exc}") from None
    with handle:
        try:
            _trigger(handle)
        except CsError as exc:
            raise _Fail(f"cmap failed: {exc}") from None
    deadline = time.monotonic() + timeout
    while _file_id(path) == before:
        if time.monotonic() >= deadline:
            raise _Fail(
                f"the daemon did not write {path} within {timeout:g} s "
                "(is --state-dir the daemon's state directory?)"
            )
        time.sleep(_POLL_INTERVAL)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Fail(f"{message}\n{self.format_usage().rstrip()}")


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Dump the pycorosync daemon's blackbox (flight recorder) and print it.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        help="print this dump file instead of asking the daemon for a new dump",
    )
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"the daemon's state directory, where it writes {DUMP_FILE_NAME}"
        f" (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--ipc-prefix",
        default=None,
        help=f"prefix of the IPC socket name (default ${PREFIX_ENV})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the daemon to write the dump (default 10)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the tool with ``argv`` (without the program name); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        parser = _parser()
        if "-h" in args or "--help" in args:
            out.write(parser.format_help())
            return 0
        options = parser.parse_args(args)
        if not options.timeout > 0:
            raise _Fail(f"--timeout must be positive, got {options.timeout:g}")
        if options.file is not None:
            _print_file(Path(options.file), out)
            return 0
        path = Path(options.state_dir) / DUMP_FILE_NAME
        prefix = options.ipc_prefix
        if prefix is None:
            prefix = os.environ.get(PREFIX_ENV, "")
        _dump_from_daemon(path, prefix, options.timeout)
        _print_file(path, out)
        return 0
    except _Fail as exc:
        print(f"{PROG}: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
