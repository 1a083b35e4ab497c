"""corosync_executive: the pycorosync daemon.

:class:`Daemon` composes corosync.conf (:func:`load_config`, :func:`validate_config`)
-> cmap (:class:`CmapStore`) -> knet + totem -> the sync engine (:class:`SyncEngine`)
-> the services (:class:`Service`: :class:`CmapService`, :class:`CfgService`) -> the
libqb IPC server (:class:`IpcServer`). ``pycorosync`` (``_main``) is its command line;
``pycorosync-cluster`` (:mod:`corosync_executive.cluster`) runs a local cluster.
"""

from __future__ import annotations

from corosync_executive._cfg_service import CfgBackend, CfgService, CfgServiceStats
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
from corosync_executive._daemon import DEFAULT_STATE_DIR, Daemon, ExitStatus, crypto_config_of
from corosync_executive._local import ConfigSource
from corosync_executive._logging import (
    BLACKBOX_FILE_NAME,
    Blackbox,
    CorosyncLogger,
    CrashDump,
    LogSetupError,
    LogSystem,
    configure_logging,
    install_crash_dump,
    reset_logging,
)
from corosync_executive._reload import (
    KnetSettings,
    ReloadFailure,
    ReloadPlan,
    apply_plan_to_cmap,
    begin_reload,
    finish_reload,
    plan_reload,
    reload_config_file,
)
from corosync_executive._service import (
    ExecMessage,
    Service,
    ServiceContext,
    decode_exec_message_untrusted,
    encode_exec_message,
)
from corosync_executive._stats_map import (
    MembersTracker,
    StatsMap,
    handle_clear_write,
    make_stats_store,
    read_procname,
)
from corosync_executive._sync import SyncEngine, decode_sync_message_untrusted

__all__ = [
    "BLACKBOX_FILE_NAME",
    "BLACKBOX_KEYS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "MAX_LINE_BYTES",
    "AtbMode",
    "Blackbox",
    "CfgBackend",
    "CfgService",
    "CfgServiceStats",
    "CmapService",
    "CmapServiceStats",
    "Config",
    "ConfigEntry",
    "ConfigError",
    "ConfigParseError",
    "ConfigSource",
    "ConfigValue",
    "CorosyncLogger",
    "CrashDump",
    "CryptoSettings",
    "Daemon",
    "DebugLevel",
    "ExecMessage",
    "ExitStatus",
    "IPAddress",
    "IdResolver",
    "IpVersion",
    "KeySpec",
    "KnetSettings",
    "Link",
    "LogPriority",
    "LogSetupError",
    "LogSystem",
    "LogTarget",
    "LoggingSettings",
    "MembersTracker",
    "Node",
    "NodeAddress",
    "ParsedConfig",
    "QuorumDevice",
    "QuorumSettings",
    "ReloadFailure",
    "ReloadPlan",
    "Resolver",
    "Service",
    "ServiceContext",
    "StatsMap",
    "SyncEngine",
    "SystemSettings",
    "TimestampMode",
    "apply_plan_to_cmap",
    "begin_reload",
    "configure_logging",
    "convert_entry",
    "crypto_config_of",
    "decode_exec_message_untrusted",
    "decode_sync_message_untrusted",
    "encode_exec_message",
    "finish_reload",
    "handle_clear_write",
    "install_crash_dump",
    "key_spec",
    "load_config",
    "load_config_into_cmap",
    "make_stats_store",
    "numeric_id",
    "parse_config",
    "plan_reload",
    "read_procname",
    "reload_config_file",
    "reset_logging",
    "validate_config",
]
