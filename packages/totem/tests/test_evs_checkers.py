"""Tests for totem.testing._evs: the EVS property checkers.

Hand-written histories: one legal run (partition into two rings, transitional
configurations with gaps, a crash and a recovery, a merge, safe messages) that every
checker accepts, and for each property a minimally broken variant. Then a small
"oracle" model of EVS generates random legal histories (hypothesis) that must pass, and
random single mutations of them that must be caught whenever they break a property.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totem._events import ConfKind, RingId
from totem.testing._evs import (
    PROPERTIES,
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
    format_conf_id,
)
from totem.testing._history import (
    Conf,
    ConfEvent,
    Crash,
    Deliver,
    Event,
    History,
    MsgId,
    Recover,
    Send,
    regular_conf_id,
    transitional_conf_id,
)

# --------------------------------------------------------------------------- builders


def reg(ring: RingId, members: Iterable[int]) -> Conf:
    """A regular configuration on ``ring``."""
    return Conf(regular_conf_id(ring), ConfKind.REGULAR, frozenset(members))


def trans(old: RingId | None, new: RingId, members: Iterable[int]) -> Conf:
    """A transitional configuration from ``old`` to ``new``."""
    return Conf(transitional_conf_id(old, new), ConfKind.TRANSITIONAL, frozenset(members))


def payload(m: MsgId) -> bytes:
    """The payload the workload sends for message ``m``."""
    return f"payload {m[0]}.{m[1]}".encode()


def S(p: int, m: MsgId, safe: bool = False) -> Send:
    """Node ``p`` sends ``m``."""
    return Send(p, m, payload(m), safe)


def D(p: int, m: MsgId, safe: bool = False) -> Deliver:
    """Node ``p`` delivers ``m``."""
    return Deliver(p, m, m[0], payload(m), safe)


def C(p: int, conf: Conf) -> ConfEvent:
    """Node ``p`` installs ``conf``."""
    return ConfEvent(p, conf)


def props(violations: Sequence[Violation]) -> set[str]:
    """The names of the violated properties."""
    return {v.property for v in violations}


# --------------------------------------------------------------------------- the legal run

r1, r2, r3, r4, r5 = RingId(4, 1), RingId(8, 1), RingId(8, 3), RingId(12, 3), RingId(16, 1)
R1, R2, R3, R4, R5 = (
    reg(r1, {1, 2, 3, 4}),
    reg(r2, {1, 2}),
    reg(r3, {3, 4}),
    reg(r4, {3}),
    reg(r5, {1, 2, 3, 4}),
)
T12, T13, T34, T25, T45 = (
    trans(r1, r2, {1, 2}),
    trans(r1, r3, {3, 4}),
    trans(r3, r4, {3}),
    trans(r2, r5, {1, 2}),
    trans(r4, r5, {3}),
)
ALL = (1, 2, 3, 4)


def legal_run() -> list[Event]:
    """Four nodes: one ring, a partition {1,2}|{3,4} (each side delivers in its
    transitional configuration what it could not in the regular one, with a gap for a
    sender on the other side), node 4 crashes, node 3 reforms alone, node 4 recovers,
    everything merges; safe messages along the way."""
    return [
        C(1, trans(None, r1, {1})),  # a first transitional configuration is allowed
        *(C(p, R1) for p in ALL),
        S(1, (1, 1), safe=True),
        S(2, (2, 1)),
        *(D(p, (1, 1), safe=True) for p in ALL),
        *(D(p, (2, 1)) for p in ALL),
        S(1, (1, 2)),  # reaches node 2 only before the partition
        S(3, (3, 1)),  # reaches 3 and 4 only, who cannot deliver it past the hole
        D(2, (1, 2)),
        # partition: {1,2} -> r2, {3,4} -> r3
        C(1, T12),
        D(1, (1, 2)),  # own message, delivered in the transitional configuration
        C(2, T12),
        C(3, T13),
        D(3, (3, 1)),  # hole for m1.2 allowed: its sender 1 is not in T13
        C(4, T13),
        D(4, (3, 1)),
        C(1, R2),
        C(2, R2),
        C(3, R3),
        C(4, R3),
        S(1, (1, 3)),
        D(1, (1, 3)),
        D(2, (1, 3)),
        S(4, (4, 1), safe=True),
        D(3, (4, 1), safe=True),
        D(4, (4, 1), safe=True),
        Crash(4),
        C(3, T34),
        C(3, R4),
        S(3, (3, 2)),
        D(3, (3, 2)),
        Recover(4),
        # merge: {1,2} from r2, {3} from r4, node 4 fresh -> r5
        C(1, T25),
        C(2, T25),
        C(3, T45),
        *(C(p, R5) for p in ALL),  # node 4: first configuration of its incarnation
        S(4, (4, 2)),
        S(1, (1, 4)),
        S(2, (2, 2), safe=True),  # sent before delivering anything in r5
        *(D(p, (4, 2)) for p in ALL),
        *(D(p, (1, 4)) for p in ALL),
        *(D(p, (2, 2), safe=True) for p in ALL),
        S(4, (4, 3)),  # causally after m4.2, m1.4 and m2.2
        *(D(p, (4, 3)) for p in ALL),
    ]


def without(events: list[Event], *drop: Event) -> list[Event]:
    """``events`` with the first occurrence of each of ``drop`` removed."""
    out = list(events)
    for e in drop:
        out.remove(e)
    return out


def replaced(events: list[Event], old: Event, *new: Event) -> list[Event]:
    """``events`` with the first occurrence of ``old`` replaced by ``new``."""
    i = events.index(old)
    return [*events[:i], *new, *events[i + 1 :]]


def test_legal_run_passes_every_checker() -> None:
    """The hand-written legal run violates no property, liveness included."""
    h = History.of(legal_run())
    assert check_all(h, live_nodes=ALL) == []
    for prop in PROPERTIES.values():
        assert prop(h, live_nodes=ALL) == [], prop.name


def test_checkers_accept_plain_event_lists() -> None:
    """A plain sequence of events is accepted as well as a History."""
    assert check_safety(legal_run()) == []
    assert check_safety(tuple(legal_run())) == []


def test_empty_history_passes() -> None:
    """An empty history violates nothing, and L1 with no live nodes holds."""
    assert check_all(History(), live_nodes=()) == []


# --------------------------------------------------------------------------- P1..P4


def test_p1_delivery_of_unsent_message() -> None:
    """Delivering a message nobody sent is an integrity violation, and only that."""
    v = check_safety([*legal_run(), D(2, (9, 9))])
    assert props(v) == {"P1"}
    assert v[0].witness == (2, (9, 9))
    assert "m9.9" in v[0].message


def test_p1_payload_sender_and_time() -> None:
    """A different payload, a wrong sender or a delivery before the send are caught."""
    run = legal_run()
    bad_payload = replaced(run, D(3, (4, 3)), Deliver(3, (4, 3), 4, b"forged"))
    assert props(check_p1_integrity(bad_payload)) == {"P1"}
    bad_sender = replaced(run, D(3, (4, 3)), Deliver(3, (4, 3), 2, payload((4, 3))))
    assert props(check_p1_integrity(bad_sender)) == {"P1"}
    early = replaced(without(run, D(3, (4, 3))), S(4, (4, 3)), D(3, (4, 3)), S(4, (4, 3)))
    assert "before" in check_p1_integrity(early)[0].message
    twice = [*run, S(4, (4, 3))]
    assert "sent twice" in check_p1_integrity(twice)[0].message


def test_p2_double_delivery() -> None:
    """Delivering a message twice at one node is flagged by P2 alone."""
    run = legal_run()
    v = check_safety(replaced(run, D(3, (3, 2)), D(3, (3, 2)), D(3, (3, 2))))
    assert props(v) == {"P2"}
    assert v[0].witness[:2] == (3, (3, 2))


def test_p2_allows_redelivery_in_a_new_incarnation_only_via_p3() -> None:
    """After a restart duplicates are not P2's business, but the late delivery is P3's."""
    run = [*legal_run(), D(4, (4, 1))]  # node 4 delivered m4.1 before its crash
    assert check_p2_no_duplicates(run) == []
    assert props(check_safety(run)) >= {"P3"}


def test_p3_delivery_in_a_later_configuration() -> None:
    """A message sent in r2 delivered in r5 breaks P3 (and the agreed order)."""
    run = legal_run()
    v = check_safety([*without(run, D(2, (1, 3))), D(2, (1, 3))])
    assert "P3" in props(v)
    assert props(v) <= {"P3", "P8", "P10"}
    p3 = check_p3_delivery_configuration([*without(run, D(2, (1, 3))), D(2, (1, 3))])
    assert p3[0].witness == (2, (1, 3), R2.id, R5.id)


def test_p3_delivery_in_someone_elses_configuration() -> None:
    """Delivering in T a message of a ring the node never was in breaks P3 alone."""
    run = replaced(legal_run(), C(3, T34), C(3, T34), D(3, (1, 3)))
    v = check_safety(run)
    assert props(v) == {"P3"}
    assert v[0].witness == (3, (1, 3), R2.id, T34.id)


def test_p3_transitional_delivery_of_own_old_ring_is_not_p3() -> None:
    """Delivering in T a message of the ring before T is P3-legal (only P8 objects)."""
    run = replaced(legal_run(), C(4, T13), C(4, T13), D(4, (1, 2)))
    assert props(check_safety(run)) == {"P8"}


def test_p4_node_not_in_its_configuration() -> None:
    """Installing a configuration that does not contain the node breaks P4 only."""
    v = check_safety([C(1, reg(RingId(1, 2), {2}))])
    assert props(v) == {"P4"}
    assert v[0].witness[0] == 1


# --------------------------------------------------------------------------- P5


def test_p5_same_id_two_memberships() -> None:
    """One configuration id with two memberships is flagged by P5 alone."""
    run = replaced(legal_run(), C(4, R5), C(4, reg(r5, {1, 2, 3, 4, 5})))
    v = check_safety(run)
    assert props(v) == {"P5"}
    assert "members" in v[0].message


def test_p5_decreasing_ring_id() -> None:
    """A node installing a ring with a lower ring id than its previous one breaks P5."""
    low = RingId(6, 3)
    run = replaced(legal_run(), C(3, T34), C(3, trans(r3, low, {3})))
    run = replaced(run, C(3, R4), C(3, reg(low, {3})))
    run = replaced(run, C(3, T45), C(3, trans(low, r5, {3})))
    v = check_safety(run)
    assert props(v) == {"P5"}
    assert v[0].witness == (3, R3.id, regular_conf_id(low))


def test_p5_ring_id_persisted_across_restart() -> None:
    """After a restart a node must not install a ring older than before its crash."""
    a, b = RingId(8, 4), RingId(2, 4)
    run: list[Event] = [C(4, reg(a, {4})), Crash(4), Recover(4), C(4, reg(b, {4}))]
    assert props(check_safety(run)) == {"P5"}


def test_p5_events_outside_configurations() -> None:
    """Sends/deliveries without a configuration and bad crash/recover nesting are P5."""
    run: list[Event] = [S(1, (1, 1)), Recover(2), Crash(3), Crash(3), C(3, reg(RingId(1, 3), {3}))]
    msgs = [v.message for v in check_p5_configuration_agreement(run)]
    assert len(msgs) == 4
    assert any("outside any configuration" in m for m in msgs)
    assert any("without having crashed" in m for m in msgs)
    assert any("crashed again" in m for m in msgs)
    assert any("while crashed" in m for m in msgs)


def test_p5_malformed_id_and_repeated_transitional() -> None:
    """A regular configuration needs an ('R', ring) id; a T is installed once."""
    bad = Conf(("X", 1), ConfKind.REGULAR, frozenset({1}))
    assert "expected ('R', ...)" in check_p5_configuration_agreement([C(1, bad)])[0].message
    run = replaced(legal_run(), C(3, T34), C(3, T34), C(3, T34))
    assert "twice" in check_p5_configuration_agreement(run)[0].message


# --------------------------------------------------------------------------- P6


def test_p6_regular_to_regular() -> None:
    """Two regular configurations in a row (after the first) break P6 alone."""
    v = check_safety(without(legal_run(), C(3, T34)))
    assert props(v) == {"P6"}
    assert v[0].witness == (3, R3.id, R4.id)


def test_p6_transitional_not_a_subset() -> None:
    """A transitional configuration with a member outside the next ring breaks P6."""
    wide = trans(r1, r2, {1, 2, 3})
    run: list[Event] = [C(e.node, wide) if e in (C(1, T12), C(2, T12)) else e for e in legal_run()]
    v = check_safety(run)
    assert props(v) == {"P6"}
    assert v[0].witness[-1] == frozenset({3})


def test_p6_transitional_not_a_subset_of_previous() -> None:
    """A transitional configuration with a member outside the previous ring breaks P6."""
    run = replaced(legal_run(), C(3, T34), C(3, trans(r3, r4, {3, 5})))
    assert "P6" in props(check_safety(run))


def test_p6_send_in_transitional() -> None:
    """Sending while the current configuration is transitional breaks P6."""
    run = replaced(legal_run(), C(1, T12), C(1, T12), S(1, (1, 9)))
    v = check_safety(run)
    assert props(v) == {"P6"}
    assert v[0].witness == (1, (1, 9), T12.id)


def test_p6_two_transitionals_and_wrong_names() -> None:
    """T after T, and a T naming other rings than the ones around it, break P6."""
    run = replaced(legal_run(), C(3, T34), C(3, T34), C(3, trans(r3, r4, {3})))
    assert any("right after the transitional" in v.message for v in check_p6_transitional(run))
    misnamed = replaced(legal_run(), C(3, T34), C(3, trans(r2, r4, {3})))
    assert any("names old ring" in v.message for v in check_p6_transitional(misnamed))


# --------------------------------------------------------------------------- P7, P8


def test_p7_own_message_not_delivered() -> None:
    """A sender installing its next regular configuration without its message: P7."""
    v = check_safety(without(legal_run(), D(3, (3, 2))))
    assert props(v) == {"P7"}
    assert v[0].witness == (3, R4.id, R5.id, ((3, 2),))


def test_p7_crash_excuses() -> None:
    """A sender that crashes before the next regular configuration is excused."""
    run: list[Event] = [C(1, reg(RingId(1, 1), {1})), S(1, (1, 1)), Crash(1), Recover(1)]
    run += [C(1, reg(RingId(2, 1), {1}))]
    assert check_safety(run) == []


def test_p8_different_sets_same_move() -> None:
    """Two nodes moving r1 -> r2 with different delivered sets break P8 alone."""
    v = check_safety(without(legal_run(), D(2, (1, 2))))
    assert props(v) == {"P8"}
    assert v[0].witness == (1, 2, R1.id, R2.id, (1, 2))


# --------------------------------------------------------------------------- P9, P10


def test_p9_causal_violation_only() -> None:
    """Node 1 delivers m2.1 (sent after node 2 delivered m4.1) without m4.1: P9 alone."""
    ring = reg(RingId(1, 1), {1, 2, 4})
    run: list[Event] = [C(1, ring), C(2, ring), C(4, ring)]
    run += [S(4, (4, 1)), D(2, (4, 1)), S(2, (2, 1)), D(1, (2, 1))]
    v = check_safety(run)
    assert props(v) == {"P9"}
    assert v[0].witness == (1, (4, 1), (2, 1), ring.id)


def test_p9_causal_order_inverted() -> None:
    """Delivering m4.3 before its causal predecessor m2.2 breaks P9 (and P10)."""
    run = without(legal_run(), D(1, (2, 2), safe=True))
    run = replaced(run, D(1, (4, 3)), D(1, (4, 3)), D(1, (2, 2), safe=True))
    v = check_safety(run)
    assert props(v) == {"P9", "P10"}
    assert [x.witness for x in v if x.property == "P9"] == [(1, (2, 2), (4, 3), R5.id)]


def test_p9_same_sender_order() -> None:
    """A sender's earlier message precedes its later one causally."""
    ring = reg(RingId(1, 1), {1, 2})
    run: list[Event] = [
        C(1, ring),
        C(2, ring),
        S(1, (1, 1)),
        S(1, (1, 2)),
        D(2, (1, 2)),
        D(2, (1, 1)),
    ]
    assert props(check_p9_causal(run)) == {"P9"}


