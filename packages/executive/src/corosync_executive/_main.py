"""``pycorosync``: the daemon's command line, as corosync(8).

``pycorosync [-c config] [-f] [-t] [-v]``; without ``-f`` it detaches into the
background once the node runs (the parent exits with the node's start-up status).
Ours beyond corosync: ``--ipc-prefix`` (IPC socket names start with it, so several
nodes can share one network namespace with our clients) and ``--local-address``
(which node of the nodelist this is, when the host owns several of its addresses).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

import trio

import totem
from corosync.ipc import abstract_socket_address
from corosync_executive._config_parser import DEFAULT_CONFIG_PATH, ConfigError
from corosync_executive._config_validate import Config
from corosync_executive._daemon import (
    DEFAULT_STATE_DIR,
    Daemon,
    ExitStatus,
    crypto_config_of,
    ring_store,
)
from corosync_executive._local import ConfigSource
from corosync_executive._logging import (
    BLACKBOX_FILE_NAME,
    Blackbox,
    LogSystem,
    configure_logging,
    install_crash_dump,
)

__all__ = ["VERSION", "main"]

VERSION = "0.1.0"
LOCK_FILE_NAME = "pycorosync.pid"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycorosync",
        description="The pycorosync cluster engine (a Python corosync).",
    )
    parser.add_argument("-c", dest="config", default=DEFAULT_CONFIG_PATH, help="config file")
    parser.add_argument("-f", dest="foreground", action="store_true", help="run in foreground")
    parser.add_argument("-t", dest="test", action="store_true", help="test the config and exit")
    parser.add_argument("-v", dest="version", action="store_true", help="print the version")
    parser.add_argument(
        "-p", dest="no_priority", action="store_true", help="accepted for corosync compatibility"
    )
    parser.add_argument(
        "-r", dest="round_robin", action="store_true", help="accepted for corosync compatibility"
    )
    parser.add_argument(
        "--ipc-prefix",
        default=os.environ.get("PYCOROSYNC_IPC_PREFIX", ""),
        help="prefix of the IPC socket names (default $PYCOROSYNC_IPC_PREFIX or none)",
    )
    parser.add_argument(
        "--local-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="this node's address in the nodelist (repeatable); default: host name and "
        "the addresses this host owns",
    )
    parser.add_argument(
        "--runtime-dir",
        default="/dev/shm",  # noqa: S108 - libqb's place for IPC files
        help="where the IPC ring files are created",
    )
    return parser


def version_text() -> str:
    compression = ["zlib"] + [
        name
        for name, module in (("lz4", "lz4"), ("zstd", "zstandard"))
        if importlib.util.find_spec(module) is not None
    ]
    return (
        f"Corosync Cluster Engine (pycorosync), version '{VERSION}'\n"
        "A Python implementation; IPC and tools compatible with corosync 3.1.7\n"
        "\n"
        "Built-in features: systemd blackbox\n"
        "Available crypto models: nacl\n"
        f"Available compression models: {' '.join(compression)}\n"
    )


def _error(message: str, status: ExitStatus, out: TextIO) -> int:
    print(f"error   [MAIN  ] {message}", file=out)
    print(f"error   [MAIN  ] Corosync Cluster Engine exiting with status {int(status)}.", file=out)
    return int(status)


@contextlib.contextmanager
def _instance_lock(state_dir: str) -> Iterator[None]:
    """One daemon per state directory: a lock on ``<state_dir>/pycorosync.pid``."""
    path = os.path.join(state_dir, LOCK_FILE_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise _AlreadyRunning(
                f"another pycorosync is already running (pid {other}; lock {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class _AlreadyRunning(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        sys.stdout.write(version_text())
        return 0
    source = ConfigSource(args.config, local_addresses=tuple(args.local_address))
    try:
        config = source.load()
        crypto_config_of(config)  # the key must be readable and valid
    except ConfigError as exc:
        # str() is corosync's whole line ("parse error in config: ...", "parser error:
        # file:line: ...", "Could not open <keyfile>: ...").
        return _error(str(exc), ExitStatus.MAIN_CONFIG, sys.stderr)
    if args.test:
        for warning in config.warnings:
            print(f"warning [MAIN  ] {warning}", file=sys.stderr)
        print("Config file is valid", file=sys.stderr)
        return 0
    # As corosync: the config, else systemd's StateDirectory=, else the built-in default.
    state_dir = config.system.state_dir or os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        return _error(
            f"cannot create the state directory {state_dir}: {exc.strerror}",
            ExitStatus.DIR_NOT_PRESENT,
            sys.stderr,
        )
    if not args.foreground:
        return _daemonize(lambda ready: _run(args, source, config, state_dir, ready))
    return _run(args, source, config, state_dir, None)


def _run(
    args: argparse.Namespace,
    source: ConfigSource,
    config: Config,
    state_dir: str,
    ready: _ReadyPipe | None,
) -> int:
    try:
        with _instance_lock(state_dir):
            try:
                ring_store(state_dir, config.local_nodeid).load()  # the daemon's reads again
            except totem.TotemError as exc:
                return _error(str(exc), ExitStatus.STORE_RINGID, sys.stderr)
            blackbox = Blackbox() if config.logging.blackbox else None
            try:
                log_system = configure_logging(config.logging, blackbox=blackbox)
            except (OSError, ValueError) as exc:
                return _error(f"logging setup failed: {exc}", ExitStatus.LOG_CONFIG, sys.stderr)
            if blackbox is not None:
                install_crash_dump(blackbox, os.path.join(state_dir, BLACKBOX_FILE_NAME))
            try:
                return trio.run(
                    _serve, args, source, config, state_dir, log_system, blackbox, ready
                )
            finally:
                log_system.close()
    except _AlreadyRunning as exc:
        return _error(str(exc), ExitStatus.ALREADY_RUNNING, sys.stderr)
    except OSError as exc:
        return _error(
            f"cannot lock {state_dir}: {exc.strerror}", ExitStatus.ACQUIRE_LOCK, sys.stderr
        )


async def _serve(
    args: argparse.Namespace,
    source: ConfigSource,
    config: Config,
    state_dir: str,
    log_system: LogSystem,
    blackbox: Blackbox | None,
    ready: _ReadyPipe | None,
) -> int:
    daemon = Daemon(
        source,
        config,
        ipc_prefix=args.ipc_prefix,
        runtime_dir=args.runtime_dir,
        state_dir=state_dir,
        log_system=log_system,
        blackbox=blackbox,
        notify_socket=os.environ.get("NOTIFY_SOCKET"),
    )
    for service in daemon.services:
        # Before totem starts: a second daemon must not join the ring only to find
        # its IPC names taken (Daemon.run checks again when it binds them).
        if service.ipc_name is not None and _ipc_name_taken(args.ipc_prefix + service.ipc_name):
            return _error(
                f"IPC socket {args.ipc_prefix + service.ipc_name!r} is already in use: "
                "another corosync daemon runs in this network namespace",
                ExitStatus.ALREADY_RUNNING,
                sys.stderr,
            )
    status: int = ExitStatus.FATAL

    async with trio.open_nursery() as nursery:

        async def tell_parent_when_ready() -> None:
            await daemon.ready.wait()
            if ready is not None:
                ready.signal(0)
                _detach_stderr()

        async def run() -> None:
            nonlocal status
            try:
                status = await daemon.run()
            except ConfigError as exc:
                status = _error(str(exc), ExitStatus.MAIN_CONFIG, sys.stderr)
            nursery.cancel_scope.cancel()

        nursery.start_soon(tell_parent_when_ready)
        nursery.start_soon(run)
    return status


def _ipc_name_taken(name: str) -> bool:
    """Whether a process in this network namespace listens on the abstract socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        try:
            probe.bind(abstract_socket_address(name))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class _ReadyPipe:
    """The pipe to the background parent: one byte, the start-up status, written once
    (when the node is ready, or with the status of a start that failed)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def signal(self, status: int) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, bytes([status & 0xFF]))
        with contextlib.suppress(OSError):
            os.close(fd)


def _detach_stderr() -> None:
    """In the background, once running: let go of the caller's stderr (as corosync
    does), so a caller reading our output until EOF is not held by the daemon."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _daemonize(run: Callable[[_ReadyPipe], int]) -> int:
    """Fork into the background; the parent exits with the child's start-up status."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        status = os.read(read_end, 1)
        os.close(read_end)
        if not status:
            return int(ExitStatus.FATAL)
        return status[0]
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1):
        os.dup2(devnull, stream)
    ready = _ReadyPipe(write_end)
    code: int = ExitStatus.FATAL
    try:
        code = int(run(ready))
    finally:
        ready.signal(code)  # a start that failed: the parent exits with its status
    os._exit(code)
