"""The typed keys of corosync.conf: which cmap type each known key has, and the values
the enumerated keys accept.

corosync stores a key it knows as a number of a fixed cmap type (``totem.token`` is a
u32, ``quorum.two_node`` a u8, ``totem.config_version`` a u64) and everything else as
a string; yes/no options and enumerations stay strings but only accept their words
(corosync reference 1.1-1.11). :func:`convert_entry` turns one raw entry from the
parser into its :class:`ConfigValue` or raises :class:`ConfigParseError` naming the
file and line, with corosync's wording where corosync has one::

    parser error: corosync.conf:12: Value of key "totem.token" is expected to be
    integer in range (0..4294967295), but "3s" was given

Numbers are read as C's strtoll reads them: optional sign, decimal digits, nothing
else. Words are case-sensitive, as in corosync.

Beyond corosync: the yes/no keys of the totem section (``block_unlisted_ips``,
``cancel_token_hold_on_retransmit``, ``clear_node_high_bit``), ``secauth`` and the
logging words are checked when read (corosync silently treats an unknown word as
the default, or checks later without a line number).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping

import attrs

from corosync_executive._cmap_store import ValueType
from corosync_executive._config_parser import ConfigEntry, ConfigParseError, parse_c_integer

__all__ = [
    "COMPRESSION_MODELS",
    "CRYPTO_CIPHERS",
    "CRYPTO_HASHES",
    "CRYPTO_MODELS",
    "DSCP_NAMES",
    "LINK_MODES",
    "LOG_PRIORITIES",
    "SYSLOG_FACILITIES",
    "ConfigValue",
    "DebugLevel",
    "IpVersion",
    "KeySpec",
    "LogPriority",
    "TimestampMode",
    "TypedEntry",
    "convert_entries",
    "convert_entry",
    "dscp_value",
    "key_spec",
]


class IpVersion(enum.Enum):
    """``totem.ip_version``: which address family name resolution prefers."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"
    IPV4_6 = "ipv4-6"
    IPV6_4 = "ipv6-4"


class LogPriority(enum.IntEnum):
    """syslog priorities; a smaller value is more severe."""

    EMERG = 0
    ALERT = 1
    CRIT = 2
    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


class DebugLevel(enum.Enum):
    """``logging.debug``."""

    OFF = "off"
    ON = "on"
    TRACE = "trace"


class TimestampMode(enum.Enum):
    """``logging.timestamp``: ``hires`` adds milliseconds."""

    OFF = "off"
    ON = "on"
    HIRES = "hires"


LINK_MODES = ("active", "passive", "rr")
CRYPTO_MODELS = ("nss", "openssl")
CRYPTO_CIPHERS = ("none", "aes256", "aes192", "aes128")
CRYPTO_HASHES = ("none", "md5", "sha1", "sha256", "sha384", "sha512")
#: What our knet compresses with (corosync accepts what its libknet was built with).
COMPRESSION_MODELS = ("none", "zlib", "lz4", "zstd")

#: syslog's priority names (syslog.h ``prioritynames``), the deprecated aliases included.
LOG_PRIORITIES: Mapping[str, LogPriority] = {
    "emerg": LogPriority.EMERG,
    "panic": LogPriority.EMERG,
    "alert": LogPriority.ALERT,
    "crit": LogPriority.CRIT,
    "err": LogPriority.ERR,
    "error": LogPriority.ERR,
    "warning": LogPriority.WARNING,
    "warn": LogPriority.WARNING,
    "notice": LogPriority.NOTICE,
    "info": LogPriority.INFO,
    "debug": LogPriority.DEBUG,
}

#: syslog's facility names (syslog.h ``facilitynames``).
SYSLOG_FACILITIES = (
    "auth",
    "authpriv",
    "cron",
    "daemon",
    "ftp",
    "kern",
    "lpr",
    "mail",
    "news",
    "syslog",
    "user",
    "uucp",
    *(f"local{n}" for n in range(8)),
)

#: DSCP names knet accepts for ``totem.ip_dscp``, with their code points.
DSCP_NAMES: Mapping[str, int] = {
    **{f"cs{n}": 8 * n for n in range(8)},
    **{f"af{x}{y}": 8 * x + 2 * y for x in range(1, 5) for y in range(1, 4)},
    "ef": 46,
}


def dscp_value(text: str) -> int | None:
    """The DSCP code point of ``totem.ip_dscp`` (0..63 or a name), None if invalid."""
    number = parse_c_integer(text)
    if number is not None:
        return number if 0 <= number <= 63 else None
    return DSCP_NAMES.get(text)


@attrs.frozen
class ConfigValue:
    """A typed cmap value: integers for the numeric types, str for STRING."""

    type: ValueType
    value: int | str


@attrs.frozen
class TypedEntry:
    """A converted entry and where it was written."""

    value: ConfigValue
    entry: ConfigEntry


