"""pycorosync-cfgtool against a real corosync 3.1.7 cluster: same output as corosync-cfgtool.

The ``cluster`` fixture (conftest.py) runs three corosync nodes in network namespaces,
with SOCKET IPC as in test_cmapctl_real_corosync. Once node 1 sees both links to both
peers connected, ``corosync-cfgtool ARGS`` and
``python -m corosync.tools.cfgtool ARGS`` run in node 1's namespace must give the same
stdout, stderr (apart from the program name) and exit code -- also after a link of
node 3 is taken down.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.netns

HOSTS = (1, 2, 3)


def _same(cluster: Any, *args: str, host: int = 1) -> Any:
    real, ours = cluster.real(*args, host=host), cluster.ours(*args, host=host)
    assert ours == real
    return ours


def test_status_views_match(cluster: Any) -> None:
    """-s, -sb, -n and -i ... -s print exactly what corosync-cfgtool prints."""
    status = _same(cluster, "-s")
    assert status.out.startswith("Local node ID 1, transport knet\nLINK ID 0 udp\n")
    assert status.out.count("\tconnected\n") == 4
    assert _same(cluster, "-sb").out.count("\tstatus\t= n33\n") == 2
    nodes = _same(cluster, "-n")
    assert "nodeid: 3 reachable\n   LINK: 0 udp (10.231.0.1->10.231.0.3) enabled connected" in (
        nodes.out
    )
    _same(cluster, "-i", "10.232.0.1", "-s")
    _same(cluster, "-n", host=2)


def test_addresses_match(cluster: Any) -> None:
    """-a for each node (and an unknown one) matches."""
    for host in HOSTS:
        assert _same(cluster, "-a", str(host)).out == f"10.231.0.{host} 10.232.0.{host}\n"
    assert _same(cluster, "-a", "9").rc == 1


@pytest.mark.parametrize(
    "args",
    [
        ("-k", "9"),
        ("-k", "abc"),
        ("-a", "0"),
        ("-x",),
        ("-k",),
        ("--foo",),
        ("--re",),
        ("-L",),
    ],
)
def test_errors_and_harmless_actions_match(cluster: Any, args: tuple[str, ...]) -> None:
    """Error texts and exit codes, and -L, are the real tool's."""
    _same(cluster, *args)


def test_link_down_shows_the_same(cluster: Any) -> None:
    """With node 3's link 1 down, both tools show it disconnected, in every view."""
    cluster.set_link(3, 1, up=False)
    try:
        cluster.wait_until("\tdisconnected\n", 1)
        assert "\t\tnodeid:          3:\tdisconnected\n" in _same(cluster, "-s").out
        assert "\tstatus\t= n31\n" in _same(cluster, "-sb").out
        _same(cluster, "-n")
    finally:
        cluster.set_link(3, 1, up=True)
    cluster.wait_until("\tconnected\n", 4)
