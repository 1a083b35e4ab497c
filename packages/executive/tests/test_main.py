"""``pycorosync`` as a process: its command line, start and stop, the lock, background
mode, sd_notify, logging, the blackbox, cfgtool -H, and malformed input at daemon level.

Every daemon is a single node on loopback (tests/daemon_lab.py) with its own IPC name
prefix, state directory and runtime directory, so nothing needs root or a namespace.
Waits are bounded loops that fail with the daemon's stderr, never timed assertions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from corosync import CsError, CsErrorCode, cfg, cmap
from corosync.cfg import CfgDispatchFlags, CfgHandle
from corosync.ipc import (
    CfgShutdownReply,
    CmapGetRequest,
    IpcClient,
    IpcType,
    RequestHeader,
    abstract_socket_address,
    decode_connection_response_untrusted,
    decode_response_header_untrusted,
)
from daemon_lab import LoopbackCluster

pytestmark = pytest.mark.timeout(120)

BIN = Path(sys.executable).parent
DAEMON = (sys.executable, "-m", "corosync_executive")
START_TIMEOUT = 30.0  # seconds; a guard against hangs, never an expectation
EXIT_MAIN_CONFIG = 8
EXIT_ALREADY_RUNNING = 18
EXIT_STORE_RINGID = 21
STATUS_LINE = "error   [MAIN  ] Corosync Cluster Engine exiting with status {}.\n"


def tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One of our command-line tools (installed next to this Python)."""
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def pycorosync(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pycorosync`` run to completion (-t, -v, bad arguments, background start)."""
    return subprocess.run(
        [*DAEMON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def listening(name: str) -> bool:
    """Whether an abstract unix socket ``@name`` exists in this network namespace."""
    with open("/proc/net/unix", encoding="ascii", errors="replace") as table:
        rows = [line.split() for line in table]
    # Abstract names show as "@name", padded with "@" for the NULs after it.
    return any(len(row) == 8 and row[7][1:].rstrip("@") == name for row in rows)


def process_gone(pid: int) -> bool:
    """No such process (or only its zombie: the reaper is not us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


class Node:
    """A single-node lab plus the paths and options one ``pycorosync`` needs."""

    def __init__(self, root: Path, *, token: int = 1000) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.lab = LoopbackCluster(root, nodes=1, links=1, token=token)
        self.root = root
        self.prefix = self.lab.prefix(1)
        self.config = self.lab.config_path(1)
        self.state_dir = self.lab.state_dir(1)
        self.logfile = self.state_dir / "pycorosync.log"
        self.runtime_dir = root / "run"
        self.runtime_dir.mkdir(exist_ok=True)

    def edit(self, old: str, new: str) -> None:
        """Replace ``old`` (which must occur once) in the config file."""
        text = self.config.read_text()
        assert text.count(old) == 1, old
        self.config.write_text(text.replace(old, new))

    def add_logging(self, lines: str) -> None:
        self.edit("    timestamp: hires\n", f"    timestamp: hires\n{lines}")

    def args(self, *, prefix: str | None = None) -> list[str]:
        return [
            "-c",
            str(self.config),
            "--ipc-prefix",
            self.prefix if prefix is None else prefix,
            "--runtime-dir",
            str(self.runtime_dir),
            *(f"--local-address={address}" for address in self.lab.local_addresses(1)),
        ]

    def ring_seq(self) -> int:
        data = (self.state_dir / "ringid_1").read_bytes()
        assert len(data) == 8
        return int.from_bytes(data, "big")

    def log(self) -> str:
        return self.logfile.read_text()

    def kill_background_daemon(self) -> None:
        """Teardown: SIGKILL a daemon a failed test left in the background (the pid
        file names it; its command line must name our config)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.state_dir / "pycorosync.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if str(self.config).encode() in cmdline and not process_gone(pid):
                os.kill(pid, signal.SIGKILL)


class Running:
    """A foreground ``pycorosync -f`` started by a test; output goes to files."""

    def __init__(
        self,
        node: Node,
        *,
        prefix: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.node = node
        self.prefix = node.prefix if prefix is None else prefix
        tag = uuid.uuid4().hex[:6]
        self.stdout_path = node.root / f"stdout-{tag}"
        self.stderr_path = node.root / f"stderr-{tag}"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*DAEMON, "-f", *node.args(prefix=self.prefix)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=node.root,
                env=env,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"pycorosync exited with {self.proc.returncode}; stderr:\n{self.stderr}"
            )
        try:
            with cmap.initialize(prefix=self.prefix, timeout=5) as handle:
                return handle.get("runtime.members.1.status") == "joined"
        except CsError:
            return False

    def wait_ready(self) -> Running:
        wait_until(self.serving, "the daemon to serve cmap with itself joined")
        return self

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        return self.proc.wait(timeout=START_TIMEOUT)


@pytest.fixture
def started() -> Iterator[list[Running]]:
    """Daemons a test starts: killed at teardown if the test left them running."""
    daemons: list[Running] = []
    yield daemons
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path / "a")
    yield node
    node.kill_background_daemon()


@pytest.fixture
def run(started: list[Running]) -> Callable[..., Running]:
    def start(
        node: Node, *, prefix: str | None = None, env: dict[str, str] | None = None
    ) -> Running:
        daemon = Running(node, prefix=prefix, env=env)
        started.append(daemon)
        return daemon

    return start


# ====================================================================== command line


def test_version() -> None:
    done = pycorosync("-v")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "Corosync Cluster Engine (pycorosync), version '0.1.0'"
    assert "Available crypto models: nacl" in lines
    assert any(line.startswith("Available compression models: zlib") for line in lines)


def test_test_mode_accepts_a_valid_config_and_starts_nothing(node: Node) -> None:
    done = pycorosync("-t", *node.args())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "Config file is valid\n")
    assert not (node.state_dir / "pycorosync.pid").exists()
    assert not listening(f"{node.prefix}cmap")


def _break_brace(node: Node) -> str:
    text = node.config.read_text()
    assert text.endswith("}\n")
    node.config.write_text(text[:-2])
    # corosync counts the lines read when the file ends inside a section.
    return f"parser error: {node.config}:{text.count(chr(10)) - 1}: Missing closing brace"


def _bad_token(node: Node) -> str:
    node.edit("    token: 1000\n", "    token: soon\n")
    return (
        f'parser error: {node.config}:5: Value of key "totem.token" is expected to be '
        'integer in range (0..4294967295), but "soon" was given'
    )


def _no_section_line(node: Node) -> str:
    node.edit("    token: 1000\n", "    token 1000\n")
    return f"parser error: {node.config}:5: Line is not opening or closing section or key value"


def _bad_version(node: Node) -> str:
    node.edit("    version: 2\n", "    version: 3\n")
    return (
        "parse error in config: This totem parser can only parse version 2 "
        f"configurations. ({node.config}:2)"
    )


def _no_local_node(node: Node) -> str:
    node.edit("ring0_addr: 127.0.1.1\n", "ring0_addr: 192.0.2.77\n")
    return "parse error in config: No valid name found for local host"


def _missing_key(node: Node) -> str:
    node.edit(f"keyfile: {node.lab.keyfile}\n", f"keyfile: {node.root}/no-such-key\n")
    return f"Could not open {node.root}/no-such-key: No such file or directory"


def _short_key(node: Node) -> str:
    short = node.root / "short-key"
    short.write_bytes(os.urandom(100))
    node.edit(f"keyfile: {node.lab.keyfile}\n", f"keyfile: {short}\n")
    return f"Could only read 800 bits of minimum 1024 bits from {short}."


BROKEN_CONFIGS: dict[str, Callable[[Node], str]] = {
    "missing brace": _break_brace,
    "bad value": _bad_token,
    "not a key value": _no_section_line,
    "bad version": _bad_version,
    "no local node": _no_local_node,
    "missing key file": _missing_key,
    "short key file": _short_key,
}


def test_test_mode_rejects_broken_configs_with_corosyncs_messages(tmp_path: Path) -> None:
    """Each broken file: exit 8 and corosync's message (naming the file and line where
    corosync does, the key file where that is the problem), nothing more."""
    cases = {}
    for name, breaker in BROKEN_CONFIGS.items():
        node = Node(tmp_path / name.replace(" ", "-"))
        cases[name] = (node, breaker(node))
    # All at once: each is a Python start-up, nothing else.
    procs = {
        name: subprocess.Popen(
            [*DAEMON, "-t", *node.args()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (node, _) in cases.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        message = cases[name][1]
        assert (name, proc.returncode, out) == (name, EXIT_MAIN_CONFIG, "")
        assert err == f"error   [MAIN  ] {message}\n" + STATUS_LINE.format(8), name


def test_broken_config_stops_a_real_start_too(node: Node) -> None:
    """Without -t the same checks run before anything starts (foreground)."""
    message = _bad_token(node)
    done = pycorosync("-f", *node.args())
    assert (done.returncode, done.stdout) == (EXIT_MAIN_CONFIG, "")
    assert done.stderr == f"error   [MAIN  ] {message}\n" + STATUS_LINE.format(8)
    assert not (node.state_dir / "pycorosync.pid").exists()


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    done = pycorosync("-f", "-c", str(missing))
    assert (done.returncode, done.stdout) == (EXIT_MAIN_CONFIG, "")
    assert done.stderr == (
        f"error   [MAIN  ] Can't read file {missing}: No such file or directory\n"
        + STATUS_LINE.format(8)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-x",), "pycorosync: error: unrecognized arguments: -x\n"),
        (("-f", "--bogus"), "pycorosync: error: unrecognized arguments: --bogus\n"),
        (("-c",), "pycorosync: error: argument -c: expected one argument\n"),
        (
            ("-f", "--ipc-prefix"),
            "pycorosync: error: argument --ipc-prefix: expected one argument\n",
        ),
        (("extra",), "pycorosync: error: unrecognized arguments: extra\n"),
    ],
)
def test_bad_arguments_exit_2_with_usage(args: tuple[str, ...], message: str) -> None:
    done = pycorosync(*args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("usage: pycorosync [-h] [-c CONFIG] [-f] [-t] [-v]")
    assert done.stderr.endswith(message)


# ====================================================================== foreground


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_foreground_start_serve_and_stop_on_a_signal(
    node: Node, run: Callable[..., Running], signum: signal.Signals
) -> None:
    """cmapctl reaches the node; a signal is a clean leave, exit 0, and the IPC
    sockets and ring files are gone afterwards; the ring id is in the state dir."""
    daemon = run(node).wait_ready()
    done = tool("pycorosync-cmapctl", "--ipc-prefix", node.prefix, "-g", "runtime.members.1.status")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "runtime.members.1.status (str) = joined\n",
        "",
    )
    assert listening(f"{node.prefix}cmap")
    assert listening(f"{node.prefix}cfg")
    pid_file = (node.state_dir / "pycorosync.pid").read_text()
    assert pid_file == f"{daemon.proc.pid}\n"
    with cmap.initialize(prefix=node.prefix) as handle:
        assert handle.transport is IpcType.SHM
        assert list(node.runtime_dir.iterdir())  # this client's ring files
        assert daemon.stop(signum) == 0
        with pytest.raises(CsError):
            handle.get("totem.token")
    assert list(node.runtime_dir.iterdir()) == []
    assert not listening(f"{node.prefix}cmap")
    assert not listening(f"{node.prefix}cfg")
    assert node.ring_seq() > 0
    log = node.log()
    name = signal.Signals(signum).name
    assert f"info    [MAIN  ] Received {name}, leaving the cluster\n" in log
    assert "info    [MAIN  ] Corosync Cluster Engine exiting normally\n" in log
    assert daemon.stderr == ""


def test_ring_id_is_persisted_across_restarts(node: Node, run: Callable[..., Running]) -> None:
    run(node).wait_ready().stop()
    first = node.ring_seq()
    assert run(node).wait_ready().stop() == 0
    second = node.ring_seq()
    assert second > first
    assert f"A new membership (1.{second}) was formed." in node.log()


def test_corrupt_ring_id_file_is_a_clear_error(node: Node) -> None:
    """A ring id the node cannot read stops it with corosync's status 21, not a crash."""
    node.state_dir.mkdir(exist_ok=True)
    ring_file = node.state_dir / "ringid_1"
    ring_file.write_bytes(b"abc")
    done = pycorosync("-f", *node.args())
    assert (done.returncode, done.stdout) == (EXIT_STORE_RINGID, "")
    assert done.stderr == (
        f"error   [MAIN  ] the ring id file {ring_file} is corrupt: 3 bytes, expected 8"
        " (remove it only if this node's old rings are gone from every peer)\n"
        + STATUS_LINE.format(21)
    )
    assert not (node.state_dir / "fdata").exists()  # no crash dump: not a crash


# ====================================================================== one instance


def test_second_instance_with_the_same_state_dir_is_refused(
    node: Node, run: Callable[..., Running]
) -> None:
    first = run(node).wait_ready()
    seq = node.ring_seq()
    second = pycorosync("-f", *node.args(prefix=f"{node.prefix}b-"))
    lock = node.state_dir / "pycorosync.pid"
    assert (second.returncode, second.stdout) == (EXIT_ALREADY_RUNNING, "")
    assert second.stderr == (
        "error   [MAIN  ] another pycorosync is already running "
        f"(pid {first.proc.pid}; lock {lock})\n" + STATUS_LINE.format(18)
    )
    assert lock.read_text() == f"{first.proc.pid}\n"
    assert first.serving()
    assert node.ring_seq() == seq
    assert first.stop() == 0


def test_second_instance_with_the_same_ipc_prefix_is_refused(
    tmp_path: Path, node: Node, run: Callable[..., Running]
) -> None:
    """Another state dir (another cluster even) but the same IPC names: refused before
    it joins any ring; the first daemon keeps serving."""
    first = run(node).wait_ready()
    other = Node(tmp_path / "b")
    second = pycorosync("-f", *other.args(prefix=node.prefix))
    assert (second.returncode, second.stdout) == (EXIT_ALREADY_RUNNING, "")
    assert second.stderr == (
        f"error   [MAIN  ] IPC socket '{node.prefix}cmap' is already in use: another "
        "corosync daemon runs in this network namespace\n" + STATUS_LINE.format(18)
    )
    assert not (other.state_dir / "ringid_1").exists()  # it never formed a ring
    assert first.serving()
    assert first.stop() == 0


# ====================================================================== background


def test_background_start_returns_when_ready(node: Node) -> None:
    """Without -f the parent exits 0 once clients can connect; the daemon runs on with
    the pid in its pid file and does not hold the caller's output open."""
    done = pycorosync(*node.args())  # capture_output: returns only if nothing holds the pipes
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    pid = int((node.state_dir / "pycorosync.pid").read_text())
    try:
        assert not process_gone(pid)
        with cmap.initialize(prefix=node.prefix, timeout=5) as handle:  # no waiting needed
            assert handle.get("runtime.members.1.status") == "joined"
        assert os.getsid(pid) != os.getsid(0)  # detached from our session
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: process_gone(pid), "the background daemon to exit")
    assert "Corosync Cluster Engine exiting normally" in node.log()
    assert not listening(f"{node.prefix}cmap")