def test_p10_two_nodes_disagree() -> None:
    """Node 3 delivering m2.1 before m1.1 is reported with both nodes and messages."""
    run = legal_run()
    i, j = run.index(D(3, (1, 1), safe=True)), run.index(D(3, (2, 1)))
    run[i], run[j] = run[j], run[i]
    v = check_safety(run)
    assert props(v) == {"P10"}
    wit = {(x.witness[0], x.witness[1]) for x in v}
    assert all(3 in pair for pair in wit)
    assert len(wit) == 3  # 3 disagrees with each of 1, 2, 4
    assert {x.witness[2] for x in v} | {x.witness[3] for x in v} == {(1, 1), (2, 1)}
    assert "other way round" in v[0].message


def test_p10_message_and_configuration_order() -> None:
    """A message ordered after a configuration change by one node, before by another."""
    ring, nxt = RingId(1, 1), RingId(2, 1)
    a, b = reg(ring, {1, 2}), reg(nxt, {1, 2})
    t = trans(ring, nxt, {1, 2})
    run: list[Event] = [
        C(1, a),
        C(2, a),
        S(1, (1, 1)),
        D(1, (1, 1)),
        C(1, t),
        C(1, b),
        C(2, t),
        C(2, b),
    ]
    run += [D(2, (1, 1))]
    assert "P10" in props(check_safety(run))