@attrs.frozen
class KeySpec:
    """How a key is typed: its cmap type and, for a string with a fixed set of
    values, the check and the error reason (a format string with ``{key}``, ``{value}``)."""

    type: ValueType = ValueType.STRING
    check: Callable[[str], bool] | None = None
    error: str | None = None


_STRING = KeySpec()
_U8 = KeySpec(ValueType.UINT8)
_U16 = KeySpec(ValueType.UINT16)
_U32 = KeySpec(ValueType.UINT32)
_I32 = KeySpec(ValueType.INT32)
_U64 = KeySpec(ValueType.UINT64)

_INT_RANGES: Mapping[ValueType, tuple[int, int]] = {
    ValueType.UINT8: (0, 0xFF),
    ValueType.UINT16: (0, 0xFFFF),
    ValueType.INT32: (-(1 << 31), (1 << 31) - 1),
    ValueType.UINT32: (0, 0xFFFFFFFF),
    ValueType.UINT64: (0, (1 << 64) - 1),
}


def _words(words: Iterable[str], error: str) -> KeySpec:
    allowed = frozenset(words)
    return KeySpec(check=allowed.__contains__, error=error)


def _yes_no(error: str = "") -> KeySpec:
    return _words(
        ("yes", "no"),
        error or 'Value of key "{key}" is expected to be "yes" or "no", but "{value}" was given',
    )


def _on_off(name: str, *, extra: tuple[str, ...] = ()) -> KeySpec:
    return _words(("on", "off", *extra), f"unknown value for {name}")


def _destination(name: str) -> KeySpec:
    return _words(("yes", "no", "on", "off"), f"unknown value for {name}")


def _human_list(words: Iterable[str]) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + " or " + items[-1]


_TOTEM_U32 = (
    "version",
    "nodeid",
    "threads",
    "token",
    "token_coefficient",
    "token_retransmit",
    "token_warning",
    "hold",
    "token_retransmits_before_loss_const",
    "join",
    "send_join",
    "consensus",
    "merge",
    "downcheck",
    "fail_recv_const",
    "seqno_unchanged_const",
    "rrp_token_expired_timeout",
    "rrp_problem_count_timeout",
    "rrp_problem_count_threshold",
    "rrp_problem_count_mcast_threshold",
    "rrp_autorecovery_check_timeout",
    "heartbeat_failures_allowed",
    "max_network_delay",
    "window_size",
    "max_messages",
    "miss_count_const",
    "knet_pmtud_interval",
    "knet_mtu",
    "knet_compression_threshold",
    "netmtu",
)

_EXACT: dict[str, KeySpec] = {
    **{f"totem.{name}": _U32 for name in _TOTEM_U32},
    "totem.config_version": _U64,
    "totem.knet_compression_level": _I32,
    "totem.ip_version": _words((v.value for v in IpVersion), "Invalid ip_version type"),
    "totem.crypto_model": _words(
        CRYPTO_MODELS, f"Invalid crypto model. Should be {_human_list(CRYPTO_MODELS)}"
    ),
    "totem.crypto_cipher": _words(
        CRYPTO_CIPHERS, f"Invalid cipher type. Should be {_human_list(CRYPTO_CIPHERS)}"
    ),
    "totem.crypto_hash": _words(
        CRYPTO_HASHES, f"Invalid hash type. Should be {_human_list(CRYPTO_HASHES)}"
    ),
    "totem.knet_compression_model": _words(
        COMPRESSION_MODELS,
        f"Invalid compression model. Should be {_human_list(COMPRESSION_MODELS)}",
    ),
    "totem.link_mode": _words(
        LINK_MODES,
        'The Knet link mode "{value}" specified is invalid.  It must be active, passive or rr.',
    ),
    "totem.secauth": _words(
        ("on", "off"),
        'Value of key "{key}" is expected to be "on" or "off", but "{value}" was given',
    ),
    "totem.ip_dscp": KeySpec(
        check=lambda text: dscp_value(text) is not None,
        error='Value of key "{key}" is expected to be integer in range (0..63) or a DSCP name '
        '(cs0..cs7, af11..af43, ef), but "{value}" was given',
    ),
    "totem.clear_node_high_bit": _yes_no(),
    "totem.block_unlisted_ips": _yes_no(),
    "totem.cancel_token_hold_on_retransmit": _yes_no(),
    "quorum.expected_votes": _U32,
    "quorum.votes": _U32,
    "quorum.last_man_standing_window": _U32,
    "quorum.leaving_timeout": _U32,
    "quorum.two_node": _U8,
    "quorum.expected_votes_tracking": _U8,
    "quorum.allow_downscale": _U8,
    "quorum.wait_for_all": _U8,
    "quorum.auto_tie_breaker": _U8,
    "quorum.last_man_standing": _U8,
    "quorum.device.timeout": _U32,
    "quorum.device.sync_timeout": _U32,
    "quorum.device.votes": _U32,
    "quorum.device.master_wins": _U8,
    "system.qb_ipc_type": _words(("native", "shm", "socket"), "Invalid system.qb_ipc_type"),
    "system.sched_rr": _yes_no("Invalid system.sched_rr value"),
    "system.move_to_root_cgroup": _words(
        ("yes", "no", "auto"), "Invalid system.move_to_root_cgroup"
    ),
    "system.allow_knet_handle_fallback": _yes_no("Invalid system.allow_knet_handle_fallback"),
    "resources.watchdog_timeout": _U32,
    "logging.timestamp": _on_off("timestamp", extra=("hires",)),
    "logging.fileline": _on_off("fileline"),
    "logging.function_name": _on_off("function_name"),
    "logging.blackbox": _on_off("blackbox"),
}