def test_background_start_that_fails_returns_its_status(
    node: Node, run: Callable[..., Running]
) -> None:
    message = _bad_token(node)
    done = pycorosync(*node.args())
    assert (done.returncode, done.stdout) == (EXIT_MAIN_CONFIG, "")
    assert done.stderr == f"error   [MAIN  ] {message}\n" + STATUS_LINE.format(8)

    # A failure after the fork (the lock is held) reaches the parent too.
    node.edit("    token: soon\n", "    token: 1000\n")
    first = run(node).wait_ready()
    done = pycorosync(*node.args(prefix=f"{node.prefix}b-"))
    assert (done.returncode, done.stdout) == (EXIT_ALREADY_RUNNING, "")
    assert "another pycorosync is already running" in done.stderr
    assert first.serving()
    assert first.stop() == 0


# ====================================================================== sd_notify


def test_sd_notify_ready_and_stopping(node: Node, run: Callable[..., Running]) -> None:
    name = f"pycorosync-test-notify-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(f"\0{name}")
        notify.settimeout(START_TIMEOUT)
        daemon = run(node, env={**os.environ, "NOTIFY_SOCKET": f"@{name}"})
        ready = notify.recv(4096).decode()
        assert ready.split("\n")[0] == "READY=1"
        # READY=1 means clients are accepted now: no retry.
        with cmap.initialize(prefix=node.prefix, timeout=5) as handle:
            assert handle.get("totem.token") == 1000
        daemon.proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert daemon.wait() == 0


