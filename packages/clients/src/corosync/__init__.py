"""corosync: Python client libraries for the corosync cluster engine.

They speak libqb IPC (:mod:`corosync.ipc`) like corosync's C libraries, so they work
against the pycorosync executive and against a real corosync 3. Failures raise
:class:`CsError`, whose ``code`` is corosync's ``cs_error_t`` (:class:`CsErrorCode`).
"""

from __future__ import annotations

from corosync._errors import (
    CsError,
    CsErrorCode,
    MalformedMessage,
    cs_error_from_errno,
    cs_strerror,
)
from corosync.cfg import (
    AsyncCfgHandle,
    CfgDispatchFlags,
    CfgHandle,
    CfgLinkStatus,
    CfgNodeAddrs,
    CfgNodeStatus,
    CfgShutdownCallback,
    CfgShutdownFlags,
    CfgShutdownReply,
    open_cfg,
)
from corosync.cmap import (
    AsyncCmapHandle,
    CmapDispatchFlags,
    CmapHandle,
    CmapIterEntry,
    CmapMap,
    CmapNotification,
    CmapTrackCallback,
    CmapTrackType,
    CmapTypedValue,
    CmapValue,
    CmapValueType,
    open_cmap,
)

__all__ = [
    "AsyncCfgHandle",
    "AsyncCmapHandle",
    "CfgDispatchFlags",
    "CfgHandle",
    "CfgLinkStatus",
    "CfgNodeAddrs",
    "CfgNodeStatus",
    "CfgShutdownCallback",
    "CfgShutdownFlags",
    "CfgShutdownReply",
    "CmapDispatchFlags",
    "CmapHandle",
    "CmapIterEntry",
    "CmapMap",
    "CmapNotification",
    "CmapTrackCallback",
    "CmapTrackType",
    "CmapTypedValue",
    "CmapValue",
    "CmapValueType",
    "CsError",
    "CsErrorCode",
    "MalformedMessage",
    "cs_error_from_errno",
    "cs_strerror",
    "open_cfg",
    "open_cmap",
]
