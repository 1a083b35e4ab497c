"""pload: corosync's load generator (service 4), for testing and demonstrations.

Setting ``pload.start`` (any value, e.g. ``pycorosync-cmapctl -s pload.start str go``)
makes this node multicast ``pload.count`` messages (u32, default 1500) of
``pload.size`` bytes (u32, default 300, at least 8) through totem, as fast as the
totem send queue lets it. Every node counts what it receives from each sender
(``runtime.pload.<sender>.rx``, u64) and when the sender delivers its own last
message it logs corosync's throughput line::

    1500 Writes 300 bytes per write 0.512 seconds runtime, 2929.688 TP/S, 0.879 MB/S.

Difference from corosync: corosync's pload ends the daemon afterwards ("Stopping
corosync the hard way", exit 99); ours keeps running, so a demo can load a live cluster.
"""

from __future__ import annotations

import struct
import time

import structlog
import trio

from corosync import CsError, CsErrorCode
from corosync_executive._cmap_store import (
    CmapError,
    CmapStore,
    Notification,
    TrackEvent,
    TrackType,
    ValueType,
)
from corosync_executive._service import ExecMessage, Service
from totem import Guarantee

__all__ = ["DEFAULT_COUNT", "DEFAULT_SIZE", "PloadService"]

DEFAULT_COUNT = 1500
DEFAULT_SIZE = 300
MAX_SIZE = 1024 * 1024
_HEADER = struct.Struct(">IIQ")  # run, sequence number, count of the run
_BACKOFF = 0.002  # seconds to wait while the totem queue is full


class PloadService(Service):
    """The load generator; needs ``attach`` (the daemon) and its :meth:`run` task."""

    name = "corosync_pload"
    service_id = 4
    ipc_name = None

    def __init__(self, store: CmapStore) -> None:
        self.store = store
        self._start_requested = trio.Event()
        self._run = 0
        self._started_ns = 0
        self.received: dict[int, int] = {}
        self.sent = 0
        self.completed_runs = 0
        self._log = structlog.get_logger("pload").bind(subsystem="PLOAD")
        store.track_add("pload.", int(TrackType.ADD | TrackType.MODIFY | TrackType.PREFIX), self)

    def cmap_notification(self, note: Notification) -> None:
        if note.key == "pload.start" and note.event is not TrackEvent.DELETE:
            self._start_requested.set()

    def _setting(self, key: str, default: int, low: int, high: int) -> int:
        try:
            _, value = self.store.get(key)
        except CmapError:
            return default
        try:
            number = int(value)  # corosync stores them as strings
        except (TypeError, ValueError):
            self._log.warning(f"{key} is not a number; using {default}")
            return default
        return min(max(number, low), high)

    async def run(self) -> None:
        while True:
            await self._start_requested.wait()
            self._start_requested = trio.Event()
            await self._send_run()

    async def _send_run(self) -> None:
        count = self._setting("pload.count", DEFAULT_COUNT, 1, 2**32 - 1)
        size = self._setting("pload.size", DEFAULT_SIZE, _HEADER.size, MAX_SIZE)
        self._run += 1
        self._started_ns = time.monotonic_ns()
        self._log.info(f"Starting load: {count} messages of {size} bytes")
        padding = bytes(size - _HEADER.size)
        for seq in range(count):
            payload = _HEADER.pack(self._run, seq, count) + padding
            while True:
                try:
                    self.ctx.mcast(self.service_id, 0, payload, Guarantee.AGREED)
                    break
                except CsError as exc:
                    if exc.code is not CsErrorCode.TRY_AGAIN:
                        self._log.error("load stopped: cannot send", error=str(exc))
                        return
                    await trio.sleep(_BACKOFF)
            self.sent += 1
            if seq % 64 == 63:
                await trio.lowlevel.checkpoint()

    def exec_deliver(self, message: ExecMessage) -> None:
        if len(message.payload) < _HEADER.size:
            self._log.warning("malformed pload message dropped", sender=message.sender)
            return
        run, seq, count = _HEADER.unpack_from(message.payload)
        total = self.received.get(message.sender, 0) + 1
        self.received[message.sender] = total
        key = f"runtime.pload.{message.sender}.rx"
        self.store.set(key, ValueType.UINT64, total, writer=True)
        mine = message.sender == self.ctx.local_nodeid and run == self._run
        if mine and seq == count - 1:
            self.completed_runs += 1
            seconds = max((time.monotonic_ns() - self._started_ns) / 1e9, 1e-9)
            size = len(message.payload)
            rate = count / seconds
            mbytes = rate * size / (1024 * 1024)
            self._log.info(
                f"{count} Writes {size} bytes per write {seconds:7.3f} seconds runtime, "
                f"{rate:9.3f} TP/S, {mbytes:9.3f} MB/S."
            )
