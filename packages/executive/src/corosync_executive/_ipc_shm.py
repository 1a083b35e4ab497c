"""libqb's SHM transport rings (reference/libqb-ipc.md section 3), server side.

The ring code is shared with the client library: it lives in :mod:`corosync.ipc`
(``corosync/ipc/_shm.py``), like the other wire formats; this module keeps the names
the server and its tests use.
"""

from __future__ import annotations

from corosync.ipc import (
    SHM_FLOW_CONTROL_OFFSET as FLOW_CONTROL_OFFSET,
)
from corosync.ipc import (
    SHM_RING_HEADER_SIZE as HEADER_SIZE,
)
from corosync.ipc import (
    ShmRing,
    ShmRingError,
)
from corosync.ipc import (
    shm_data_file_size as data_file_size,
)

__all__ = [
    "FLOW_CONTROL_OFFSET",
    "HEADER_SIZE",
    "ShmRing",
    "ShmRingError",
    "data_file_size",
]
