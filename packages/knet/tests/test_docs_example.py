"""The runnable examples of docs/knet.md run and print what the guide says they print.

A fenced ``python`` block preceded by ``<!-- example: tested -->`` is run as a script
in a fresh interpreter (PYTHONPATH=packages/knet/src). The fenced block that follows
it, preceded by ``<!-- output: tested -->``, is its expected standard output, compared
like a doctest with ELLIPSIS (``...`` matches any text, e.g. a latency).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "docs" / "knet.md"
SRC = REPO / "packages" / "knet" / "src"

_EXAMPLE = re.compile(
    r"<!-- example: tested -->\s*\n```python\n(?P<code>.*?)\n```\s*\n"
    r"(?:(?!<!-- example: tested -->).)*?"
    r"<!-- output: tested -->\s*\n```[a-z]*\n(?P<output>.*?)\n```",
    re.DOTALL,
)


def guide_examples() -> list[tuple[str, str]]:
    """(code, expected output) of every tested example in the guide, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    return [(m["code"] + "\n", m["output"] + "\n") for m in _EXAMPLE.finditer(text)]


def run_example(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script with knet importable from the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_guide_has_tested_examples() -> None:
    """docs/knet.md marks at least one example, with its output, as tested."""
    examples = guide_examples()
    assert examples, f"no '<!-- example: tested -->' block with an output block in {GUIDE}"
    for code, output in examples:
        assert "import knet" in code
        assert output.strip()


@pytest.mark.parametrize("index", range(len(guide_examples())))
def test_guide_example_prints_documented_output(index: int) -> None:
    """A tested example of docs/knet.md exits 0 and prints the output shown under it."""
    code, expected = guide_examples()[index]
    result = run_example(code)
    assert result.returncode == 0, f"example {index} failed:\n{result.stderr}"
    checker = doctest.OutputChecker()
    if not checker.check_output(expected, result.stdout, doctest.ELLIPSIS):
        pytest.fail(
            f"example {index} printed something else than docs/knet.md shows.\n"
            f"expected:\n{expected}\ngot:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
