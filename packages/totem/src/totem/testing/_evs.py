"""Extended virtual synchrony (EVS) property checkers over a recorded :class:`History`.

Each checker is a pure function ``check_*(history) -> list[Violation]``; an empty list
means the property holds. The properties (P1..P12 safety, L1 liveness) are the
checkable statements of the EVS model (Moser, Amir, Melliar-Smith, Agarwal, ICDCS
1994) as our design brief phrases them; :data:`PROPERTIES` lists them with a one-line
description each.

Conventions the checkers rely on (see :mod:`totem.testing._history`):

* an event of node *p* happens in *p*'s current configuration: the last configuration
  *p* installed in its current incarnation (a ``Recover`` starts a new incarnation with
  no configuration; a ``Crash`` ends the current one);
* a message is sent in the configuration current at its ``Send``; a delivery happens in
  the configuration current at its ``Deliver``;
* a transitional configuration "belongs" to the regular configuration that precedes it
  at the node: deliveries in ``T`` count as deliveries "in *c* or in its transitional
  configuration" for P3, P8 and P11;
* message ids are unique over the whole run (a recovered node keeps counting).

All checkers build the same single-pass index of the history; :func:`check_safety` and
:func:`check_all` build it once for all of them. Costs are linear in the number of
events, apart from P8 (sets of delivered messages per configuration change) and the
witness search of P10, which only runs when the order is already known to be broken.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import attrs

from totem._events import ConfKind
from totem.testing._history import (
    Conf,
    ConfEvent,
    ConfId,
    Crash,
    Deliver,
    Event,
    History,
    MsgId,
    Recover,
    Send,
)

__all__ = [
    "PROPERTIES",
    "HistoryLike",
    "Property",
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
    "format_conf_id",
    "format_msg",
]

#: How many example message ids a violation message lists before "...".
_MAX_LISTED = 5


@attrs.frozen
class Violation:
    """One violation of an EVS property, with the minimal evidence that shows it."""

    property: str  #: "P1".."P12" or "L1"
    message: str  #: human-readable, names the nodes, messages and configurations
    witness: tuple[object, ...]  #: the evidence (nodes, message ids, configuration ids)

    def __str__(self) -> str:
        return f"{self.property}: {self.message}"


HistoryLike = History | Sequence[Event]


# --------------------------------------------------------------------------- formatting


def format_msg(msg: MsgId) -> str:
    """``m<sender>.<counter>``, e.g. ``m2.7``."""
    return f"m{msg[0]}.{msg[1]}"


def format_conf_id(conf_id: ConfId | None) -> str:
    """``R(1.8)`` for a regular configuration, ``T(1.4->1.8)`` for a transitional one."""
    if conf_id is None:
        return "no configuration"
    if len(conf_id) == 2 and conf_id[0] == "R":
        return f"R({conf_id[1]})"
    if len(conf_id) == 3 and conf_id[0] == "T":
        old = "-" if conf_id[1] is None else str(conf_id[1])
        return f"T({old}->{conf_id[2]})"
    return repr(conf_id)


def _msgs(msgs: Iterable[MsgId]) -> str:
    ordered = sorted(msgs)
    text = ", ".join(format_msg(m) for m in ordered[:_MAX_LISTED])
    if len(ordered) > _MAX_LISTED:
        text += f", ... ({len(ordered)} in all)"
    return text


def _nodes(nodes: Iterable[int]) -> str:
    return "{" + ", ".join(str(n) for n in sorted(nodes)) + "}"


def _ring_of(conf_id: ConfId) -> object | None:
    """The ring id of a well-formed regular configuration id, else None."""
    if len(conf_id) == 2 and conf_id[0] == "R":
        return conf_id[1]
    return None


def _is_greater(a: object, b: object) -> bool:
    try:
        return bool(a > b)  # type: ignore[operator]
    except TypeError:
        return False


# --------------------------------------------------------------------------- the index


@attrs.define
class _Index:
    """Per-event context computed in one pass; shared by all checkers."""

    events: list[Event]
    inc: list[int]  #: incarnation number of the event's node at the event
    conf: list[Conf | None]  #: the node's current configuration just before the event
    base: list[Conf | None]  #: current regular conf, or the regular one before current T
    sends: list[int]  #: positions of Send events
    delivers: list[int]  #: positions of Deliver events
    confs: list[int]  #: positions of ConfEvent events
    send_pos: dict[MsgId, int]  #: first Send of each message
    duplicate_sends: list[tuple[int, int]]  #: (first, repeated) Send positions
    structure: list[Violation]  #: events outside any configuration, bad crash/recover
    final_conf: dict[int, Conf | None]  #: each node's configuration at the end
    down_at_end: dict[int, bool]  #: node crashed and not recovered at the end


def _build_index(history: HistoryLike) -> _Index:
    events: list[Event] = list(history.events if isinstance(history, History) else history)
    n = len(events)
    inc_of = [0] * n
    conf_at: list[Conf | None] = [None] * n
    base_at: list[Conf | None] = [None] * n
    sends: list[int] = []
    delivers: list[int] = []
    confs: list[int] = []
    send_pos: dict[MsgId, int] = {}
    duplicate_sends: list[tuple[int, int]] = []
    structure: list[Violation] = []
    cur: dict[int, Conf | None] = {}
    base: dict[int, Conf | None] = {}
    inc: dict[int, int] = {}
    down: dict[int, bool] = {}

    for i, e in enumerate(events):
        p = e.node
        t = type(e)
        if t is Recover:
            if not down.get(p, False):
                structure.append(
                    Violation(
                        "P5",
                        f"node {p} recovered at event {i} without having crashed",
                        (p, i),
                    )
                )
            inc[p] = inc.get(p, 0) + 1
            down[p] = False
            cur[p] = None
            base[p] = None
            inc_of[i] = inc[p]
            continue
        inc_of[i] = inc.get(p, 0)
        c = cur.get(p)
        conf_at[i] = c
        base_at[i] = base.get(p)
        is_down = down.get(p, False)
        if t is Send:
            assert isinstance(e, Send)
            sends.append(i)
            first = send_pos.get(e.msg)
            if first is None:
                send_pos[e.msg] = i
            else:
                duplicate_sends.append((first, i))
        elif t is Deliver:
            delivers.append(i)
        elif t is ConfEvent:
            assert isinstance(e, ConfEvent)
            confs.append(i)
            cur[p] = e.conf
            if e.conf.is_regular:
                base[p] = e.conf
        elif t is Crash:
            if is_down:
                structure.append(
                    Violation("P5", f"node {p} crashed again at event {i} while down", (p, i))
                )
            down[p] = True
            cur[p] = None
            base[p] = None
            continue
        if is_down:
            structure.append(
                Violation(
                    "P5",
                    f"node {p} has a {t.__name__} event at {i} while crashed",
                    (p, i),
                )
            )
        elif c is None and t in (Send, Deliver):
            structure.append(
                Violation(
                    "P5",
                    f"node {p} has a {t.__name__} event at {i} outside any configuration",
                    (p, i),
                )
            )
    return _Index(
        events=events,
        inc=inc_of,
        conf=conf_at,
        base=base_at,
        sends=sends,
        delivers=delivers,
        confs=confs,
        send_pos=send_pos,
        duplicate_sends=duplicate_sends,
        structure=structure,
        final_conf=dict(cur),
        down_at_end=dict(down),
    )


def _send_conf(ix: _Index, msg: MsgId) -> Conf | None:
    """The regular configuration a message was sent in, if it was sent in one."""
    j = ix.send_pos.get(msg)
    if j is None:
        return None
    c = ix.conf[j]
    if c is None or not c.is_regular:
        return None
    return c


def _sender(ix: _Index, msg: MsgId) -> int:
    j = ix.send_pos.get(msg)
    return msg[0] if j is None else ix.events[j].node


# --------------------------------------------------------------------------- P1..P4


def _p1(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    for first, again in ix.duplicate_sends:
        s = ev[again]
        assert isinstance(s, Send)
        out.append(
            Violation(
                "P1",
                f"{format_msg(s.msg)} was sent twice (events {first} and {again}); "
                "message ids must be unique",
                (s.msg, ev[first].node, s.node),
            )
        )
    for i in ix.delivers:
        d = ev[i]
        assert isinstance(d, Deliver)
        j = ix.send_pos.get(d.msg)
        if j is None:
            out.append(
                Violation(
                    "P1",
                    f"node {d.node} delivered {format_msg(d.msg)} (event {i}) which no node sent",
                    (d.node, d.msg),
                )
            )
            continue
        s = ev[j]
        assert isinstance(s, Send)
        if j > i:
            out.append(
                Violation(
                    "P1",
                    f"node {d.node} delivered {format_msg(d.msg)} (event {i}) before "
                    f"node {s.node} sent it (event {j})",
                    (d.node, d.msg, i, j),
                )
            )
        if d.sender != s.node:
            out.append(
                Violation(
                    "P1",
                    f"node {d.node} delivered {format_msg(d.msg)} as sent by node "
                    f"{d.sender}, but node {s.node} sent it",
                    (d.node, d.msg, d.sender, s.node),
                )
            )
        if d.payload != s.payload:
            out.append(
                Violation(
                    "P1",
                    f"node {d.node} delivered {format_msg(d.msg)} with a payload that "
                    f"differs from the one node {s.node} sent",
                    (d.node, d.msg, s.payload, d.payload),
                )
            )
    return out


def _p2(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    seen: dict[tuple[int, int, MsgId], int] = {}
    for i in ix.delivers:
        d = ev[i]
        assert isinstance(d, Deliver)
        key = (d.node, ix.inc[i], d.msg)
        first = seen.get(key)
        if first is None:
            seen[key] = i
            continue
        c1, c2 = ix.conf[first], ix.conf[i]
        out.append(
            Violation(
                "P2",
                f"node {d.node} delivered {format_msg(d.msg)} twice: in "
                f"{format_conf_id(c1.id if c1 else None)} (event {first}) and in "
                f"{format_conf_id(c2.id if c2 else None)} (event {i})",
                (d.node, d.msg, first, i),
            )
        )
    return out


def _p3(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    for i in ix.delivers:
        d = ev[i]
        assert isinstance(d, Deliver)
        sc = _send_conf(ix, d.msg)
        dc = ix.conf[i]
        if sc is None or dc is None:
            continue  # unsent (P1), sent in a transitional conf (P6), no conf (P5)
        if dc.id == sc.id:
            continue
        b = ix.base[i]
        if not dc.is_regular and b is not None and b.id == sc.id:
            continue
        out.append(
            Violation(
                "P3",
                f"node {d.node} delivered {format_msg(d.msg)} in {format_conf_id(dc.id)} "
                f"(event {i}), but it was sent in {format_conf_id(sc.id)}: it may only be "
                "delivered there or in the transitional configuration right after it",
                (d.node, d.msg, sc.id, dc.id),
            )
        )
    return out


def _p4(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    for i in ix.confs:
        e = ev[i]
        assert isinstance(e, ConfEvent)
        if e.node not in e.conf.members:
            out.append(
                Violation(
                    "P4",
                    f"node {e.node} installed {format_conf_id(e.conf.id)} (event {i}) whose "
                    f"members {_nodes(e.conf.members)} do not include it",
                    (e.node, e.conf.id, e.conf.members),
                )
            )
    return out


# --------------------------------------------------------------------------- P5, P6


def _p5(ix: _Index) -> list[Violation]:
    out: list[Violation] = list(ix.structure)
    ev = ix.events
    known: dict[ConfId, tuple[int, Conf]] = {}
    last_ring: dict[int, tuple[object, ConfId]] = {}
    installed_t: set[tuple[int, int, ConfId]] = set()
    for i in ix.confs:
        e = ev[i]
        assert isinstance(e, ConfEvent)
        p, conf = e.node, e.conf
        cid = conf.id
        tag = "R" if conf.kind is ConfKind.REGULAR else "T"
        arity = 2 if tag == "R" else 3
        if len(cid) != arity or cid[0] != tag:
            out.append(
                Violation(
                    "P5",
                    f"node {p} installed a {conf.kind.value} configuration with id {cid!r} "
                    f"(event {i}); expected ('{tag}', ...) with {arity} fields",
                    (p, cid, conf.kind),
                )
            )
            continue
        # A transitional configuration that starts an incarnation (members: the node
        # itself, coming from no ring of this incarnation) is private to that node.
        shared = conf.is_regular or ix.conf[i] is not None
        if shared:
            prior = known.get(cid)
            if prior is None:
                known[cid] = (p, conf)
            elif prior[1].members != conf.members or prior[1].kind is not conf.kind:
                out.append(
                    Violation(
                        "P5",
                        f"configuration {format_conf_id(cid)} has members "
                        f"{_nodes(prior[1].members)} at node {prior[0]} but "
                        f"{_nodes(conf.members)} at node {p} (event {i})",
                        (cid, prior[0], prior[1].members, p, conf.members),
                    )
                )
        if conf.is_regular:
            ring = cid[1]
            prev = last_ring.get(p)
            if prev is None or _is_greater(ring, prev[0]):
                last_ring[p] = (ring, cid)
            else:
                out.append(
                    Violation(
                        "P5",
                        f"node {p} installed {format_conf_id(cid)} (event {i}) after "
                        f"{format_conf_id(prev[1])}: regular ring ids must strictly "
                        "increase at a node, also across restarts",
                        (p, prev[1], cid),
                    )
                )
        else:
            key = (p, ix.inc[i], cid)
            if key in installed_t:
                out.append(
                    Violation(
                        "P5",
                        f"node {p} installed {format_conf_id(cid)} twice (event {i})",
                        (p, cid),
                    )
                )
            installed_t.add(key)
    return out


def _p6(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    for i in ix.confs:
        e = ev[i]
        assert isinstance(e, ConfEvent)
        p, new = e.node, e.conf
        prev = ix.conf[i]
        if prev is None:
            continue  # first configuration of an incarnation: R, or T then R
        if new.is_regular and prev.is_regular:
            out.append(
                Violation(
                    "P6",
                    f"node {p} went from {format_conf_id(prev.id)} to "
                    f"{format_conf_id(new.id)} (event {i}) without a transitional "
                    "configuration in between",
                    (p, prev.id, new.id),
                )
            )
        elif not new.is_regular and not prev.is_regular:
            out.append(
                Violation(
                    "P6",
                    f"node {p} installed {format_conf_id(new.id)} (event {i}) right after "
                    f"the transitional {format_conf_id(prev.id)}",
                    (p, prev.id, new.id),
                )
            )
        else:
            trans, reg, after = (prev, new, True) if new.is_regular else (new, prev, False)
            extra = trans.members - reg.members
            if extra:
                where = "next" if after else "previous"
                out.append(
                    Violation(
                        "P6",
                        f"node {p}: transitional {format_conf_id(trans.id)} has members "
                        f"{_nodes(extra)} that are not in the {where} regular "
                        f"{format_conf_id(reg.id)} (event {i})",
                        (p, trans.id, reg.id, frozenset(extra)),
                    )
                )
            ring = _ring_of(reg.id)
            tid = trans.id
            if ring is not None and len(tid) == 3 and tid[0] == "T":
                named = tid[2] if after else tid[1]
                if named != ring:
                    which = "new" if after else "old"
                    out.append(
                        Violation(
                            "P6",
                            f"node {p}: transitional {format_conf_id(tid)} names {which} "
                            f"ring {named} but the node's {which} regular configuration is "
                            f"{format_conf_id(reg.id)} (event {i})",
                            (p, tid, reg.id),
                        )
                    )
    for i in ix.sends:
        c = ix.conf[i]
        if c is not None and not c.is_regular:
            s = ev[i]
            assert isinstance(s, Send)
            out.append(
                Violation(
                    "P6",
                    f"node {s.node} sent {format_msg(s.msg)} (event {i}) in the transitional "
                    f"{format_conf_id(c.id)}",
                    (s.node, s.msg, c.id),
                )
            )
    return out


# --------------------------------------------------------------------------- P7, P8


def _p7(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    pending: dict[int, dict[MsgId, ConfId]] = {}
    for i, e in enumerate(ix.events):
        t = type(e)
        p = e.node
        if t is Send:
            assert isinstance(e, Send)
            c = ix.conf[i]
            if c is not None and c.is_regular:
                pending.setdefault(p, {})[e.msg] = c.id
        elif t is Deliver:
            assert isinstance(e, Deliver)
            own = pending.get(p)
            if own:
                own.pop(e.msg, None)
        elif t is ConfEvent:
            assert isinstance(e, ConfEvent)
            own = pending.get(p)
            if e.conf.is_regular and own:
                by_conf: dict[ConfId, list[MsgId]] = {}
                for m, cid in own.items():
                    by_conf.setdefault(cid, []).append(m)
                for cid, msgs in by_conf.items():
                    out.append(
                        Violation(
                            "P7",
                            f"node {p} sent {_msgs(msgs)} in {format_conf_id(cid)} but "
                            f"installed {format_conf_id(e.conf.id)} (event {i}) without "
                            "delivering them",
                            (p, cid, e.conf.id, tuple(sorted(msgs))),
                        )
                    )
                own.clear()
        else:  # Crash, Recover: a crashed sender is excused
            pending.pop(p, None)
    return out


def _p8(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    current: dict[int, tuple[ConfId, set[MsgId]] | None] = {}
    moves: dict[tuple[ConfId, ConfId], list[tuple[int, frozenset[MsgId]]]] = {}
    for i, e in enumerate(ev):
        t = type(e)
        if t is Deliver:
            assert isinstance(e, Deliver)
            cur = current.get(e.node)
            if cur is not None:
                cur[1].add(e.msg)
        elif t is ConfEvent:
            assert isinstance(e, ConfEvent)
            if not e.conf.is_regular:
                continue
            cur = current.get(e.node)
            if cur is not None and ix.conf[i] is not None:
                moves.setdefault((cur[0], e.conf.id), []).append((e.node, frozenset(cur[1])))
            current[e.node] = (e.conf.id, set())
        elif t is Crash or t is Recover:
            current[e.node] = None
    for (c_from, c_to), group in moves.items():
        if len(group) < 2:
            continue
        ref_node, ref = group[0]
        for q, got in group[1:]:
            if got == ref:
                continue
            only_ref, only_q = ref - got, got - ref
            sample = min(only_ref) if only_ref else min(only_q)
            out.append(
                Violation(
                    "P8",
                    f"nodes {ref_node} and {q} both moved from {format_conf_id(c_from)} to "
                    f"{format_conf_id(c_to)} but delivered different messages in "
                    f"{format_conf_id(c_from)}: only {ref_node}: [{_msgs(only_ref)}], "
                    f"only {q}: [{_msgs(only_q)}]",
                    (ref_node, q, c_from, c_to, sample),
                )
            )
    return out


# --------------------------------------------------------------------------- P9


def _p9(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    origin: dict[MsgId, tuple[ConfId, int, int]] = {}
    sendlist: dict[tuple[ConfId, int], list[MsgId]] = {}
    vclock: dict[MsgId, tuple[tuple[int, int], ...]] = {}
    know: dict[int, dict[int, int]] = {}
    know_conf: dict[int, ConfId | None] = {}
    # per (node, incarnation, conf): sender -> [contiguous prefix delivered, later indices]
    prefix: dict[tuple[int, int, ConfId], dict[int, list[Any]]] = {}
    reported: set[tuple[int, int, MsgId]] = set()

    def knowledge(p: int, cid: ConfId) -> dict[int, int]:
        if know_conf.get(p) != cid:
            know_conf[p] = cid
            know[p] = {}
        return know[p]

    for i, e in enumerate(ev):
        t = type(e)
        if t is Send:
            assert isinstance(e, Send)
            c = ix.conf[i]
            if c is None or not c.is_regular or e.msg in origin:
                continue
            p = e.node
            lst = sendlist.setdefault((c.id, p), [])
            idx = len(lst)
            lst.append(e.msg)
            origin[e.msg] = (c.id, p, idx)
            kn = knowledge(p, c.id)
            kn[p] = idx
            vclock[e.msg] = tuple((s, k) for s, k in kn.items() if k > 0)
            kn[p] = idx + 1
        elif t is Deliver:
            assert isinstance(e, Deliver)
            o = origin.get(e.msg)
            if o is None:
                continue
            cid, s, idx = o
            q, inc = e.node, ix.inc[i]
            st = prefix.setdefault((q, inc, cid), {})
            vc = vclock[e.msg]
            for s2, k in vc:
                pr = st.get(s2)
                have = pr[0] if pr is not None else 0
                if have < k:
                    missing = sendlist[(cid, s2)][have]
                    if (q, inc, missing) not in reported:
                        reported.add((q, inc, missing))
                        out.append(
                            Violation(
                                "P9",
                                f"node {q} delivered {format_msg(e.msg)} (event {i}) before "
                                f"{format_msg(missing)}, which causally precedes it in "
                                f"{format_conf_id(cid)}",
                                (q, missing, e.msg, cid),
                            )
                        )
                    break
            pr = st.get(s)
            if pr is None:
                pr = st[s] = [0, set()]
            if idx == pr[0]:
                pr[0] += 1
                later: set[int] = pr[1]
                while pr[0] in later:
                    later.discard(pr[0])
                    pr[0] += 1
            elif idx > pr[0]:
                pr[1].add(idx)
            c = ix.conf[i]
            if c is not None and c.is_regular and c.id == cid:
                kn = knowledge(q, cid)
                for s2, k in vc:
                    if kn.get(s2, 0) < k:
                        kn[s2] = k
                if kn.get(s, 0) <= idx:
                    kn[s] = idx + 1
        elif t is not ConfEvent:
            know_conf[e.node] = None
    return out


# --------------------------------------------------------------------------- P10


def _p10(ix: _Index) -> list[Violation]:
    ev = ix.events
    ids: dict[object, int] = {}
    items: list[object] = []
    seqs: dict[int, list[int]] = {}
    seen: dict[int, set[int]] = {}
    pending_t: dict[int, int | None] = {}

    def item(key: object) -> int:
        n = ids.get(key)
        if n is None:
            n = ids[key] = len(items)
            items.append(key)
        return n

    def put(p: int, n: int) -> None:
        s = seen.setdefault(p, set())
        if n not in s:
            s.add(n)
            seqs.setdefault(p, []).append(n)

    def flush_t(p: int) -> None:
        n = pending_t.get(p)
        if n is not None:
            pending_t[p] = None
            put(p, n)

    for e in ev:
        t = type(e)
        p = e.node
        if t is Deliver:
            assert isinstance(e, Deliver)
            put(p, item(("m", e.msg)))
        elif t is ConfEvent:
            assert isinstance(e, ConfEvent)
            flush_t(p)
            n = item(("c", e.conf.id))
            if e.conf.is_regular:
                put(p, n)
            else:
                # A member of T may deliver in T what another member of T delivered in
                # the old regular configuration: T is ordered after the old messages.
                pending_t[p] = n
        elif t is Crash:
            flush_t(p)
    for p in list(pending_t):
        flush_t(p)

    succ: list[set[int]] = [set() for _ in items]
    indeg = [0] * len(items)
    for seq in seqs.values():
        for a, b in itertools.pairwise(seq):
            nxt = succ[a]
            if b not in nxt:
                nxt.add(b)
                indeg[b] += 1
    ready = deque(n for n in range(len(items)) if indeg[n] == 0)
    done = 0
    while ready:
        a = ready.popleft()
        done += 1
        for b in succ[a]:
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    if done == len(items):
        return []
    cyclic = {n for n in range(len(items)) if indeg[n] > 0}
    return _p10_witnesses(items, seqs, cyclic)


def _item_str(key: object) -> str:
    assert isinstance(key, tuple)
    return format_msg(key[1]) if key[0] == "m" else format_conf_id(key[1])


def _item_ref(key: object) -> object:
    assert isinstance(key, tuple)
    return key[1]


def _p10_witnesses(
    items: list[object], seqs: dict[int, list[int]], cyclic: set[int]
) -> list[Violation]:
    out: list[Violation] = []
    rseq = {p: [n for n in s if n in cyclic] for p, s in seqs.items()}
    nodes = sorted(p for p, s in rseq.items() if s)
    pos = {p: {n: k for k, n in enumerate(rseq[p])} for p in nodes}
    for x, p in enumerate(nodes):
        for q in nodes[x + 1 :]:
            pq = pos[q]
            prev_n, prev_pos = -1, -1
            for n in rseq[p]:
                k = pq.get(n)
                if k is None:
                    continue
                if k < prev_pos:
                    a, b = items[prev_n], items[n]
                    out.append(
                        Violation(
                            "P10",
                            f"node {p} delivered {_item_str(a)} before {_item_str(b)}, "
                            f"node {q} delivered them the other way round",
                            (p, q, _item_ref(a), _item_ref(b)),
                        )
                    )
                    break
                prev_n, prev_pos = n, k
    if out:
        return out
    # No two nodes disagree directly, yet no total order exists: a longer cycle.
    edge_node: dict[tuple[int, int], int] = {}
    pred: dict[int, int] = {}
    for p in nodes:
        s = rseq[p]
        for a, b in itertools.pairwise(s):
            if (a, b) not in edge_node:
                edge_node[(a, b)] = p
                pred.setdefault(b, a)
    cycle = _find_cycle(pred, min(cyclic))
    steps = [
        f"{_item_str(items[a])} < {_item_str(items[b])} (node {edge_node[(a, b)]})"
        for a, b in itertools.pairwise(cycle)
    ]
    out.append(
        Violation(
            "P10",
            "no total order agrees with every node: " + ", ".join(steps),
            tuple(
                (edge_node[(a, b)], _item_ref(items[a]), _item_ref(items[b]))
                for a, b in itertools.pairwise(cycle)
            ),
        )
    )
    return out


def _find_cycle(pred: dict[int, int], start: int) -> list[int]:
    """A cycle, first item repeated last, in the part of the order graph that a
    topological sort could not remove: there every item has a predecessor, so walking
    predecessors from any item must come back to an item already seen."""
    path: list[int] = []
    where: dict[int, int] = {}
    n = start
    while n not in where:
        where[n] = len(path)
        path.append(n)
        n = pred[n]
    loop = [*path[where[n] :], n]
    loop.reverse()
    return loop


# --------------------------------------------------------------------------- P11


def _p11(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    chains: dict[ConfId, dict[tuple[int, int], list[MsgId]]] = {}
    reg_set: dict[tuple[int, int, ConfId], set[MsgId]] = {}
    all_set: dict[tuple[int, int, ConfId], set[MsgId]] = {}
    trans: dict[tuple[int, int, ConfId], Conf] = {}
    for i in ix.delivers:
        d = ev[i]
        assert isinstance(d, Deliver)
        sc = _send_conf(ix, d.msg)
        if sc is None:
            continue
        cid = sc.id
        key = (d.node, ix.inc[i])
        chains.setdefault(cid, {}).setdefault(key, []).append(d.msg)
        b, c = ix.base[i], ix.conf[i]
        if b is None or c is None or b.id != cid:
            continue
        k3 = (d.node, ix.inc[i], cid)
        all_set.setdefault(k3, set()).add(d.msg)
        if c.is_regular:
            reg_set.setdefault(k3, set()).add(d.msg)
        else:
            trans[k3] = c

    preds: dict[ConfId, dict[MsgId, set[MsgId]]] = {}
    for cid, per_node in chains.items():
        pc = preds[cid] = {}
        for chain in per_node.values():
            for before, after in itertools.pairwise(chain):
                if before != after:
                    pc.setdefault(after, set()).add(before)

    for k3, delivered in all_set.items():
        p, _inc, cid = k3
        pc = preds.get(cid, {})
        regular = reg_set.get(k3, set())
        gaps = _closure_missing(pc, regular)
        if gaps:
            m, later = min(gaps.items())
            out.append(
                Violation(
                    "P11",
                    f"node {p} delivered {format_msg(later)} in {format_conf_id(cid)} but not "
                    f"{format_msg(m)}, which precedes it in the agreed order of "
                    f"{format_conf_id(cid)} (missing: {_msgs(gaps)})",
                    (p, cid, m, later),
                )
            )
        t = trans.get(k3)
        if t is None:
            continue
        bad = {
            m: later
            for m, later in _closure_missing(pc, delivered).items()
            if m not in gaps and _sender(ix, m) in t.members
        }
        if bad:
            m, later = min(bad.items())
            out.append(
                Violation(
                    "P11",
                    f"node {p} delivered {format_msg(later)} of {format_conf_id(cid)} "
                    f"in {format_conf_id(t.id)} but not {format_msg(m)}, which precedes "
                    f"it and whose sender {_sender(ix, m)} is in {format_conf_id(t.id)} "
                    f"(missing: {_msgs(bad)})",
                    (p, t.id, m, later),
                )
            )
    return out


def _closure_missing(preds: dict[MsgId, set[MsgId]], delivered: set[MsgId]) -> dict[MsgId, MsgId]:
    """Messages that precede a delivered one (transitively) but are not delivered,
    each with a delivered message it precedes."""
    missing: dict[MsgId, MsgId] = {}
    visited = set(delivered)
    stack = [(m, m) for m in delivered]
    while stack:
        x, root = stack.pop()
        for y in preds.get(x, ()):
            if y in visited:
                continue
            visited.add(y)
            stack.append((y, root))
            if y not in delivered:
                missing[y] = root
    return missing


# --------------------------------------------------------------------------- P12


def _p12(ix: _Index) -> list[Violation]:
    out: list[Violation] = []
    ev = ix.events
    delivered: dict[tuple[int, int], set[MsgId]] = {}
    crashed: set[tuple[int, int]] = set()
    # (node, inc) -> positions (into ``installs_of``) of its configuration installs
    installs: dict[tuple[int, int], list[tuple[ConfId, bool]]] = {}
    safe: dict[tuple[MsgId, ConfId], tuple[int, frozenset[int]]] = {}
    for i, e in enumerate(ev):
        t = type(e)
        if t is Deliver:
            assert isinstance(e, Deliver)
            key = (e.node, ix.inc[i])
            delivered.setdefault(key, set()).add(e.msg)
            c = ix.conf[i]
            if e.safe and c is not None:
                safe.setdefault((e.msg, c.id), (e.node, c.members))
        elif t is ConfEvent:
            assert isinstance(e, ConfEvent)
            installs.setdefault((e.node, ix.inc[i]), []).append((e.conf.id, e.conf.is_regular))
        elif t is Crash:
            crashed.add((e.node, ix.inc[i]))

    # (conf id, node) -> incarnations of that node that installed it and survived it
    survived: dict[tuple[ConfId, int], list[int]] = {}
    for (p, inc), lst in installs.items():
        alive = (p, inc) not in crashed
        regular_after = False
        for cid, regular in reversed(lst):
            if alive or regular_after:
                survived.setdefault((cid, p), []).append(inc)
            regular_after = regular_after or regular

    for (m, cid), (by, members) in safe.items():
        out.extend(
            Violation(
                "P12",
                f"node {by} delivered {format_msg(m)} as safe in {format_conf_id(cid)}, "
                f"but member {q} never delivered it although it did not crash",
                (by, q, m, cid),
            )
            for q in sorted(members)
            for inc in survived.get((cid, q), ())
            if m not in delivered.get((q, inc), ())
        )
    return out


# --------------------------------------------------------------------------- L1


def _l1(ix: _Index, live_nodes: Collection[int]) -> list[Violation]:
    out: list[Violation] = []
    live = frozenset(live_nodes)
    if not live:
        return out
    finals: dict[int, Conf] = {}
    for p in sorted(live):
        c = ix.final_conf.get(p)
        if ix.down_at_end.get(p, False):
            out.append(Violation("L1", f"live node {p} is crashed at the end", (p,)))
        elif c is None:
            out.append(Violation("L1", f"live node {p} ends in no configuration", (p,)))
        elif not c.is_regular:
            out.append(
                Violation(
                    "L1",
                    f"live node {p} ends in the transitional {format_conf_id(c.id)}",
                    (p, c.id),
                )
            )
        elif c.members != live:
            out.append(
                Violation(
                    "L1",
                    f"live node {p} ends in {format_conf_id(c.id)} with members "
                    f"{_nodes(c.members)}, expected the live nodes {_nodes(live)}",
                    (p, c.id, c.members, live),
                )
            )
        else:
            finals[p] = c
    ids = {c.id for c in finals.values()}
    if len(ids) > 1:
        groups = {
            format_conf_id(cid): sorted(p for p, c in finals.items() if c.id == cid) for cid in ids
        }
        out.append(
            Violation(
                "L1",
                f"live nodes end in different configurations: {groups}",
                tuple(sorted((p, c.id) for p, c in finals.items())),
            )
        )
    if out:
        return out
    (final_id,) = ids
    ev = ix.events
    sent = []
    for i in ix.sends:
        c = ix.conf[i]
        if c is not None and c.id == final_id:
            s = ev[i]
            assert isinstance(s, Send)
            sent.append(s.msg)
    got: dict[int, set[MsgId]] = {p: set() for p in live}
    for i in ix.delivers:
        d = ev[i]
        c = ix.conf[i]
        assert isinstance(d, Deliver)
        if d.node in live and c is not None and c.id == final_id:
            got[d.node].add(d.msg)
    for p in sorted(live):
        missing = [m for m in sent if m not in got[p]]
        if missing:
            out.append(
                Violation(
                    "L1",
                    f"live node {p} did not deliver {_msgs(missing)} sent in the final "
                    f"configuration {format_conf_id(final_id)}",
                    (p, final_id, tuple(sorted(missing))),
                )
            )
    return out


# --------------------------------------------------------------------------- public API


def check_p1_integrity(history: HistoryLike) -> list[Violation]:
    """P1: every delivery matches an earlier send of the same message (sender, payload)."""
    return _p1(_build_index(history))


def check_p2_no_duplicates(history: HistoryLike) -> list[Violation]:
    """P2: a node delivers a message at most once per incarnation."""
    return _p2(_build_index(history))


def check_p3_delivery_configuration(history: HistoryLike) -> list[Violation]:
    """P3: a message sent in regular c is delivered in c or in the transitional
    configuration right after c at the delivering node."""
    return _p3(_build_index(history))


def check_p4_self_inclusion(history: HistoryLike) -> list[Violation]:
    """P4: a node is a member of every configuration it installs."""
    return _p4(_build_index(history))


def check_p5_configuration_agreement(history: HistoryLike) -> list[Violation]:
    """P5: a configuration id names one membership everywhere; regular ring ids strictly
    increase at every node (across restarts); every send and delivery happens in a
    configuration; crash/recover are well nested."""
    return _p5(_build_index(history))


def check_p6_transitional(history: HistoryLike) -> list[Violation]:
    """P6: regular and transitional configurations alternate; T is a subset of the
    regular configurations around it and names them; nothing is sent in T."""
    return _p6(_build_index(history))


def check_p7_self_delivery(history: HistoryLike) -> list[Violation]:
    """P7: a node delivers its own messages before it installs the next regular
    configuration, unless it crashes first."""
    return _p7(_build_index(history))


def check_p8_failure_atomicity(history: HistoryLike) -> list[Violation]:
    """P8: nodes moving from regular c directly to the same regular c' delivered the same
    set of messages in c (and its transitional configuration)."""
    return _p8(_build_index(history))


def check_p9_causal(history: HistoryLike) -> list[Violation]:
    """P9: a delivered message's causal predecessors sent in the same configuration were
    delivered before it at that node."""
    return _p9(_build_index(history))


def check_p10_total_order(history: HistoryLike) -> list[Violation]:
    """P10: one total order of messages and configuration changes agrees with the
    delivery order of every node."""
    return _p10(_build_index(history))


def check_p11_no_gaps(history: HistoryLike) -> list[Violation]:
    """P11: in a regular configuration a node delivers a prefix of the agreed order; in
    the transitional one it skips only messages of senders outside it."""
    return _p11(_build_index(history))


def check_p12_safe(history: HistoryLike) -> list[Violation]:
    """P12: a message delivered as safe in c is delivered by every member of c that
    installed c and did not crash before the next regular configuration (or the end)."""
    return _p12(_build_index(history))


def check_l1_liveness(history: HistoryLike, live_nodes: Collection[int]) -> list[Violation]:
    """L1: every live node ends in the same regular configuration, whose members are
    exactly the live nodes, and delivered every message sent in it."""
    return _l1(_build_index(history), live_nodes)


_SAFETY: tuple[tuple[str, Callable[[_Index], list[Violation]]], ...] = (
    ("P1", _p1),
    ("P2", _p2),
    ("P3", _p3),
    ("P4", _p4),
    ("P5", _p5),
    ("P6", _p6),
    ("P7", _p7),
    ("P8", _p8),
    ("P9", _p9),
    ("P10", _p10),
    ("P11", _p11),
    ("P12", _p12),
)


def check_safety(history: HistoryLike) -> list[Violation]:
    """All safety properties P1..P12, in that order."""
    ix = _build_index(history)
    out: list[Violation] = []
    for _name, check in _SAFETY:
        out.extend(check(ix))
    return out


def check_all(history: HistoryLike, live_nodes: Collection[int] | None = None) -> list[Violation]:
    """P1..P12, plus L1 when ``live_nodes`` is given."""
    ix = _build_index(history)
    out: list[Violation] = []
    for _name, check in _SAFETY:
        out.extend(check(ix))
    if live_nodes is not None:
        out.extend(_l1(ix, live_nodes))
    return out


@attrs.frozen
class Property:
    """A named property: callable like its checker, with a one-line description."""

    name: str
    description: str
    check: Callable[..., list[Violation]]
    needs_live_nodes: bool = False

    def __call__(
        self, history: HistoryLike, live_nodes: Collection[int] | None = None
    ) -> list[Violation]:
        if self.needs_live_nodes:
            if live_nodes is None:
                raise TypeError(f"{self.name} needs live_nodes")
            return self.check(history, live_nodes)
        return self.check(history)


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property("P1", "integrity: deliveries match an earlier send", check_p1_integrity),
        Property("P2", "no duplicates: each node delivers a message once", check_p2_no_duplicates),
        Property(
            "P3",
            "delivered in the sending configuration or its transitional one",
            check_p3_delivery_configuration,
        ),
        Property("P4", "self-inclusion: a node is in its configurations", check_p4_self_inclusion),
        Property(
            "P5",
            "configuration ids agree on members and increase at each node",
            check_p5_configuration_agreement,
        ),
        Property(
            "P6",
            "transitional configurations: R->T->R, T within both, no sends in T",
            check_p6_transitional,
        ),
        Property(
            "P7",
            "self-delivery: own messages before the next regular configuration",
            check_p7_self_delivery,
        ),
        Property(
            "P8",
            "failure atomicity: same c->c' move, same delivered set",
            check_p8_failure_atomicity,
        ),
        Property("P9", "causal order within a configuration", check_p9_causal),
        Property(
            "P10",
            "agreed order: one total order of messages and configurations",
            check_p10_total_order,
        ),
        Property(
            "P11",
            "no gaps in regular configurations; in T only for senders outside T",
            check_p11_no_gaps,
        ),
        Property("P12", "safe delivery: every surviving member delivers it", check_p12_safe),
        Property(
            "L1",
            "liveness: live nodes share the final ring and deliver all sent in it",
            check_l1_liveness,
            needs_live_nodes=True,
        ),
    )
}
