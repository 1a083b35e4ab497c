"""What every service's messages share: the header in front of a body, the checks of
unsigned fields, and responses (the error code comes first, a response without a body
is the bare 24-byte header, an error may come in a bare header of any id)."""

from __future__ import annotations

import enum
from typing import Any, ClassVar, TypeVar

from corosync._errors import CsErrorCode, MalformedMessage
from corosync.ipc._headers import (
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    RequestHeader,
    ResponseHeader,
    decode_response_header_untrusted,
)

__all__ = [
    "ResponseBase",
    "check_unsigned",
    "decode_response_untrusted",
    "encode_request",
    "encode_response",
]


def encode_request(msg_id: int, body: bytes) -> bytes:
    """A whole request: the 16-byte header, then ``body``."""
    return RequestHeader(msg_id, REQUEST_HEADER_SIZE + len(body)).encode() + body


def encode_response(msg_id: int, error: CsErrorCode, body: bytes) -> bytes:
    """A whole response: the 24-byte header with ``error``, then ``body``."""
    return ResponseHeader(msg_id, RESPONSE_HEADER_SIZE + len(body), error).encode() + body


def check_unsigned(field: str, value: int, bits: int) -> None:
    """ValueError unless ``value`` fits an unsigned field of ``bits`` bits."""
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{field} {value} does not fit in a uint{bits}")


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


_R = TypeVar("_R", bound=ResponseBase)


def decode_response_untrusted(message: bytes, expected: type[_R]) -> _R:
    """One whole response to the request the client sent last, decoded as ``expected``.
    A response whose ``error`` is not OK may be a bare header of any id; only its error
    is kept."""
    header = decode_response_header_untrusted(message)
    try:
        error = CsErrorCode(header.error)
    except ValueError:
        raise MalformedMessage(f"response error {header.error} is not a cs_error_t") from None
    if error is not CsErrorCode.OK:
        result: _R = expected._error_only(error)
        return result
    if header.id != expected.RESPONSE_ID:
        raise MalformedMessage(
            f"response id {header.id}, expected {int(expected.RESPONSE_ID)} "
            f"({expected.RESPONSE_ID.name})"
        )
    decoded: _R = expected._from_body(message)
    return decoded
