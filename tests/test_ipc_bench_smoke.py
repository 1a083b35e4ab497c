"""Smoke test of bench/ipc_bench.py: the cmap IPC benchmark runs and prints its table.

Only the shape of the output is checked, never a speed (docs/performance.md has the
measured numbers). Needs root (the benchmark creates a network namespace), the
iproute2 ``ip`` tool and Debian's corosync with libcmap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "ipc_bench.py"
ROW = re.compile(r"^(corosync|pycorosync) +(socket|shm) +(python|libcmap) +(.*)$")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "bench/ipc_bench.py needs root to create a network namespace"
    for tool in ("ip", "corosync", "corosync-cmapctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt package iproute2/corosync)"
    return None


def test_quick_run_prints_the_header_and_every_row() -> None:
    """`--quick` exits 0 and prints the header and one measured row per server (the real
    corosync and our daemon), transport and client."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("server"))
    for column in ("transport", "client", "rt/s", "p50 us", "p99 us"):
        assert column in header
    rows = {(m[1], m[2], m[3]): m[4] for line in lines if (m := ROW.match(line))}
    assert list(rows) == [
        ("corosync", "socket", "python"),
        ("corosync", "socket", "libcmap"),
        ("pycorosync", "socket", "python"),
        ("pycorosync", "socket", "libcmap"),
        ("corosync", "shm", "python"),
        ("corosync", "shm", "libcmap"),
        ("pycorosync", "shm", "python"),
        ("pycorosync", "shm", "libcmap"),
    ]
    for key, cells in rows.items():
        rate, p50, p99 = (float(cell) for cell in cells.split())
        assert rate > 0, (key, cells)
        assert 0 < p50 <= p99, (key, cells)


def test_rejects_a_non_positive_duration() -> None:
    """A zero `--duration` is refused by the argument parser before anything starts."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--duration", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--duration must be positive" in result.stderr
