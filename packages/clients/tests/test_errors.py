"""Tests of corosync's error codes: values, texts, the errno mapping of libqb."""

from __future__ import annotations

import errno
import pickle

import pytest

from corosync import CsError, CsErrorCode, cs_error_from_errno, cs_strerror

# corosync-reference.md 3.0 / libqb-ipc.md 4: every cs_error_t value.
REFERENCE_CODES = {
    "OK": 1,
    "LIBRARY": 2,
    "VERSION": 3,
    "INIT": 4,
    "TIMEOUT": 5,
    "TRY_AGAIN": 6,
    "INVALID_PARAM": 7,
    "NO_MEMORY": 8,
    "BAD_HANDLE": 9,
    "BUSY": 10,
    "ACCESS": 11,
    "NOT_EXIST": 12,
    "NAME_TOO_LONG": 13,
    "EXIST": 14,
    "NO_SPACE": 15,
    "INTERRUPT": 16,
    "NAME_NOT_FOUND": 17,
    "NO_RESOURCES": 18,
    "NOT_SUPPORTED": 19,
    "BAD_OPERATION": 20,
    "FAILED_OPERATION": 21,
    "MESSAGE_ERROR": 22,
    "QUEUE_FULL": 23,
    "QUEUE_NOT_AVAILABLE": 24,
    "BAD_FLAGS": 25,
    "TOO_BIG": 26,
    "NO_SECTIONS": 27,
    "CONTEXT_NOT_FOUND": 28,
    "TOO_MANY_GROUPS": 30,
    "SECURITY": 100,
}


def test_codes_match_the_reference() -> None:
    """Every cs_error_t of the reference exists with its value, and nothing else."""
    assert {member.name: member.value for member in CsErrorCode} == REFERENCE_CODES


def test_strerror_texts_are_corosyncs() -> None:
    """cs_strerror gives 'success', the C name, or 'unknown error'."""
    assert cs_strerror(1) == "success"
    assert cs_strerror(CsErrorCode.NOT_EXIST) == "CS_ERR_NOT_EXIST"
    assert cs_strerror(100) == "CS_ERR_SECURITY"
    assert cs_strerror(29) == "unknown error"
    assert CsErrorCode.OK.cs_name == "CS_OK"
    assert CsErrorCode.TRY_AGAIN.cs_name == "CS_ERR_TRY_AGAIN"


def test_cs_error_message_names_the_code() -> None:
    """The message starts with the code's C name, then the detail."""
    exc = CsError(CsErrorCode.LIBRARY, "cannot connect")
    assert exc.code is CsErrorCode.LIBRARY
    assert str(exc) == "CS_ERR_LIBRARY: cannot connect"
    assert str(CsError(CsErrorCode.ACCESS)) == "CS_ERR_ACCESS"


def test_cs_error_accepts_a_plain_int_and_pickles() -> None:
    """A raw int code becomes the enum; the exception survives pickling."""
    exc = CsError(12, "gone")  # type: ignore[arg-type]
    assert exc.code is CsErrorCode.NOT_EXIST
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.code is CsErrorCode.NOT_EXIST
    assert str(copy) == str(exc)


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (errno.EBADF, CsErrorCode.BAD_HANDLE),
        (errno.ENOMEM, CsErrorCode.NO_MEMORY),
        (errno.EAGAIN, CsErrorCode.TRY_AGAIN),
        (errno.ETIMEDOUT, CsErrorCode.TRY_AGAIN),
        (errno.ENOBUFS, CsErrorCode.TRY_AGAIN),
        (errno.ENOMSG, CsErrorCode.TRY_AGAIN),
        (errno.EINVAL, CsErrorCode.INVALID_PARAM),
        (errno.EBUSY, CsErrorCode.BUSY),
        (errno.EACCES, CsErrorCode.ACCESS),
        (errno.EOVERFLOW, CsErrorCode.NAME_TOO_LONG),
        (errno.EEXIST, CsErrorCode.EXIST),
        (errno.ENOSPC, CsErrorCode.NO_SPACE),
        (errno.EINTR, CsErrorCode.INTERRUPT),
        (errno.ENOENT, CsErrorCode.NOT_EXIST),
        (errno.ENODEV, CsErrorCode.NOT_EXIST),
        (errno.ENOSYS, CsErrorCode.NOT_SUPPORTED),
        (errno.ENOTSUP, CsErrorCode.NOT_SUPPORTED),
        (errno.EBADMSG, CsErrorCode.MESSAGE_ERROR),
        (errno.EMSGSIZE, CsErrorCode.TOO_BIG),
        (errno.E2BIG, CsErrorCode.TOO_BIG),
        (errno.ENOTCONN, CsErrorCode.LIBRARY),
        (errno.ECONNREFUSED, CsErrorCode.LIBRARY),
        (errno.EMFILE, CsErrorCode.LIBRARY),
    ],
)
def test_errno_mapping_is_qb_to_cs_error(err: int, code: CsErrorCode) -> None:
    """Transport errnos map like libqb's qb_to_cs_error, for either sign."""
    assert cs_error_from_errno(err) is code
    assert cs_error_from_errno(-err) is code
