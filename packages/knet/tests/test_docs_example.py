"""The runnable examples of docs/knet.md run and print what the guide says they print.

A fenced ``python`` block preceded by ``<!-- example: tested -->`` is run as a script
in a fresh interpreter (PYTHONPATH=packages/knet/src). The fenced block that follows
it, preceded by ``<!-- output: tested -->``, is its expected standard output, compared
like a doctest with ELLIPSIS (``...`` matches any text, e.g. a latency).
"""

from __future__ import annotations

import pytest

from doc_examples import REPO, guide_examples, output_mismatch, run_example

GUIDE = REPO / "docs" / "knet.md"
SOURCES = (REPO / "packages" / "knet" / "src",)
EXAMPLES = guide_examples(GUIDE)


def test_guide_has_tested_examples() -> None:
    """docs/knet.md marks at least one example, with its output, as tested."""
    examples = EXAMPLES
    assert examples, f"no '<!-- example: tested -->' block with an output block in {GUIDE}"
    for code, output in examples:
        assert "import knet" in code
        assert output.strip()


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_guide_example_prints_documented_output(index: int) -> None:
    """A tested example of docs/knet.md exits 0 and prints the output shown under it."""
    code, expected = EXAMPLES[index]
    problem = output_mismatch(GUIDE, index, expected, run_example(code, SOURCES))
    if problem:
        pytest.fail(problem)
