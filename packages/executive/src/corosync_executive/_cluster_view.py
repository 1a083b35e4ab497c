"""pycorosync-cluster's live view: what every node says about the cluster, as text.

A :class:`NodePoller` thread per node asks that node's cmap service once a second for
the members it sees (``runtime.members.<id>.status``) and, from the stats map, every
peer link's state and latency (``stats.knet.node<N>.link<L>.{connected,latency_ave}``).
A thread per node keeps the view and the signal handling of the main thread
responsive when a node is slow or stopped, and lets netns mode work without a
subprocess per refresh: the thread moves itself (only itself) into the node's network
namespace once, where the node's abstract IPC sockets are, and keeps one connection.

:class:`LogWatcher` follows the nodes' log files for the lines an operator looks for
(membership changes, links up and down, errors). :func:`render_view` is pure.
"""

from __future__ import annotations

import collections
import contextlib
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from corosync import CsError, cfg, cmap
from corosync_executive._cluster_config import ClusterLayout, LabMode
from corosync_executive._netlab import enter_netns

__all__ = [
    "LinkState",
    "LogWatcher",
    "NodePoller",
    "NodeSnapshot",
    "ProcessState",
    "ViewState",
    "WrongNode",
    "check_identity",
    "membership_formed",
    "read_node",
    "render_view",
    "tail",
]

POLL_INTERVAL = 1.0
_IPC_TIMEOUT = 2.0  # the connect handshake; requests wait while the node lives


@attrs.frozen
class LinkState:
    """One link to a peer as a node sees it (None: the node does not know)."""

    connected: bool | None
    latency_us: int | None


@attrs.frozen
class NodeSnapshot:
    """What one node answered at ``taken_at`` (``time.monotonic()``)."""

    nodeid: int
    taken_at: float
    members: tuple[int, ...] = ()
    links: tuple[tuple[int, tuple[LinkState, ...]], ...] = ()
    """(peer nodeid, state of each link) for every other node."""
    received: tuple[tuple[int, int], ...] = ()
    """(sender, pload messages delivered here from it), from ``runtime.pload.*.rx``."""
    error: str | None = None


@attrs.frozen
class ProcessState:
    """A node's daemon process: its pid and exit status (None while it runs)."""

    pid: int
    returncode: int | None

    def describe(self) -> str:
        if self.returncode is None:
            return "running"
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return f"exited {self.returncode}"


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def read_node(
    handle: cmap.CmapHandle, stats: cmap.CmapHandle, layout: ClusterLayout, nodeid: int
) -> NodeSnapshot:
    """One snapshot of ``nodeid`` through its cmap service (both maps)."""
    members = []
    for entry in list(handle.iterate("runtime.members.")):
        parts = entry.key.split(".")
        is_status = len(parts) == 4 and parts[3] == "status" and parts[2].isdigit()
        if is_status and handle.get(entry.key) == "joined":
            members.append(int(parts[2]))
    received = []
    for entry in list(handle.iterate("runtime.pload.")):
        parts = entry.key.split(".")
        count = _as_int(handle.get(entry.key))
        if len(parts) == 4 and parts[2].isdigit() and parts[3] == "rx" and count is not None:
            received.append((int(parts[2]), count))
    links = []
    for peer in layout.nodeids:
        if peer == nodeid:
            continue
        states = []
        for link in layout.links:
            base = f"stats.knet.node{peer}.link{link}"
            try:
                connected = _as_int(stats.get(f"{base}.connected"))
                latency = _as_int(stats.get(f"{base}.latency_ave"))
            except CsError:
                states.append(LinkState(None, None))
                continue
            states.append(LinkState(None if connected is None else bool(connected), latency))
        links.append((peer, tuple(states)))
    return NodeSnapshot(
        nodeid=nodeid,
        taken_at=time.monotonic(),
        members=tuple(sorted(members)),
        links=tuple(links),
        received=tuple(sorted(received)),
    )


class WrongNode(Exception):
    """The IPC service found is another node's."""


def check_identity(prefix: str, nodeid: int) -> None:
    """The cfg service must say it is ``nodeid`` (a wrong prefix or namespace would
    show another node's view under this one's name); WrongNode when not."""
    with cfg.initialize(prefix=prefix, timeout=_IPC_TIMEOUT) as handle:
        answered = handle.local_get()
    if answered != nodeid:
        raise WrongNode(f"IPC prefix {prefix!r} reached node {answered}, not node {nodeid}")


