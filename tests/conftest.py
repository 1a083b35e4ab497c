"""Shared fixtures of the root test suite: network-namespace labs for system tests.

A :class:`NetnsLab` builds hosts that each live in a network namespace of their own,
joined by separate L2 segments ("links"): link ``L`` is a bridge inside a dedicated
switch namespace, and host ``h`` reaches it through a veth pair whose host end is
called ``l<L>`` and carries the address ``10.(231+L).0.h/24``. These addresses exist
only inside the namespaces the lab creates, so no traffic leaves the machine.

Namespace names start with ``knt<pid>t<n>`` (the pytest process id and a per-lab
counter). The lab's finalizer stops every process it started and deletes its
namespaces, even when the test failed; namespaces left behind by an earlier run whose
process is gone are deleted when the next lab is created.

Tests that use a lab carry ``@pytest.mark.netns``; they are skipped, with the reason,
only when not run as root or when the ``ip`` tool is missing.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from corosync_executive import _netlab

NETNS_PREFIX = "knt"
_STALE_NETNS = re.compile(rf"^{NETNS_PREFIX}(\d+)t\d+[hs]\d+$")
_lab_counter = itertools.count(1)


def netns_skip_reason() -> str | None:
    """Why netns tests cannot run here, or None when they can."""
    reason = _netlab.netns_unavailable_reason()
    return None if reason is None else f"netns system tests: {reason}"


def delete_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating pytest process no longer exists."""
    return _netlab.delete_stale_namespaces(_STALE_NETNS)


class NetnsLab(_netlab.NetnsLab):
    """The shared lab (corosync_executive._netlab) named ``knt<pid>t<n>``, with
    addresses ``10.(231+L).0.h``, plus packet loss for the knet system test."""

    def __init__(self, n_hosts: int, mtus: Sequence[int] = (1500, 1500)) -> None:
        super().__init__(f"{NETNS_PREFIX}{os.getpid()}t{next(_lab_counter)}", n_hosts, mtus)
        self.loss_methods: dict[tuple[int, int], str] = {}

    def add_packet_loss(self, host: int, link: int, percent: int) -> str:
        """Drop ``percent`` % of the packets ``host`` sends on ``link``, at random.

        Tries ``tc qdisc ... netem loss`` first; kernels without the netem qdisc get an
        nftables rule instead (output hook, ``numgen random`` drop on the interface).
        Returns which one was used: ``"netem"`` or ``"nftables"``.
        """
        dev = self.iface(link)
        if shutil.which("tc") is not None:
            netem = ["tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", f"{percent}%"]
            try:
                self.exec(host, *netem)
            except RuntimeError:
                pass  # e.g. "Specified qdisc kind is unknown": no netem in this kernel
            else:
                self.loss_methods[(host, link)] = "netem"
                return "netem"
        if shutil.which("nft") is None:
            raise RuntimeError("packet loss needs either the netem qdisc or nftables (nft)")
        table = f"knetloss{link}"
        ruleset = (
            f"table inet {table} {{\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f'    oifname "{dev}" numgen random mod 100 < {percent} counter drop\n'
            "  }\n"
            "}\n"
        )
        self.exec(host, "nft", "-f", "-", stdin=ruleset)
        self.loss_methods[(host, link)] = "nftables"
        return "nftables"


@pytest.fixture
def netns_lab() -> Iterator[Callable[..., NetnsLab]]:
    """A factory ``make(n_hosts, mtus=(1500, 1500)) -> NetnsLab``, cleaned up afterwards."""
    reason = netns_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    delete_stale_namespaces()
    labs: list[NetnsLab] = []

    def make(n_hosts: int, mtus: Sequence[int] = (1500, 1500)) -> NetnsLab:
        lab = NetnsLab(n_hosts, mtus)
        labs.append(lab)
        lab.create()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
