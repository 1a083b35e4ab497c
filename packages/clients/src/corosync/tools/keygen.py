"""``pycorosync-keygen``: write a shared cluster authkey, like corosync-keygen(8) 3.1.7.

Same flags, messages on stdout and stderr, and exit codes as corosync-keygen 3.1.7,
with the program name ``pycorosync-keygen`` in the usage text and error prefixes::

    -k, --key-file FILE      key file to write (default /etc/corosync/authkey)
    -r, --random-file FILE   random source to read (default /dev/urandom)
    -s, --size BYTES         key length, 128..4096 (default 256)
    -l, --less-secure        ignored, kept for compatibility (as in corosync)
    -h, --help               print the usage text and exit 0

Options are parsed like glibc getopt_long(3) with corosync's option string ``k:r:s:lh``:
clustered short options (``-lk FILE``, ``-kFILE``), unique prefixes of long options
(``--key``), operands ignored wherever they appear (only up to the first one under
``POSIXLY_CORRECT``), ``--`` ends the options, and options act in order, so ``-h -x``
prints the usage while ``-x -h`` and ``-s 5 -h`` fail. The last ``-k``/``-r``/``-s`` wins.

Exit codes: 0 key written; 1 bad command line, bad size, or the random source cannot be
opened or read or ends early; 2 the key file cannot be created; 3 its mode cannot be set;
4 the key cannot be written; 5 the key file cannot be closed.

Random source. Like corosync, the tool reads the named file (``/dev/urandom`` unless
``-r`` names another), not ``os.urandom``: that keeps ``-r`` meaningful for a hardware
RNG (``/dev/hwrng``) or a fixed file, and keeps corosync's errors for a missing source.
On Linux 5.6 and later ``/dev/random`` blocks only until the kernel's random generator
has been seeded once after boot, then gives the same quality of bytes as
``/dev/urandom`` and getrandom(2) (which ``os.urandom`` uses); ``-r /dev/random`` buys
nothing there, and the "Press keys on your keyboard" line printed for it is kept only
because corosync prints it.

Key file. An existing key file is overwritten without asking, as corosync does, and the
key ends up with mode 0400 whatever the umask. Deliberate differences from 3.1.7:

* The key is written atomically: a new file (created 0600, set to 0400 before the key
  goes in) in the same directory, flushed to disk and renamed over the key file. A
  failed or interrupted run leaves the old key intact; corosync truncates it first. The
  new file belongs to the user running the tool (root when run as root), where corosync
  keeps the owner of the file it overwrites; hard links to the old file keep the old key.
  A symlink is followed, as corosync's open() follows it: the file it points to is
  replaced and the link stays.
* When no new file can be made beside an existing, writable key file (a directory the
  user cannot write to, no free inodes, a pseudo file system such as /proc), the key is
  written in place like corosync does.
* An existing file that is not a regular file (a FIFO, ``/dev/stdout``, a device) is
  written in place and its mode is left alone: corosync sets it to 0400 (as root,
  ``-k /dev/null`` would break ``/dev/null``), and renaming over it would replace it.
* A random source that ends early fails with "Unexpected end of FILE" (exit 1), as
  corosync does after 3.1.7; 3.1.7 loops forever printing the "Press keys" line.
* A read error names the random source; 3.1.7 always says "Could not read /dev/random".
"""

from __future__ import annotations

import enum
import errno
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import TextIO

import attrs

__all__ = [
    "DEFAULT_KEYFILE",
    "DEFAULT_KEY_SIZE",
    "DEFAULT_RANDOM_FILE",
    "KEY_MAX_BYTES",
    "KEY_MIN_BYTES",
    "PROG",
    "USAGE",
    "ExitCode",
    "main",
]

PROG = "pycorosync-keygen"
DEFAULT_KEYFILE = "/etc/corosync/authkey"
DEFAULT_RANDOM_FILE = "/dev/urandom"
DEFAULT_KEY_SIZE = 256
#: knet's key length limits (KNET_MIN_KEY_LEN, KNET_MAX_KEY_LEN); corosync enforces them.
KEY_MIN_BYTES = 128
KEY_MAX_BYTES = 4096

#: corosync's usage text, word for word (its synopsis shows ``-m`` although the flag is
#: ``-r``; kept so the output matches), with our program name.
USAGE = (
    f"Usage: {PROG} [-k <keyfile>] [-s size] [-m <randomfile>] [-l] [-h]\n"
    "     -k / --key-file=<filename> -  Write to the specified keyfile\n"
    f"            instead of the default {DEFAULT_KEYFILE}.\n"
    "     -r / --random-file -  Random number source file. Default is \n"
    "            /dev/urandom. As an example /dev/random may be requested\n"
    "            (that may require user input for entropy).\n"
    "     -l / --less-secure - Not used, option is kept only\n"
    "            for compatibility.\n"
    "     -s / --size -  Length of key.\n"
    "     -h / --help -  Print basic usage.\n"
)

