"""``pycorosync-cluster``: an N-node pycorosync cluster on this machine in one command.

``pycorosync-cluster [-n NODES] [--links L] [--no-crypto] [--netns | --no-netns]
[--duration SECONDS] [--workdir DIR] [--keep]`` writes a corosync.conf per node and a
shared authkey into a work directory, starts one ``pycorosync -f`` per node, shows a
live view of members, links and latencies every second, and on Ctrl-C, SIGTERM or
when ``--duration`` has passed stops the nodes (a clean leave), kills what did not
stop, deletes the network namespaces and the work directory (unless ``--keep`` or
``--workdir``).

Nodes live in network namespaces of their own when run as root with iproute2 (each
with an address per link on bridges in switch namespaces); otherwise on loopback
addresses ``127.<slot>.<link>.<node>`` with a per-node IPC name prefix. The exit status
is 0 when all nodes formed one membership at some point, 1 when they never did (the
tail of every node's log is printed), 2 for a usage error or a lab that could not be
built.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from corosync_executive._cluster_config import (
    MAX_LINKS,
    MAX_NODES,
    NETNS_ADDRESS_BASE,
    ClusterLayout,
    LabMode,
    NodeFiles,
    check_node_config,
    find_free_slot,
    write_cluster_files,
)
from corosync_executive._cluster_view import (
    LogWatcher,
    NodePoller,
    NodeSnapshot,
    ProcessState,
    ViewState,
    membership_formed,
    render_view,
    tail,
)
from corosync_executive._netlab import (
    NetnsLab,
    delete_stale_namespaces,
    ip_tool,
    netns_unavailable_reason,
)

__all__ = ["ClusterRun", "main"]

NETNS_TAG = "pcs"
_STALE_NETNS = re.compile(rf"^{NETNS_TAG}(\d+)[ns]\d+$")
_STOP_TIMEOUT = 10.0  # a clean leave takes a token rotation or two
_START_CHECK_INTERVAL = 0.1
_FRAME_INTERVAL = 1.0
EXIT_FORMED = 0
EXIT_NOT_FORMED = 1
EXIT_USAGE = 2


def _bounded(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be within {low}..{high}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("the duration is a number of seconds") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError("the duration must be a positive number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycorosync-cluster",
        description="Start a local pycorosync cluster, show it live, stop it on Ctrl-C.",
    )
    parser.add_argument(
        "-n",
        "--nodes",
        type=_bounded("the number of nodes", 1, MAX_NODES),
        default=3,
        help=f"number of nodes (1..{MAX_NODES}, default 3)",
    )
    parser.add_argument(
        "--links",
        type=_bounded("the number of links", 1, MAX_LINKS),
        default=2,
        help=f"knet links per node (1..{MAX_LINKS}, default 2)",
    )
    parser.add_argument(
        "--no-crypto", action="store_true", help="no encryption (default: aes256/sha256)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--netns",
        dest="netns",
        action="store_true",
        default=None,
        help="one network namespace per node (default when root and 'ip' exists)",
    )
    where.add_argument(
        "--no-netns",
        dest="netns",
        action="store_false",
        help="all nodes on loopback addresses 127.x.y.z with IPC name prefixes",
    )
    parser.add_argument(
        "--duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="put configs, keys, state and logs here and keep them (default: a new "
        "temporary directory, removed at the end)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary work directory at the end"
    )
    parser.add_argument(
        "--load",
        type=_bounded("the load", 0, 1_000_000),
        default=DEFAULT_LOAD,
        metavar="MESSAGES",
        help=f"every {LOAD_INTERVAL:.0f} s one node in turn multicasts this many messages "
        f"of {LOAD_SIZE} bytes through totem (its pload service); 0: no load "
        f"(default {DEFAULT_LOAD})",
    )
    return parser


DEFAULT_LOAD = 200
LOAD_INTERVAL = 5.0  # seconds between two load rounds
LOAD_SIZE = 300  # bytes per message, corosync's pload default


class _StopRequested:
    """Set by SIGINT/SIGTERM; the main loop checks it (never interrupted mid-cleanup)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signal is None:
            self.signal = signum


