"""``pycorosync-cfgtool``: administer a node, like corosync-cfgtool(8) 3.1.7.

Same flags, output (stdout), error texts (stderr) and exit codes as corosync-cfgtool
3.1.7, with ``pycorosync-cfgtool`` in the getopt error prefix::

    pycorosync-cfgtool [[-i <interface ip>] [-b] -s] [-R] [-L] [-k nodeid] [-a nodeid] [-h] [-H]

``-s`` link status by link (``-b`` brief: one digit per node, enabled | connected << 1,
``n`` for this node), ``-n`` status of the reachable other nodes and their links,
``-R`` reload corosync.conf on every node, ``-L`` reopen the log files, ``-k nodeid``
kill a node, ``-a nodeid`` its addresses, ``-H`` shut this node down (``--force``:
whatever the tracking clients say), ``-h`` or nothing: the usage. Long forms:
``--if --status --nodes --brief --reload --reopen --kill --address --shutdown``.
The last action given wins; ``-i`` is accepted and, as in corosync 3.1.7, has no
effect. ``-s``/``-n`` read the node ids (``nodelist.node.N.nodeid``), the transport
(``totem.transport``) and each link's knet transport from cmap, as the real tool does.

The real tool's quirks are kept: ``-H`` exits 0 even when the shutdown is refused
(with ``Could not shutdown (error = N)`` on stderr) and retries TRY_AGAIN for 30
seconds; ``-R`` and ``-L`` exit with the cs_error_t number of a failure; some errors
print the number of the error, others its name.

Beyond corosync: ``--ipc-prefix=PREFIX`` (or the environment variable
``PYCOROSYNC_IPC_PREFIX``) is prepended to the IPC socket names, to reach one of several
pycorosync daemons sharing a network namespace. The real tool has no such option.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TextIO

import attrs

from corosync._errors import CsError, CsErrorCode, cs_strerror
from corosync.ipc._cfg_msgs import CFG_MAX_LINKS, CfgLinkStatus, CfgNodeStatus, CfgShutdownFlags
from corosync.ipc._cmap_msgs import CmapValue, CmapValueType

__all__ = ["PREFIX_ENV", "CfgApi", "CmapApi", "main"]

PROG = "pycorosync-cfgtool"
PREFIX_ENV = "PYCOROSYNC_IPC_PREFIX"

_USAGE = """\
corosync-cfgtool [[-i <interface ip>] [-b] -s] [-R] [-L] [-k nodeid] [-a nodeid] [-h] [-H]

