"""Path MTU discovery for one link: probe, bisect, and use the kernel's EMSGSIZE hints.

Sizes here are UDP payload sizes (what one datagram can carry). A run starts with a
probe at the largest UDP payload; a probe that is answered raises the known-good size,
one that times out lowers the ceiling, and an EMSGSIZE from the kernel (the driver sets
"don't fragment") lowers the ceiling to the MTU the kernel reports. The run ends when
the gap is small or after 30 probes (libknet's limit), then repeats every interval.
Every run starts afresh from the smallest size, so a path that shrank is found too; the
link keeps using the previous result until the run ends.
"""

from __future__ import annotations

import enum

__all__ = [
    "MAX_ATTEMPTS",
    "Pmtud",
    "PmtudState",
    "ip_udp_overhead",
    "max_udp_payload",
    "min_udp_payload",
]

MAX_ATTEMPTS = 30
_GRANULARITY = 4  # stop bisecting when the gap is this small


def ip_udp_overhead(family: int) -> int:
    """Bytes the IP and UDP headers add for the given family (4 or 6)."""
    return 48 if family == 6 else 28


def min_udp_payload(family: int) -> int:
    """UDP payload always deliverable: IPv4 minimum MTU 576, IPv6 1280."""
    return (1280 if family == 6 else 576) - ip_udp_overhead(family)


def max_udp_payload(family: int) -> int:
    """The largest UDP payload: IPv4 counts its header in the 16-bit length, IPv6 does not."""
    return 65527 if family == 6 else 65507


class PmtudState(enum.Enum):
    IDLE = "idle"
    PROBING = "probing"


class Pmtud:
    """The discovery state of one link. The core sends the probes this asks for."""

    __slots__ = (
        "_attempts",
        "_ceiling",
        "_deadline",
        "_family",
        "_floor",
        "_probe",
        "_timeout_ns",
        "aborted",
        "mtu",
        "next_run_ns",
        "state",
    )

    def __init__(self, family: int) -> None:
        self._family = family
        self.mtu = min_udp_payload(family)
        self.state = PmtudState.IDLE
        self.next_run_ns: int | None = None
        self.aborted = False
        self._ceiling = max_udp_payload(family)
        self._floor = self.mtu  # largest size answered in the current run
        self._probe = 0
        self._attempts = 0
        self._deadline = 0
        self._timeout_ns = 0

    @property
    def probe_size(self) -> int:
        """The size of the outstanding probe (0 when idle)."""
        return self._probe if self.state is PmtudState.PROBING else 0

    def start(self, now: int, timeout_ns: int) -> int:
        """Begin a run; returns the first probe size to send."""
        self.state = PmtudState.PROBING
        self.aborted = False
        self._ceiling = max_udp_payload(self._family)
        # Not the last result: a path that shrank without an EMSGSIZE hint (a router
        # further along dropping big packets) must be able to bring the size down.
        # ``mtu`` keeps the last result for the data path until this run ends.
        self._floor = min_udp_payload(self._family)
        self._attempts = 0
        self._timeout_ns = timeout_ns
        return self._next_probe(self._ceiling, now)

    def stop(self) -> None:
        """Cancel a run (link went down or was disabled)."""
        self.state = PmtudState.IDLE
        self.next_run_ns = None

    def on_reply(self, size: int, now: int, interval_ns: int) -> int | None:
        """A probe of ``size`` came back. Returns the next probe size, or None."""
        if self.state is not PmtudState.PROBING or size != self._probe:
            return None  # a late reply to an older probe
        self._floor = max(self._floor, size)
        return self._continue(now, interval_ns)

    def on_emsgsize(self, size: int, ip_mtu: int | None, now: int, interval_ns: int) -> int | None:
        """The kernel refused to send ``size`` bytes; ``ip_mtu`` is its hint, if known."""
        if self.state is not PmtudState.PROBING or size != self._probe:
            return None
        ceiling = size - 1
        hinted = ip_mtu is not None and ip_mtu > 0
        if ip_mtu is not None and ip_mtu > 0:
            ceiling = min(ceiling, ip_mtu - ip_udp_overhead(self._family))
        self._ceiling = max(ceiling, self._floor)
        if hinted and self._ceiling - self._floor > _GRANULARITY and self._attempts < MAX_ATTEMPTS:
            # The kernel told us the route MTU: try exactly that before bisecting.
            return self._next_probe(self._ceiling, now)
        return self._continue(now, interval_ns)

    def on_timer(self, now: int, interval_ns: int) -> int | None:
        """Called when ``deadline()`` passed: a probe timed out. Returns the next probe."""
        if self.state is not PmtudState.PROBING or now < self._deadline:
            return None
        self._ceiling = max(self._probe - 1, self._floor)
        return self._continue(now, interval_ns)

    def deadline(self) -> int | None:
        if self.state is PmtudState.PROBING:
            return self._deadline
        return self.next_run_ns

    def _continue(self, now: int, interval_ns: int) -> int | None:
        if self._ceiling - self._floor <= _GRANULARITY:
            self.mtu = self._floor
            self._finish(now, interval_ns)
            return None
        if self._attempts >= MAX_ATTEMPTS:
            self.aborted = True  # keep the last good size unless this run proved a larger one
            self.mtu = max(self.mtu, self._floor)
            self._finish(now, interval_ns)
            return None
        return self._next_probe((self._floor + self._ceiling + 1) // 2, now)

    def _next_probe(self, size: int, now: int) -> int:
        self._attempts += 1
        self._probe = size
        self._deadline = now + self._timeout_ns
        return size

    def _finish(self, now: int, interval_ns: int) -> None:
        self.state = PmtudState.IDLE
        self.next_run_ns = now + interval_ns
