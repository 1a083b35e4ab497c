"""Tests of the deterministic simulator against the EVS checkers (``totem.testing``).

* A bounded sweep: 25 seeds with 5 nodes and 4 seeds with 16 nodes under every fault
  kind, plus one seed per single fault kind (and one with none). Every EVS property
  P1..P12 and L1 must hold, and every seed runs twice with the same trace hash. A
  failing seed reports the seed, the command that replays it and its last trace lines.
* Coverage: over the sweep the counters prove the faults really happened (token loss,
  merges, transitional configurations with gaps, retransmissions, crashes, leaves,
  FAILED TO RECEIVE, ...), and a single-fault seed exercises only its own fault.
* The checkers catch broken protocols: each deliberately broken variant of
  ``totem._srp.VARIANTS`` is caught, on seeds where the correct protocol passes, by the
  checker meant for it. The seeds were found with ``pycorosync-sim --seeds 25
  --variant NAME``; after a protocol change, search again the same way.
* Determinism: a seed's trace hash is the same twice in one process and in two
  separate interpreters with different ``PYTHONHASHSEED``.

Replay any seed with ``pycorosync-sim --seed N --nodes M [--faults ...]``, the command
a failure prints. The long sweep of 10,000 seeds is ``test_sim_soak.py``
(``./dev.sh soak``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import attrs
import pytest

import totem
from totem._srp import VARIANTS
from totem.testing import (
    COVERAGE_KEYS,
    PROPERTIES,
    Fault,
    SimConfig,
    run_checked,
    run_seed,
)
from totem.testing._cli import main as sim_main

TRACE_LINES = 25


@attrs.frozen
class Case:
    label: str
    seed: int
    config: SimConfig


@attrs.frozen
class Run:
    """What the sweep keeps of one checked seed (not the whole history)."""

    case: Case
    trace_hash: str
    deterministic: bool
    violations: dict[str, list[str]]
    coverage: dict[str, int]
    trace_tail: tuple[str, ...]


def replay_command(seed: int, config: SimConfig) -> str:
    """The ``pycorosync-sim`` command line that replays ``seed`` under ``config``
    (the configs of this module differ from the defaults only in these flags)."""
    parts = [f"pycorosync-sim --seed {seed} --nodes {config.nodes}"]
    if config.faults != frozenset(Fault):
        parts.append("--faults " + (",".join(sorted(f.value for f in config.faults)) or "none"))
    if config.variant != "correct":
        parts.append(f"--variant {config.variant}")
    return " ".join(parts)


def failure_report(run: Run) -> str:
    case = run.case
    lines = [
        f"FAILED seed {case.seed} ({case.label})",
        f"  replay: {replay_command(case.seed, case.config)}",
    ]
    if not run.deterministic:
        lines.append("  NOT DETERMINISTIC: the replay produced a different trace hash")
    for name, messages in sorted(run.violations.items()):
        lines.append(f"  {name} ({PROPERTIES[name].description}): {len(messages)} violation(s)")
        lines.extend(f"    - {message}" for message in messages[:3])
    lines.append(f"  last {TRACE_LINES} trace lines:")
    lines.extend(f"    {line}" for line in run.trace_tail[-TRACE_LINES:])
    return "\n".join(lines)


def check(case: Case, *, twice: bool = True) -> Run:
    result, violations, deterministic = run_checked(case.seed, case.config, twice=twice)
    return Run(
        case,
        result.trace_hash,
        deterministic,
        {name: [v.message for v in found] for name, found in violations.items()},
        result.coverage,
        result.trace_tail,
    )


# ------------------------------------------------------------------ the sweep

SEEDS_5_NODES = range(25)
SEEDS_16_NODES = range(4)

#: One seed per fault kind where the scenario turned that fault on, and the counters
#: that prove it happened.
SINGLE_FAULT: dict[str, tuple[int, tuple[str, ...]]] = {
    "loss": (0, ("packets_lost", "retransmits_sent")),
    "duplicate": (0, ("packets_duplicated",)),
    "reorder": (0, ("packets_reordered",)),
    "partition": (2, ("partitions", "token_lost", "merge_detected")),
    "asymmetric": (0, ("asymmetric_partitions",)),
    "crash": (2, ("crashes", "restarts")),
    "pause": (2, ("pauses", "token_lost")),
    "leave": (2, ("leaves", "leaves_received", "restarts")),
    "deaf": (2, ("deaf_periods", "failed_to_receive")),
}
#: The counters each fault kind moves; with a single fault kind the others stay at 0.
FAULT_COUNTERS = {
    "loss": "packets_lost",
    "duplicate": "packets_duplicated",
    "reorder": "packets_reordered",
    "partition": "partitions",
    "asymmetric": "asymmetric_partitions",
    "crash": "crashes",
    "pause": "pauses",
    "leave": "leaves",
    "deaf": "deaf_periods",
}


def sweep_cases() -> list[Case]:
    cases = [Case("5 nodes", seed, SimConfig(nodes=5)) for seed in SEEDS_5_NODES]
    cases += [Case("16 nodes", seed, SimConfig(nodes=16)) for seed in SEEDS_16_NODES]
    for kind, (seed, _counters) in SINGLE_FAULT.items():
        cases.append(Case(f"only {kind}", seed, SimConfig(faults=frozenset({Fault(kind)}))))
    cases.append(Case("no faults", 0, SimConfig(faults=frozenset())))
    return cases


@pytest.fixture(scope="module")
def sweep() -> list[Run]:
    return [check(case) for case in sweep_cases()]


def runs_labelled(sweep: list[Run], label: str) -> list[Run]:
    runs = [run for run in sweep if run.case.label == label]
    assert runs, f"no runs labelled {label!r}"
    return runs


def test_sweep_every_property_holds(sweep: list[Run]) -> None:
    """Every EVS property P1..P12 and L1 holds on every seed of the bounded sweep."""
    failed = [run for run in sweep if run.violations]
    assert not failed, "\n\n".join(failure_report(run) for run in failed)
    assert len(sweep) == len(sweep_cases())


def test_sweep_every_seed_replays_to_the_same_trace_hash(sweep: list[Run]) -> None:
    """Each seed of the sweep runs twice and both runs give the same trace hash."""
    diverged = [run for run in sweep if not run.deterministic]
    assert not diverged, "\n\n".join(failure_report(run) for run in diverged)


def test_trace_hash_tells_seeds_apart(sweep: list[Run]) -> None:
    """Different seeds of the sweep produce different trace hashes (the hash covers the run)."""
    hashes = [run.trace_hash for run in runs_labelled(sweep, "5 nodes")]
    assert len(set(hashes)) == len(hashes)
    assert all(re.fullmatch(r"[0-9a-f]{32}", h) for h in hashes)


def test_sweep_covers_every_fault_and_protocol_path(sweep: list[Run]) -> None:
    """Summed over the sweep, every coverage counter of pycorosync-sim is above zero."""
    totals: Counter[str] = Counter()
    for run in sweep:
        totals.update(run.coverage)
    required = (*COVERAGE_KEYS, "packets_deafened", "packets_blocked", "messages_delivered")
    zero = [key for key in required if totals[key] <= 0]
    assert not zero, f"never happened in the sweep: {zero}; totals: {dict(totals)}"


def test_full_fault_sweep_alone_reaches_the_rare_paths(sweep: list[Run]) -> None:
    """The 5-node all-faults seeds alone lose tokens, merge, and install transitional
    configurations with gaps and with departures."""
    totals: Counter[str] = Counter()
    for run in runs_labelled(sweep, "5 nodes"):
        totals.update(run.coverage)
    for key in (
        "token_lost",
        "merge_detected",
        "transitional_with_gaps",
        "transitional_with_departures",
        "retransmits_sent",
        "recovery_messages_sent",
        "leaves_received",
    ):
        assert totals[key] > 0, f"{key} stayed 0 over seeds {list(SEEDS_5_NODES)}"


def test_every_fault_kind_has_a_single_fault_case() -> None:
    """Every Fault kind the simulator knows is run alone in the sweep with its counters."""
    kinds = {fault.value for fault in Fault}
    assert set(SINGLE_FAULT) == kinds
    assert set(FAULT_COUNTERS) == kinds


@pytest.mark.parametrize("kind", sorted(SINGLE_FAULT))
def test_single_fault_kind_is_exercised_alone(sweep: list[Run], kind: str) -> None:
    """A seed run with one fault kind shows that fault's counters, and no other fault."""
    (run,) = runs_labelled(sweep, f"only {kind}")
    _seed, counters = SINGLE_FAULT[kind]
    for counter in counters:
        assert run.coverage.get(counter, 0) > 0, (
            f"{counter} is 0 for {replay_command(run.case.seed, run.case.config)}"
        )
    for other, counter in FAULT_COUNTERS.items():
        if other != kind:
            assert run.coverage.get(counter, 0) == 0, f"{other} happened with --faults {kind}"