_BANNER = "Corosync Cluster Engine Authentication key generator.\n"
_KEYBOARD_HINT = "Press keys on your keyboard to generate entropy"
_BAD_COMMAND_LINE = "Error parsing command line options.\n"
_BAD_SIZE = f"Unsupported key size (supported <{KEY_MIN_BYTES},{KEY_MAX_BYTES}>)\n"
# strtoll(3) in base 10 as corosync calls it: C-locale blanks, a sign, ASCII digits.
_SIZE_SYNTAX = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+", re.ASCII)
_INTERRUPTED = 128 + 2  # what a shell reports for a SIGINT death


class ExitCode(enum.IntEnum):
    """The exit status of the tool, as corosync-keygen's."""

    OK = 0
    ERROR = 1  # command line, key size or random source
    CREATE = 2
    PERMISSIONS = 3
    WRITE = 4
    CLOSE = 5


@attrs.frozen
class _LongOption:
    name: str
    has_arg: bool
    letter: str


# In corosync's table order, which glibc follows when listing ambiguous matches.
_LONG_OPTIONS = (
    _LongOption("key-file", True, "k"),
    _LongOption("less-secure", False, "l"),
    _LongOption("random-file", True, "r"),
    _LongOption("size", True, "s"),
    _LongOption("help", False, "h"),
)
_SHORT_OPTIONS = {"k": True, "r": True, "s": True, "l": False, "h": False}


class _UsageError(Exception):
    """A bad command line, with glibc getopt's message (without the program name)."""


class _Failure(Exception):
    """A fatal error: the exit code and the message for stderr."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        return _INTERRUPTED


def _run(args: list[str], out: TextIO, err: TextIO) -> int:
    keyfile = DEFAULT_KEYFILE
    random_file = DEFAULT_RANDOM_FILE
    size = DEFAULT_KEY_SIZE
    try:
        for letter, value in _getopt(args, stop_at_operand="POSIXLY_CORRECT" in os.environ):
            if letter == "k":
                keyfile = value
            elif letter == "r":
                random_file = value
            elif letter == "s":
                parsed = _parse_size(value)
                if parsed is None:
                    _emit(err, f"{PROG}: {_BAD_SIZE}\n")
                    return ExitCode.ERROR
                size = parsed
            elif letter == "h":
                _emit(out, USAGE + "\n")
                return ExitCode.OK
            # "l" is accepted and does nothing, as in corosync.
    except _UsageError as exc:
        _emit(err, f"{PROG}: {exc}\n")
        _emit(out, _BAD_COMMAND_LINE)
        return ExitCode.ERROR

    _emit(out, _BANNER)
    _emit(out, f"Gathering {size * 8} bits for key from {random_file}.\n")
    try:
        key = _gather(random_file, size, out)
        _store(keyfile, key, out)
    except _Failure as exc:
        _emit(err, f"{PROG}: {exc.message}\n")
        return exc.code
    return ExitCode.OK


def _getopt(args: Sequence[str], *, stop_at_operand: bool) -> Iterator[tuple[str, str]]:
    """Yield ``(letter, argument)`` in order, like glibc getopt_long with ``k:r:s:lh``.

    A bad option raises :class:`_UsageError` only when parsing reaches it, so the options
    before it have already acted (``-h -x`` prints the usage, as corosync does).
    """
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            return
        if arg.startswith("--"):
            letter, value, index = _long_option(arg[2:], args, index)
            yield letter, value
            continue
        if arg == "-" or not arg.startswith("-"):
            if stop_at_operand:
                return
            continue  # an operand: getopt permutes it to the end, corosync ignores it
        pos = 1
        while pos < len(arg):
            letter = arg[pos]
            pos += 1
            if letter not in _SHORT_OPTIONS:
                raise _UsageError(f"invalid option -- '{letter}'")
            if not _SHORT_OPTIONS[letter]:
                yield letter, ""
            elif pos < len(arg):
                yield letter, arg[pos:]
                break
            elif index < len(args):
                yield letter, args[index]
                index += 1
                break
            else:
                raise _UsageError(f"option requires an argument -- '{letter}'")


def _long_option(text: str, args: Sequence[str], index: int) -> tuple[str, str, int]:
    """Resolve ``--text`` (name, unique prefix, ``=value``): letter, value, next index."""
    name, equals, value = text.partition("=")
    matches = [o for o in _LONG_OPTIONS if o.name == name] or [
        o for o in _LONG_OPTIONS if o.name.startswith(name)
    ]
    if not matches:
        raise _UsageError(f"unrecognized option '--{text}'")
    if len(matches) > 1:
        names = " ".join(f"'--{o.name}'" for o in matches)
        raise _UsageError(f"option '--{text}' is ambiguous; possibilities: {names}")
    option = matches[0]
    if equals:
        if not option.has_arg:
            raise _UsageError(f"option '--{option.name}' doesn't allow an argument")
        return option.letter, value, index
    if not option.has_arg:
        return option.letter, "", index
    if index >= len(args):
        raise _UsageError(f"option '--{option.name}' requires an argument")
    return option.letter, args[index], index + 1


def _parse_size(text: str) -> int | None:
    """The key size in ``text`` if it is a whole base-10 number in 128..4096, else None."""
    if _SIZE_SYNTAX.fullmatch(text) is None:
        return None
    value = int(text)
    return value if KEY_MIN_BYTES <= value <= KEY_MAX_BYTES else None


def _gather(path: str, size: int, out: TextIO) -> bytes:
    """Read ``size`` bytes from the random source, reporting short reads like corosync."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _Failure(ExitCode.ERROR, _with_reason("Failed to open random source", exc)) from exc
    try:
        if path == "/dev/random":  # corosync compares the name, not the device
            _emit(out, f"{_KEYBOARD_HINT}.\n")
        key = bytearray()
        while len(key) < size:
            try:
                chunk = os.read(fd, size - len(key))
            except OSError as exc:
                raise _Failure(ExitCode.ERROR, _with_reason(f"Could not read {path}", exc)) from exc
            if not chunk:
                raise _Failure(ExitCode.ERROR, f"Unexpected end of {path}")
            key += chunk
            if len(key) < size:
                missing = (size - len(key)) * 8
                _emit(out, f"{_KEYBOARD_HINT} ({missing} bits still needed).\n")
    finally:
        os.close(fd)
    return bytes(key)