def test_p10_cycle_through_three_nodes() -> None:
    """Three nodes each agreeing pairwise but with no common total order: a cycle."""
    ring = reg(RingId(1, 1), {1, 2, 3, 4})
    a, b, c, x = (1, 1), (2, 1), (3, 1), (4, 1)
    run: list[Event] = [*(C(p, ring) for p in ALL), S(4, x), D(4, x), S(1, a), S(2, b), S(3, c)]
    run += [D(1, a), D(1, b), D(2, b), D(2, c), D(3, c), D(3, a)]
    run += [D(1, x), D(2, x), D(3, x)]  # x: after the cycle, and first seen
    v = check_p10_total_order(run)
    assert len(v) == 1
    assert "no total order" in v[0].message
    assert sorted(v[0].witness) == [(1, a, b), (2, b, c), (3, c, a)]  # type: ignore[type-var]


def test_p10_transitional_ordered_after_old_messages() -> None:
    """Delivering in T what another member of T delivered in the old ring is not P10."""
    run = legal_run()  # node 2 delivers m1.2 in r1, node 1 in T12
    assert check_p10_total_order(run) == []


# --------------------------------------------------------------------------- P11


def test_p11_hole_in_regular_configuration() -> None:
    """Node 3 skips a in the regular configuration and delivers b: P11 alone."""
    ring = reg(RingId(1, 1), {1, 2, 3})
    a, b = (1, 1), (2, 1)
    run: list[Event] = [C(1, ring), C(2, ring), C(3, ring), S(1, a), S(2, b)]
    run += [D(1, a), D(1, b), D(2, a), D(2, b), D(3, b)]
    v = check_safety(run)
    assert props(v) == {"P11"}
    assert v[0].witness == (3, ring.id, a, b)


