"""A remote (or the local, loopback) host: its links, link policy and receive state."""

from __future__ import annotations

from knet._crypto import ReplayWindow
from knet._dedup import DedupWindow
from knet._frag import Reassembler
from knet._link import Link
from knet._options import LinkPolicy

__all__ = ["Host"]


class Host:
    """Mutable state of one host known to the handle. Owned and driven by the core."""

    __slots__ = (
        "_rr_next",
        "active_links",
        "dedup",
        "host_id",
        "is_loopback",
        "links",
        "name",
        "peer_instance",
        "policy",
        "reachable",
        "reassembler",
        "replay",
        "tx_counter",
    )

    def __init__(
        self,
        host_id: int,
        *,
        name: str | None,
        policy: LinkPolicy,
        is_loopback: bool,
        defrag_buffers: int,
    ) -> None:
        self.host_id = host_id
        self.name = name
        self.policy = policy
        self.is_loopback = is_loopback
        self.links: dict[int, Link] = {}
        # Links that carry data now, in the order the policy uses them.
        self.active_links: tuple[Link, ...] = ()
        self.reachable = is_loopback
        self.tx_counter = 0
        self.peer_instance: int | None = None
        self.dedup = DedupWindow()
        self.reassembler = Reassembler(max_buffers=defrag_buffers)
        self.replay = ReplayWindow()
        self._rr_next = 0

    def recompute_active_links(self) -> bool:
        """Apply the link policy to the connected links. Returns the new reachability."""
        up = [link for _, link in sorted(self.links.items()) if link.is_up]
        if self.policy is LinkPolicy.PASSIVE and up:
            # Highest priority wins; sorted by id first, so max() keeps the lowest id on ties.
            best = max(up, key=lambda link: link.options.priority)
            self.active_links = (best,)
        else:
            self.active_links = tuple(up)
        self._rr_next = 0
        return self.is_loopback or bool(up)

    def links_for_send(self) -> tuple[Link, ...]:
        """The links one packet goes out on under the host's policy."""
        active = self.active_links
        if self.policy is LinkPolicy.RR and len(active) > 1:
            index = self._rr_next % len(active)
            self._rr_next = index + 1
            return (active[index],)
        return active

    def peer_restarted(self, instance: int) -> None:
        """The peer came back with a new instance id: forget its old receive state."""
        self.peer_instance = instance
        self.dedup.reset()
        self.reassembler.reset()
