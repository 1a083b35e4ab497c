"""The corosync.conf grammar: text in, an ordered list of flat cmap keys out.

A pure function of its input (no file system, no user database): :func:`parse_config`
takes the bytes of corosync.conf and of the files in ``uidgid.d/``;
:func:`load_config` is the only function here that reads files. The grammar is
corosync's (``exec/coroparse.c``, corosync reference section 2):

* Line oriented. A line may hold at most 510 bytes before its newline (corosync reads
  with a 512-byte buffer): longer is "Line too long". One trailing CR is removed.
* Whitespace is space, tab and the no-break space (byte 0xA0, or U+00A0 in UTF-8).
* A line whose first non-blank character is ``#`` is a comment; blank lines are
  skipped. There are no trailing comments: a ``#`` after a value is part of the value.
* ``name {`` opens a section (nothing may follow the brace, the name may not be
  empty), ``}`` alone closes it. A line with a ``{`` is always a section start, so a
  value cannot contain ``{``; a line with a ``:`` is a key/value line.
* ``key: value`` is split at the first colon; both sides are trimmed, the value may
  hold more colons (IPv6 addresses) and spaces, and may be empty.
* The cmap key is the section path joined with dots: ``totem.token``. Repeated
  sections are numbered: ``totem { interface { linknumber: 1 ... } }`` gives
  ``totem.interface.1.*``, the n-th ``nodelist { node { } }`` gives
  ``nodelist.node.<n>.*``, ``logging { logger_subsys { subsys: QUORUM ... } }`` gives
  ``logging.logger_subsys.QUORUM.*``.
* Key names are 3..255 characters of ``[A-Za-z0-9._/:-]`` (cmap's rule).
* ``uidgid { uid: NAME  gid: NAME }`` grants IPC access; it is stored as
  ``uidgid.config.uid.<uid>`` = 1 (names resolved by an injected function). The same
  section is also read from every regular file in ``uidgid.d/`` next to the main file.

Errors raise :class:`ConfigParseError`, printed as corosync prints them:
``parser error: <file>:<line>: <reason>``.

What differs from corosync, on purpose: a NUL byte in a line is reported as such
(corosync calls it "Line too long"); keys of an ``interface`` section that corosync
does not know are kept under the link (``totem.interface.<link>.<key>``, where
corosync drops the link number); ``node`` sections are numbered across repeated
``nodelist`` sections (corosync restarts at 0 and merges them); ``nozzle`` is read
but reported as unsupported in :attr:`ParsedConfig.warnings`.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "KEY_NAME_CHARS",
    "KEY_NAME_MAX_LEN",
    "KEY_NAME_MIN_LEN",
    "MAX_LINE_BYTES",
    "ConfigEntry",
    "ConfigError",
    "ConfigParseError",
    "IdResolver",
    "ParsedConfig",
    "load_config",
    "numeric_id",
    "parse_c_integer",
    "parse_config",
]

DEFAULT_CONFIG_PATH = "/etc/corosync/corosync.conf"

#: Bytes a line may hold before its newline (corosync's fgets buffer is 512 bytes,
#: one of them for the newline and one for the terminating NUL).
MAX_LINE_BYTES = 510

KEY_NAME_MIN_LEN = 3
KEY_NAME_MAX_LEN = 255
KEY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:-")

# corosync's ICMAP_KEYNAME_MAXLEN: a section path or key reaching it is refused.
_ICMAP_KEYNAME_MAXLEN = 256

# Lines are decoded as UTF-8 with surrogateescape, so a lone 0xA0 byte (Latin-1
# no-break space) arrives as U+DCA0 and a UTF-8 no-break space as U+00A0.
_WS = " \t\u00a0\udca0"

_INTEGER = re.compile(r"[+-]?[0-9]+")

#: Resolves a user or group (name or number) to its numeric id; None if unknown.
IdResolver = Callable[[str], int | None]


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` is corosync's message
    (``parse error in config: <reason>``), followed by the file and line when known.

    ``reason`` is the bare reason, ``key`` the cmap key concerned (or None).
    """

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        file: str | None = None,
        line: int | None = None,
        message: str | None = None,
    ) -> None:
        self.reason = reason
        self.key = key
        self.file = file
        self.line = line
        self.message = message if message is not None else f"parse error in config: {reason}"
        super().__init__(self._format())

    def _format(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.message} ({self.file}:{self.line})"

    def __str__(self) -> str:
        return self._format()