def test_p11_hole_in_transitional_for_a_member_sender() -> None:
    """In T a node may only skip messages whose sender is outside T."""
    v = check_safety(without(legal_run(), D(1, (2, 1))))
    assert "P11" in props(v)
    p11 = [x for x in v if x.property == "P11"]
    assert p11[0].witness == (1, T12.id, (2, 1), (1, 2))


def test_p11_hole_in_regular_configuration_of_legal_run() -> None:
    """Dropping m1.4 at node 3 in r5 leaves a hole before m2.2 and m4.3."""
    v = check_p11_no_gaps(without(legal_run(), D(3, (1, 4))))
    assert len(v) == 1
    assert v[0].witness[:3] == (3, R5.id, (1, 4))


# --------------------------------------------------------------------------- P12


def test_p12_safe_message_missing_at_member() -> None:
    """Node 4 delivered m4.1 as safe in r3; node 3 moved on without it: P12 alone."""
    v = check_safety(without(legal_run(), D(3, (4, 1), safe=True)))
    assert props(v) == {"P12"}
    assert v[0].witness == (4, 3, (4, 1), R3.id)


def test_p12_member_still_in_configuration_at_end() -> None:
    """A member still in the configuration at the end without crashing must deliver."""
    v = check_safety(without(legal_run(), D(2, (2, 2), safe=True)))
    assert "P12" in props(v)


def test_p12_crashed_member_excused() -> None:
    """A member that crashes before delivering a safe message is excused."""
    ring = reg(RingId(1, 1), {1, 2})
    run: list[Event] = [
        C(1, ring),
        C(2, ring),
        S(1, (1, 1), safe=True),
        D(1, (1, 1), True),
        Crash(2),
    ]
    assert check_p12_safe(run) == []
    assert props(check_p12_safe(run[:-1])) == {"P12"}


# --------------------------------------------------------------------------- L1


def test_l1_wrong_live_set() -> None:
    """The final ring must be exactly the live nodes."""
    v = check_l1_liveness(legal_run(), live_nodes={1, 2, 3})
    assert props(v) == {"L1"}
    assert len(v) == 3


def test_l1_missing_delivery_in_final_configuration() -> None:
    """A live node that did not deliver a message of the final ring breaks L1 only."""
    run = without(legal_run(), D(1, (4, 3)))
    assert check_safety(run) == []
    v = check_l1_liveness(run, ALL)
    assert props(v) == {"L1"}
    assert v[0].witness == (1, R5.id, ((4, 3),))


