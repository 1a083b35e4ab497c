"""Smoke test of bench/totem_bench.py: the benchmark runs and prints its three tables.

Only the shape of the output is checked, never a speed: the benchmark is not a timed
test (docs/performance.md has the measured numbers).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "totem_bench.py"


def _run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    sources = [str(ROOT / "packages" / name / "src") for name in ("knet", "totem")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*sources, env.get("PYTHONPATH")]))
    env.pop("TOTEM_BENCH_PROFILE", None)
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_quick_run_prints_the_three_tables() -> None:
    """`--quick` exits 0 and prints the simulator rows for 5 and 16 nodes, one
    throughput row per payload size with one agreed order at every node, and the
    membership rows next to corosync's reference numbers."""
    result = _run_bench("--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()

    sim_header = next(i for i, line in enumerate(lines) if "sim s / wall s" in line)
    sim_rows = [line.split() for line in lines[sim_header + 1 : sim_header + 5]]
    assert [(row[0], row[1]) for row in sim_rows] == [
        ("5", "none"),
        ("5", "swarm"),
        ("16", "none"),
        ("16", "swarm"),
    ]

    load_header = next(
        line for line in lines if line.split()[:3] == ["payload", "senders", "window"]
    )
    for column in ("msgs/s", "MB/s", "load p50 ms", "load p99 ms", "idle p50 ms", "order"):
        assert column in load_header
    for size in ("64 B", "1 KiB"):
        row = next(line for line in lines if line.startswith(f"{size:>8} "))
        assert "FAILED" not in row, row
        assert row.split()[-1] == "ok", row  # every node delivered one order

    assert "corosync 3.1.7 s" in out
    start = next(line for line in lines if line.startswith("start -> 3-node membership"))
    kill = next(line for line in lines if line.startswith("kill -9 -> 2-node membership"))
    assert re.search(r"token 1000 .*\s\d+\.\d\d\s", start), start
    assert re.search(r"token 1000 .*\s\d+\.\d\d\s+3\.7$", kill), kill
    assert re.search(r"survivors of each kill within \d+\.\d{3} s", out)


def test_rejects_a_message_larger_than_process_groups_carry() -> None:
    """A payload above the process-group layer's 1 MiB limit is refused by the parser."""
    result = _run_bench("--sizes", "2MiB", "--skip-real")
    assert result.returncode == 2
    assert "payload size must be" in result.stderr
