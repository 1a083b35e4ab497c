"""pycorosync-cmapctl without a daemon: line formatting and command-line errors.

The comparison with the real corosync-cmapctl is in test_cmapctl_real_corosync.py.
"""

from __future__ import annotations

import io
import math
import os
import uuid

import pytest

from corosync.cmap import CmapTypedValue, CmapValueType
from corosync.tools.cmapctl import format_value, main


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), stdout=out, stderr=err, stdin=io.StringIO(""))
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("value_type", "value", "text"),
    [
        (CmapValueType.UINT32, 3650, "3650"),
        (CmapValueType.INT8, -5, "-5"),
        (CmapValueType.UINT64, 2**64 - 1, "18446744073709551615"),
        (CmapValueType.DOUBLE, 0.0, "0.000000"),
        (CmapValueType.FLOAT, 1.5, "1.500000"),
        (CmapValueType.DOUBLE, -0.0, "-0.000000"),
        (CmapValueType.FLOAT, math.inf, "inf"),
        (CmapValueType.DOUBLE, math.nan, "nan"),
        (CmapValueType.DOUBLE, -math.nan, "-nan"),
        (CmapValueType.STRING, "r(0) ip(10.0.0.1) ", "r(0) ip(10.0.0.1) "),
    ],
)
def test_format_values(value_type: CmapValueType, value: object, text: str) -> None:
    """Values print as corosync-cmapctl prints them, with and without -q."""
    typed = CmapTypedValue(value_type, value)  # type: ignore[arg-type]
    line = format_value("a.key", typed, value_type, quiet=False, show_binary=False)
    assert line == f"a.key ({value_type.short_name}) = {text}"
    assert format_value("a.key", typed, value_type, quiet=True, show_binary=False) == text


def test_format_binary() -> None:
    """bin values are hidden without -b, escaped with it, and keep corosync's -q quirk."""
    typed = CmapTypedValue(CmapValueType.BINARY, b"ab\n\\\x7f\x80\xff")
    kind = CmapValueType.BINARY
    assert format_value("k.b", None, kind, quiet=False, show_binary=False) == "k.b (bin)"
    escaped = "ab\\x0A\\\\\\x7F\\xFFFFFF80\\xFFFFFFFF"
    assert format_value("k.b", typed, kind, quiet=False, show_binary=True) == (
        f"k.b (bin) = {escaped}"
    )
    assert format_value("k.b", typed, kind, quiet=True, show_binary=False) == "bin)"
    assert format_value("k.b", typed, kind, quiet=True, show_binary=True) == f"bin) = {escaped}"


@pytest.mark.parametrize(
    ("args", "err"),
    [
        (("-x",), "pycorosync-cmapctl: invalid option -- 'x'\n"),
        (("-m",), "pycorosync-cmapctl: option requires an argument -- 'm'\n"),
        (("-p",), "pycorosync-cmapctl: option requires an argument -- 'p'\n"),
        (("-m", "foo"), "invalid map name, must be 'default', 'icmap' or 'stats'\n"),
        (
            ("-C", "foo"),
            "argument to -C should be 'knet', 'totem', 'ipc', 'schedmiss' or 'all'\n",
        ),
        (("-g",), "Expected key after options\n"),
        (("-D",), "Expected key after options\n"),
        (("-T",), "Expected key after options\n"),
        (("-s", "a.b", "u8"), "At least 3 parameters are expected for set\n"),
    ],
)
def test_command_line_errors(args: tuple[str, ...], err: str) -> None:
    """Bad command lines fail with corosync-cmapctl's messages before connecting."""
    assert _run(*args) == (1, "", err)


def test_usage() -> None:
    """-h prints the usage with our program name and exits 0."""
    rc, out, err = _run("-h")
    assert (rc, err) == (0, "")
    assert "usage:  pycorosync-cmapctl [-b] [-DdghsqTCt] [-p filename] [-m map]" in out
    assert "--ipc-prefix=PREFIX" in out


def test_no_daemon() -> None:
    """Without a daemon on the socket the tool says so like corosync-cmapctl and exits 1."""
    prefix = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    assert _run(f"--ipc-prefix={prefix}", "-g", "totem.token") == (
        1,
        "",
        "Failed to initialize the cmap API. Error CS_ERR_LIBRARY\n",
    )