# ====================================================================== logging


def test_log_file_lines_and_reopen_after_rotation(node: Node, run: Callable[..., Running]) -> None:
    daemon = run(node).wait_ready()
    first = node.log()
    lines = first.splitlines()
    membership = [line for line in lines if "A new membership (" in line]
    assert len(membership) == 1
    # "Nov 27 04:15:22.548 info    [TOTEM ] A new membership (1.4) was formed. ..."
    stamp, rest = membership[0][:19], membership[0][19:]
    assert time.strptime(stamp[:15], "%b %d %H:%M:%S")
    assert rest.startswith(" info    [TOTEM ] A new membership (1.")
    assert "was formed. Members joined: 1" in rest
    assert any(
        line[19:]
        == " info    [MAIN  ] Completed service synchronization, ready to provide service."
        for line in lines
    )

    rotated = node.logfile.with_name("pycorosync.log.1")
    node.logfile.rename(rotated)
    done = tool("pycorosync-cfgtool", "--ipc-prefix", node.prefix, "-L")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert node.logfile.exists()
    assert daemon.stop() == 0
    new = node.log()
    assert "Received SIGTERM, leaving the cluster" in new
    assert "exiting normally" in new
    assert "Received SIGTERM" not in rotated.read_text()
    assert rotated.read_text().startswith(first)


