"""Smoke test of bench/knet_bench.py: the benchmark runs and prints its table.

Only the shape of the output is checked, never a speed: the benchmark is not a timed
test (see docs/performance.md for the measured numbers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs

import knet
from knet._crypto import PacketSealer

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "knet_bench.py"


def _run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    knet_src = str(ROOT / "packages" / "knet" / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [knet_src, env.get("PYTHONPATH")]))
    env.pop("KNET_BENCH_WRAP", None)
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_quick_run_prints_every_row_with_a_ratio() -> None:
    """`--quick` exits 0 and prints the header, a bare baseline row and the four knet
    rows (crypto off/on, one/two links) of each size, each knet row with a ratio."""
    result = _run_bench("--quick", "--duration", "0.2", "--sizes", "1024", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["payload", "transport"])
    for column in ("msgs/s", "MB/s", "p50", "p99", "loss", "ratio"):
        assert column in header
    # Without --cipher, 'crypto on' is knet's default cipher, and the header says which.
    default = attrs.fields(knet.CryptoConfig).cipher.default
    assert header.endswith(f"[crypto on: {default.value}]")
    tag = PacketSealer(knet.CryptoConfig(knet.generate_authkey())).overhead
    measured = json.loads(lines[-1])
    assert [r["extra"]["tag_bytes"] for r in measured[1:]] == [0, 0, tag, tag]
    rows = [line for line in lines if line.startswith("   1 KiB")]
    assert [row.split()[2] for row in rows] == ["bare", "knet", "knet", "knet", "knet"]
    assert not any("FAILED" in row for row in rows)
    for row in rows[1:]:
        ratio = row.split()[-1]
        assert re.fullmatch(r"\d+\.\d\d", ratio), row
    assert re.search(r"target: 1 KiB, crypto on, 1 link: ratio \d+\.\d\d", result.stdout)


def test_header_names_the_cipher_chosen_with_the_cipher_option() -> None:
    """`--cipher xchacha20poly1305` seals the 'crypto on' rows with it, as the header says."""
    result = _run_bench(
        "--cipher", "xchacha20poly1305", "--only", "knet-on-1", "--duration", "0.2",
        "--sizes", "1024", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith(" payload"))
    assert header.endswith("[crypto on: xchacha20poly1305]")
    (row,) = [line for line in lines if line.startswith("   1 KiB")]
    assert row.split()[2:4] == ["knet", "on"]
    assert "FAILED" not in row
    # Every sealed packet carried XChaCha20-Poly1305's 16-byte tag (AEGIS-256's is 32).
    (measured,) = json.loads(lines[-1])
    assert measured["extra"]["tag_bytes"] == 16


def test_rejects_a_payload_size_knet_cannot_carry() -> None:
    """A payload above knet's 64 KiB limit is refused by the argument parser."""
    result = _run_bench("--sizes", "65537")
    assert result.returncode == 2
    assert "payload size must be" in result.stderr
