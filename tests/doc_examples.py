"""Shared by the docs tests: find the tested examples of a guide and run them.

A fenced ``python`` block preceded by ``<!-- example: tested -->`` is run as a script in
a fresh interpreter with the given source trees on PYTHONPATH. The fenced block that
follows it, preceded by ``<!-- output: tested -->``, is its expected standard output,
compared like a doctest with ELLIPSIS (``...`` matches any text).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_EXAMPLE = re.compile(
    r"<!-- example: tested -->\s*\n```python\n(?P<code>.*?)\n```\s*\n"
    r"(?:(?!<!-- example: tested -->).)*?"
    r"<!-- output: tested -->\s*\n```[a-z]*\n(?P<output>.*?)\n```",
    re.DOTALL,
)


def guide_examples(guide: Path) -> list[tuple[str, str]]:
    """(code, expected output) of every tested example in ``guide``, in order."""
    text = guide.read_text(encoding="utf-8")
    return [(m["code"] + "\n", m["output"] + "\n") for m in _EXAMPLE.finditer(text)]


def run_example(code: str, sources: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script with ``sources`` importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*map(str, sources), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def output_mismatch(
    guide: Path, index: int, expected: str, result: subprocess.CompletedProcess[str]
) -> str | None:
    """None if ``result`` printed ``expected`` (doctest ELLIPSIS rules), else a report."""
    if result.returncode != 0:
        return f"example {index} of {guide.name} failed:\n{result.stderr}"
    if doctest.OutputChecker().check_output(expected, result.stdout, doctest.ELLIPSIS):
        return None
    return (
        f"example {index} printed something else than {guide.name} shows.\n"
        f"expected:\n{expected}\ngot:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