def _subsys(name: str, debug: str) -> str:
    return f"    logger_subsys {{\n        subsys: {name}\n        debug: {debug}\n    }}\n"


@pytest.mark.parametrize(
    ("logging", "shown", "hidden"),
    [
        (
            "    debug: on\n",
            ["debug   [TOTEM ] entering GATHER", "debug   [MAIN  ] Sync members"],
            [],
        ),
        ("    debug: off\n", [], ["debug   ["]),
        (
            "    debug: off\n" + _subsys("TOTEM", "on"),
            ["debug   [TOTEM ] entering GATHER"],
            ["debug   [MAIN  ]"],
        ),
        (
            "    debug: on\n" + _subsys("TOTEM", "off"),
            ["debug   [MAIN  ] Sync members"],
            ["debug   [TOTEM ]"],
        ),
    ],
    ids=["debug-on", "debug-off", "totem-only", "all-but-totem"],
)
def test_debug_and_per_subsystem_overrides(
    node: Node,
    run: Callable[..., Running],
    logging: str,
    shown: Sequence[str],
    hidden: Sequence[str],
) -> None:
    node.add_logging(logging)
    assert run(node).wait_ready().stop() == 0
    log = node.log()
    for text in shown:
        assert text in log
    for text in hidden:
        assert text not in log
    assert "info    [TOTEM ] A new membership (" in log  # info lines whatever the debug


