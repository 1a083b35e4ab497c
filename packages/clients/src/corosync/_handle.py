"""What every client library handle shares (cmap, cfg, and the libraries to come):
one IPC connection, request/response with corosync's error codes, finalize once,
use as a context manager."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Protocol, Self, TypeVar

from corosync._errors import CsError, CsErrorCode, MalformedMessage
from corosync.ipc._client import IpcClient
from corosync.ipc._headers import IpcType

__all__ = ["ServiceHandle"]


class _Response(Protocol):
    @property
    def error(self) -> CsErrorCode: ...


_R = TypeVar("_R", bound=_Response)


class ServiceHandle:
    """The shared part of a library handle over one :class:`IpcClient`. Calls may come
    from several threads; ``dispatch`` may run in one of them."""

    #: the service's name in error messages ("cmap", "cfg", ...)
    SERVICE: ClassVar[str] = "service"

    def __init__(self, client: IpcClient) -> None:
        self._client = client
        self._finalize_lock = threading.Lock()
        self._finalized = False

    @property
    def finalized(self) -> bool:
        """True after :meth:`finalize`."""
        return self._finalized

    @property
    def transport(self) -> IpcType:
        """The IPC transport the server chose (SHM or SOCKET)."""
        return self._client.transport

    def fileno(self) -> int:
        """A descriptor that polls readable when an event waits (``*_fd_get``)."""
        self._check()
        return self._client.fileno()

    def dispatch_filenos(self) -> tuple[int, ...]:
        """Descriptors whose readability means ``dispatch`` has work (an event, or
        the server gone): :meth:`fileno`, plus the setup socket over SOCKET."""
        self._check()
        return self._client.dispatch_filenos()

    def _exchange(
        self, request: bytes, decode: Callable[[bytes], _R], describe: Callable[[], str]
    ) -> _R:
        """Send one request, decode its response; a response with an error code raises
        CsError with it (``describe()`` says what was asked), a malformed one
        CsError(MESSAGE_ERROR)."""
        self._check()
        raw = self._client.request(request)
        try:
            response = decode(raw)
        except MalformedMessage as exc:
            raise CsError(
                CsErrorCode.MESSAGE_ERROR, f"bad {self.SERVICE} response: {exc}"
            ) from None
        if response.error is not CsErrorCode.OK:
            raise CsError(response.error, describe())
        return response

    def finalize(self) -> None:
        """Close the connection; the handle is unusable afterwards. Idempotent."""
        with self._finalize_lock:
            if self._finalized:
                return
            self._finalized = True
        self._client.close()

    def _check(self) -> None:
        if self._finalized:
            raise CsError(CsErrorCode.BAD_HANDLE, f"{self.SERVICE} handle is finalized")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finalize()
