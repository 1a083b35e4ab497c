"""Totem over knet: a :class:`~totem.Transport` on one channel of a knet handle.

Optional: this is the only totem module that imports knet, and only ``import
totem._knet_adapter`` (or the first use of ``totem.KnetTransport``) loads it. Without
knet installed everything else in totem works.

knet brings what plain UDP lacks: several links per node with failover, authenticated
encryption, and access control by authenticated host id. Node ids are knet host ids.
A broadcast goes to every host configured on the handle except this one (hosts without
a connected link are skipped by knet, as lost datagrams); a unicast to that host only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

try:
    import knet
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "totem.KnetTransport needs the knet package (pip install 'pycorosync-totem[knet]')"
    ) from exc

import trio

from totem._errors import TotemError
from totem._transport import DEFAULT_BATCH

if TYPE_CHECKING:
    from knet import DataReceived, KnetHandle

__all__ = ["KnetTransport"]


class KnetTransport:
    """Totem's datagrams on knet channel ``channel`` (0..31) of ``handle``.

    The channel is opened here (it must not be open already); configure the peers and
    links on the handle as usual. ``stats`` counts ``tx_errors``: sends knet refused
    (unknown host, closed handle), dropped like lost datagrams.
    """

    def __init__(self, handle: KnetHandle, channel: int = 0) -> None:
        self.handle = handle
        self.channel = channel
        self._inbox: trio.MemoryReceiveChannel[DataReceived] = handle.open_channel(channel)
        self.stats: dict[str, int] = {"tx_errors": 0}

    @property
    def node_id(self) -> int:
        return self.handle.host_id

    @property
    def max_datagram(self) -> int:
        return knet.MAX_PAYLOAD

    def send(self, target: int, data: bytes) -> None:
        if len(data) > knet.MAX_PAYLOAD:
            raise TotemError(
                f"datagram of {len(data)} bytes exceeds max_datagram ({knet.MAX_PAYLOAD})"
            )
        handle = self.handle
        me = handle.host_id
        if target == 0:
            hosts: Sequence[int] = [h for h in handle.core.host_ids() if h != me]
            if not hosts:
                return
        else:
            hosts = (target,)
        try:
            handle.send(data, channel=self.channel, hosts=hosts)
        except knet.KnetError:  # unknown host, closed handle: a lost datagram
            self.stats["tx_errors"] += 1

    async def receive_batch(self, max_count: int = DEFAULT_BATCH) -> list[tuple[int, bytes]]:
        inbox = self._inbox
        try:
            first = await inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return []
        batch = [(first.src_host, first.payload)]
        try:
            while len(batch) < max_count:
                message = inbox.receive_nowait()
                batch.append((message.src_host, message.payload))
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        return batch

    def close(self) -> None:
        """Close the knet channel (idempotent); a waiting receive returns []."""
        if not self.handle.closed:
            with contextlib.suppress(knet.KnetError):
                self.handle.close_channel(self.channel)
        self._inbox.close()