def _store(path: str, key: bytes, out: TextIO) -> None:
    """Write the key to ``path`` with mode 0400, atomically where the file system allows."""
    if not path:
        raise _create_failure(path, OSError(errno.ENOENT, os.strerror(errno.ENOENT)))
    if path.endswith("/"):
        # Linux refuses O_CREAT on a name ending in "/" without creating anything; let
        # the kernel pick the errno (EISDIR, or ENOENT/ENOTDIR for the parent) as for corosync.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise _create_failure(path, exc) from exc
        raise _create_failure(path, OSError(errno.EISDIR, os.strerror(errno.EISDIR)))
    try:
        existing: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        existing = None  # also a dangling symlink: created through it below, like open()
    except OSError as exc:
        raise _create_failure(path, exc) from exc
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise _create_failure(path, OSError(errno.EISDIR, os.strerror(errno.EISDIR)))
        if not stat.S_ISREG(existing.st_mode):
            _write_in_place(path, key, out, regular=False)
            return
        # Refuse exactly when corosync's open(O_WRONLY) of the old file would fail.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY))
        except OSError as exc:
            raise _create_failure(path, exc) from exc

    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    # Hidden, unique, and within NAME_MAX (255 bytes) whatever the key file's name.
    stem = os.fsdecode(os.fsencode(os.path.basename(target))[:200])
    temporary = os.path.join(directory, f".{stem}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
    except OSError as exc:
        if existing is not None:  # no file can be made beside it: do as corosync does
            _write_in_place(path, key, out, regular=True)
            return
        raise _create_failure(path, exc) from exc
    renamed = False
    try:
        _fill(fd, path, key, out, set_mode=True, sync=True)
        try:
            os.replace(temporary, target)
        except OSError as exc:
            raise _create_failure(path, exc) from exc
        renamed = True
    finally:
        if not renamed:
            with suppress(OSError):
                os.unlink(temporary)
    _sync_directory(directory)


def _write_in_place(path: str, key: bytes, out: TextIO, *, regular: bool) -> None:
    """Truncate and write ``path`` itself, as corosync does (mode set for regular files)."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOCTTY, 0o600
        )
    except OSError as exc:
        raise _create_failure(path, exc) from exc
    _fill(fd, path, key, out, set_mode=regular, sync=regular)


def _fill(fd: int, path: str, key: bytes, out: TextIO, *, set_mode: bool, sync: bool) -> None:
    """Set mode 0400, write the whole key, flush it and close ``fd`` (always closed)."""
    try:
        if set_mode:
            try:
                os.fchmod(fd, 0o400)
            except OSError as exc:
                raise _Failure(
                    ExitCode.PERMISSIONS,
                    _with_reason("Failed to set key file permissions to 0400", exc),
                ) from exc
        _emit(out, f"Writing corosync key to {path}.\n")
        view = memoryview(key)
        try:
            while view:
                written = os.write(fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise _Failure(ExitCode.WRITE, _with_reason(f"Could not write {path}", exc)) from exc
    except BaseException:
        with suppress(OSError):
            os.close(fd)
        raise
    try:
        os.close(fd)
    except OSError as exc:
        raise _Failure(ExitCode.CLOSE, _with_reason(f"Could not close {path}", exc)) from exc


def _sync_directory(directory: str) -> None:
    """Make the rename durable; best effort, as some file systems refuse fsync here."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_failure(path: str, exc: OSError) -> _Failure:
    return _Failure(ExitCode.CREATE, _with_reason(f"Could not create {path}", exc))


def _with_reason(text: str, exc: OSError) -> str:
    """``text: strerror``, like err(3)."""
    return f"{text}: {exc.strerror or exc}"


def _emit(stream: TextIO, text: str) -> None:
    """Write ``text`` now; paths from argv go out as their original bytes, like C's."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
    else:
        stream.flush()
        buffer.write(os.fsencode(text))
        buffer.flush()
    stream.flush()


if __name__ == "__main__":
    raise SystemExit(main())