class ConfigParseError(ConfigError):
    """A line of a configuration file breaks the grammar or holds a value of the wrong
    type: ``parser error: <file>:<line>: <reason>``, as corosync prints it."""

    def __init__(self, reason: str, *, file: str, line: int, key: str | None = None) -> None:
        super().__init__(
            reason,
            key=key,
            file=file,
            line=line,
            message=f"parser error: {file}:{line}: {reason}",
        )

    def _format(self) -> str:
        return self.message


@attrs.frozen
class ConfigEntry:
    """One flat key of the configuration: its cmap key, the raw value as written
    (trimmed), and where it was written."""

    key: str
    value: str
    line: int
    file: str


@attrs.frozen
class ParsedConfig:
    """What the grammar yields: the entries in file order (a key written twice appears
    twice; the later one wins) and warnings about what is read but not used."""

    file: str
    entries: tuple[ConfigEntry, ...]
    warnings: tuple[str, ...] = ()


def parse_c_integer(text: str) -> int | None:
    """A decimal integer as C's strtoll reads a whole string: an optional sign and ASCII
    digits, nothing else; None when the text is not one."""
    if _INTEGER.fullmatch(text) is None:
        return None
    return int(text)


def numeric_id(text: str) -> int | None:
    """The resolver used when none is given: accepts only numeric ids (0..2**32-1)."""
    if text.isascii() and text.isdigit() and int(text) <= 0xFFFFFFFF:
        return int(text)
    return None


class _State(enum.Enum):
    """What the enclosing section means for the keys inside it (coroparse's states)."""

    NORMAL = enum.auto()
    INTERFACE = enum.auto()
    MEMBER = enum.auto()
    LOGGER_SUBSYS = enum.auto()
    LOGGING_DAEMON = enum.auto()
    UIDGID = enum.auto()
    NODELIST_NODE = enum.auto()
    UIDGID_FILE = enum.auto()  # top level of a uidgid.d file


@attrs.define
class _Collected:
    """Keys of an interface/logger_subsys/logging_daemon section, emitted when it closes
    (their cmap names depend on a key that may come last)."""

    items: list[tuple[str, str, int]] = attrs.field(factory=list)
    members: list[tuple[str, int]] = attrs.field(factory=list)
    linknumber: int = 0
    subsys: tuple[str, int] | None = None
    daemon_name: tuple[str, int] | None = None


@attrs.define
class _Frame:
    path: str
    state: _State
    collected: _Collected | None = None


def _strip(text: str, *, colon_and_brace: bool = False) -> str:
    """corosync's remove_whitespace(): trim blanks on both ends (and trailing ':' and '{'
    for names), but never remove the first non-blank character."""
    text = text.lstrip(_WS)
    if not text:
        return text
    stripped = text.rstrip(_WS + ":{" if colon_and_brace else _WS)
    return stripped or text[0]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _relative(path: str, prefix: str) -> str:
    return path[len(prefix) :] if path.startswith(prefix) else path