class NodePoller(threading.Thread):
    """Polls one node every :data:`POLL_INTERVAL` seconds; :attr:`snapshot` is the latest."""

    def __init__(self, layout: ClusterLayout, nodeid: int) -> None:
        super().__init__(name=f"poll-node{nodeid}", daemon=True)
        self.layout = layout
        self.nodeid = nodeid
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = NodeSnapshot(nodeid, time.monotonic(), error="not asked yet")
        self._handles: tuple[cmap.CmapHandle, cmap.CmapHandle] | None = None
        self._load: tuple[int, int] | None = None

    def request_load(self, count: int, size: int) -> None:
        """Make the node multicast ``count`` messages of ``size`` bytes (its pload
        service) at the next poll."""
        with self._lock:
            self._load = (count, size)

    @property
    def snapshot(self) -> NodeSnapshot:
        with self._lock:
            return self._snapshot

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the thread to end, close its connections, and wait up to ``timeout``."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        netns = self.layout.netns(self.nodeid)
        try:
            if netns is not None:
                enter_netns(netns)
            while not self._stop_event.is_set():
                self._poll_once()
                self._stop_event.wait(POLL_INTERVAL)
        except OSError as exc:
            self._publish(NodeSnapshot(self.nodeid, time.monotonic(), error=str(exc)))
        finally:
            self._close()

    def _poll_once(self) -> None:
        try:
            if self._handles is None:
                prefix = self.layout.ipc_prefix(self.nodeid)
                check_identity(prefix, self.nodeid)
                handle = cmap.initialize(prefix=prefix, timeout=_IPC_TIMEOUT)
                try:
                    stats = cmap.initialize(cmap.CmapMap.STATS, prefix=prefix, timeout=_IPC_TIMEOUT)
                except BaseException:
                    handle.finalize()
                    raise
                self._handles = (handle, stats)
            with self._lock:
                load, self._load = self._load, None
            if load is not None:
                handle = self._handles[0]
                handle.set("pload.count", load[0], cmap.CmapValueType.UINT32)
                handle.set("pload.size", load[1], cmap.CmapValueType.UINT32)
                handle.set("pload.start", str(time.monotonic_ns()), cmap.CmapValueType.STRING)
            snapshot = read_node(*self._handles, self.layout, self.nodeid)
        except (CsError, OSError, WrongNode) as exc:
            self._close()
            snapshot = NodeSnapshot(self.nodeid, time.monotonic(), error=f"IPC: {exc}")
        self._publish(snapshot)

    def _publish(self, snapshot: NodeSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def _close(self) -> None:
        handles, self._handles = self._handles, None
        for handle in handles or ():
            with contextlib.suppress(CsError, OSError):
                handle.finalize()


_INTERESTING = re.compile(
    r"A new membership|[Mm]embers? (?:joined|left)|is (?:up|down)\b|no active links"
    r"|error|FAILED|[Ff]ailed|Received SIG|left the ring|exiting|processor failed"
    r"|Writes .* TP/S",
)
_NEW_RING = re.compile(r"A new membership \(([0-9a-fA-F]+\.[0-9a-fA-F]+)\) was formed")
_DATE = re.compile(r"^[A-Z][a-z]{2} [ \d]\d ")  # "Nov 27 " of corosync's timestamps
_FIELDS = re.compile(r'(?: \w+=(?:"[^"]*"|\S+))+$')  # structlog's key=value tail
_INFO = re.compile(r" info +\[")


def _compact(line: str) -> str:
    """A log line for the view: no date, no ``info`` level, no key=value fields."""
    line = _INFO.sub(" [", _DATE.sub("", line), count=1)
    return " ".join(_FIELDS.sub("", line).split())


class LogWatcher:
    """Follows the log files of the nodes: the last interesting lines, and each node's
    latest ring id (from "A new membership (<ring id>) was formed")."""

    def __init__(self, logfiles: Mapping[int, Path], keep: int = 8) -> None:
        self._files = dict(logfiles)
        self._offsets = dict.fromkeys(self._files, 0)
        self._partial = dict.fromkeys(self._files, b"")
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self.ring_ids: dict[int, str] = {}

    def poll(self) -> None:
        """Read what was appended since the last call."""
        found: list[tuple[str, int, str]] = []
        for nodeid, path in self._files.items():
            try:
                with path.open("rb") as stream:
                    stream.seek(self._offsets[nodeid])
                    data = stream.read(1 << 20)
            except OSError:
                continue
            self._offsets[nodeid] += len(data)
            data = self._partial[nodeid] + data
            *complete, self._partial[nodeid] = data.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip()
                ring = _NEW_RING.search(line)
                if ring is not None:
                    self.ring_ids[nodeid] = ring.group(1)
                if _INTERESTING.search(line):
                    line = _compact(line)
                    found.append((line.split(" ", 1)[0], nodeid, line))
        # In time order across the nodes (hires timestamps of one day sort as text).
        found.sort(key=lambda item: item[0])
        self.lines.extend((nodeid, line) for _, nodeid, line in found)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of ``path`` (none when it cannot be read)."""
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def membership_formed(layout: ClusterLayout, snapshots: Sequence[NodeSnapshot]) -> bool:
    """True when every node answers and sees every node as a member."""
    everyone = tuple(layout.nodeids)
    nodes = {snapshot.nodeid for snapshot in snapshots}
    return nodes == set(everyone) and all(
        s.error is None and s.members == everyone for s in snapshots
    )


@attrs.frozen
class ViewState:
    """Everything one frame of the view shows."""

    layout: ClusterLayout
    workdir: Path
    elapsed: float
    processes: tuple[ProcessState, ...]
    snapshots: tuple[NodeSnapshot, ...]
    formed_at: float | None
    """Seconds after the start when all nodes first formed one membership."""
    ring_ids: Mapping[int, str] = attrs.field(factory=dict)
    events: tuple[tuple[int, str], ...] = ()
    now: float = attrs.field(factory=time.monotonic)


def _link_text(link: int, state: LinkState) -> str:
    if state.connected is None:
        return f"link{link} ?"
    if not state.connected:
        return f"link{link} down"
    latency = "" if state.latency_us is None else f" {state.latency_us}us"
    return f"link{link} up{latency}"


def _inspect_hint(layout: ClusterLayout) -> str:
    if layout.mode is LabMode.NETNS:
        return f"inspect node 1: ip netns exec {layout.netns(1)} pycorosync-cmapctl runtime.members"
    prefix = layout.ipc_prefix(1)
    return f"inspect node 1: PYCOROSYNC_IPC_PREFIX={prefix} pycorosync-cmapctl runtime.members"


def render_view(state: ViewState, width: int = 100) -> str:
    """One frame of the live view (lines cut at ``width``)."""
    layout = state.layout
    crypto = "aes256/sha256" if layout.crypto else "off"
    mode = "netns" if layout.mode is LabMode.NETNS else "loopback"
    links = "link" if layout.n_links == 1 else "links"
    out = [
        (
            f"pycorosync-cluster  {layout.n_nodes} nodes  {layout.n_links} {links}  {mode}  "
            f"crypto {crypto}  up {state.elapsed:.0f} s"
        ),
        f"Ctrl-C stops the cluster; work directory {state.workdir}",
        _inspect_hint(layout),
        "",
    ]
    for process, snapshot in zip(state.processes, state.snapshots, strict=True):
        nodeid = snapshot.nodeid
        where = layout.netns(nodeid) or f"ipc prefix {layout.ipc_prefix(nodeid)}"
        out.append(f"node {nodeid:<2} pid {process.pid:<7} {process.describe():<10} {where}")
        if process.returncode is not None:
            continue
        if snapshot.error is not None:
            out.append(f"   no answer: {snapshot.error}")
            continue
        age = state.now - snapshot.taken_at
        stale = f" (answer {age:.0f} s old)" if age > 3 * POLL_INTERVAL else ""
        ring_id = state.ring_ids.get(nodeid)
        ring = f"  ring {ring_id}" if ring_id else ""
        members = " ".join(str(m) for m in snapshot.members) or "-"
        out.append(f"   members: {members}{ring}{stale}")
        for peer, peer_links in snapshot.links:
            parts = "  ".join(_link_text(link, s) for link, s in enumerate(peer_links))
            out.append(f"   -> node {peer:<2} {parts}")
        if snapshot.received:
            got = "  ".join(f"from {sender}: {count}" for sender, count in snapshot.received)
            out.append(f"   messages delivered: {got}")
    out.append("")
    if membership_formed(layout, state.snapshots):
        status = f"all {layout.n_nodes} nodes in one membership"
    else:
        status = f"waiting for all {layout.n_nodes} nodes to see each other"
    if state.formed_at is not None:
        status += f" (first formed {state.formed_at:.1f} s after start)"
    out.append(f"membership: {status}")
    if state.events:
        out.append("recent log events:")
        out.extend(f"  node{nodeid}: {line}" for nodeid, line in state.events)
    return "".join(line[:width] + "\n" for line in out)