@contextlib.contextmanager
def _stop_on_signals(stop: _StopRequested) -> Iterator[None]:
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent_hook() -> Callable[[], None]:
    """A ``preexec_fn`` for the daemons: SIGTERM when the tool dies, even by SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``; kept across the exec of ``ip netns exec``). libc is
    looked up here, in the parent: the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook


class ClusterRun:
    """One local cluster: the lab, the daemons, the view; :meth:`run` does it all."""

    def __init__(
        self,
        layout: ClusterLayout,
        workdir: Path,
        *,
        out: TextIO,
        duration: float | None = None,
        interactive: bool = False,
        load: int = 0,
    ) -> None:
        self.layout = layout
        self.load = load
        self._next_load = time.monotonic() + LOAD_INTERVAL
        self._load_turn = 0
        self.workdir = workdir
        self.out = out
        self.duration = duration
        self.interactive = interactive
        self.files: tuple[NodeFiles, ...] = ()
        self.lab: NetnsLab | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pollers: list[NodePoller] = []
        self.formed_at: float | None = None
        self._started = time.monotonic()

    # ------------------------------------------------------------------ steps

    def prepare(self) -> None:
        """The files, and in netns mode the namespaces."""
        self.files = write_cluster_files(self.layout, self.workdir)
        for files in self.files:
            check_node_config(self.layout, files)
        if self.layout.mode is LabMode.NETNS:
            delete_stale_namespaces(_STALE_NETNS)
            self.lab = NetnsLab(
                self.layout.netns_prefix,
                self.layout.n_nodes,
                (1500,) * self.layout.n_links,
                host_tag="n",
                address_base=NETNS_ADDRESS_BASE,
            )
            self.lab.create()

    def start_nodes(self) -> None:
        die_with_parent = _die_with_parent_hook()
        for files in self.files:
            nodeid = files.nodeid
            command = [sys.executable, "-m", "corosync_executive", "-f", "-c", str(files.config)]
            # Always explicit: the daemon would take $PYCOROSYNC_IPC_PREFIX otherwise.
            command += ["--ipc-prefix", self.layout.ipc_prefix(nodeid)]
            for address in self.layout.addresses(nodeid):
                command += ["--local-address", address]
            netns = self.layout.netns(nodeid)
            if netns is not None:
                command = [ip_tool(), "netns", "exec", netns, *command]
            with files.stderr_log.open("wb") as stderr:
                process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,  # Ctrl-C reaches the tool only; it stops the nodes
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks
                )
            self.processes.append(process)
        for nodeid in self.layout.nodeids:
            poller = NodePoller(self.layout, nodeid)
            poller.start()
            self.pollers.append(poller)

    def watch(self, stop: _StopRequested) -> None:
        """Redraw the view every second until a signal, the duration, or every node gone."""
        watcher = LogWatcher({files.nodeid: files.logfile for files in self.files})
        deadline = None if self.duration is None else self._started + self.duration
        next_frame = time.monotonic()
        while stop.signal is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            snapshots = tuple(poller.snapshot for poller in self.pollers)
            processes = self.process_states()
            if self.formed_at is None and membership_formed(self.layout, snapshots):
                self.formed_at = now - self._started
            if all(p.returncode is not None for p in processes):
                self._frame(watcher, snapshots, processes)
                print("every node has exited", file=self.out)
                break
            if self.load and self.formed_at is not None and now >= self._next_load:
                self.pollers[self._load_turn % len(self.pollers)].request_load(self.load, LOAD_SIZE)
                self._load_turn += 1
                self._next_load = now + LOAD_INTERVAL
            if now >= next_frame:
                self._frame(watcher, snapshots, processes)
                next_frame = now + _FRAME_INTERVAL
            time.sleep(_START_CHECK_INTERVAL)

    def _frame(
        self,
        watcher: LogWatcher,
        snapshots: tuple[NodeSnapshot, ...],
        processes: tuple[ProcessState, ...],
    ) -> None:
        watcher.poll()
        state = ViewState(
            layout=self.layout,
            workdir=self.workdir,
            elapsed=time.monotonic() - self._started,
            processes=processes,
            snapshots=snapshots,
            formed_at=self.formed_at,
            ring_ids=dict(watcher.ring_ids),
            events=tuple(watcher.lines),
        )
        width = shutil.get_terminal_size().columns if self.interactive else 200
        text = render_view(state, width=width)
        if self.interactive:
            self.out.write("\x1b[H\x1b[2J" + text)
        else:
            self.out.write(f"---- {state.elapsed:.0f} s ----\n{text}")
        self.out.flush()

    def process_states(self) -> tuple[ProcessState, ...]:
        return tuple(ProcessState(p.pid, p.poll()) for p in self.processes)

    def stop(self) -> list[str]:
        """Stop everything this run started; the problems met on the way."""
        problems: list[str] = []
        for poller in self.pollers:
            poller.stop()  # close our IPC connections while the daemons still run
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for nodeid, process in enumerate(self.processes, start=1):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"node {nodeid} (pid {process.pid}) did not stop: killed")
                process.kill()
                process.wait()
        if self.lab is not None:
            try:
                self.lab.close()
            except (OSError, RuntimeError) as exc:
                problems.append(f"could not delete the network namespaces: {exc}")
        return problems

    def report_failure(self) -> None:
        """The tail of every node's log (and its stderr) after a failed run."""
        for files in self.files:
            print(f"==== node {files.nodeid}: {files.logfile} (last lines)", file=self.out)
            for line in tail(files.logfile):
                print(f"  {line}", file=self.out)
            stderr = tail(files.stderr_log)
            if stderr:
                print(f"==== node {files.nodeid}: {files.stderr_log}", file=self.out)
                for line in stderr:
                    print(f"  {line}", file=self.out)

    def run(self, stop: _StopRequested) -> int:
        """Prepare, start, watch, stop; the exit status."""
        try:
            try:
                self.prepare()
            except (OSError, RuntimeError) as exc:
                print(f"pycorosync-cluster: cannot build the lab: {exc}", file=sys.stderr)
                return EXIT_USAGE
            if stop.signal is None:
                try:
                    self.start_nodes()
                except OSError as exc:
                    print(f"pycorosync-cluster: cannot start a node: {exc}", file=self.out)
                else:
                    self.watch(stop)
        finally:
            problems = self.stop()
        final = self.process_states()
        for nodeid, process in enumerate(final, start=1):
            print(f"node {nodeid}: pid {process.pid} {process.describe()}", file=self.out)
        for problem in problems:
            print(f"pycorosync-cluster: {problem}", file=self.out)
        if self.formed_at is not None:
            clean = not problems and all(p.returncode == 0 for p in final)
            print(
                f"pycorosync-cluster: all {self.layout.n_nodes} nodes formed one membership "
                f"({self.formed_at:.1f} s after start); "
                + ("stopped cleanly" if clean else "stopped, not cleanly (see above)"),
                file=self.out,
            )
            return EXIT_FORMED
        self.report_failure()
        print(
            f"pycorosync-cluster: FAILED: the {self.layout.n_nodes} nodes never formed one "
            "membership (node logs above)",
            file=self.out,
        )
        return EXIT_NOT_FORMED