class _Parser:
    def __init__(
        self,
        file: str,
        *,
        uidgid_file: bool,
        resolve_user: IdResolver,
        resolve_group: IdResolver,
        node_number: int = 0,
    ) -> None:
        self.file = file
        self.uidgid_file = uidgid_file
        self.resolve_user = resolve_user
        self.resolve_group = resolve_group
        self.entries: list[ConfigEntry] = []
        self.warnings: list[str] = []
        self.node_number = node_number
        self.line_no = 0

    def error(self, reason: str, key: str | None = None) -> ConfigParseError:
        return ConfigParseError(reason, file=self.file, line=self.line_no, key=key)

    def emit(self, key: str, value: str, line: int) -> None:
        if len(key) > KEY_NAME_MAX_LEN:
            raise ConfigParseError(
                "New key makes total cmap path too long", file=self.file, line=line, key=key
            )
        if len(key) < KEY_NAME_MIN_LEN or not KEY_NAME_CHARS.issuperset(key):
            raise ConfigParseError(
                f'Invalid key name "{key}" (key names are {KEY_NAME_MIN_LEN}..'
                f"{KEY_NAME_MAX_LEN} characters of [A-Za-z0-9._/:-])",
                file=self.file,
                line=line,
                key=key,
            )
        self.entries.append(ConfigEntry(key=key, value=value, line=line, file=self.file))

    def parse(self, data: bytes) -> None:
        top = _Frame("", _State.UIDGID_FILE if self.uidgid_file else _State.NORMAL)
        stack = [top]
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the newline ending the last line
        for raw in lines:
            self.line_no += 1
            if len(raw) > MAX_LINE_BYTES:
                raise self.error("Line too long")
            if b"\0" in raw:
                raise self.error("Line contains a NUL byte")
            text = raw[:-1] if raw.endswith(b"\r") else raw
            line = text.decode("utf-8", "surrogateescape").rstrip(_WS)
            body = line.lstrip(_WS)
            if not body or body.startswith("#"):
                continue
            if "{" in line:
                before, _, after = line.partition("{")
                section = _strip(before, colon_and_brace=True)
                if not section:
                    raise self.error("Missing section name before opening bracket '{'")
                if _strip(after):
                    raise self.error("Extra characters after opening bracket '{'")
                parent = stack[-1]
                if len(parent.path) + len(section) + 1 >= _ICMAP_KEYNAME_MAXLEN:
                    raise self.error("Start of section makes total cmap path too long")
                stack.append(self.open_section(parent, _join(parent.path, section)))
            elif ":" in line:
                before, _, after = line.partition(":")
                key = _strip(before, colon_and_brace=True)
                value = _strip(after)
                if not key:
                    raise self.error("Key name can't be empty")
                frame = stack[-1]
                if len(frame.path) + len(key) + 1 >= _ICMAP_KEYNAME_MAXLEN:
                    raise self.error("New key makes total cmap path too long")
                self.item(frame, stack, _join(frame.path, key), key, value)
            elif "}" in line:
                if body != "}":
                    raise self.error("Extra characters before or after closing bracket '}'")
                if len(stack) == 1:
                    raise self.error("Unexpected closing brace")
                self.close_section(stack.pop(), stack)
            else:
                raise self.error("Line is not opening or closing section or key value")
        if len(stack) > 1:
            raise self.error("Missing closing brace")

    # -- sections ---------------------------------------------------------------

    def open_section(self, parent: _Frame, path: str) -> _Frame:
        state = parent.state
        if state is _State.UIDGID_FILE:
            if path != "uidgid":
                raise self.error("uidgid: Can't add subsection different than uidgid")
            return _Frame(path, _State.UIDGID)
        if state is _State.UIDGID:
            raise self.error("Subsections are not allowed within uidgid section")
        if state is _State.MEMBER:
            raise self.error("Subsections are not allowed within totem.interface.member section")
        if path == "totem.interface":
            return _Frame(path, _State.INTERFACE, _Collected())
        if path == "totem.interface.member":
            return _Frame(path, _State.MEMBER, parent.collected)
        if path == "logging.logger_subsys":
            return _Frame(path, _State.LOGGER_SUBSYS, _Collected())
        if path == "logging.logging_daemon":
            return _Frame(path, _State.LOGGING_DAEMON, _Collected())
        if path == "uidgid":
            return _Frame(path, _State.UIDGID)
        if path == "nodelist.node":
            return _Frame(path, _State.NODELIST_NODE)
        if path == "nozzle":
            self.warnings.append(
                f"{self.file}:{self.line_no}: the nozzle section is not supported by "
                "pycorosync; its keys are stored but no nozzle device is created"
            )
        return _Frame(path, state, parent.collected)

    def close_section(self, frame: _Frame, stack: list[_Frame]) -> None:
        collected = frame.collected
        if frame.path == "nodelist.node":
            self.node_number += 1
        elif frame.path == "totem.interface" and collected is not None:
            prefix = f"totem.interface.{collected.linknumber}."
            for rel, value, line in collected.items:
                self.emit(prefix + rel, value, line)
            for index, (value, line) in enumerate(collected.members):
                self.emit(f"{prefix}member.{index}", value, line)
        elif frame.path == "logging.logger_subsys" and collected is not None:
            if collected.subsys is None:
                raise self.error("No subsys key in logger_subsys directive")
            subsys, subsys_line = collected.subsys
            prefix = f"logging.logger_subsys.{subsys}."
            for rel, value, line in collected.items:
                self.emit(prefix + rel, value, line)
            self.emit(prefix + "subsys", subsys, subsys_line)
        elif frame.path == "logging.logging_daemon" and collected is not None:
            self.close_logging_daemon(collected)

    def close_logging_daemon(self, collected: _Collected) -> None:
        if collected.daemon_name is None:
            raise self.error("No name key in logging_daemon directive")
        name, name_line = collected.daemon_name
        subsys = collected.subsys
        # The daemon called "corosync" is this one: its keys are plain logging keys.
        if subsys is None:
            prefix = "logging." if name == "corosync" else f"logging.logging_daemon.{name}."
        elif name == "corosync":
            prefix = f"logging.logger_subsys.{subsys[0]}."
        else:
            prefix = f"logging.logging_daemon.{name}.{subsys[0]}."
        for rel, value, line in collected.items:
            self.emit(prefix + rel, value, line)
        if subsys is None:
            if name != "corosync":
                self.emit(prefix + "name", name, name_line)
        else:
            self.emit(prefix + "subsys", subsys[0], subsys[1])
            if name != "corosync":
                self.emit(prefix + "name", name, name_line)

    # -- key/value lines --------------------------------------------------------

    def item(self, frame: _Frame, stack: list[_Frame], path: str, key: str, value: str) -> None:
        state = frame.state
        line = self.line_no
        collected = frame.collected
        if state is _State.UIDGID_FILE:
            raise self.error("uidgid: Only uid and gid are allowed items")
        if state is _State.UIDGID:
            self.uidgid_item(path, value)
        elif state is _State.MEMBER and collected is not None:
            if path != "totem.interface.member.memberaddr":
                raise self.error("Only memberaddr is allowed in member section")
            collected.members.append((value, line))
        elif state is _State.INTERFACE and collected is not None:
            if path == "totem.interface.linknumber":
                collected.linknumber = self.linknumber(value)
            else:
                collected.items.append((_relative(path, "totem.interface."), value, line))
        elif state is _State.LOGGER_SUBSYS and collected is not None:
            if path == "logging.logger_subsys.subsys":
                collected.subsys = (value, line)
            else:
                collected.items.append((_relative(path, "logging.logger_subsys."), value, line))
        elif state is _State.LOGGING_DAEMON and collected is not None:
            if path == "logging.logging_daemon.subsys":
                collected.subsys = (value, line)
            elif path == "logging.logging_daemon.name":
                collected.daemon_name = (value, line)
            else:
                collected.items.append((_relative(path, "logging.logging_daemon."), value, line))
        elif state is _State.NODELIST_NODE:
            rel = _relative(path, "nodelist.node.")
            self.emit(f"nodelist.node.{self.node_number}.{rel}", value, line)
        else:
            self.emit(path, value, line)

    def linknumber(self, value: str) -> int:
        number = parse_c_integer(value)
        if number is None or not 0 <= number <= 255:
            raise self.error(
                'Value of key "totem.interface.linknumber" is expected to be integer in range '
                f'(0..255), but "{value}" was given',
                key="totem.interface.linknumber",
            )
        return number

    def uidgid_item(self, path: str, value: str) -> None:
        if path == "uidgid.uid":
            uid = self.resolve_user(value)
            if uid is None:
                raise self.error(
                    f"The '{value}' user is not found in /etc/passwd, please read the "
                    "documentation."
                )
            self.emit(f"uidgid.config.uid.{uid}", "1", self.line_no)
        elif path == "uidgid.gid":
            gid = self.resolve_group(value)
            if gid is None:
                raise self.error(
                    f"The '{value}' group is not found in /etc/group, please read the "
                    "documentation."
                )
            self.emit(f"uidgid.config.gid.{gid}", "1", self.line_no)
        else:
            raise self.error("uidgid: Only uid and gid are allowed items")


