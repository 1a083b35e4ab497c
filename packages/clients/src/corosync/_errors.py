"""Errors of the corosync client libraries: corosync's ``cs_error_t`` codes.

Every corosync library call returns a ``cs_error_t``; here a failure raises
:class:`CsError` carrying the code as a :class:`CsErrorCode`. Its message starts with
the text corosync's ``cs_strerror`` gives for the code (``CS_ERR_NOT_EXIST``), which is
what the corosync tools print, followed by what went wrong.

:class:`MalformedMessage` is internal: the ``decode_*_untrusted`` functions raise it for
bytes that are not a valid message, and their callers turn it into an error reply or a
``CsError``; it never reaches an application as itself.
"""

from __future__ import annotations

import enum
import errno

__all__ = [
    "CsError",
    "CsErrorCode",
    "MalformedMessage",
    "cs_error_from_errno",
    "cs_strerror",
]


class CsErrorCode(enum.IntEnum):
    """corosync's ``cs_error_t`` (``corosync/corotypes.h``); OK is 1, not 0."""

    OK = 1
    LIBRARY = 2
    VERSION = 3
    INIT = 4
    TIMEOUT = 5
    TRY_AGAIN = 6
    INVALID_PARAM = 7
    NO_MEMORY = 8
    BAD_HANDLE = 9
    BUSY = 10
    ACCESS = 11
    NOT_EXIST = 12
    NAME_TOO_LONG = 13
    EXIST = 14
    NO_SPACE = 15
    INTERRUPT = 16
    NAME_NOT_FOUND = 17
    NO_RESOURCES = 18
    NOT_SUPPORTED = 19
    BAD_OPERATION = 20
    FAILED_OPERATION = 21
    MESSAGE_ERROR = 22
    QUEUE_FULL = 23
    QUEUE_NOT_AVAILABLE = 24
    BAD_FLAGS = 25
    TOO_BIG = 26
    NO_SECTIONS = 27
    CONTEXT_NOT_FOUND = 28
    TOO_MANY_GROUPS = 30
    SECURITY = 100

    @property
    def cs_name(self) -> str:
        """The C name: ``CS_OK`` or ``CS_ERR_<NAME>``."""
        return "CS_OK" if self is CsErrorCode.OK else f"CS_ERR_{self.name}"


def cs_strerror(code: int) -> str:
    """The text of corosync's ``cs_strerror``: ``success``, ``CS_ERR_<NAME>`` or
    ``unknown error`` for a value that is not a ``cs_error_t``."""
    try:
        member = CsErrorCode(code)
    except ValueError:
        return "unknown error"
    return "success" if member is CsErrorCode.OK else member.cs_name


class CsError(Exception):
    """A corosync call failed with ``code`` (never :attr:`CsErrorCode.OK`)."""

    def __init__(self, code: CsErrorCode, detail: str = "") -> None:
        self.code = CsErrorCode(code)
        self.detail = detail
        text = cs_strerror(self.code)
        super().__init__(f"{text}: {detail}" if detail else text)

    def __reduce__(self) -> tuple[type[CsError], tuple[CsErrorCode, str]]:
        return (type(self), (self.code, self.detail))


class MalformedMessage(ValueError):
    """Bytes from an IPC peer are not a valid message. Internal: raised by the
    ``decode_*_untrusted`` functions, turned into an error reply by their callers."""


# libqb's qb_to_cs_error, which every corosync library applies to transport errors.
_ERRNO_TO_CS = {
    errno.EBADF: CsErrorCode.BAD_HANDLE,
    errno.ENOMEM: CsErrorCode.NO_MEMORY,
    errno.EAGAIN: CsErrorCode.TRY_AGAIN,
    errno.ETIMEDOUT: CsErrorCode.TRY_AGAIN,
    errno.ENOBUFS: CsErrorCode.TRY_AGAIN,
    errno.ENOMSG: CsErrorCode.TRY_AGAIN,
    errno.EINVAL: CsErrorCode.INVALID_PARAM,
    errno.EBUSY: CsErrorCode.BUSY,
    errno.EACCES: CsErrorCode.ACCESS,
    errno.EOVERFLOW: CsErrorCode.NAME_TOO_LONG,
    errno.EEXIST: CsErrorCode.EXIST,
    errno.ENOSPC: CsErrorCode.NO_SPACE,
    errno.EINTR: CsErrorCode.INTERRUPT,
    errno.ENOENT: CsErrorCode.NOT_EXIST,
    errno.ENODEV: CsErrorCode.NOT_EXIST,
    errno.ENOSYS: CsErrorCode.NOT_SUPPORTED,
    errno.ENOTSUP: CsErrorCode.NOT_SUPPORTED,
    errno.EBADMSG: CsErrorCode.MESSAGE_ERROR,
    errno.EMSGSIZE: CsErrorCode.TOO_BIG,
    errno.E2BIG: CsErrorCode.TOO_BIG,
}


def cs_error_from_errno(err: int) -> CsErrorCode:
    """Map an errno (either sign) to a ``cs_error_t`` as libqb's ``qb_to_cs_error`` does;
    anything it does not name, ENOTCONN and ECONNREFUSED included, is LIBRARY."""
    return _ERRNO_TO_CS.get(abs(err), CsErrorCode.LIBRARY)