# ====================================================================== blackbox


def test_blackbox_tool_against_the_running_daemon(node: Node, run: Callable[..., Running]) -> None:
    daemon = run(node).wait_ready()
    done = tool(
        "pycorosync-blackbox", "--state-dir", str(node.state_dir), "--ipc-prefix", node.prefix
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == f"Dumping the contents of {node.state_dir / 'fdata'}"
    assert lines[1].startswith("Starting replay: records [")
    assert any("[TOTEM ] A new membership (" in line for line in lines)
    assert any("Completed service synchronization" in line for line in lines)
    assert lines[-1].startswith("Finishing replay: records found [")
    assert daemon.stop() == 0


def test_crash_writes_the_blackbox(node: Node, run: Callable[..., Running]) -> None:
    """An unhandled error kills the daemon (here: the ring id cannot be stored, as a
    directory sits where its temporary file goes); the blackbox is in <state_dir>/fdata
    with the error's traceback, and pycorosync-blackbox prints it."""
    (node.state_dir / ".ringid_1.tmp").mkdir()
    daemon = run(node)
    assert daemon.wait() == 1
    assert "cannot write the ring id file" in daemon.stderr
    fdata = node.state_dir / "fdata"
    done = tool("pycorosync-blackbox", str(fdata))
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == f"Dumping the contents of {fdata}"
    assert any(
        "info    [MAIN  ] Corosync Cluster Engine (pycorosync) starting up" in line
        for line in lines
    )
    assert any(
        "crit    [MAIN  ] pycorosync is exiting on an unhandled ExceptionGroup" in line
        for line in lines
    )
    assert any(
        line.startswith("\t")
        and f"cannot write the ring id file {node.state_dir / 'ringid_1'}" in line
        for line in lines
    )
    assert lines[-1].startswith("Finishing replay: records found [")


def test_fatal_signal_leaves_the_tracebacks_and_a_restart_works(
    node: Node, run: Callable[..., Running]
) -> None:
    """A crash the interpreter cannot survive (SIGSEGV here) leaves every thread's
    Python traceback in <state_dir>/fdata.fatal; the lock dies with the process."""

    daemon = run(node).wait_ready()
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_CORE, (0, 0))  # no core file
    assert daemon.stop(signal.SIGSEGV) == -signal.SIGSEGV
    fatal = (node.state_dir / "fdata.fatal").read_text()
    assert "Fatal Python error: Segmentation fault" in fatal
    assert "trio" in fatal  # the main thread's stack: the daemon's event loop
    assert run(node).wait_ready().stop() == 0  # the stale pid file is no obstacle