def _to_bytes(data: bytes | str) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return data.encode("utf-8", "surrogateescape")  # undoes our own decoding
    except UnicodeEncodeError:
        return data.encode("utf-8", "surrogatepass")  # other lone surrogates


def parse_config(
    data: bytes | str,
    *,
    file: str = DEFAULT_CONFIG_PATH,
    uidgid_files: Sequence[tuple[str, bytes | str]] = (),
    resolve_user: IdResolver = numeric_id,
    resolve_group: IdResolver = numeric_id,
) -> ParsedConfig:
    """Parse corosync.conf (``data``, named ``file`` in messages) and the ``uidgid.d``
    files given as (name, content) pairs, in that order.

    ``resolve_user``/``resolve_group`` turn the names in ``uidgid`` sections into ids;
    the default accepts numbers only. Raises :class:`ConfigParseError`.
    """
    parser = _Parser(
        file, uidgid_file=False, resolve_user=resolve_user, resolve_group=resolve_group
    )
    parser.parse(_to_bytes(data))
    entries = list(parser.entries)
    warnings = list(parser.warnings)
    for name, content in uidgid_files:
        extra = _Parser(
            name, uidgid_file=True, resolve_user=resolve_user, resolve_group=resolve_group
        )
        extra.parse(_to_bytes(content))
        entries.extend(extra.entries)
    return ParsedConfig(file=file, entries=tuple(entries), warnings=tuple(warnings))