A tool for displaying and configuring active parameters within corosync.
options:
\t-i\tFinds only information about the specified interface IP address or link id when used with -s..
\t-s\tDisplays the status of the current links on this node.
\t-n\tDisplays the status of the connected nodes and their links.
\t-b\tDisplays the brief status of the current links on this node when used with -s.
\t-R\tTell all instances of corosync in this cluster to reload corosync.conf.
\t-L\tTell corosync to reopen all logging files.
\t-k\tKill a node identified by node id.
\t-a\tDisplay the IP address(es) of a node
\t-h\tPrint basic usage.
\t-H\tShutdown corosync cleanly on this node.
\t\t--force will shut down corosync regardless of daemon vetos
"""

_EXTENSION = f"""
Our extension (not in corosync-cfgtool):
\t--ipc-prefix=PREFIX  prefix of the IPC socket names (default ${PREFIX_ENV})
"""

_SHORT_WITH_ARG = frozenset("ika")
_SHORT_FLAGS = frozenset("snbrRLhH")
# corosync's long options, then ours; a value True takes an argument.
_LONG_OPTS = {
    "if": ("i", True),
    "status": ("s", False),
    "nodes": ("n", False),
    "brief": ("b", False),
    "reload": ("R", False),
    "reopen": ("L", False),
    "kill": ("k", True),
    "address": ("a", True),
    "shutdown": ("H", False),
    "force": ("force", False),
    "ipc-prefix": ("ipc-prefix", True),
}
_NODELIST_NODEID = re.compile(r"nodelist\.node\.\s*[+-]?\d+\.nodeid\Z")
_INTERFACE_KEY = re.compile(r"totem\.interface\.\s*\+?(\d+)")
_NODEID_ARG = re.compile(r"\s*\+?\d+\Z")
_UINT_MAX = 2**32 - 1
_SHUTDOWN_RETRIES = 30  # cs_repeat in corosync-cfgtool: TRY_AGAIN, one second apart

sleep: Callable[[float], None] = time.sleep
"""How the tool waits between shutdown retries (tests replace it)."""


class _Action(enum.Enum):
    NOOP = enum.auto()
    LINKSTATUS_GET = enum.auto()
    NODESTATUS_GET = enum.auto()
    RELOAD_CONFIG = enum.auto()
    REOPEN_LOG_FILES = enum.auto()
    SHUTDOWN = enum.auto()
    SHOWADDR = enum.auto()
    KILL_NODE = enum.auto()


_ACTIONS = {
    "s": _Action.LINKSTATUS_GET,
    "n": _Action.NODESTATUS_GET,
    "R": _Action.RELOAD_CONFIG,
    "L": _Action.REOPEN_LOG_FILES,
    "H": _Action.SHUTDOWN,
    "k": _Action.KILL_NODE,
    "a": _Action.SHOWADDR,
}


class CfgApi(Protocol):
    """What the tool uses of a :class:`corosync.cfg.CfgHandle`."""

    def local_get(self) -> int: ...
    def node_status_get(self, nodeid: int) -> CfgNodeStatus: ...
    def reload_config(self) -> None: ...
    def reopen_log_files(self) -> None: ...
    def kill_node(self, nodeid: int, reason: str) -> None: ...
    def try_shutdown(self, flags: CfgShutdownFlags = ...) -> None: ...
    def finalize(self) -> None: ...

    # get_node_addrs returns an object with ``addresses``; typed loosely for fakes.
    def get_node_addrs(self, nodeid: int) -> _HasAddresses: ...


class _HasAddresses(Protocol):
    @property
    def addresses(self) -> tuple[str, ...]: ...


class _Entry(Protocol):
    @property
    def key(self) -> str: ...


class _Typed(Protocol):
    @property
    def value_type(self) -> CmapValueType: ...
    @property
    def value(self) -> CmapValue: ...


class CmapApi(Protocol):
    """What the tool uses of a :class:`corosync.cmap.CmapHandle`."""

    def get_typed(self, key: str) -> _Typed: ...
    def iterate(self, prefix: str = "") -> Iterable[_Entry]: ...
    def finalize(self) -> None: ...


class _Exit(Exception):
    """Stop now with this exit status (C's exit())."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@attrs.define
class _Options:
    action: _Action = _Action.NOOP
    brief: bool = False
    force: bool = False
    nodeid: int = 0
    interface: str = ""
    ipc_prefix: str = ""


def _c_int(value: int) -> int:
    """An unsigned 32-bit value as C's ``%d`` prints it."""
    return value - 2**32 if value >= 2**31 else value


# ------------------------------------------------------------------ arguments


class _Args:
    """getopt_long as glibc does it for "i:snbrRLk:a:hH": options are handled in the
    order given (so the first error stops), other arguments are skipped."""

    def __init__(self, argv: Sequence[str], err: TextIO) -> None:
        self.argv = list(argv)
        self.err = err

    def fail(self, message: str) -> _Exit:
        print(f"{PROG}: {message}", file=self.err)
        return _Exit(1)

    def options(self) -> Iterable[tuple[str, str]]:
        """(option, argument) pairs; raises _Exit(1) after printing getopt's error."""
        index = 0
        args = self.argv
        while index < len(args):
            arg = args[index]
            index += 1
            if arg == "--":
                return
            if arg.startswith("--"):
                name, has_value, value = arg[2:].partition("=")
                opt, takes = self._long(name)
                if takes and not has_value:
                    if index >= len(args):
                        raise self.fail(f"option '--{_full(name)}' requires an argument")
                    value = args[index]
                    index += 1
                elif not takes and has_value:
                    raise self.fail(f"option '--{_full(name)}' doesn't allow an argument")
                yield opt, value
                continue
            if not arg.startswith("-") or arg == "-":
                continue  # a non-option argument (glibc permutes it to the end)
            pos = 1
            while pos < len(arg):
                char = arg[pos]
                pos += 1
                if char in _SHORT_WITH_ARG:
                    if pos < len(arg):
                        value = arg[pos:]
                    elif index < len(args):
                        value = args[index]
                        index += 1
                    else:
                        raise self.fail(f"option requires an argument -- '{char}'")
                    yield char, value
                    break
                if char not in _SHORT_FLAGS:
                    raise self.fail(f"invalid option -- '{char}'")
                yield char, ""

    def _long(self, name: str) -> tuple[str, bool]:
        if name in _LONG_OPTS:
            return _LONG_OPTS[name]
        matches = [full for full in _LONG_OPTS if full.startswith(name)] if name else []
        if len(matches) == 1:
            return _LONG_OPTS[matches[0]]
        if not matches:
            raise self.fail(f"unrecognized option '--{name}'")
        choices = " ".join(f"'--{m}'" for m in matches)
        raise self.fail(f"option '--{name}' is ambiguous; possibilities: {choices}")


def _full(name: str) -> str:
    if name in _LONG_OPTS:
        return name
    return next(full for full in _LONG_OPTS if full.startswith(name))


def _parse_nodeid(text: str, err: TextIO) -> int:
    """util_strtonum(optarg, 1, UINT_MAX): a whole decimal number in range."""
    if _NODEID_ARG.match(text) and 1 <= int(text) <= _UINT_MAX:
        return int(text)
    print("The nodeid was not valid, try a positive number", file=err)
    raise _Exit(1)


def _parse(argv: Sequence[str], err: TextIO) -> _Options:
    options = _Options(ipc_prefix=os.environ.get(PREFIX_ENV, ""))
    for opt, value in _Args(argv, err).options():
        if opt in ("k", "a"):
            options.nodeid = _parse_nodeid(value, err)
        if opt in _ACTIONS:
            options.action = _ACTIONS[opt]
        elif opt == "b":
            options.brief = True
        elif opt == "i":
            options.interface = value[:127]  # stored, unused, as in corosync 3.1.7
        elif opt == "force":
            options.force = True
        elif opt == "ipc-prefix":
            options.ipc_prefix = value
    return options


# ----------------------------------------------------------------------- tool


@attrs.define
class _Tool:
    options: _Options
    out: TextIO
    err: TextIO
    open_cfg: Callable[[str], CfgApi]
    open_cmap: Callable[[str], CmapApi]

    def say(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.out)

    def warn(self, text: str) -> None:
        print(text, file=self.err)

    def cfg(self, numeric_error: bool) -> CfgApi:
        try:
            return self.open_cfg(self.options.ipc_prefix)
        except CsError as exc:
            code = str(int(exc.code)) if numeric_error else cs_strerror(exc.code)
            self.warn(f"Could not initialize corosync configuration API error {code}")
            raise _Exit(1) from None

    def run(self) -> int:
        action = self.options.action
        if action in (_Action.LINKSTATUS_GET, _Action.NODESTATUS_GET):
            return self.status(action)
        if action is _Action.RELOAD_CONFIG:
            return self.reload()
        if action is _Action.REOPEN_LOG_FILES:
            return self.reopen()
        if action is _Action.KILL_NODE:
            return self.kill()
        if action is _Action.SHUTDOWN:
            return self.shutdown()
        if action is _Action.SHOWADDR:
            return self.show_addresses()
        self.say(_USAGE + _EXTENSION, end="")
        return 0

    # -------------------------------------------------------------- -s and -n

    def status(self, action: _Action) -> int:
        cfg = self.cfg(numeric_error=True)
        try:
            return self._status(cfg, action)
        finally:
            cfg.finalize()

    def _status(self, cfg: CfgApi, action: _Action) -> int:
        try:
            cmap = self.open_cmap(self.options.ipc_prefix)
        except CsError as exc:
            self.warn(f"Could not initialize corosync cmap API error {int(exc.code)}")
            raise _Exit(1) from None
        try:
            transport = _get_string(cmap, "totem.transport")
            knet = transport not in ("udp", "udpu")
            transport_name = "knet" if transport is None else transport
            try:
                local = cfg.local_get()
            except CsError as exc:
                self.warn(f"Could not get the local node id, the error is: {int(exc.code)}")
                return 1
            nodeids = self._nodelist(cmap)
            link_transport = _link_transports(cmap, "udp" if knet else "")
        finally:
            cmap.finalize()
        local_index = other_index = 0
        for index, nodeid in enumerate(nodeids):
            if nodeid == local:
                local_index = index
            else:
                # This node has one link, to itself: the links show at another node.
                other_index = index
        self.say(f"Local node ID {local}, transport {transport_name}")
        if action is _Action.NODESTATUS_GET:
            self._nodes(cfg, nodeids, local, link_transport, knet)
        else:
            self._links(cfg, nodeids, local_index, other_index, link_transport)
        return 0

    def _nodelist(self, cmap: CmapApi) -> list[int]:
        try:
            entries = [entry.key for entry in cmap.iterate("nodelist.node.")]
        except CsError as exc:
            self.warn(f"Could not get nodelist from cmap. error {int(exc.code)}")
            raise _Exit(1) from None
        nodeids = []
        for key in entries:
            if _NODELIST_NODEID.match(key):
                nodeid = _get_u32(cmap, key)
                if nodeid is not None:
                    nodeids.append(nodeid)
        if not nodeids:
            self.warn("No nodes found in nodelist")
            raise _Exit(1)
        return sorted(nodeids)

    def _nodes(
        self,
        cfg: CfgApi,
        nodeids: list[int],
        local: int,
        link_transport: list[str],
        knet: bool,
    ) -> None:
        for nodeid in nodeids:
            try:
                status = cfg.node_status_get(nodeid)
            except CsError:
                continue
            if not status.reachable or status.nodeid == local:
                continue
            line = f"nodeid: {status.nodeid} reachable"
            line += " remote" if status.remote else ""
            line += " external" if status.external else ""
            self.say(line)
            for number, link in enumerate(status.link_status):
                if not link.enabled:
                    continue
                arrow = "->" if knet else ""
                line = f"   LINK: {number} {link_transport[number]}"
                line += f" ({link.src_ipaddr}{arrow}{link.dst_ipaddr}) enabled"
                line += " connected" if link.connected else ""
                line += " dynconnected" if link.dynconnected else ""
                self.say(f"{line} mtu: {_c_int(link.mtu)}")
            self.say("")

    def _links(
        self,
        cfg: CfgApi,
        nodeids: list[int],
        local_index: int,
        other_index: int,
        link_transport: list[str],
    ) -> None:
        infos: list[CfgNodeStatus] = []
        for nodeid in nodeids:
            try:
                infos.append(cfg.node_status_get(nodeid))
            except CsError as exc:
                self.warn(
                    f"Could not get the node status for nodeid {_c_int(nodeid)}, "
                    f"the error is: {int(exc.code)}"
                )
                infos.append(CfgNodeStatus(nodeid=0))  # corosync shows a zeroed entry
        reference = infos[other_index]
        for number in range(CFG_MAX_LINKS):
            if not reference.link_status[number].enabled:
                continue
            self.say(f"LINK ID {number} {link_transport[number]}")
            if link_transport[number] == "sctp":
                self.say("**SCTP is deprecated and will be removed in a future release")
            self.say(f"\taddr\t= {reference.link_status[number].src_ipaddr}")
            links = [info.link_status[number] for info in infos]
            if self.options.brief:
                digits = "".join(
                    "n" if index == local_index else _digit(link)
                    for index, link in enumerate(links)
                )
                self.say(f"\tstatus\t= {digits}")
                continue
            self.say("\tstatus:")
            for index, (info, link) in enumerate(zip(infos, links, strict=True)):
                if index == local_index:
                    state = "localhost"
                else:
                    state = "connected" if link.connected else "disconnected"
                self.say(f"\t\tnodeid: {info.nodeid:10d}:\t{state}")

    # ------------------------------------------------------------ the others

    def reload(self) -> int:
        self.say("Reloading corosync.conf...")
        cfg = self.cfg(numeric_error=False)
        rc = 0
        try:
            cfg.reload_config()
        except CsError as exc:
            self.warn(f"Could not reload configuration. Error {cs_strerror(exc.code)}")
            rc = int(exc.code)
        else:
            self.say("Done")
        cfg.finalize()
        return rc

    def reopen(self) -> int:
        cfg = self.cfg(numeric_error=False)
        rc = 0
        try:
            cfg.reopen_log_files()
        except CsError as exc:
            self.warn(f"Could not reopen corosync logging files. Error {cs_strerror(exc.code)}")
            rc = int(exc.code)
        cfg.finalize()
        return rc

    def kill(self) -> int:
        nodeid = self.options.nodeid
        self.say(f"Killing node {nodeid}")
        cfg = self.cfg(numeric_error=True)
        try:
            cfg.kill_node(nodeid, "Killed by corosync-cfgtool")
        except CsError as exc:
            self.warn(f"Could not kill node (error = {cs_strerror(exc.code)})")
            return 1
        finally:
            cfg.finalize()
        return 0

    def shutdown(self) -> int:
        flags = CfgShutdownFlags.REGARDLESS if self.options.force else CfgShutdownFlags.REQUEST
        cfg = self.cfg(numeric_error=True)
        self.say("Shutting down corosync")
        self.out.flush()
        error = CsErrorCode.OK
        for attempt in range(_SHUTDOWN_RETRIES):
            try:
                cfg.try_shutdown(flags)
            except CsError as exc:
                error = exc.code
                if exc.code is CsErrorCode.TRY_AGAIN and attempt + 1 < _SHUTDOWN_RETRIES:
                    sleep(1)
                    continue
            else:
                error = CsErrorCode.OK
            break
        if error is not CsErrorCode.OK:
            # corosync-cfgtool reports it and still exits 0.
            self.warn(f"Could not shutdown (error = {int(error)})")
        cfg.finalize()
        return 0

    def show_addresses(self) -> int:
        nodeid = self.options.nodeid
        cfg = self.cfg(numeric_error=True)
        try:
            addresses = cfg.get_node_addrs(nodeid).addresses
        except CsError:
            self.warn(f"Could not get node address for nodeid {_c_int(nodeid)}")
            return 1
        finally:
            cfg.finalize()
        self.say(" ".join(addresses))
        return 0


def _digit(link: CfgLinkStatus) -> str:
    return str(int(link.enabled) | int(link.connected) << 1)


def _get_string(cmap: CmapApi, key: str) -> str | None:
    """cmap_get_string: None when the key is absent or not a string."""
    try:
        typed = cmap.get_typed(key)
    except CsError:
        return None
    if typed.value_type is not CmapValueType.STRING or not isinstance(typed.value, str):
        return None
    return typed.value


def _get_u32(cmap: CmapApi, key: str) -> int | None:
    """cmap_get_uint32: None when the key is absent or not a u32."""
    try:
        typed = cmap.get_typed(key)
    except CsError:
        return None
    if typed.value_type is not CmapValueType.UINT32 or not isinstance(typed.value, int):
        return None
    return typed.value


def _link_transports(cmap: CmapApi, default: str) -> list[str]:
    """Each link's ``totem.interface.N.knet_transport`` (``default`` when unset)."""
    transports = [default] * CFG_MAX_LINKS
    try:
        keys = [entry.key for entry in cmap.iterate("totem.interface.")]
    except CsError:
        return transports  # fine to fail: the defaults stand
    for key in keys:
        match = _INTERFACE_KEY.match(key)
        if match is None or int(match.group(1)) >= CFG_MAX_LINKS:
            continue
        number = int(match.group(1))
        value = _get_string(cmap, f"totem.interface.{number}.knet_transport")
        if value is not None:
            transports[number] = value
    return transports


def _open_cfg(prefix: str) -> CfgApi:
    from corosync.cfg import initialize

    return initialize(prefix=prefix)


def _open_cmap(prefix: str) -> CmapApi:
    from corosync.cmap import initialize

    return initialize(prefix=prefix)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    open_cfg: Callable[[str], CfgApi] = _open_cfg,
    open_cmap: Callable[[str], CmapApi] = _open_cmap,
) -> int:
    """Run the tool with ``argv`` (without the program name); returns the exit code.
    ``open_cfg``/``open_cmap`` connect to the services given the IPC prefix."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        options = _parse(args, err)
        tool = _Tool(options, out, err, open_cfg, open_cmap)
        return tool.run()
    except _Exit as exc:
        return exc.status
    except CsError as exc:  # a connection lost in the middle
        print(f"{PROG}: {exc}", file=err)
        return 1
    finally:
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