def test_l1_crashed_or_split_or_transitional() -> None:
    """A crashed live node, a live node in another ring, one stuck in T: all L1."""
    crashed = check_l1_liveness([*legal_run(), Crash(4)], ALL)
    assert "crashed" in crashed[0].message
    split = check_l1_liveness([C(1, reg(r4, {1})), C(2, reg(r3, {2}))], {1, 2})
    assert [v.witness[0] for v in split] == [1, 2]
    two = check_l1_liveness([C(1, reg(r3, {1, 2})), C(2, reg(r4, {1, 2}))], {1, 2})
    assert "different configurations" in two[0].message
    stuck = check_l1_liveness([C(1, reg(r3, {1})), C(1, trans(r3, r4, {1}))], {1})
    assert "transitional" in stuck[0].message
    assert "no configuration" in check_l1_liveness([Crash(1), Recover(1)], {1})[0].message


# --------------------------------------------------------------------------- API


def test_properties_table() -> None:
    """PROPERTIES names every checker once with a one-line description."""
    assert list(PROPERTIES) == [*(f"P{i}" for i in range(1, 13)), "L1"]
    for name, prop in PROPERTIES.items():
        assert prop.name == name
        assert prop.description
        assert "\n" not in prop.description
    with pytest.raises(TypeError):
        PROPERTIES["L1"](legal_run())
    assert PROPERTIES["P2"].check is check_p2_no_duplicates


def test_check_all_adds_liveness_only_when_asked() -> None:
    """check_all runs L1 only with live_nodes."""
    run = without(legal_run(), D(1, (4, 3)))
    assert check_all(run) == []
    assert props(check_all(run, live_nodes=ALL)) == {"L1"}


def test_violation_str_and_conf_format() -> None:
    """Violations print as 'Pn: message'; configuration ids print readably."""
    v = check_p4_self_inclusion([C(1, reg(RingId(9, 2), {2}))])[0]
    assert str(v).startswith("P4: node 1 installed R(2.9)")
    assert format_conf_id(trans(None, r1, {1}).id) == "T(-->1.4)"
    assert format_conf_id(T12.id) == "T(1.4->1.8)"


def test_single_checkers_match_check_safety() -> None:
    """Every single checker returns exactly its part of check_safety."""
    run = without(legal_run(), D(2, (1, 2)), D(3, (3, 2)))
    singles = [
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
    ]
    combined = [v for f in singles for v in f(run)]
    assert combined == check_safety(run)
    assert props(combined) == {"P7", "P8"}


# --------------------------------------------------------------------------- the oracle


@attrs.define
class _Ring:
    """A regular configuration of the oracle with its agreed message order."""

    conf: Conf
    ring_id: RingId
    alive: set[int]
    msgs: list[MsgId] = attrs.field(factory=list)
    safe: dict[MsgId, bool] = attrs.field(factory=dict)
    #: causal past of a message: (prefix of msgs the sender had delivered, its previous send)
    past: dict[MsgId, tuple[int, MsgId | None]] = attrs.field(factory=dict)
    delivered: dict[int, int] = attrs.field(factory=dict)  #: node -> regular prefix length
    last_own: dict[int, MsgId] = attrs.field(factory=dict)


