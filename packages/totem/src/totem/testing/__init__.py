"""Test your protocol on top of Totem: a deterministic simulator and EVS checkers.

* :class:`Simulation` / :func:`run_seed` — one seed drives a whole run: nodes, a faulty
  network (loss, duplication, reordering, partitions, crashes, pauses) in virtual time,
  an application workload, a safety phase then a healed liveness phase.
* :mod:`History` — what a run recorded (sends, deliveries, configurations, crashes).
* ``check_*`` and :data:`PROPERTIES` — the EVS properties P1..P12 and liveness L1 as
  pure functions over a history; :func:`check_all` runs them all.

``pycorosync-sim`` is the command-line runner (see ``pycorosync-sim --help``).
"""

from __future__ import annotations

from totem.testing._cli import COVERAGE_KEYS, run_checked
from totem.testing._evs import (
    PROPERTIES,
    Property,
    Violation,
    check_all,
    check_l1_liveness,
    check_p1_integrity,
    check_p2_no_duplicates,
    check_p3_delivery_configuration,
    check_p4_self_inclusion,
    check_p5_configuration_agreement,
    check_p6_transitional,
    check_p7_self_delivery,
    check_p8_failure_atomicity,
    check_p9_causal,
    check_p10_total_order,
    check_p11_no_gaps,
    check_p12_safe,
    check_safety,
)
from totem.testing._history import (
    Conf,
    ConfEvent,
    ConfId,
    Crash,
    Deliver,
    History,
    MsgId,
    Recover,
    Send,
    regular_conf_id,
    transitional_conf_id,
)
from totem.testing._sim import FAULT_KINDS, Fault, SimConfig, SimResult, Simulation, run_seed

__all__ = [
    "COVERAGE_KEYS",
    "FAULT_KINDS",
    "PROPERTIES",
    "Conf",
    "ConfEvent",
    "ConfId",
    "Crash",
    "Deliver",
    "Fault",
    "History",
    "MsgId",
    "Property",
    "Recover",
    "Send",
    "SimConfig",
    "SimResult",
    "Simulation",
    "Violation",
    "check_all",
    "check_l1_liveness",
    "check_p1_integrity",
    "check_p2_no_duplicates",
    "check_p3_delivery_configuration",
    "check_p4_self_inclusion",
    "check_p5_configuration_agreement",
    "check_p6_transitional",
    "check_p7_self_delivery",
    "check_p8_failure_atomicity",
    "check_p9_causal",
    "check_p10_total_order",
    "check_p11_no_gaps",
    "check_p12_safe",
    "check_safety",
    "regular_conf_id",
    "run_checked",
    "run_seed",
    "transitional_conf_id",
]
