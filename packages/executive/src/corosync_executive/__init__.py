"""corosync_executive: the pycorosync daemon.

This part: corosync.conf. :func:`parse_config` (pure) and :func:`load_config` (reads
the file and ``uidgid.d/``) apply corosync's grammar and yield the flat cmap keys;
:func:`validate_config` applies corosync's rules and builds a :class:`Config` with the
typed settings, the local node, the links and the effective totem timers.
"""

from __future__ import annotations

from corosync_executive._cmap_service import (
    BLACKBOX_KEYS,
    CmapService,
    CmapServiceStats,
    load_config_into_cmap,
)
from corosync_executive._config_parser import (
    DEFAULT_CONFIG_PATH,
    MAX_LINE_BYTES,
    ConfigEntry,
    ConfigError,
    ConfigParseError,
    IdResolver,
    ParsedConfig,
    load_config,
    numeric_id,
    parse_config,
)
from corosync_executive._config_schema import (
    ConfigValue,
    DebugLevel,
    IpVersion,
    KeySpec,
    LogPriority,
    TimestampMode,
    convert_entry,
    key_spec,
)
from corosync_executive._config_validate import (
    AtbMode,
    Config,
    CryptoSettings,
    IPAddress,
    Link,
    LoggingSettings,
    LogTarget,
    Node,
    NodeAddress,
    QuorumDevice,
    QuorumSettings,
    Resolver,
    SystemSettings,
    validate_config,
)

__all__ = [
    "BLACKBOX_KEYS",
    "DEFAULT_CONFIG_PATH",
    "MAX_LINE_BYTES",
    "AtbMode",
    "CmapService",
    "CmapServiceStats",
    "Config",
    "ConfigEntry",
    "ConfigError",
    "ConfigParseError",
    "ConfigValue",
    "CryptoSettings",
    "DebugLevel",
    "IPAddress",
    "IdResolver",
    "IpVersion",
    "KeySpec",
    "Link",
    "LogPriority",
    "LogTarget",
    "LoggingSettings",
    "Node",
    "NodeAddress",
    "ParsedConfig",
    "QuorumDevice",
    "QuorumSettings",
    "Resolver",
    "SystemSettings",
    "TimestampMode",
    "convert_entry",
    "key_spec",
    "load_config",
    "load_config_into_cmap",
    "numeric_id",
    "parse_config",
    "validate_config",
]