@attrs.define
class Oracle:
    """A simple correct model of EVS: rings with one agreed order, partial delivery,
    crashes, recoveries, splits and merges with transitional configurations."""

    rng: random.Random
    n: int
    max_msgs: int = 5
    crash_p: float = 0.12
    recover_p: float = 0.5
    events: list[Event] = attrs.field(factory=list)
    seq: int = 0
    counter: dict[int, int] = attrs.field(factory=dict)
    down: set[int] = attrs.field(factory=set)
    last_ring: dict[int, RingId] = attrs.field(factory=dict)
    rings: list[_Ring] = attrs.field(factory=list)

    def alive(self) -> list[int]:
        """The nodes that are up."""
        return [p for p in range(1, self.n + 1) if p not in self.down]

    def _partition(self, nodes: list[int], max_groups: int) -> list[set[int]]:
        k = self.rng.randint(1, max(1, min(max_groups, len(nodes))))
        groups: list[set[int]] = [set() for _ in range(k)]
        for p in nodes:
            groups[self.rng.randrange(k)].add(p)
        return [g for g in groups if g]

    def _merge(self, streams: list[list[Event]]) -> None:
        streams = [list(reversed(s)) for s in streams if s]
        while streams:
            s = self.rng.choice(streams)
            self.events.append(s.pop())
            if not s:
                streams.remove(s)

    def _new_ring(self, members: set[int]) -> _Ring:
        self.seq += self.rng.randint(1, 4)
        rid = RingId(self.seq, min(members))
        return _Ring(reg(rid, members), rid, set(members))

    def _fresh_install(self, p: int, ring: _Ring) -> list[Event]:
        out: list[Event] = []
        if self.rng.random() < 0.4:
            out.append(C(p, trans(self.last_ring.get(p), ring.ring_id, {p})))
        out.append(C(p, ring.conf))
        return out

    def start(self) -> None:
        """Every node starts; the nodes form one or more rings."""
        streams = []
        for g in self._partition(self.alive(), 3):
            ring = self._new_ring(g)
            self.rings.append(ring)
            for p in sorted(g):
                streams.append(self._fresh_install(p, ring))
                ring.delivered[p] = 0
                self.last_ring[p] = ring.ring_id
        self._merge(streams)

    def round(self, *, complete: bool = False) -> None:
        """Every ring sends a few messages; members deliver in order, maybe lagging."""
        streams = []
        for ring in self.rings:
            stream: list[Event] = []
            to_send = self.rng.randint(0, self.max_msgs)
            members = sorted(ring.alive)
            while True:
                lag = [p for p in members if ring.delivered[p] < len(ring.msgs)]
                if to_send and (not lag or self.rng.random() < 0.4):
                    to_send -= 1
                    s = self.rng.choice(members)
                    self.counter[s] = self.counter.get(s, 0) + 1
                    m = (s, self.counter[s])
                    safe = self.rng.random() < 0.3
                    ring.past[m] = (ring.delivered[s], ring.last_own.get(s))
                    ring.last_own[s] = m
                    ring.msgs.append(m)
                    ring.safe[m] = safe
                    stream.append(S(s, m, safe))
                elif lag and (complete or to_send or self.rng.random() < 0.85):
                    p = self.rng.choice(lag)
                    m = ring.msgs[ring.delivered[p]]
                    ring.delivered[p] += 1
                    stream.append(D(p, m, ring.safe[m]))
                else:
                    break
            streams.append(stream)
        self._merge(streams)

    def _safe_prefix(self, ring: _Ring) -> int:
        """Length of the prefix every member received: up to the last message any
        node (crashed ones included) delivered as safe in the regular configuration."""
        top = 0
        for d in ring.delivered.values():
            for k in range(d - 1, -1, -1):
                if ring.safe[ring.msgs[k]]:
                    top = max(top, k + 1)
                    break
        return top

    def finish(self) -> None:
        """End without a change: members deliver at least every message some node
        delivered as safe (P12 holds for nodes still in the configuration)."""
        streams = []
        for ring in self.rings:
            top = self._safe_prefix(ring)
            stream: list[Event] = []
            for p in sorted(ring.alive):
                while ring.delivered[p] < top:
                    m = ring.msgs[ring.delivered[p]]
                    ring.delivered[p] += 1
                    stream.append(D(p, m, ring.safe[m]))
            streams.append(stream)
        self._merge(streams)

    def change(self, *, heal: bool = False) -> None:
        """Crashes, recoveries and a new partition; rings that change go through
        transitional configurations (heal: every live node ends in one ring)."""
        rng = self.rng
        alive = self.alive()
        crash = set() if heal else {p for p in alive if rng.random() < self.crash_p}
        if alive and len(crash) == len(alive):
            crash.discard(min(alive))
        recover = {p for p in sorted(self.down) if rng.random() < self.recover_p}
        pool = sorted((set(alive) - crash) | recover)
        groups = ([set(pool)] if pool else []) if heal else self._partition(pool, 3)
        spare = len(pool) - 1  # crashes allowed during T, so that one node stays up

        pre: list[Event] = [Crash(p) for p in sorted(crash)]
        pre += [Recover(p) for p in sorted(recover)]
        rng.shuffle(pre)
        self.events.extend(pre)
        self.down = (self.down | crash) - recover
        for ring in self.rings:
            ring.alive -= crash

        kept: list[_Ring] = []
        target: dict[int, _Ring] = {}
        new_rings: list[_Ring] = []
        for g in groups:
            same = [r for r in self.rings if r.alive == g == set(r.conf.members)]
            if same and rng.random() < 0.5:
                kept.append(same[0])
                continue
            ring = self._new_ring(g)
            new_rings.append(ring)
            for p in g:
                target[p] = ring

        streams: list[list[Event]] = []
        for old in self.rings:
            if old in kept:
                continue
            top = self._safe_prefix(old)
            received: dict[int, set[MsgId]] = {}
            for p in sorted(old.alive):
                d = max(old.delivered[p], top)
                got = set(old.msgs[:d])
                got |= {m for m in old.msgs[d:] if m[0] == p or rng.random() < 0.5}
                received[p] = got
            for new in new_rings:
                tg = sorted(p for p in old.alive if target[p] is new)
                if not tg:
                    continue
                union = set().union(*(received[p] for p in tg))
                keep: set[MsgId] = set()
                first_hole = len(old.msgs)
                for k, m in enumerate(old.msgs):
                    d, prev = old.past[m]
                    if m in union and d <= first_hole and (prev is None or prev in keep):
                        keep.add(m)
                    elif first_hole == len(old.msgs):
                        first_hole = k
                t_conf = trans(old.ring_id, new.ring_id, tg)
                for p in tg:
                    stream: list[Event] = [C(p, t_conf)]
                    stream += [
                        D(p, m, old.safe[m]) for m in old.msgs[old.delivered[p] :] if m in keep
                    ]
                    if not heal and spare > 0 and rng.random() < 0.05:
                        spare -= 1
                        cut = rng.randint(1, len(stream))
                        stream = [*stream[:cut], Crash(p)]
                        self.down.add(p)
                        new.alive.discard(p)
                    else:
                        stream.append(C(p, new.conf))
                    streams.append(stream)
        streams += [self._fresh_install(p, target[p]) for p in sorted(recover) if p in target]
        self._merge(streams)
        for new in new_rings:
            for p in new.conf.members:
                self.last_ring[p] = new.ring_id
                new.delivered[p] = 0
        self.rings = [r for r in kept + new_rings if r.alive]


def generate(
    seed: int, n: int, rounds: int, *, heal: bool, max_msgs: int = 5
) -> tuple[list[Event], list[int]]:
    """A legal history from the oracle, and its live nodes (meaningful when healed)."""
    o = Oracle(random.Random(seed), n, max_msgs=max_msgs)
    o.start()
    for _ in range(rounds):
        o.round()
        o.change()
    o.round()
    if heal:
        o.change(heal=True)
        o.round(complete=True)
    else:
        o.finish()
    return o.events, o.alive()


SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
ORACLE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ORACLE
@given(seed=SEEDS, n=st.integers(2, 6), rounds=st.integers(0, 8), heal=st.booleans())
def test_oracle_histories_are_legal(seed: int, n: int, rounds: int, heal: bool) -> None:
    """Random histories from the oracle violate no property (L1 when healed)."""
    events, live = generate(seed, n, rounds, heal=heal)
    violations = check_all(events, live_nodes=live if heal else None)
    assert violations == [], "\n".join(map(str, violations[:5]))


def test_oracle_exercises_interesting_cases() -> None:
    """The oracle does produce crashes, recoveries, transitional deliveries and gaps."""
    kinds: set[str] = set()
    for seed in range(60):
        events, _ = generate(seed, 5, 6, heal=False)
        conf: dict[int, Conf | None] = {}
        for e in events:
            if isinstance(e, Crash | Recover):
                kinds.add(type(e).__name__)
                conf[e.node] = None
            elif isinstance(e, ConfEvent):
                conf[e.node] = e.conf
                if not e.conf.is_regular and len(e.conf.members) > 1:
                    kinds.add("shared T")
            elif isinstance(e, Deliver):
                c = conf.get(e.node)
                if c is not None and not c.is_regular:
                    kinds.add("deliver in T")
                if e.safe:
                    kinds.add("safe")
        assert not check_safety(events)
    assert kinds == {"Crash", "Recover", "shared T", "deliver in T", "safe"}


# --------------------------------------------------------------------------- mutations


@attrs.frozen
class _Ann:
    """What a test needs to know about an event: incarnation, configuration, base."""

    inc: int
    conf: Conf | None
    base: Conf | None


def annotate(events: Sequence[Event]) -> list[_Ann]:
    """Per event: the node's incarnation, current and current-regular configuration."""
    inc: dict[int, int] = {}
    conf: dict[int, Conf | None] = {}
    base: dict[int, Conf | None] = {}
    out = []
    for e in events:
        p = e.node
        if isinstance(e, Recover):
            inc[p] = inc.get(p, 0) + 1
        out.append(_Ann(inc.get(p, 0), conf.get(p), base.get(p)))
        if isinstance(e, Crash | Recover):
            conf[p] = base[p] = None
        elif isinstance(e, ConfEvent):
            conf[p] = e.conf
            if e.conf.is_regular:
                base[p] = e.conf
    return out


def _send_confs(events: Sequence[Event], ann: list[_Ann]) -> dict[MsgId, Conf | None]:
    """The configuration each message was sent in."""
    return {e.msg: ann[i].conf for i, e in enumerate(events) if isinstance(e, Send)}


def _delivered_both(events: Sequence[Event], node: int, a: MsgId, b: MsgId) -> bool:
    """Some node other than ``node`` delivered ``a`` and ``b``."""
    got: dict[int, set[MsgId]] = {}
    for e in events:
        if isinstance(e, Deliver) and e.node != node and e.msg in (a, b):
            got.setdefault(e.node, set()).add(e.msg)
    return any(len(s) == 2 for s in got.values())


def _survived(events: Sequence[Event], ann: list[_Ann], p: int, conf: Conf) -> set[int]:
    """Incarnations of p that installed conf and then installed a regular
    configuration or never crashed."""
    out: set[int] = set()
    for i, e in enumerate(events):
        if isinstance(e, ConfEvent) and e.node == p and e.conf.id == conf.id:
            k = ann[i].inc
            rest = [(x, ann[j]) for j, x in enumerate(events[i + 1 :], i + 1) if x.node == p]
            mine = [x for x, a in rest if a.inc == k or isinstance(x, Recover)]
            ended = False
            for x in mine:
                if isinstance(x, Crash | Recover):
                    ended = True
                    break
                if isinstance(x, ConfEvent) and x.conf.is_regular:
                    break
            if not ended:
                out.add(k)
    return out


def drop_breaks(events: list[Event], i: int, live: list[int] | None) -> set[str]:
    """Properties that surely break when the delivery at ``i`` is removed (empty when
    the drop may be legal)."""
    ann = annotate(events)
    d = events[i]
    assert isinstance(d, Deliver)
    p, m, a = d.node, d.msg, ann[i]
    later = [(j, e) for j, e in enumerate(events) if j > i and e.node == p and ann[j].inc == a.inc]
    out: set[str] = set()
    next_reg = next(
        (e.conf for _, e in later if isinstance(e, ConfEvent) and e.conf.is_regular), None
    )
    if d.sender == p and next_reg is not None:
        out.add("P7")
    if a.base is not None and next_reg is not None:
        movers = set()
        for j, e in enumerate(events):
            if isinstance(e, ConfEvent) and e.conf.id == next_reg.id:
                b = ann[j].base
                if b is not None and b.id == a.base.id and ann[j].conf is not None:
                    movers.add(e.node)
        if len(movers) >= 2:
            out.add("P8")
    sent_in = _send_confs(events, ann)
    origin = sent_in.get(m)
    for j, e in later:
        if not isinstance(e, Deliver) or ann[j].base is None or a.base is None:
            continue
        if ann[j].base.id != a.base.id or sent_in.get(e.msg) != origin:  # type: ignore[union-attr]
            continue
        cj = ann[j].conf
        assert cj is not None
        assert a.conf is not None
        in_t = not cj.is_regular and m[0] in cj.members
        if ((a.conf.is_regular and cj.is_regular) or in_t) and _delivered_both(events, p, m, e.msg):
            out.add("P11")
            break
    for _j, e in later:
        if isinstance(e, Deliver) and e.sender == d.sender and sent_in.get(e.msg) == origin:
            out.add("P9")  # a later message of the same sender, same configuration
            break
    for j, e in enumerate(events):
        c = ann[j].conf
        if not (isinstance(e, Deliver) and e.msg == m and e.safe and c is not None and j != i):
            continue
        if p in c.members and a.inc in _survived(events, ann, p, c):
            out.add("P12")
            break
    if live is not None and p in live and a.conf is not None:
        mine = [j for j, e in enumerate(events) if e.node == p]
        final = [e.conf for e in events if isinstance(e, ConfEvent) and e.node == p][-1]
        if a.inc == ann[mine[-1]].inc and a.conf.id == final.id:
            out.add("L1")
    return out