# ====================================================================== cfgtool -H


def test_cfgtool_shutdown(node: Node, run: Callable[..., Running]) -> None:
    daemon = run(node).wait_ready()
    done = tool("pycorosync-cfgtool", "--ipc-prefix", node.prefix, "-H")
    assert (done.returncode, done.stdout, done.stderr) == (0, "Shutting down corosync\n", "")
    assert daemon.wait() == 0
    assert "Node was shut down by sysadmin" in node.log()


@contextlib.contextmanager
def shutdown_tracker(prefix: str, answer: CfgShutdownReply) -> Iterator[list[int]]:
    """A cfg client that tracks shutdown and answers ``answer``; yields the flags of
    the requests it was asked about."""
    asked: list[int] = []

    def on_shutdown(handle: CfgHandle, flags: int) -> None:
        asked.append(flags)
        with contextlib.suppress(CsError):  # a forced shutdown takes no answer
            handle.reply_to_shutdown(answer)

    handle = cfg.initialize(prefix=prefix, shutdown_callback=on_shutdown)
    handle.trackstart()

    def dispatch() -> None:
        with contextlib.suppress(CsError):  # finalized, or the daemon has gone
            handle.dispatch(CfgDispatchFlags.BLOCKING)

    thread = threading.Thread(target=dispatch, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        handle.finalize()
        thread.join(timeout=START_TIMEOUT)


def test_cfgtool_shutdown_refused_by_a_client_then_forced(
    node: Node, run: Callable[..., Running]
) -> None:
    daemon = run(node).wait_ready()
    with shutdown_tracker(node.prefix, CfgShutdownReply.NO) as asked:
        done = tool("pycorosync-cfgtool", "--ipc-prefix", node.prefix, "-H")
        # corosync-cfgtool's quirk: the refusal (CS_ERR_BUSY) is reported, exit 0.
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            "Shutting down corosync\n",
            f"Could not shutdown (error = {int(CsErrorCode.BUSY)})\n",
        )
        assert asked == [0]  # CFG_SHUTDOWN_FLAG_REQUEST
        assert daemon.serving()

        done = tool("pycorosync-cfgtool", "--ipc-prefix", node.prefix, "-H", "--force")
        assert (done.returncode, done.stdout, done.stderr) == (0, "Shutting down corosync\n", "")
        assert daemon.wait() == 0


# ====================================================================== malformed IPC


GARBAGE = [
    b"abc",  # shorter than a request header
    bytes(range(100)),  # a header whose size is not the length
    RequestHeader(999, 16).encode(),  # no such request
    RequestHeader(0, 40).encode() + bytes(8),  # says 40 bytes, has 24
    b"\xff" * 16,  # id -1, size -1
]


def _reply(client: IpcClient, raw: bytes) -> tuple[int, int, int]:
    header = decode_response_header_untrusted(client.request(raw, timeout=10))
    return header.id, header.size, header.error


