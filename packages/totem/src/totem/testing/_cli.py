"""``pycorosync-sim``: run the deterministic Totem simulation for one seed or a sweep.

Examples::

    pycorosync-sim --seed 42                 # one run: trace hash, checks, coverage
    pycorosync-sim --seeds 200 --nodes 5     # a sweep of seeds 0..199
    pycorosync-sim --seeds 50 --faults loss,partition --duration 30
    pycorosync-sim --seed 7 --variant deliver_across_hole   # see a checker fire

Each seed runs twice and the two trace hashes must match (determinism). A failing seed
prints the seed, the command that replays it, the broken properties with witnesses,
and the last lines of its trace; the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

import attrs

from totem._srp import VARIANTS
from totem.testing._evs import PROPERTIES, Violation
from totem.testing._sim import Fault, SimConfig, SimResult, run_seed

__all__ = ["main", "run_checked"]

_SECOND = 1_000_000_000
#: Coverage counters that prove a sweep exercised what it should ("sometimes" properties).
COVERAGE_KEYS = (
    "token_lost",
    "merge_detected",
    "transitional_with_gaps",
    "transitional_with_departures",
    "retransmits_sent",
    "recovery_messages_sent",
    "crashes",
    "restarts",
    "partitions",
    "asymmetric_partitions",
    "pauses",
    "packets_lost",
    "packets_duplicated",
    "packets_reordered",
    "leaves_received",
    "failed_to_receive",
    "leaves",
    "deaf_periods",
)


def run_checked(
    seed: int, config: SimConfig, *, twice: bool = True
) -> tuple[SimResult, dict[str, list[Violation]], bool]:
    """Run ``seed``, check every property, and (with ``twice``) replay it to compare
    trace hashes. Returns the result, violations by property, and determinism."""
    result = run_seed(seed, config)
    violations: dict[str, list[Violation]] = {}
    for name, prop in PROPERTIES.items():
        found = prop(result.history, result.live_nodes)
        if found:
            violations[name] = found
    deterministic = True
    if twice:
        deterministic = run_seed(seed, config).trace_hash == result.trace_hash
    return result, violations, deterministic


def _parse_faults(text: str) -> frozenset[Fault]:
    if text in ("all", ""):
        return frozenset(Fault) if text == "all" else frozenset()
    if text == "none":
        return frozenset()
    kinds = []
    for name in text.split(","):
        try:
            kinds.append(Fault(name.strip()))
        except ValueError:
            valid = ", ".join(f.value for f in Fault)
            raise argparse.ArgumentTypeError(
                f"unknown fault {name!r}; valid: {valid}, all, none"
            ) from None
    return frozenset(kinds)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycorosync-sim",
        description="Deterministic simulation of Totem with EVS property checks.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run this one seed (prints its trace hash)")
    which.add_argument("--seeds", type=_positive, help="run a sweep of this many seeds")
    parser.add_argument("--start", type=int, default=0, help="first seed of a sweep (default 0)")
    parser.add_argument("--nodes", type=_positive, default=5, help="nodes (default 5)")
    parser.add_argument(
        "--faults",
        type=_parse_faults,
        default=frozenset(Fault),
        help="fault kinds, comma separated: "
        + ", ".join(f.value for f in Fault)
        + "; or all (default) or none",
    )
    parser.add_argument(
        "--duration",
        type=_positive,
        default=20,
        help="simulated seconds of the safety phase (default 20)",
    )
    parser.add_argument(
        "--liveness",
        type=_positive,
        default=30,
        help="simulated seconds of the liveness phase (default 30)",
    )
    parser.add_argument("--token", type=_positive, default=1000, help="totem token ms (1000)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="application messages per second (200)"
    )
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="correct",
        help="protocol variant; the broken ones exist to show the checkers fire",
    )
    parser.add_argument(
        "--no-replay", action="store_true", help="skip the determinism replay of each seed"
    )
    parser.add_argument(
        "--trace", type=int, default=25, help="trace lines to print for a failure (25)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # The simulator's own settings (see totem.testing._sim), with the token asked for.
        totem = attrs.evolve(SimConfig().totem, token=args.token, consensus=int(1.2 * args.token))
        totem.effective(args.nodes)
    except Exception as exc:
        print(f"pycorosync-sim: invalid totem settings: {exc}", file=sys.stderr)
        return 2
    config = SimConfig(
        nodes=args.nodes,
        faults=args.faults,
        safety_ns=args.duration * _SECOND,
        liveness_ns=args.liveness * _SECOND,
        totem=totem,
        message_rate=args.rate,
        variant=args.variant,
    )
    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.start, args.start + (args.seeds or 1)))
    )
    single = args.seed is not None or len(seeds) == 1
    totals: Counter[str] = Counter()
    failures_by_property: Counter[str] = Counter()
    failed: list[int] = []
    nondeterministic: list[int] = []
    sim_seconds = 0.0
    started = time.perf_counter()
    for seed in seeds:
        result, violations, deterministic = run_checked(seed, config, twice=not args.no_replay)
        sim_seconds += result.sim_seconds
        totals.update(result.coverage)
        for name in violations:
            failures_by_property[name] += 1
        if not deterministic:
            nondeterministic.append(seed)
        if violations or not deterministic:
            failed.append(seed)
            _report_failure(args, result, violations, deterministic)
        if single:
            print(f"seed {seed}: trace hash {result.trace_hash}")
    wall = time.perf_counter() - started
    _print_summary(len(seeds), failed, failures_by_property, nondeterministic, totals)
    print(
        f"{len(seeds)} seeds, {sim_seconds:.0f} simulated s in {wall:.1f} wall s "
        f"({sim_seconds / wall if wall else 0:.0f} simulated s per wall s)"
    )
    return 1 if failed else 0


def _replay_command(args: argparse.Namespace, seed: int) -> str:
    parts = [f"pycorosync-sim --seed {seed} --nodes {args.nodes}"]
    if args.faults != frozenset(Fault):
        parts.append("--faults " + (",".join(sorted(f.value for f in args.faults)) or "none"))
    if args.duration != 20:
        parts.append(f"--duration {args.duration}")
    if args.liveness != 30:
        parts.append(f"--liveness {args.liveness}")
    if args.token != 1000:
        parts.append(f"--token {args.token}")
    if args.rate != 200.0:
        parts.append(f"--rate {args.rate}")
    if args.variant != "correct":
        parts.append(f"--variant {args.variant}")
    return " ".join(parts)


def _report_failure(
    args: argparse.Namespace,
    result: SimResult,
    violations: dict[str, list[Violation]],
    deterministic: bool,
) -> None:
    print(f"FAILED seed {result.seed}")
    print(f"  replay: {_replay_command(args, result.seed)}")
    if not deterministic:
        print("  NOT DETERMINISTIC: the replay produced a different trace hash")
    for name, found in sorted(violations.items()):
        print(f"  {name} ({PROPERTIES[name].description}): {len(found)} violation(s)")
        for violation in found[:3]:
            print(f"    - {violation.message}")
    print(f"  last {args.trace} trace lines:")
    for line in result.trace_tail[-args.trace :]:
        print(f"    {line}")


def _print_summary(
    runs: int,
    failed: list[int],
    failures_by_property: Counter[str],
    nondeterministic: list[int],
    totals: Counter[str],
) -> None:
    print()
    print(f"{'check':<6} {'description':<70} {'result':>12}")
    print("-" * 90)
    for name, prop in PROPERTIES.items():
        bad = failures_by_property.get(name, 0)
        verdict = "ok" if not bad else f"FAIL in {bad}"
        print(f"{name:<6} {prop.description:<70} {verdict:>12}")
    det = "ok" if not nondeterministic else f"FAIL in {len(nondeterministic)}"
    print(f"{'DET':<6} {'same trace hash when a seed runs twice':<70} {det:>12}")
    print()
    print(f"{'coverage (summed over the sweep)':<40} {'count':>10}")
    print("-" * 51)
    for key in COVERAGE_KEYS:
        print(f"{key:<40} {totals.get(key, 0):>10}")
    print()
    print(f"seeds failed: {len(failed)} of {runs}" + (f" ({failed[:20]})" if failed else ""))


if __name__ == "__main__":
    sys.exit(main())