MUTATIONS = ("drop", "duplicate", "swap", "rename", "rename_lower", "drop_before_crash", "delay")


def mutate(
    events: list[Event], kind: str, pick: int, live: list[int] | None
) -> tuple[list[Event], set[str] | None] | None:
    """Apply one mutation; return the new events and the properties that surely break
    (None: the mutation is legal by construction, empty set: may or may not be)."""
    delivers = [i for i, e in enumerate(events) if isinstance(e, Deliver)]
    if kind == "drop":
        if not delivers:
            return None
        i = delivers[pick % len(delivers)]
        return events[:i] + events[i + 1 :], drop_breaks(events, i, live)
    if kind == "duplicate":
        if not delivers:
            return None
        i = delivers[pick % len(delivers)]
        return [*events[: i + 1], events[i], *events[i + 1 :]], {"P2"}
    if kind == "swap":
        pairs = []
        last: dict[int, int] = {}
        for j, e in enumerate(events):
            prev = last.get(e.node)
            if isinstance(e, Deliver) and prev is not None and isinstance(events[prev], Deliver):
                pairs.append((prev, j))
            last[e.node] = j
        pairs = [(i, j) for i, j in pairs if events[i].msg != events[j].msg]  # type: ignore[union-attr]
        if not pairs:
            return None
        i, j = pairs[pick % len(pairs)]
        a, b = events[i], events[j]
        assert isinstance(a, Deliver)
        assert isinstance(b, Deliver)
        out = list(events)
        out[i], out[j] = b, a
        surely: set[str] = set()
        if _delivered_both(events, a.node, a.msg, b.msg):
            surely.add("P10")
        sent_in = _send_confs(events, annotate(events))
        ca, cb = sent_in.get(a.msg), sent_in.get(b.msg)
        if a.sender == b.sender and ca is not None and ca == cb:
            surely.add("P9")
        send_b = next(k for k, e in enumerate(events) if isinstance(e, Send) and e.msg == b.msg)
        if send_b > i:
            surely.add("P1")
        return out, surely
    if kind in ("rename", "rename_lower"):
        regs = [i for i, e in enumerate(events) if isinstance(e, ConfEvent) and e.conf.is_regular]
        i = regs[pick % len(regs)]
        e = events[i]
        assert isinstance(e, ConfEvent)
        if kind == "rename":
            others = {
                x.conf.id: x.conf
                for x in events
                if isinstance(x, ConfEvent)
                and x.conf.is_regular
                and x.conf.members != e.conf.members
            }
            if not others:
                return None
            other = sorted(others.values(), key=lambda c: str(c.id))[pick % len(others)]
            new_conf = attrs.evolve(e.conf, id=other.id)
        else:
            before = [
                x.conf
                for x in events[:i]
                if isinstance(x, ConfEvent) and x.node == e.node and x.conf.is_regular
            ]
            if not before:
                return None
            ring = before[-1].id[1]
            assert isinstance(ring, RingId)
            new_conf = attrs.evolve(e.conf, id=regular_conf_id(RingId(ring.seq, -1)))
        return [*events[:i], attrs.evolve(e, conf=new_conf), *events[i + 1 :]], {"P5"}
    if kind == "drop_before_crash":
        cands = []
        for j, e in enumerate(events):
            if not isinstance(e, Crash):
                continue
            mine = [k for k in range(j) if events[k].node == e.node]
            if mine and isinstance(events[mine[-1]], Deliver):
                cands.append(mine[-1])
        if not cands:
            return None
        i = cands[pick % len(cands)]
        return events[:i] + events[i + 1 :], None
    assert kind == "delay"
    if not delivers:
        return None
    i = delivers[pick % len(delivers)]
    p = events[i].node
    nxt = next((j for j in range(i + 1, len(events)) if events[j].node == p), len(events))
    return [*events[:i], *events[i + 1 : nxt], events[i], *events[nxt:]], None


@ORACLE
@given(
    seed=SEEDS,
    n=st.integers(2, 5),
    rounds=st.integers(0, 6),
    heal=st.booleans(),
    kind=st.sampled_from(MUTATIONS),
    pick=st.integers(0, 10_000),
)
def test_mutations_are_caught(
    seed: int, n: int, rounds: int, heal: bool, kind: str, pick: int
) -> None:
    """Mutations that surely break a property are caught; legal ones are accepted."""
    events, live = generate(seed, n, rounds, heal=heal)
    result = mutate(events, kind, pick, live if heal else None)
    if result is None:
        return
    mutated, surely = result
    found = props(check_all(mutated, live_nodes=live if heal else None))
    if surely is None:
        assert found == set()
    elif surely:
        assert found & surely, (kind, surely, found)


# --------------------------------------------------------------------------- size


def test_large_history_is_checked_quickly() -> None:
    """A 16-node history of about 50k events passes every checker in a few seconds."""
    events, live = generate(7, 16, 12, heal=True, max_msgs=500)
    assert len(events) > 40_000
    start = time.perf_counter()
    violations = check_all(events, live_nodes=live)
    elapsed = time.perf_counter() - start
    assert violations == []
    assert elapsed < 30  # generous for slow CI; about 1 s on a laptop