def test_no_faults_means_no_fault_counters(sweep: list[Run]) -> None:
    """With no fault kinds, nothing is lost, duplicated, blocked, crashed or lost a token."""
    (run,) = runs_labelled(sweep, "no faults")
    for counter in (
        *FAULT_COUNTERS.values(),
        "packets_blocked",
        "packets_deafened",
        "token_lost",
        "restarts",
    ):
        assert run.coverage.get(counter, 0) == 0, counter
    assert run.coverage["messages_delivered"] > 0


# ------------------------------------------------------------------ broken protocols

#: variant -> (the checkers meant to catch it, seeds where they do; the correct
#: protocol passes every property on these seeds, which are in SEEDS_5_NODES)
BROKEN_VARIANTS: dict[str, tuple[frozenset[str], tuple[int, ...]]] = {
    "deliver_across_hole": (frozenset({"P9", "P11"}), (1, 3)),
    "drop_transitional": (frozenset({"P6"}), (5, 6)),
    "skip_retransmission": (frozenset({"L1"}), (0, 2)),
    "reuse_ring_id": (frozenset({"P5"}), (6, 7)),
    "deliver_safe_early": (frozenset({"P12"}), (1, 2)),
}


def test_every_broken_variant_has_a_test() -> None:
    """Every protocol variant other than the correct one is listed for the checker tests."""
    assert set(BROKEN_VARIANTS) == set(VARIANTS) - {"correct"}
    for _expected, seeds in BROKEN_VARIANTS.values():
        assert set(seeds) <= set(SEEDS_5_NODES)


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANTS))
def test_broken_variant_is_caught_by_its_checker(variant: str) -> None:
    """The deliberately broken protocol variant is caught by the checker meant for it."""
    expected, seeds = BROKEN_VARIANTS[variant]
    for seed in seeds:
        run = check(Case(variant, seed, SimConfig(nodes=5, variant=variant)), twice=False)
        caught = expected & set(run.violations)
        assert caught, (
            f"{variant} not caught by {sorted(expected)} on seed {seed} (fired: "
            f"{sorted(run.violations)}); search new seeds with "
            f"`pycorosync-sim --seeds 25 --variant {variant}`"
        )


