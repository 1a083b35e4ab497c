"""Tests of totem's configuration: corosync's defaults, derived timers and validation.

The expected numbers are corosync's (reference sections 1.1-1.3): defaults from
``exec/totemconfig.c`` and the derived timers observed live for 2 and 3 nodes.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

import attrs
import pytest

import totem
from totem import ConfigError, EffectiveConfig, TotemConfig, TotemError

#: corosync's totem defaults (reference 1.1); None = derived from the token.
COROSYNC_DEFAULTS = {
    "token": 3000,
    "token_coefficient": 650,
    "token_retransmit": None,
    "hold": None,
    "token_retransmits_before_loss_const": 4,
    "token_warning": 75,
    "join": 50,
    "send_join": 0,
    "consensus": None,
    "merge": 200,
    "downcheck": 1000,
    "fail_recv_const": 2500,
    "seqno_unchanged_const": 30,
    "window_size": 50,
    "max_messages": 17,
    "miss_count_const": 5,
    "max_network_delay": 50,
    "heartbeat_failures_allowed": 0,
    "cancel_token_hold_on_retransmit": False,
}

#: The reference table of derived values (1.2): N -> (token, token_retransmit, hold,
#: consensus, token warning).
DERIVED = {
    1: (3000, 714, 561, 3600, 2250),
    2: (3000, 714, 561, 3600, 2250),
    3: (3650, 869, 685, 4380, 2737),
    5: (4950, 1178, 932, 5940, 3712),
}

#: Options that are timeouts in ms and must be at least 30 ms (reference 1.3).
TIMEOUT_OPTIONS = (
    "token",
    "token_retransmit",
    "join",
    "consensus",
    "merge",
    "downcheck",
    "max_network_delay",
)

#: Integer options (everything but the one yes/no flag).
INT_OPTIONS = tuple(name for name in COROSYNC_DEFAULTS if name != "cancel_token_hold_on_retransmit")


def raises_naming(option: str) -> AbstractContextManager[pytest.ExceptionInfo[ConfigError]]:
    """Expect a ConfigError whose message names ``totem.<option>``."""
    return pytest.raises(ConfigError, match=rf"totem\.{re.escape(option)}\b")


# --------------------------------------------------------------------------- defaults


def test_every_option_and_default_is_corosyncs() -> None:
    """TotemConfig has exactly corosync's totem options with corosync's default values."""
    config = TotemConfig()
    assert {field.name for field in attrs.fields(TotemConfig)} == set(COROSYNC_DEFAULTS)
    assert attrs.asdict(config) == COROSYNC_DEFAULTS


def test_config_is_exported_and_immutable() -> None:
    """The config classes are public and frozen: a running core's settings cannot drift."""
    assert totem.TotemConfig is TotemConfig
    assert totem.EffectiveConfig is EffectiveConfig
    config = TotemConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.token = 1000  # type: ignore[misc]


# --------------------------------------------------------------------------- derivations


@pytest.mark.parametrize(("nodes", "expected"), sorted(DERIVED.items()))
def test_derived_timers_match_the_reference_table(
    nodes: int, expected: tuple[int, int, int, int, int]
) -> None:
    """token, token_retransmit, hold, consensus and warning equal corosync's for N nodes."""
    effective = TotemConfig().effective(nodes)
    got = (
        effective.token,
        effective.token_retransmit,
        effective.hold,
        effective.consensus,
        effective.token_warning,
    )
    assert got == expected


@pytest.mark.parametrize("nodes", [2, 3, 5])
def test_runtime_keys_publish_the_derived_values(nodes: int) -> None:
    """as_runtime_keys() gives corosync's runtime.config.totem.* values for N nodes."""
    token, retransmit, hold, consensus, warning = DERIVED[nodes]
    keys = TotemConfig().effective(nodes).as_runtime_keys()
    assert keys == {
        "token": token,
        "token_retransmit": retransmit,
        "hold": hold,
        "consensus": consensus,
        "join": 50,
        "send_join": 0,
        "merge": 200,
        "downcheck": 1000,
        "fail_recv_const": 2500,
        "seqno_unchanged_const": 30,
        "window_size": 50,
        "max_messages": 17,
        "miss_count_const": 5,
        "token_retransmits_before_loss_const": 4,
        "token_warning": warning,
    }


def test_other_values_pass_through_unchanged() -> None:
    """Options without a derivation reach the effective config as configured."""
    config = TotemConfig(
        join=60,
        send_join=80,
        merge=300,
        downcheck=2000,
        fail_recv_const=10,
        seqno_unchanged_const=7,
        window_size=40,
        max_messages=20,
        miss_count_const=3,
        cancel_token_hold_on_retransmit=True,
    )
    effective = config.effective(3)
    assert (
        effective.join,
        effective.send_join,
        effective.merge,
        effective.downcheck,
        effective.fail_recv_const,
        effective.seqno_unchanged_const,
        effective.window_size,
        effective.max_messages,
        effective.miss_count_const,
        effective.cancel_token_hold_on_retransmit,
    ) == (60, 80, 300, 2000, 10, 7, 40, 20, 3, True)


