"""The part every service's response message shares: the error code comes first, a
response without a body is the bare 24-byte header."""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from corosync._errors import CsErrorCode, MalformedMessage
from corosync.ipc._headers import RESPONSE_HEADER_SIZE

__all__ = ["ResponseBase"]


class ResponseBase:
    """Shared decoding of responses; subclasses with a body override :meth:`_from_body`."""

    SERVICE: ClassVar[str]  # "cmap", "cfg", ... for error messages
    RESPONSE_ID: ClassVar[enum.IntEnum]
    error: CsErrorCode  # every response checks this first

    @classmethod
    def _from_body(cls, message: bytes) -> Any:
        """A response without body: the message must be the bare header."""
        if len(message) != RESPONSE_HEADER_SIZE:
            raise MalformedMessage(
                f"{cls.SERVICE} {cls.RESPONSE_ID.name} response of {len(message)} bytes, "
                f"expected {RESPONSE_HEADER_SIZE}"
            )
        return cls(error=CsErrorCode.OK)  # type: ignore[call-arg]

    @classmethod
    def _error_only(cls, error: CsErrorCode) -> Any:
        return cls(error=error)  # type: ignore[call-arg]
