"""Totem timers and limits: corosync's totem section, its defaults and derivations.

All times are milliseconds, as in corosync.conf. ``TotemConfig`` holds what the user
set (None = derive); :meth:`TotemConfig.effective` applies corosync's formulas for a
given number of configured nodes (section 1.2 of the corosync reference):

* token = token + (nodes - 2) * token_coefficient when nodes > 2
* token_retransmit = trunc(token / (token_retransmits_before_loss_const + 0.2))
* hold = trunc(token_retransmit * 0.8 - 10)
* consensus = trunc(1.2 * token)
* token warning at token_warning% of token
"""

from __future__ import annotations

from typing import Any

import attrs

from totem._errors import ConfigError

__all__ = ["MINIMUM_HOLD_MS", "MINIMUM_TIMEOUT_MS", "EffectiveConfig", "TotemConfig"]

MINIMUM_TIMEOUT_MS = 30
MINIMUM_HOLD_MS = 14


def _nonneg_int(_instance: object, attribute: Any, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"totem.{attribute.name} must be a non-negative integer, got {value!r}")


@attrs.frozen(kw_only=True)
class TotemConfig:
    """The totem options corosync has, with corosync's defaults (None = derived)."""

    token: int = attrs.field(default=3000, validator=_nonneg_int)
    token_coefficient: int = attrs.field(default=650, validator=_nonneg_int)
    token_retransmit: int | None = attrs.field(default=None, validator=_nonneg_int)
    hold: int | None = attrs.field(default=None, validator=_nonneg_int)
    token_retransmits_before_loss_const: int = attrs.field(default=4, validator=_nonneg_int)
    token_warning: int = attrs.field(default=75, validator=_nonneg_int)
    join: int = attrs.field(default=50, validator=_nonneg_int)
    send_join: int = attrs.field(default=0, validator=_nonneg_int)
    consensus: int | None = attrs.field(default=None, validator=_nonneg_int)
    merge: int = attrs.field(default=200, validator=_nonneg_int)
    downcheck: int = attrs.field(default=1000, validator=_nonneg_int)
    fail_recv_const: int = attrs.field(default=2500, validator=_nonneg_int)
    seqno_unchanged_const: int = attrs.field(default=30, validator=_nonneg_int)
    window_size: int = attrs.field(default=50, validator=_nonneg_int)
    max_messages: int = attrs.field(default=17, validator=_nonneg_int)
    miss_count_const: int = attrs.field(default=5, validator=_nonneg_int)
    max_network_delay: int = attrs.field(default=50, validator=_nonneg_int)
    heartbeat_failures_allowed: int = attrs.field(default=0, validator=_nonneg_int)
    cancel_token_hold_on_retransmit: bool = False

    def effective(self, node_count: int) -> EffectiveConfig:
        """Apply corosync's derivations for ``node_count`` configured nodes and
        validate the result with corosync's rules; raises :class:`ConfigError`."""
        if node_count < 1:
            raise ConfigError(f"node count must be at least 1, got {node_count}")
        token = self.token
        if node_count > 2 and self.token_coefficient:
            token += (node_count - 2) * self.token_coefficient
        retransmits = self.token_retransmits_before_loss_const
        if retransmits < 1:
            raise ConfigError("totem.token_retransmits_before_loss_const must be at least 1")
        token_retransmit = (
            self.token_retransmit
            if self.token_retransmit is not None
            else int(token / (retransmits + 0.2))
        )
        hold = self.hold if self.hold is not None else int(token_retransmit * 0.8 - 10)
        consensus = self.consensus if self.consensus is not None else int(1.2 * token)
        for name, value in (
            ("token", token),
            ("token_retransmit", token_retransmit),
            ("join", self.join),
            ("consensus", consensus),
            ("merge", self.merge),
            ("downcheck", self.downcheck),
            ("max_network_delay", self.max_network_delay),
        ):
            if value < MINIMUM_TIMEOUT_MS:
                raise ConfigError(
                    f"totem.{name} is {value} ms; the minimum is {MINIMUM_TIMEOUT_MS} ms"
                )
        if hold < MINIMUM_HOLD_MS:
            raise ConfigError(f"totem.hold is {hold} ms; the minimum is {MINIMUM_HOLD_MS} ms")
        if not 0 <= self.token_warning <= 100:
            raise ConfigError(f"totem.token_warning must be 0..100, got {self.token_warning}")
        if consensus < self.join:
            raise ConfigError(
                f"totem.consensus ({consensus} ms) must not be smaller than totem.join "
                f"({self.join} ms)"
            )
        for name, count in (
            ("window_size", self.window_size),
            ("max_messages", self.max_messages),
            ("fail_recv_const", self.fail_recv_const),
            ("seqno_unchanged_const", self.seqno_unchanged_const),
            ("miss_count_const", self.miss_count_const),
        ):
            if count < 1:
                raise ConfigError(f"totem.{name} must be at least 1, got {count}")
        if self.max_messages > self.window_size:
            raise ConfigError(
                f"totem.max_messages ({self.max_messages}) must not exceed totem.window_size "
                f"({self.window_size})"
            )
        heartbeat_timeout = 0
        if self.heartbeat_failures_allowed:
            heartbeat_timeout = (
                self.heartbeat_failures_allowed * token_retransmit + self.max_network_delay
            )
            if heartbeat_timeout >= token:  # corosync silently disables it then
                heartbeat_timeout = 0
        return EffectiveConfig(
            token=token,
            token_retransmit=token_retransmit,
            hold=hold,
            consensus=consensus,
            join=self.join,
            send_join=self.send_join,
            merge=self.merge,
            downcheck=self.downcheck,
            token_warning=self.token_warning * token // 100,
            fail_recv_const=self.fail_recv_const,
            seqno_unchanged_const=self.seqno_unchanged_const,
            window_size=self.window_size,
            max_messages=self.max_messages,
            miss_count_const=self.miss_count_const,
            token_retransmits_before_loss_const=retransmits,
            heartbeat_timeout=heartbeat_timeout,
            cancel_token_hold_on_retransmit=self.cancel_token_hold_on_retransmit,
        )


@attrs.frozen(kw_only=True)
class EffectiveConfig:
    """The values in force (corosync's ``runtime.config.totem.*``), in milliseconds."""

    token: int
    token_retransmit: int
    hold: int
    consensus: int
    join: int
    send_join: int
    merge: int
    downcheck: int
    token_warning: int
    fail_recv_const: int
    seqno_unchanged_const: int
    window_size: int
    max_messages: int
    miss_count_const: int
    token_retransmits_before_loss_const: int
    heartbeat_timeout: int
    cancel_token_hold_on_retransmit: bool

    def as_runtime_keys(self) -> dict[str, int]:
        """The values as corosync publishes them under ``runtime.config.totem.``."""
        return {
            "token": self.token,
            "token_retransmit": self.token_retransmit,
            "hold": self.hold,
            "consensus": self.consensus,
            "join": self.join,
            "send_join": self.send_join,
            "merge": self.merge,
            "downcheck": self.downcheck,
            "fail_recv_const": self.fail_recv_const,
            "seqno_unchanged_const": self.seqno_unchanged_const,
            "window_size": self.window_size,
            "max_messages": self.max_messages,
            "miss_count_const": self.miss_count_const,
            "token_retransmits_before_loss_const": self.token_retransmits_before_loss_const,
            "token_warning": self.token_warning,
        }
