"""The runnable examples of docs/totem.md run and print what the guide says they print.

A fenced ``python`` block preceded by ``<!-- example: tested -->`` is run as a script
in a fresh interpreter (PYTHONPATH=packages/totem/src and packages/knet/src). The
fenced block that follows it, preceded by ``<!-- output: tested -->``, is its expected
standard output, compared like a doctest with ELLIPSIS (``...`` matches any text, e.g.
a ring id or a message count). The matcher is shared, in ``tests/doc_examples.py``.
"""

from __future__ import annotations

import pytest

from doc_examples import REPO, guide_examples, output_mismatch, run_example

GUIDE = REPO / "docs" / "totem.md"
SOURCES = (REPO / "packages" / "totem" / "src", REPO / "packages" / "knet" / "src")
EXAMPLES = guide_examples(GUIDE)


def test_guide_has_tested_examples() -> None:
    """Every example marker of docs/totem.md pairs with an output, covering the main APIs."""
    text = GUIDE.read_text(encoding="utf-8")
    examples = EXAMPLES
    assert len(examples) == text.count("<!-- example: tested -->")
    assert len(examples) == text.count("<!-- output: tested -->")
    for code, output in examples:
        assert "totem" in code
        assert output.strip()
    codes = "\n".join(code for code, _ in examples)
    for needle in ("open_node", "UdpTransport", "TotemCore(", "run_seed(", "Violation("):
        assert needle in codes, f"no tested example uses {needle}"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_guide_example_prints_documented_output(index: int) -> None:
    """A tested example of docs/totem.md exits 0 and prints the output shown under it."""
    code, expected = EXAMPLES[index]
    problem = output_mismatch(GUIDE, index, expected, run_example(code, SOURCES))
    if problem:
        pytest.fail(problem)
