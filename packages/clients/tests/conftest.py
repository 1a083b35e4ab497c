"""Fixtures of the client tests: ``cmap_server``, a cmap service of the executive
(IpcServer + CmapService) running in the test's trio loop, over the transport named by
the ``transport`` fixture (SHM unless a test parametrizes it). Its handler can be made
to stall on a key (``stall.*``), to test timeouts and a server that goes away in the
middle of a call.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from corosync import CmapValueType
from corosync.ipc import CmapGetRequest, decode_cmap_request_untrusted
from corosync_executive import CmapService
from corosync_executive._cmap_store import CmapStore
from corosync_executive._ipc_server import AccessPolicy, IpcConnection, IpcServer

# corosync's rule plus our own uid, so the tests also pass when not run as root.
ME = AccessPolicy(allowed_uids=frozenset({os.getuid()}))
STALL_PREFIX = "stall."


class CmapServer:
    """A running cmap IPC server; stop it with :meth:`stop`."""

    def __init__(self, service: CmapService, server: IpcServer, runtime_dir: str) -> None:
        self.service = service
        self.server = server
        self.prefix = server.name.removesuffix("cmap")
        self.runtime_dir = runtime_dir
        self.stalled = trio.Event()  # set when a stall.* GET has reached the handler
        self.release = trio.Event()  # set to let stalled GETs answer
        self.scope = trio.CancelScope()

    async def handle(self, conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        try:
            request = decode_cmap_request_untrusted(message)
        except Exception:
            request = None
        if isinstance(request, CmapGetRequest) and request.key.startswith(STALL_PREFIX):
            self.stalled.set()
            await self.release.wait()
        return await self.service.handle(conn, request_id, message)

    def stop(self) -> None:
        """Cancel the server: every connection is closed and its files removed."""
        self.scope.cancel()

    def files(self) -> list[str]:
        """The per-connection files left in the runtime directory."""
        found: list[str] = []
        for _, _, names in os.walk(self.runtime_dir):
            found.extend(names)
        return found


@pytest.fixture
def transport() -> str:
    """The transport ``cmap_server`` answers with; tests parametrize it to change it."""
    return "shm"


@pytest.fixture
async def cmap_server(transport: str) -> AsyncIterator[CmapServer]:
    """A cmap server with totem.token = 3000 and a few other keys, for one test."""
    store = CmapStore()
    store.set("totem.token", CmapValueType.UINT32, 3000, writer=True)
    store.set("totem.cluster_name", CmapValueType.STRING, "pytest", writer=True)
    store.set("nodelist.node.0.nodeid", CmapValueType.UINT32, 1, writer=True)
    service = CmapService(store)
    runtime_dir = tempfile.mkdtemp(prefix="pcc-", dir="/dev/shm")
    prefix = f"cl{os.getpid()}{uuid.uuid4().hex[:6]}-"
    holder: list[CmapServer] = []

    async def handle(conn: IpcConnection, request_id: int, message: bytes) -> bytes:
        return await holder[0].handle(conn, request_id, message)

    server = IpcServer(
        "cmap",
        handle,
        prefix=prefix,
        authorize=ME,
        runtime_dir=runtime_dir,
        transport=transport,  # type: ignore[arg-type]
        on_connect=service.on_connect,
        on_disconnect=service.on_disconnect,
    )
    running = CmapServer(service, server, runtime_dir)
    holder.append(running)

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with running.scope:
            await server.serve(task_status=task_status)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            yield running
            running.release.set()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
