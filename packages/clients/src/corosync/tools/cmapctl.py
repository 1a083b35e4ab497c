"""``pycorosync-cmapctl``: read and change cmap, like corosync-cmapctl(8) 3.1.7.

Same flags, output lines, error texts (on stderr) and exit codes as corosync-cmapctl
3.1.7, with ``pycorosync-cmapctl`` in the getopt error prefix::

    pycorosync-cmapctl [-b] [-DdghsqTCt] [-p file] [-m icmap|default|stats] [params...]

No action lists every key; positional arguments list the keys under those prefixes.
``-g key...`` gets (``-q`` prints the value only), ``-s key type value`` sets (types
``i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin``; ``bin`` reads a file or ``-``),
``-d key...`` deletes, ``-D prefix...`` deletes by prefix, ``-t key`` / ``-T prefix``
track changes (``create>``/``modify>``/``delete>`` lines until ``q`` + Enter, the end
of stdin or Ctrl-C), ``-p file`` loads ``key type value`` / ``^key`` / ``^^prefix``
lines, ``-C knet|ipc|totem|schedmiss|all`` clears statistics (stats map),
``-m`` selects the map, ``-b`` prints binary values escaped.

Values are printed as corosync does: integers in decimal, ``flt``/``dbl`` with ``%f``,
strings as they are, ``bin`` only with ``-b`` (printable bytes as is, ``\\`` doubled,
others as ``\\xHH``, bytes from 0x80 sign-extended as
corosync does: ``\\xFFFFFF80``). Numbers are parsed like C's strtoll/strtod (trailing text
ignored). The real tool's quirks are kept: ``-g`` and ``-d`` stop at the first failing
key, ``-D`` reports failures but exits 0, ``-q`` with a binary key prints ``bin)``.

Beyond corosync: ``--ipc-prefix=PREFIX`` (or the environment variable
``PYCOROSYNC_IPC_PREFIX``) is prepended to the IPC socket name, to reach one of several
pycorosync daemons sharing a network namespace. The real tool has no such option.
"""

from __future__ import annotations

import getopt
import math
import os
import re
import select
import sys
from collections.abc import Sequence
from typing import TextIO

from corosync._errors import CsError, cs_strerror
from corosync.cmap import (
    CmapHandle,
    CmapMap,
    CmapNotification,
    CmapTrackType,
    CmapTypedValue,
    CmapValueType,
    initialize,
)

__all__ = ["PREFIX_ENV", "format_value", "main"]

PROG = "pycorosync-cmapctl"
PREFIX_ENV = "PYCOROSYNC_IPC_PREFIX"

_SHORT_OPTS = "hgsdDtTbp:qm:C:"
_LONG_OPTS = ["ipc-prefix="]

_USAGE = """
usage:  {prog} [-b] [-DdghsqTCt] [-p filename] [-m map] [params...]

    -b show binary values

    -m select map to use
{map_help}
Set key:
    {prog} -s key_name type value

    where type is one of ([i|u][8|16|32|64] | flt | dbl | str | bin)
    for bin, value is file name (or - for stdin)

    map can be either 'icmap' (the default) which contains corosync
    configuration information, or 'stats' which contains statistics
    about the networking and IPC traffic in some detail.

Clear stats:
    {prog} -C [knet|ipc|totem|schedmiss|all]
    The 'stats' map is implied

Load settings from a file:
    {prog} -p filename

    the format of the file is:
    [^[^]]<key_name>[ <type> <value>]
    Keys prefixed with single caret ('^') are deleted (see -d).
    Keys (actually prefixes) prefixed with double caret ('^^') are deleted by prefix (see -D).
    <type> and <value> are optional (not checked) in above cases.
    Other keys are set (see -s) so both <type> and <value> are required.

Delete key:
    {prog} -d key_name...

Delete multiple keys with prefix:
    {prog} -D key_prefix...

Get key:
    {prog} [-b] -g key_name...

Quiet mode:
    {prog} [-b] -q -g key_name...

Display all keys:
    {prog} [-b]

Display keys with prefix key_name:
    {prog} [-b] key_name...

Track changes on keys with key_name:
    {prog} [-b] -t key_name

Track changes on keys with key prefix:
    {prog} [-b] -T key_prefix

Our extension (not in corosync-cmapctl):
    --ipc-prefix=PREFIX  prefix of the IPC socket name (default ${env})
"""