# Keys valid both in ``logging`` and in each ``logger_subsys``.
_LOGGING_COMMON: dict[str, KeySpec] = {
    "to_stderr": _destination("to_stderr"),
    "to_syslog": _destination("to_syslog"),
    "to_logfile": _destination("to_logfile"),
    "to_file": _destination("to_file"),
    "syslog_facility": _words(SYSLOG_FACILITIES, "unknown syslog facility specified"),
    "syslog_priority": _words(LOG_PRIORITIES, "unknown syslog priority specified"),
    "syslog_level": _words(LOG_PRIORITIES, "unknown syslog level specified"),
    "logfile_priority": _words(LOG_PRIORITIES, "unknown logfile priority specified"),
    "debug": _words((d.value for d in DebugLevel), "unknown value for debug"),
}
_EXACT.update({f"logging.{name}": spec for name, spec in _LOGGING_COMMON.items()})

_INTERFACE_KEYS: dict[str, KeySpec] = {
    "mcastport": _U16,
    "ttl": _U8,
    "knet_link_priority": _U8,
    "knet_ping_interval": _U32,
    "knet_ping_timeout": _U32,
    "knet_ping_precision": _U32,
    "knet_pong_count": _U32,
}
_NODE_KEYS: dict[str, KeySpec] = {"nodeid": _U32, "quorum_votes": _U32}

_INTERFACE_KEY = re.compile(r"totem\.interface\.[0-9]+\.([^.]+)")
_NODE_KEY = re.compile(r"nodelist\.node\.[0-9]+\.([^.]+)")
_SUBSYS_KEY = re.compile(r"logging\.logger_subsys\.[^.]+\.([^.]+)")
_UIDGID_KEY = re.compile(r"uidgid\.config\.(?:uid|gid)\.[0-9]+")
_POLL_PERIOD_KEY = re.compile(r"resources\.(?:system|process)(?:\..+)?\.poll_period")


def key_spec(key: str) -> KeySpec:
    """How corosync types ``key`` (a string when it does not know it)."""
    spec = _EXACT.get(key)
    if spec is not None:
        return spec
    if match := _INTERFACE_KEY.fullmatch(key):
        return _INTERFACE_KEYS.get(match.group(1), _STRING)
    if match := _NODE_KEY.fullmatch(key):
        return _NODE_KEYS.get(match.group(1), _STRING)
    if match := _SUBSYS_KEY.fullmatch(key):
        return _LOGGING_COMMON.get(match.group(1), _STRING)
    if _UIDGID_KEY.fullmatch(key):
        return _U8
    if _POLL_PERIOD_KEY.fullmatch(key):
        return _U64
    return _STRING


def convert_entry(entry: ConfigEntry) -> ConfigValue:
    """The typed value of ``entry``; raises :class:`ConfigParseError` when the raw value
    does not fit the key's type or set of words."""
    spec = key_spec(entry.key)
    raw = entry.value
    if spec.type is ValueType.STRING:
        if spec.check is not None and not spec.check(raw):
            reason = (spec.error or 'Invalid value "{value}" of key "{key}"').format(
                key=entry.key, value=raw
            )
            raise ConfigParseError(reason, file=entry.file, line=entry.line, key=entry.key)
        return ConfigValue(ValueType.STRING, raw)
    low, high = _INT_RANGES[spec.type]
    number = parse_c_integer(raw)
    if number is None or not low <= number <= high:
        if spec.type is ValueType.UINT64:
            reason = (
                f'Value of key "{entry.key}" is expected to be unsigned integer, '
                f'but "{raw}" was given'
            )
        else:
            reason = (
                f'Value of key "{entry.key}" is expected to be integer in range '
                f'({low}..{high}), but "{raw}" was given'
            )
        raise ConfigParseError(reason, file=entry.file, line=entry.line, key=entry.key)
    return ConfigValue(spec.type, number)


def convert_entries(entries: Iterable[ConfigEntry]) -> dict[str, TypedEntry]:
    """Convert every entry, in order; a key written twice keeps its last value (as
    cmap does), at the position of its first appearance."""
    result: dict[str, TypedEntry] = {}
    for entry in entries:
        result[entry.key] = TypedEntry(convert_entry(entry), entry)
    return result