def test_failure_report_names_seed_replay_and_trace() -> None:
    """A failing seed's report has the seed, a replay command that reproduces the run's
    trace hash, the broken property and the last trace lines."""
    seed = BROKEN_VARIANTS["drop_transitional"][1][0]
    config = SimConfig(variant="drop_transitional")
    run = check(Case("drop_transitional", seed, config), twice=False)
    report = failure_report(run)
    assert f"FAILED seed {seed}" in report
    assert "P6 (transitional configurations" in report
    assert run.trace_tail[-1] in report
    assert len(re.findall(r"\d+\.\d{3}ms n\d+ ", report)) == TRACE_LINES
    match = re.search(r"replay: (pycorosync-sim .*)", report)
    assert match is not None
    command = match.group(1)
    assert command.startswith(f"pycorosync-sim --seed {seed} ")
    assert "--variant drop_transitional" in command
    # The replay command, as the command-line tool runs it, reproduces the same run.
    replayed = replay_hash(command)
    assert replayed == run.trace_hash


def replay_hash(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        sim_main([*command.split()[1:], "--no-replay"])
    match = re.search(r"trace hash ([0-9a-f]+)", out.getvalue())
    assert match is not None, out.getvalue()
    return match.group(1)


# ------------------------------------------------------------------ determinism

DETERMINISM_SEED = 11  # crashes, leaves, pauses, both partition kinds, loss and jitter

_PRINT_HASH = (
    "import sys\n"
    "from totem.testing import SimConfig, run_seed\n"
    "print(run_seed(int(sys.argv[1]), SimConfig(nodes=5)).trace_hash)\n"
)


def test_trace_hash_is_stable_in_process_and_across_interpreters() -> None:
    """A seed's trace hash is the same twice in this process and in two interpreters
    with different PYTHONHASHSEED (no set or dict order leaks into the run)."""
    first = run_seed(DETERMINISM_SEED, SimConfig(nodes=5))
    second = run_seed(DETERMINISM_SEED, SimConfig(nodes=5))
    assert first.trace_hash == second.trace_hash
    assert first.history.events == second.history.events
    for counter in (
        "crashes",
        "leaves",
        "pauses",
        "partitions",
        "asymmetric_partitions",
        "packets_lost",
        "packets_reordered",
    ):
        assert first.coverage.get(counter, 0) > 0, counter

    src = str(Path(totem.__file__).resolve().parents[1])
    children = []
    for hash_seed in ("1", "4242"):
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = hash_seed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _PRINT_HASH, str(DETERMINISM_SEED)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        assert stdout.strip() == first.trace_hash


def test_different_configs_give_different_runs() -> None:
    """The same seed with a different node count or fault set is a different run."""
    base = run_seed(5, SimConfig(nodes=3, faults=frozenset({Fault.LOSS})))
    more_nodes = run_seed(5, SimConfig(nodes=4, faults=frozenset({Fault.LOSS})))
    other_faults = run_seed(5, SimConfig(nodes=3, faults=frozenset({Fault.CRASH})))
    assert len({base.trace_hash, more_nodes.trace_hash, other_faults.trace_hash}) == 3
    assert base.live_nodes == (1, 2, 3)
    assert more_nodes.live_nodes == (1, 2, 3, 4)