@pytest.mark.parametrize("transport", ["shm", "socket"])
def test_malformed_requests_get_error_replies_and_others_are_served(
    node: Node, run: Callable[..., Running], transport: str, request: pytest.FixtureRequest
) -> None:
    node.edit("system {\n", f"system {{\n    qb_ipc_type: {transport}\n")
    # SOCKET mode names its datagram sockets after the runtime dir: keep it short.
    runtime_dir = tempfile.TemporaryDirectory(prefix="pycs-", dir="/tmp")
    node.runtime_dir = Path(runtime_dir.name)
    request.addfinalizer(runtime_dir.cleanup)
    daemon = run(node).wait_ready()
    expected_type = IpcType.SHM if transport == "shm" else IpcType.SOCKET
    with (
        IpcClient.connect("cmap", prefix=node.prefix) as bad_cmap,
        IpcClient.connect("cfg", prefix=node.prefix) as bad_cfg,
        cmap.initialize(prefix=node.prefix) as good,
    ):
        assert bad_cmap.transport is expected_type
        for client in (bad_cmap, bad_cfg):
            for raw in GARBAGE:
                assert _reply(client, raw) == (0, 24, CsErrorCode.INVALID_PARAM), raw[:16]
            # One more than the agreed maximum: refused before it leaves the client.
            with pytest.raises(CsError) as info:
                client.request(b"\0" * (client.max_msg_size + 1), timeout=10)
            assert info.value.code is CsErrorCode.TOO_BIG
        if transport == "socket":
            # A hostile client that skips that check: the daemon answers TOO_BIG.
            size = bad_cmap.max_msg_size + 64
            oversized = RequestHeader(0, size).encode() + bytes(size - 16)
            bad_cmap._transport.send(oversized, None, 1)
            answer = bad_cmap._transport.receive_response(time.monotonic() + 10)
            assert answer is not None
            header = decode_response_header_untrusted(answer)
            assert (header.id, header.size, header.error) == (0, 24, CsErrorCode.TOO_BIG)
        # The same connections still work, and so does everyone else's.
        token = decode_response_header_untrusted(
            bad_cmap.request(CmapGetRequest("totem.token").encode(), timeout=10)
        )
        assert token.error == CsErrorCode.OK
        assert good.get("totem.token") == 1000
    with cfg.initialize(prefix=node.prefix) as handle:
        assert handle.local_get() == 1
    assert daemon.stop() == 0
    assert "ipc_malformed_request" in node.log()


def test_garbage_handshake_is_refused_and_the_daemon_serves_on(
    node: Node, run: Callable[..., Running]
) -> None:
    """Bytes on the setup socket that are no connection request: a refusal (-EINVAL)
    when a whole request arrived, a hang-up otherwise; the daemon serves on."""
    daemon = run(node).wait_ready()

    def handshake(payload: bytes) -> bytes:
        received = b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(abstract_socket_address(f"{node.prefix}cmap"))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(ConnectionResetError):  # closed with bytes unread
                while chunk := sock.recv(4096):
                    received += chunk
        return received

    assert handshake(b"") == b""
    assert handshake(b"hello") == b""
    for payload in (b"\0" * 24, b"\xff" * 24, bytes(range(24))):
        answer = handshake(payload)
        assert decode_connection_response_untrusted(answer).error == -errno.EINVAL
    assert daemon.serving()
    assert daemon.stop() == 0


# ====================================================================== tools' command lines


USAGE_ERROR_CASES = [
    # getopt_long's wording for our long option (Python's getopt words it otherwise).
    (
        ("pycorosync-cmapctl", "--ipc-prefix"),
        "pycorosync-cmapctl: option '--ipc-prefix' requires an argument\n",
    ),
    (
        ("pycorosync-cmapctl", "--ipc"),
        "pycorosync-cmapctl: option '--ipc-prefix' requires an argument\n",
    ),
    (("pycorosync-cmapctl", "--bogus"), "pycorosync-cmapctl: unrecognized option '--bogus'\n"),
    (
        ("pycorosync-cfgtool", "-s", "--ipc-prefix"),
        "pycorosync-cfgtool: option '--ipc-prefix' requires an argument\n",
    ),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERROR_CASES)