def test_derivations_follow_an_explicit_token() -> None:
    """An explicit token feeds the coefficient, token_retransmit, hold and consensus."""
    effective = TotemConfig(token=1000).effective(3)
    assert effective.token == 1000 + 650
    assert effective.token_retransmit == int(1650 / 4.2)  # 392
    assert effective.hold == int(392 * 0.8 - 10)  # 303
    assert effective.consensus == int(1.2 * 1650)  # 1980, from the effective token
    assert effective.token_warning == 75 * 1650 // 100


def test_token_coefficient_applies_per_node_beyond_two() -> None:
    """The effective token grows by token_coefficient for each configured node past two."""
    config = TotemConfig(token=1000, token_coefficient=100)
    assert [config.effective(n).token for n in (1, 2, 3, 4, 10)] == [1000, 1000, 1100, 1200, 1800]


def test_token_coefficient_zero_disables_it() -> None:
    """token_coefficient 0 leaves the token as configured whatever the node count."""
    effective = TotemConfig(token_coefficient=0).effective(5)
    assert effective.token == 3000
    assert effective.token_retransmit == 714
    assert effective.consensus == 3600


def test_retransmits_before_loss_feeds_token_retransmit() -> None:
    """token_retransmit = trunc(token / (token_retransmits_before_loss_const + 0.2))."""
    effective = TotemConfig(token_retransmits_before_loss_const=9).effective(2)
    assert effective.token_retransmit == int(3000 / 9.2)  # 326
    assert effective.hold == int(326 * 0.8 - 10)
    assert effective.token_retransmits_before_loss_const == 9


def test_explicit_token_retransmit_overrides_and_feeds_hold() -> None:
    """An explicit token_retransmit is used as is, and the derived hold follows it."""
    effective = TotemConfig(token_retransmit=500).effective(3)
    assert effective.token_retransmit == 500
    assert effective.hold == 390
    assert effective.consensus == 4380  # still from the effective token


def test_explicit_hold_and_consensus_override_derivations() -> None:
    """Explicit hold and consensus are used as is whatever the token."""
    effective = TotemConfig(hold=100, consensus=10000).effective(5)
    assert (effective.token, effective.token_retransmit) == (4950, 1178)
    assert (effective.hold, effective.consensus) == (100, 10000)


def test_token_warning_zero_disables_the_warning() -> None:
    """token_warning 0 gives a zero warning time (no warning), 100 warns at the token."""
    assert TotemConfig(token_warning=0).effective(3).token_warning == 0
    assert TotemConfig(token_warning=100).effective(3).token_warning == 3650


def test_heartbeat_timeout_formula() -> None:
    """heartbeat_timeout = failures_allowed x token_retransmit + max_network_delay."""
    assert TotemConfig().effective(2).heartbeat_timeout == 0  # off by default
    effective = TotemConfig(heartbeat_failures_allowed=3, max_network_delay=60).effective(2)
    assert effective.heartbeat_timeout == 3 * 714 + 60


def test_heartbeat_timeout_is_disabled_when_not_below_the_token() -> None:
    """corosync silently disables the heartbeat when its timeout reaches the token."""
    # 4 x 714 + 50 = 2906 < 3000: kept; 5 x 714 + 50 = 3620 >= 3000: disabled.
    assert TotemConfig(heartbeat_failures_allowed=4).effective(2).heartbeat_timeout == 2906
    assert TotemConfig(heartbeat_failures_allowed=5).effective(2).heartbeat_timeout == 0
    # with 5 nodes the token is 4950: 4 x 1178 + 50 = 4762 is kept.
    assert TotemConfig(heartbeat_failures_allowed=4).effective(5).heartbeat_timeout == 4762


# --------------------------------------------------------------------------- validation


def test_config_error_is_a_totem_error_and_a_value_error() -> None:
    """ConfigError is catchable as TotemError (API misuse) and as ValueError."""
    assert issubclass(ConfigError, TotemError)
    assert issubclass(ConfigError, ValueError)
    assert totem.ConfigError is ConfigError


@pytest.mark.parametrize("option", TIMEOUT_OPTIONS)
def test_timeouts_below_30_ms_are_rejected(option: str) -> None:
    """Every timeout under corosync's 30 ms minimum raises ConfigError naming it."""
    values: dict[str, Any] = {option: 29}
    if option == "join":
        values["consensus"] = 3600
    with raises_naming(option):
        TotemConfig(**values).effective(2)


@pytest.mark.parametrize("option", TIMEOUT_OPTIONS)
def test_timeouts_of_exactly_30_ms_are_accepted(option: str) -> None:
    """30 ms, the minimum itself, is a valid timeout."""
    values: dict[str, Any] = {option: 30}
    if option == "token":
        values.update(token_retransmit=30, consensus=60)
    if option == "consensus":
        values["join"] = 30
    if option == "max_network_delay":
        values["heartbeat_failures_allowed"] = 1  # the option only shows in the heartbeat
        assert TotemConfig(**values).effective(2).heartbeat_timeout == 714 + 30
        return
    effective = TotemConfig(**values).effective(2)
    assert getattr(effective, option) == 30


