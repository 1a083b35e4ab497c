"""Shared fixtures of the executive's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def real_tool_skip_reason() -> str | None:
    """Why the tests that run the real corosync tools cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for a network namespace (ip netns)"
    if shutil.which("ip") is None or shutil.which("setpriv") is None:
        return "needs the iproute2 'ip' tool and util-linux 'setpriv'"
    if shutil.which("corosync-cmapctl") is None:
        return (
            "corosync-cmapctl is not installed (apt-get install corosync; ./dev.sh setup as root)"
        )
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh network namespace of this test's own (abstract IPC socket names are per
    namespace), deleted afterwards."""
    reason = real_tool_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"pcs{request.node.module.__name__.rsplit('.', 1)[-1][-6:]}{os.getpid()}"
    _ip("netns", "delete", name)  # a leftover of an interrupted run
    result = _ip("netns", "add", name)
    assert result.returncode == 0, result.stderr
    yield name
    _ip("netns", "delete", name)