def test_tools_report_bad_long_options_like_getopt_long(
    argv: tuple[str, ...], message: str
) -> None:
    done = tool(*argv)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--state-dir",), "pycorosync-blackbox: argument --state-dir: expected one argument\n"),
        (("--ipc-prefix",), "pycorosync-blackbox: argument --ipc-prefix: expected one argument\n"),
        (("one", "two"), "pycorosync-blackbox: unrecognized arguments: two\n"),
        (
            ("--timeout", "soon"),
            "pycorosync-blackbox: argument --timeout: invalid float value: 'soon'\n",
        ),
    ],
)
def test_blackbox_tool_bad_arguments(args: tuple[str, ...], message: str) -> None:
    done = tool("pycorosync-blackbox", *args)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(message)
    assert "usage: pycorosync-blackbox" in done.stderr


def test_tools_bad_values_against_a_running_daemon(node: Node, run: Callable[..., Running]) -> None:
    """Arguments only the daemon can judge: a clear line on stderr, exit 1, and the
    daemon unharmed."""
    daemon = run(node).wait_ready()
    prefix = ("--ipc-prefix", node.prefix)
    cases = [
        (
            ("pycorosync-cmapctl", *prefix, "-s", "test.k", "u8", "300"),
            "300 is not valid u8 integer\n",
        ),
        (
            ("pycorosync-cmapctl", *prefix, "-s", "test.k", "u8", "abc"),
            "abc is not valid u8 type value\n",
        ),
        (("pycorosync-cmapctl", *prefix, "-s", "test.k", "u9", "1"), "Unknown type u9\n"),
        (
            ("pycorosync-cmapctl", *prefix, "-g", "no.such.key"),
            "Can't get key no.such.key. Error CS_ERR_NOT_EXIST\n",
        ),
        (
            ("pycorosync-cmapctl", *prefix, "-m", "stats", "-s", "test.k", "u8", "1"),
            "Failed to set key test.k. Error CS_ERR_ACCESS\n",
        ),
        (
            ("pycorosync-cfgtool", *prefix, "-a", "9"),
            "Could not get node address for nodeid 9\n",
        ),
    ]
    for argv, message in cases:
        done = tool(*argv)
        assert (argv, done.returncode, done.stdout, done.stderr) == (argv, 1, "", message)
    done = tool("pycorosync-cfgtool", *prefix, "-k", "7")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "Killing node 7\n",
        "Could not kill node (error = CS_ERR_NOT_EXIST)\n",
    )
    with cmap.initialize(prefix=node.prefix) as handle, pytest.raises(CsError):
        handle.get("test.k")  # nothing was set
    assert daemon.serving()
    assert daemon.stop() == 0


def test_state_directory_from_systemd_when_the_config_names_none(
    node: Node, run: Callable[..., Running], tmp_path: Path
) -> None:
    """Without system.state_dir the daemon uses $STATE_DIRECTORY (systemd's
    StateDirectory=) for its lock and ring id, as corosync does."""
    node.edit(f"system {{\n    state_dir: {node.state_dir}\n}}\n", "")
    state = tmp_path / "systemd-state"
    state.mkdir()
    daemon = run(node, env={**os.environ, "STATE_DIRECTORY": str(state)}).wait_ready()
    assert (state / "pycorosync.pid").read_text().strip() == str(daemon.proc.pid)
    assert daemon.stop() == 0
    assert (state / "ringid_1").exists()
    assert not (node.state_dir / "ringid_1").exists()


def test_reload_changes_logging_at_once(node: Node, run: Callable[..., Running]) -> None:
    """debug: on written to the file and `pycorosync-cfgtool -R`: the running daemon
    logs debug records from then on (no restart)."""
    daemon = run(node).wait_ready()
    assert "debug   [" not in node.log()
    node.add_logging("    debug: on\n")
    done = tool("pycorosync-cfgtool", "--ipc-prefix", node.prefix, "-R")
    assert (done.returncode, done.stdout) == (0, "Reloading corosync.conf...\nDone\n")
    # Any debug record proves the new settings are in force; a cmap request makes one.
    wait_until(
        lambda: (
            tool("pycorosync-cmapctl", "--ipc-prefix", node.prefix, "-g", "totem.token") is not None
            and "debug   [" in node.log()
        ),
        "debug records after the reload",
    )
    assert daemon.stop() == 0
    assert "Config reload complete" in node.log()