def test_small_token_fails_through_its_derived_retransmit() -> None:
    """A token whose derived token_retransmit is under 30 ms is rejected with that name."""
    assert TotemConfig(token=126).effective(2).token_retransmit == 30
    with raises_naming("token_retransmit"):
        TotemConfig(token=125).effective(2)  # 125 / 4.2 = 29


def test_hold_below_14_ms_is_rejected() -> None:
    """hold under corosync's 14 ms minimum raises ConfigError naming totem.hold."""
    assert TotemConfig(hold=14).effective(2).hold == 14
    with raises_naming("hold"):
        TotemConfig(hold=13).effective(2)


def test_token_warning_above_100_percent_is_rejected() -> None:
    """token_warning is a percentage: over 100 raises ConfigError naming it."""
    with raises_naming("token_warning"):
        TotemConfig(token_warning=101).effective(2)


def test_consensus_below_join_is_rejected() -> None:
    """consensus smaller than join raises ConfigError naming both options."""
    assert TotemConfig(join=500, consensus=500).effective(2).consensus == 500
    with pytest.raises(ConfigError, match=r"totem\.consensus.*totem\.join"):
        TotemConfig(join=500, consensus=499).effective(2)


def test_derived_consensus_below_join_is_rejected() -> None:
    """The rule also holds against the derived consensus (1.2 x token)."""
    with raises_naming("consensus"):
        TotemConfig(join=4000).effective(2)  # consensus 3600 < join 4000


def test_max_messages_above_window_size_is_rejected() -> None:
    """max_messages larger than window_size raises ConfigError naming both."""
    assert TotemConfig(window_size=10, max_messages=10).effective(2).max_messages == 10
    with pytest.raises(ConfigError, match=r"totem\.max_messages.*totem\.window_size"):
        TotemConfig(window_size=10, max_messages=11).effective(2)


@pytest.mark.parametrize(
    "option",
    [
        "window_size",
        "max_messages",
        "fail_recv_const",
        "seqno_unchanged_const",
        "miss_count_const",
        "token_retransmits_before_loss_const",
    ],
)
def test_counts_must_be_at_least_one(option: str) -> None:
    """A zero count (window, messages, rotations, retransmits) is rejected by its name only."""
    values: dict[str, Any] = {option: 0}
    with raises_naming(option) as info:
        TotemConfig(**values).effective(2)
    named = set(re.findall(r"totem\.(\w+)", str(info.value)))
    assert named == {option}


@pytest.mark.parametrize("option", INT_OPTIONS)
@pytest.mark.parametrize("bad", [-1, True, False, 2.5, "3000"])
def test_non_integer_or_negative_values_are_rejected(option: str, bad: object) -> None:
    """Negative numbers, booleans, floats and strings raise ConfigError naming the option."""
    with raises_naming(option):
        TotemConfig(**{option: bad})  # type: ignore[arg-type]


def test_node_count_must_be_positive() -> None:
    """effective() needs at least one configured node."""
    with pytest.raises(ConfigError, match="node count"):
        TotemConfig().effective(0)


def test_zero_token_is_rejected() -> None:
    """token 0 is below the minimum, not 'derive': ConfigError naming totem.token."""
    with raises_naming("token"):
        TotemConfig(token=0).effective(2)


def test_core_validates_its_config_at_construction() -> None:
    """TotemCore refuses an invalid configuration with ConfigError before running."""
    import random

    with raises_naming("hold"):
        totem.TotemCore(1, config=TotemConfig(hold=5), rng=random.Random(0))
    core = totem.TotemCore(1, config=TotemConfig(), node_count=5, rng=random.Random(0))
    assert core.timers.token == 4950


def test_reconfigure_changes_timers_at_runtime() -> None:
    """reconfigure() recomputes the derived timers; the token-loss timer armed after it
    uses the new token timeout; an invalid config changes nothing."""
    import random

    core = totem.TotemCore(1, config=TotemConfig(token=1000), node_count=3, rng=random.Random(0))
    core.start(0)
    assert core.timers.token == 1000 + 650  # token_coefficient 650 per node above 2
    timers = core.reconfigure(TotemConfig(token=5000), 3)
    assert timers.token == core.timers.token == 5650
    assert core.config.token == 5000
    with raises_naming("hold"):
        core.reconfigure(TotemConfig(hold=5), 3)
    assert core.timers.token == 5650
    # A node alone forms its singleton ring after consensus; from then on the token
    # loss deadline is armed with the new value.
    consensus_ns = core.timers.consensus * 1_000_000
    core.handle_timeouts(consensus_ns + 1)
    deadline = core.next_deadline()
    assert deadline is not None
