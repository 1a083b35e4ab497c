"""Tests of ``pycorosync-sim`` (``totem.testing._cli.main``), called in-process.

One seed prints its trace hash (the same as ``run_seed``); a sweep prints the table of
checks (each property ``ok``) and the coverage table; a broken protocol variant exits 1
with the failing seed, the command that replays it and the last trace lines, and that
command reproduces the same trace hash; bad arguments exit 2 with a clear message.
"""

from __future__ import annotations

import re

import attrs
import pytest

from totem.testing import COVERAGE_KEYS, PROPERTIES, Fault, SimConfig, run_seed
from totem.testing._cli import main

_HASH = re.compile(r"^seed (\d+): trace hash ([0-9a-f]{32})$", re.MULTILINE)


def coverage_table(out: str) -> dict[str, int]:
    """The coverage table of a summary, as a dict."""
    table = out.split("coverage (summed over the sweep)", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+) +(\d+)$", table, re.MULTILINE)}


def trace_block(out: str, count: int) -> list[str]:
    """The trace lines printed after the ``last N trace lines:`` header of a failure."""
    lines = out.split(f"  last {count} trace lines:\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if not re.match(r"^ +\d+\.\d{3}ms n\d+ ", line):
            break
        block.append(line)
    return block


def printed_hashes(out: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in _HASH.finditer(out)}


def test_one_seed_prints_its_trace_hash(capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed N`` exits 0 and prints the run's trace hash, the same as run_seed(N)."""
    assert main(["--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert printed_hashes(out) == {4: run_seed(4, SimConfig()).trace_hash}
    assert re.search(r"^DET +same trace hash when a seed runs twice +ok$", out, re.MULTILINE)
    assert "seeds failed: 0 of 1" in out


def test_sweep_prints_every_check_ok_and_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    """``--seeds 3`` exits 0 with every property ``ok`` and a coverage table of counts."""
    assert main(["--seeds", "3"]) == 0
    out = capsys.readouterr().out
    for name, prop in PROPERTIES.items():
        row = rf"^{name} +{re.escape(prop.description)} +ok$"
        assert re.search(row, out, re.MULTILINE), f"no ok row for {name}:\n{out}"
    assert re.search(r"^DET .* ok$", out, re.MULTILINE)
    coverage = coverage_table(out)
    assert list(coverage) == list(COVERAGE_KEYS)
    assert coverage["packets_lost"] > 0
    assert coverage["recovery_messages_sent"] > 0
    assert "seeds failed: 0 of 3" in out
    assert "3 seeds, 150 simulated s in" in out
    assert "FAILED" not in out
    assert printed_hashes(out) == {}  # a sweep prints no per-seed hashes


def test_broken_variant_fails_with_seed_replay_and_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A broken variant exits 1 and prints FAILED seed, the replay command, the broken
    property with a witness and the last trace lines."""
    assert main(["--seed", "5", "--variant", "drop_transitional"]) == 1
    out = capsys.readouterr().out
    assert "FAILED seed 5\n" in out
    assert "  replay: pycorosync-sim --seed 5 --nodes 5 --variant drop_transitional\n" in out
    assert re.search(r"^  P6 \(transitional configurations.*\): \d+ violation", out, re.M)
    assert re.search(r"^    - .+", out, re.MULTILINE)  # a witness
    assert len(trace_block(out, 25)) == 25
    assert re.search(r"^P6 .* FAIL in 1$", out, re.MULTILINE)
    assert "seeds failed: 1 of 1 ([5])" in out


def test_printed_replay_command_reproduces_the_trace_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The replay command printed for a failure carries every non-default option and,
    run again, gives the same trace hash as the failing run."""
    argv = [
        "--seeds", "1", "--start", "10", "--nodes", "4", "--faults", "crash,loss",
        "--duration", "10", "--liveness", "20", "--token", "800", "--rate", "100",
        "--variant", "reuse_ring_id", "--trace", "7", "--no-replay",
    ]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr().out
    (failing_hash,) = printed_hashes(out).values()
    match = re.search(r"^  replay: (pycorosync-sim .*)$", out, re.MULTILINE)
    assert match is not None, out
    command = match.group(1)
    assert command == (
        "pycorosync-sim --seed 10 --nodes 4 --faults crash,loss --duration 10 "
        "--liveness 20 --token 800 --rate 100.0 --variant reuse_ring_id"
    )
    assert "P5 (configuration ids agree" in out
    assert len(trace_block(out, 7)) == 7

    assert main(command.split()[1:]) == 1
    replay_out = capsys.readouterr().out
    assert printed_hashes(replay_out) == {10: failing_hash}
    # And it is the run the library API gives for the same settings.
    config = SimConfig(
        nodes=4,
        faults=frozenset({Fault.CRASH, Fault.LOSS}),
        safety_ns=10 * 10**9,
        liveness_ns=20 * 10**9,
        totem=attrs.evolve(SimConfig().totem, token=800, consensus=960),
        message_rate=100.0,
        variant="reuse_ring_id",
    )
    assert run_seed(10, config).trace_hash == failing_hash


def test_faults_option_chooses_the_fault_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """``--faults loss`` loses packets but crashes and partitions nothing; ``--faults
    none`` injects no fault at all."""
    assert main(["--seed", "0", "--faults", "loss", "--no-replay"]) == 0
    loss = coverage_table(capsys.readouterr().out)
    assert loss["packets_lost"] > 0
    assert loss["crashes"] == loss["partitions"] == loss["packets_duplicated"] == 0

    assert main(["--seed", "0", "--faults", "none", "--no-replay"]) == 0
    none = coverage_table(capsys.readouterr().out)
    for key in (
        "packets_lost",
        "packets_duplicated",
        "packets_reordered",
        "crashes",
        "partitions",
        "asymmetric_partitions",
        "pauses",
        "leaves",
        "deaf_periods",
        "token_lost",
    ):
        assert none[key] == 0, key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "bogus"], "unknown fault 'bogus'; valid: loss, duplicate"),
        (["--seeds", "0"], "argument --seeds: expected a positive integer, got 0"),
        (["--nodes", "x"], "argument --nodes: expected an integer, got 'x'"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--variant", "nope"], "argument --variant: invalid choice: 'nope'"),
        (["--seed", "1", "--seeds", "2"], "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad command-line arguments exit with status 2 and say what is wrong."""
    with pytest.raises(SystemExit) as exc_info:
        main(argv)
    assert exc_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: pycorosync-sim" in captured.err
    assert message in captured.err


def test_invalid_totem_settings_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A token below corosync's 30 ms minimum is refused with exit status 2."""
    assert main(["--seed", "1", "--nodes", "2", "--token", "10"]) == 2
    err = capsys.readouterr().err
    assert "pycorosync-sim: invalid totem settings: totem.token is 10 ms" in err