def _system_user(name: str) -> int | None:
    import pwd

    number = numeric_id(name)
    if number is not None:
        return number
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _system_group(name: str) -> int | None:
    import grp

    number = numeric_id(name)
    if number is not None:
        return number
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def load_config(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH,
    *,
    resolve_user: IdResolver = _system_user,
    resolve_group: IdResolver = _system_group,
) -> ParsedConfig:
    """Read ``path`` and the regular files of ``uidgid.d/`` beside it (in name order)
    and parse them; user and group names are looked up in the system databases.

    Raises :class:`ConfigError` ("Can't read file ...") when the main file cannot be
    read, and :class:`ConfigParseError` for its content. Unreadable ``uidgid.d``
    files are skipped, as corosync does.
    """
    main = Path(path)
    try:
        data = main.read_bytes()
    except OSError as exc:
        reason = f"Can't read file {main}: {exc.strerror or exc}"
        raise ConfigError(reason, message=reason) from None
    extra: list[tuple[str, bytes]] = []
    uidgid_dir = main.parent / "uidgid.d"
    try:
        names = sorted(os.listdir(uidgid_dir))
    except OSError:
        names = []
    for name in names:
        candidate = uidgid_dir / name
        if not candidate.is_file():
            continue
        try:
            extra.append((str(candidate), candidate.read_bytes()))
        except OSError:
            continue
    return parse_config(
        data,
        file=str(main),
        uidgid_files=extra,
        resolve_user=resolve_user,
        resolve_group=resolve_group,
    )