# Two lines of corosync's usage text, trailing space included.
_MAP_HELP = (
    "          The  default  map is 'icmap' which contains configuration information"
    " and some runtime variables used by corosync. \n"
    "          A 'stats' map is also available which displays network statistics"
    " - in great detail when knet is used as the transport."
)

_TYPES = {t.short_name: t for t in CmapValueType}
_MAPS = {"default": CmapMap.DEFAULT, "icmap": CmapMap.DEFAULT, "stats": CmapMap.STATS}
_CLEAR_TARGETS = ("knet", "totem", "ipc", "schedmiss", "all")

# C's strtoll / strtod: the longest valid prefix after leading whitespace.
_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")
_FLOAT_PREFIX = re.compile(
    r"\s*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
    r"|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?))",
    re.IGNORECASE,
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1


class _Fail(Exception):
    """Stop with this message on stderr and exit code 1."""


# ------------------------------------------------------------------ formatting


def _escape_binary(data: bytes) -> str:
    out = []
    for byte in data:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        elif byte < 0x80:
            out.append(f"\\x{byte:02X}")
        else:
            # corosync prints a signed char with %02X: sign-extended to 32 bits.
            out.append(f"\\x{0xFFFFFF00 | byte:08X}")
    return "".join(out)


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return "%f" % value  # noqa: UP031 - C's %f, the exact digits corosync prints


def format_value(
    key: str,
    typed: CmapTypedValue | None,
    value_type: CmapValueType,
    *,
    quiet: bool,
    show_binary: bool,
) -> str:
    """One line as corosync-cmapctl prints it (``key (type) = value``). ``typed`` may be
    None for a binary value that is not shown."""
    head = "" if quiet else f"{key} ("
    if value_type is CmapValueType.BINARY:
        # corosync prints "bin)" even in quiet mode.
        line = head + "bin)"
        if show_binary and typed is not None:
            assert isinstance(typed.value, bytes)
            line += " = " + _escape_binary(typed.value)
        return line
    assert typed is not None
    value = typed.value
    if isinstance(value, float):
        text = _format_float(value)
    elif isinstance(value, bytes):
        text = _escape_binary(value)
    else:
        text = str(value)
    return text if quiet else f"{head}{value_type.short_name}) = {text}"


# --------------------------------------------------------------------- parsing


def _parse_value(type_name: str, text: str) -> tuple[CmapValueType, int | float | str | bytes]:
    value_type = _TYPES.get(type_name)
    if value_type is None:
        raise _Fail(f"Unknown type {type_name}")
    if value_type.is_integer:
        match = _INT_PREFIX.match(text)
        if match is None:
            raise _Fail(f"{text} is not valid {type_name} type value")
        number = int(match.group(1))
        if value_type is CmapValueType.UINT64:
            # strtoull: saturates, and a negative number wraps.
            magnitude = min(abs(number), _UINT64_MAX)
            return value_type, (-magnitude) % 2**64 if number < 0 else magnitude
        number = max(_INT64_MIN, min(_INT64_MAX, number))  # strtoll saturates
        low, high = value_type.range or (0, 0)
        if not low <= number <= high:
            raise _Fail(f"{text} is not valid {type_name} integer")
        return value_type, number
    if value_type in (CmapValueType.FLOAT, CmapValueType.DOUBLE):
        fmatch = _FLOAT_PREFIX.match(text)
        if fmatch is None:
            raise _Fail(f"{text} is not valid {type_name} type value")
        literal = fmatch.group(1)
        body = literal.lstrip("+-")
        if body[:2].lower() == "0x":
            number_f = float.fromhex(literal if "p" in literal.lower() else literal + "p0")
        elif body[:3].lower() == "nan":
            number_f = float(literal[: len(literal) - len(body)] + "nan")
        else:
            number_f = float(literal)
        too_big = abs(number_f) > 3.4028234663852886e38 and math.isfinite(number_f)
        if value_type is CmapValueType.FLOAT and too_big:
            number_f = math.copysign(math.inf, number_f)  # C's double-to-float cast
        return value_type, number_f
    if value_type is CmapValueType.STRING:
        return value_type, text
    try:
        if text == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(text, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise _Fail(f"Couldn't open file {text}: {exc.strerror}") from None
    return value_type, data


# --------------------------------------------------------------------- actions


class _Tool:
    def __init__(
        self, handle: CmapHandle, out: TextIO, err: TextIO, *, quiet: bool, show_binary: bool
    ):
        self.handle = handle
        self.out = out
        self.err = err
        self.quiet = quiet
        self.show_binary = show_binary

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def warn(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def print_prefix(self, prefix: str) -> bool:
        found = False
        for entry in self.handle.iterate(prefix):
            typed: CmapTypedValue | None = None
            if entry.value_type is not CmapValueType.BINARY or self.show_binary:
                try:
                    typed = self.handle.get_typed(entry.key)
                except CsError:
                    continue  # deleted since the iteration saw it
            self.say(
                format_value(
                    entry.key,
                    typed,
                    typed.value_type if typed else entry.value_type,
                    quiet=self.quiet,
                    show_binary=self.show_binary,
                )
            )
            found = True
        return found

    def get(self, keys: Sequence[str]) -> int:
        for key in keys:
            try:
                typed = self.handle.get_typed(key)
            except CsError as exc:
                self.warn(f"Can't get key {key}. Error {cs_strerror(exc.code)}")
                return 1
            self.say(
                format_value(
                    key, typed, typed.value_type, quiet=self.quiet, show_binary=self.show_binary
                )
            )
        return 0

    def delete(self, keys: Sequence[str]) -> int:
        for key in keys:
            try:
                self.handle.delete(key)
            except CsError as exc:
                self.warn(f"Can't delete key {key}. Error {cs_strerror(exc.code)}")
                return 1
        return 0

    def delete_prefix(self, prefixes: Sequence[str]) -> int:
        for prefix in prefixes:
            for key in [entry.key for entry in self.handle.iterate(prefix)]:
                try:
                    self.handle.delete(key)
                except CsError as exc:
                    self.warn(f"Can't delete key {key}. Error {cs_strerror(exc.code)}")
        return 0

    def set(self, key: str, type_name: str, text: str) -> None:
        value_type, value = _parse_value(type_name, text)
        try:
            self.handle.set(key, value, value_type)
        except CsError as exc:
            raise _Fail(f"Failed to set key {key}. Error {cs_strerror(exc.code)}") from None

    def load(self, path: str) -> int:
        try:
            file = open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except OSError as exc:
            self.warn(f"Couldn't open file.: {exc.strerror}")
            return 0
        with file:
            for raw in file:
                words = raw.split()
                if not words or words[0].startswith("#"):
                    continue
                key = words[0]
                if key.startswith("^^"):
                    self.delete_prefix([key[2:]])
                elif key.startswith("^"):
                    if self.delete([key[1:]]):
                        return 1
                else:
                    if len(words) < 3:
                        raise _Fail(f"Both type and value for key {key} are required")
                    self.set(key, words[1], words[2])
        return 0

    def track(self, keys: Sequence[str], prefix: bool, stdin: TextIO) -> int:
        flags = CmapTrackType.ADD | CmapTrackType.DELETE | CmapTrackType.MODIFY
        if prefix:
            flags |= CmapTrackType.PREFIX
        for key in keys:
            try:
                self.handle.track_add(key, flags, self._notify)
            except CsError as exc:
                raise _Fail(
                    f"Failed to add tracking function. Error {cs_strerror(exc.code)}"
                ) from None
        self.say('Type "q" to finish')
        poller = select.poll()
        poller.register(self.handle.fileno(), select.POLLIN)
        try:
            stdin_fd: int | None = stdin.fileno()
        except (OSError, ValueError, AttributeError):
            stdin_fd = None
        if stdin_fd is not None:
            poller.register(stdin_fd, select.POLLIN)
        while True:
            for fd, _events in poller.poll():
                if fd == stdin_fd:
                    line = os.read(stdin_fd, 4096)
                    if not line or line.startswith(b"q"):
                        return 0
                else:
                    self.handle.dispatch()

    def _notify(self, note: CmapNotification) -> None:
        names = {CmapTrackType.ADD: "create", CmapTrackType.MODIFY: "modify"}
        value = note.old_value if note.event is CmapTrackType.DELETE else note.new_value
        if value is None:
            return
        line = format_value(
            note.key, value, value.value_type, quiet=self.quiet, show_binary=self.show_binary
        )
        self.say(f"{names.get(note.event, 'delete')}> {line}")


# ------------------------------------------------------------------------ main


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the tool with ``argv`` (without the program name); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    inp = sys.stdin if stdin is None else stdin
    try:
        opts, params = getopt.gnu_getopt(args, _SHORT_OPTS, _LONG_OPTS)
    except getopt.GetoptError as exc:
        # Python's getopt words long-option errors its own way; say it as getopt_long.
        if exc.msg.startswith("option --") and "requires argument" in exc.msg:
            print(f"{PROG}: option '--{exc.opt}' requires an argument", file=err)
        elif exc.msg.startswith("option --") and "not recognized" in exc.msg:
            print(f"{PROG}: unrecognized option '--{exc.opt}'", file=err)
        elif exc.opt and ("requires argument" in exc.msg):
            print(f"{PROG}: option requires an argument -- '{exc.opt}'", file=err)
        elif exc.opt and len(exc.opt) == 1:
            print(f"{PROG}: invalid option -- '{exc.opt}'", file=err)
        else:
            print(f"{PROG}: {exc.msg}", file=err)
        return 1
    action = "print"
    quiet = show_binary = False
    cmap_map = CmapMap.DEFAULT
    load_file = clear_target = ""
    ipc_prefix = os.environ.get(PREFIX_ENV, "")
    for opt, value in opts:
        if opt == "-h":
            print(_USAGE.format(prog=PROG, env=PREFIX_ENV, map_help=_MAP_HELP), file=out)
            return 0
        if opt in ("-g", "-s", "-d", "-D", "-t", "-T"):
            action = opt
        elif opt == "-p":
            action, load_file = "-p", value
        elif opt == "-C":
            if value not in _CLEAR_TARGETS:
                print(
                    "argument to -C should be 'knet', 'totem', 'ipc', 'schedmiss' or 'all'",
                    file=err,
                )
                return 1
            action, clear_target, cmap_map = "-C", value, CmapMap.STATS
        elif opt == "-q":
            quiet = True
        elif opt == "-b":
            show_binary = True
        elif opt == "-m":
            if value not in _MAPS:
                print("invalid map name, must be 'default', 'icmap' or 'stats'", file=err)
                return 1
            cmap_map = _MAPS[value]
        elif opt == "--ipc-prefix":
            ipc_prefix = value
    if action == "print" and params:
        action = "prefix"
    if action in ("-g", "-d", "-D", "-t", "-T") and not params:
        print("Expected key after options", file=err)
        return 1
    if action == "-s" and len(params) < 3:
        print("At least 3 parameters are expected for set", file=err)
        return 1
    try:
        handle = initialize(cmap_map, prefix=ipc_prefix)
    except CsError as exc:
        print(f"Failed to initialize the cmap API. Error {cs_strerror(exc.code)}", file=err)
        return 1
    with handle:
        tool = _Tool(handle, out, err, quiet=quiet, show_binary=show_binary)
        try:
            return _run(tool, action, params, load_file, clear_target, inp)
        except _Fail as exc:
            print(str(exc), file=err)
            return 1
        except CsError as exc:
            print(f"{PROG}: {exc}", file=err)
            return 1
        except KeyboardInterrupt:
            return 130


def _run(
    tool: _Tool, action: str, params: list[str], load_file: str, clear_target: str, inp: TextIO
) -> int:
    if action == "print":
        return 0 if tool.print_prefix("") else 1
    if action == "prefix":
        found = [tool.print_prefix(prefix) for prefix in params]
        return 0 if any(found) else 1
    if action == "-g":
        return tool.get(params)
    if action == "-s":
        tool.set(params[0], params[1], params[2])
        return 0
    if action == "-d":
        return tool.delete(params)
    if action == "-D":
        return tool.delete_prefix(params)
    if action in ("-t", "-T"):
        return tool.track(params, action == "-T", inp)
    if action == "-p":
        return tool.load(load_file)
    # -C: the stats map clears a group when its trigger key is written.
    try:
        tool.handle.set(f"stats.clear.{clear_target}", 1, CmapValueType.UINT32)
    except CsError as exc:
        raise _Fail(f"Failed to clear stats. Error {cs_strerror(exc.code)}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
