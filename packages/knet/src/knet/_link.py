"""One link to one host: its heartbeat state machine, latency and PMTU.

A link is DISABLED until enabled, then DOWN until ``pong_count`` good pongs arrive in a
row, then UP until no pong arrived within the adjusted timeout::

    pong_timeout_adj = ping_timeout * backoff + 2 * latency_ave

``backoff`` is 1 on a fresh link and set to 10 when a link goes down; it decays by one
per second back to 1, so a link that just flapped is judged leniently for a while
(libknet's behaviour). A pong whose round trip exceeds ``ping_timeout`` is discarded.
"""

from __future__ import annotations

import enum

from knet._options import Address, LinkOptions
from knet._pmtud import Pmtud
from knet._stats import LinkStats

__all__ = ["PONG_TIMEOUT_BACKOFF", "Link", "LinkState"]

PONG_TIMEOUT_BACKOFF = 10
_SECOND = 1_000_000_000


class LinkState(enum.Enum):
    DISABLED = "disabled"
    DOWN = "down"
    UP = "up"


class Link:
    """Mutable state of one (host, link id) pair. Owned and driven by the core."""

    __slots__ = (
        "_backoff_set_at",
        "_good_pongs",
        "_latency_ave_ns",
        "host_id",
        "last_pong_ns",
        "link_id",
        "local",
        "manual_mtu",
        "next_ping_ns",
        "options",
        "pmtud",
        "remote",
        "state",
        "stats",
    )

    def __init__(
        self, host_id: int, link_id: int, local: Address, remote: Address, options: LinkOptions
    ) -> None:
        self.host_id = host_id
        self.link_id = link_id
        self.local = local
        self.remote = remote
        self.options = options
        self.state = LinkState.DISABLED
        self.stats = LinkStats()
        self.pmtud = Pmtud(remote.family)
        self.manual_mtu: int | None = None
        self.next_ping_ns: int | None = None
        self.last_pong_ns: int | None = None
        self._good_pongs = 0
        self._latency_ave_ns = 0
        self._backoff_set_at: int | None = None

    # -- state ---------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP

    @property
    def mtu(self) -> int:
        """UDP payload bytes one datagram on this link can carry."""
        return self.manual_mtu if self.manual_mtu is not None else self.pmtud.mtu

    def backoff(self, now: int) -> int:
        if self._backoff_set_at is None:
            return 1
        decayed = (now - self._backoff_set_at) // _SECOND
        return max(1, PONG_TIMEOUT_BACKOFF - decayed)

    def pong_timeout_adj_ns(self, now: int) -> int:
        return self.options.ping_timeout_ns * self.backoff(now) + 2 * self._latency_ave_ns

    def enable(self, now: int) -> None:
        if self.state is LinkState.DISABLED:
            self.state = LinkState.DOWN
            self._good_pongs = 0
            self.next_ping_ns = now

    def disable(self, now: int) -> bool:
        """Returns True if the link was up (the caller reports it down)."""
        was_up = self.state is LinkState.UP
        if was_up:
            self._mark_down(now)
        self.state = LinkState.DISABLED
        self.next_ping_ns = None
        self.pmtud.stop()
        return was_up

    def set_options(self, options: LinkOptions, now: int) -> None:
        self.options = options
        if self.state is not LinkState.DISABLED:
            self.next_ping_ns = now

    # -- heartbeat -----------------------------------------------------------

    def ping_due(self, now: int) -> bool:
        return self.next_ping_ns is not None and now >= self.next_ping_ns

    def ping_sent(self, now: int) -> None:
        self.next_ping_ns = now + self.options.ping_interval_ns

    def on_pong(self, sent_at: int, now: int) -> bool:
        """Account for a pong. Returns True if the link just came up."""
        if self.state is LinkState.DISABLED:
            return False
        rtt = now - sent_at
        if rtt < 0 or rtt > self.options.ping_timeout_ns:
            self.stats.rx_late_pongs += 1
            return False
        self._add_latency_sample(rtt)
        self.last_pong_ns = now
        if self.state is LinkState.DOWN:
            self._good_pongs += 1
            if self._good_pongs >= self.options.pong_count:
                self.state = LinkState.UP
                self.stats.up_count += 1
                self.stats.last_up_times_ns.append(now)
                return True
        return False

    def check_timeout(self, now: int) -> bool:
        """Returns True if the link just went down for lack of pongs."""
        if self.state is LinkState.UP:
            assert self.last_pong_ns is not None
            if now - self.last_pong_ns > self.pong_timeout_adj_ns(now):
                self._mark_down(now)
                return True
        elif self.state is LinkState.DOWN and self._good_pongs:
            # pong_count good pongs must come in a row: a missed one restarts the count.
            assert self.last_pong_ns is not None
            if (
                now - self.last_pong_ns
                > self.options.ping_interval_ns + self.options.ping_timeout_ns
            ):
                self._good_pongs = 0
        return False

    def deadline(self, now: int) -> int | None:
        """The earliest time this link needs ``handle_timeouts``."""
        candidates = []
        if self.next_ping_ns is not None:
            candidates.append(self.next_ping_ns)
        if self.state is LinkState.UP and self.last_pong_ns is not None:
            candidates.append(self.last_pong_ns + self.pong_timeout_adj_ns(now) + 1)
        pmtud = self.pmtud.deadline() if self.manual_mtu is None else None
        if pmtud is not None and self.state is LinkState.UP:
            candidates.append(pmtud)
        return min(candidates) if candidates else None

    def _mark_down(self, now: int) -> None:
        self.state = LinkState.DOWN
        self._good_pongs = 0
        self._backoff_set_at = now
        self.stats.down_count += 1
        self.stats.last_down_times_ns.append(now)
        self.pmtud.stop()

    def _add_latency_sample(self, rtt_ns: int) -> None:
        stats = self.stats
        first = stats.latency_samples == 0
        samples = min(stats.latency_samples + 1, self.options.ping_precision)
        # Running average over the last ``ping_precision`` samples (libknet's precision).
        self._latency_ave_ns = (self._latency_ave_ns * (samples - 1) + rtt_ns) // samples
        stats.latency_samples = samples
        rtt_us = rtt_ns // 1000
        if first or rtt_us < stats.latency_min_us:
            stats.latency_min_us = rtt_us
        stats.latency_max_us = max(stats.latency_max_us, rtt_us)
        stats.latency_ave_us = self._latency_ave_ns // 1000