def _choose_mode(netns: bool | None) -> tuple[LabMode | None, str | None]:
    reason = netns_unavailable_reason()
    if netns is None:
        return (LabMode.NETNS if reason is None else LabMode.LOOPBACK), None
    if netns and reason is not None:
        return None, f"--netns: {reason}"
    return (LabMode.NETNS if netns else LabMode.LOOPBACK), None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode, error = _choose_mode(args.netns)
    if mode is None:
        print(f"pycorosync-cluster: {error}", file=sys.stderr)
        return EXIT_USAGE
    stop = _StopRequested()
    with _stop_on_signals(stop):
        if args.workdir is not None:
            workdir = Path(args.workdir).resolve()
            try:
                workdir.mkdir(parents=True, exist_ok=True)
                if any(workdir.iterdir()):
                    raise OSError(f"{workdir} is not empty")
            except OSError as exc:
                print(f"pycorosync-cluster: --workdir: {exc}", file=sys.stderr)
                return EXIT_USAGE
            remove = False
        else:
            workdir = Path(tempfile.mkdtemp(prefix="pycorosync-cluster-"))
            remove = not args.keep
        try:
            if mode is LabMode.NETNS:
                layout = ClusterLayout(
                    args.nodes,
                    args.links,
                    mode,
                    crypto=not args.no_crypto,
                    netns_prefix=f"{NETNS_TAG}{os.getpid()}",
                )
            else:
                slot = find_free_slot(args.nodes, args.links)
                layout = ClusterLayout(
                    args.nodes, args.links, mode, crypto=not args.no_crypto, slot=slot
                )
            print(f"pycorosync-cluster: work directory {workdir}", flush=True)
            run = ClusterRun(
                layout,
                workdir,
                out=sys.stdout,
                duration=args.duration,
                interactive=sys.stdout.isatty(),
                load=args.load,
            )
            status = run.run(stop)
        except RuntimeError as exc:
            print(f"pycorosync-cluster: {exc}", file=sys.stderr)
            status = EXIT_USAGE
        finally:
            if remove:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"pycorosync-cluster: kept {workdir}", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
