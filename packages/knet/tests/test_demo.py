"""The README's main job: ``python -m knet.demo`` runs three hosts with two links each on
loopback, fails one link and restores it. Run as a real subprocess, as a newcomer would."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PAIRS = [(h, p) for h in (1, 2, 3) for p in (1, 2, 3) if h != p]
ROW = re.compile(
    r"^\s+(?P<host>\d)\s+(?P<peer>\d)\s+(?P<l0>up\s+\d+ µs|DOWN|disabled)\s+"
    r"(?P<l1>up\s+\d+ µs|DOWN|disabled)\s+(?P<count>\d+)"
)
TABLE = re.compile(r"^\[\s*(?P<second>\d+) s\]  host  peer")


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def parse_tables(output: str) -> dict[int, dict[tuple[int, int], tuple[str, str, int]]]:
    """second -> (host, peer) -> (link 0 cell, link 1 cell, messages delivered)."""
    tables: dict[int, dict[tuple[int, int], tuple[str, str, int]]] = {}
    current: dict[tuple[int, int], tuple[str, str, int]] | None = None
    for line in output.splitlines():
        if header := TABLE.match(line):
            current = tables.setdefault(int(header["second"]), {})
        elif current is not None and (row := ROW.match(line)):
            state = (row["l0"].split()[0], row["l1"].split()[0], int(row["count"]))
            current[(int(row["host"]), int(row["peer"]))] = state
        else:
            current = None
    return tables


def test_demo_runs_fails_a_link_and_recovers() -> None:
    """`python -m knet.demo --duration 14` shows links up, link 1 of host 3 going down and
    coming back, and every host delivering every message of the others exactly once."""
    proc = subprocess.run(
        [sys.executable, "-m", "knet.demo", "--duration", "14"],
        env=demo_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "link up" not in proc.stderr  # knet's INFO logs stay quiet by default
    assert "all 12 links up" in out

    down_at = out.index("=== taking link 1 of host 3 down ===")
    up_at = out.index("=== bringing link 1 of host 3 back up ===")
    assert down_at < up_at
    during, after = out[down_at:up_at], out[up_at:]
    for peer in (1, 2):
        assert f"host 3: link 1 to host {peer} disabled here" in during
        # the peers notice by themselves: their pongs stop coming back
        assert f"host {peer}: link 1 to host 3 DOWN (no pong" in during
        assert f"host {peer}: link 1 to host 3 up" in after
        assert f"host 3: link 1 to host {peer} up" in after

    tables = parse_tables(out)
    assert sorted(tables) == list(range(1, 15))
    assert all(sorted(table) == sorted(PAIRS) for table in tables.values())
    assert all(state[:2] == ("up", "up") for state in tables[4].values())
    # one second into the failure and until it is restored, the others see link 1 down
    for second in range(7, 11):
        table = tables[second]
        assert table[(1, 3)][:2] == ("up", "DOWN")
        assert table[(2, 3)][:2] == ("up", "DOWN")
        assert table[(3, 1)][:2] == ("up", "disabled")
        assert table[(1, 2)][:2] == ("up", "up")
    assert all(state[:2] == ("up", "up") for state in tables[14].values())
    # messages kept flowing between every pair while link 1 of host 3 was down
    for pair in PAIRS:
        assert sum(tables[second][pair][2] for second in range(6, 11)) > 0

    for host, peer in PAIRS:
        summary = re.search(
            rf"host {host} delivered (\d+) messages from host {peer}: 0 missing, "
            r"0 delivered twice",
            out,
        )
        assert summary is not None, out
        assert int(summary[1]) >= 20  # about 5 a second for ~13 s
    assert "every message was delivered exactly once, through every failover" in out


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    """Ctrl-C (SIGINT) stops the demo with exit status 0 and a summary."""
    port = random.Random().randrange(20000, 60000, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "knet.demo", "--port", str(port)],
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        for line in proc.stdout:  # wait for the first table: the demo is running
            seen.append(line)
            if TABLE.match(line) or time.monotonic() > deadline:
                break
        assert any(TABLE.match(line) for line in seen), "".join(seen)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Ctrl-C: stopping" in rest
    assert "=== summary after" in rest
    assert "Traceback" not in err
