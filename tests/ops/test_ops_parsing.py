"""Each op's parsing of model output, garbled answers included, and its deterministic fallbacks."""

import pytest

from archon_search.ops.critic import parse_critiques
from archon_search.ops.ranker import parse_ranking
from archon_search.ops.unit_test_evaluator import parse_test_results
from archon_search.ops.unit_test_generator import parse_tests
from archon_search.ops.verifier import parse_verdict
from archon_search.ops.voter import normalize_answer


@pytest.mark.parametrize(
    "text,n,expected,guessed",
    [
        ("[2] > [1] > [3]", 3, [1, 0, 2], False),
        ("After careful thought, the ranking is: [3] > [1] > [2]. Hope this helps!", 3, [2, 0, 1], False),
        ("[2]>[3]", 3, [1, 2, 0], True),  # unranked ones follow in incoming order
        ("Candidate 2 is best, then candidate 1", 3, [1, 0, 2], True),
        ("[ 2 ] > [ 2 ] > [9] > [1]", 3, [1, 0, 2], True),  # duplicates and out-of-range indices dropped
        ("I cannot decide.", 3, None, False),
        ("", 2, None, False),
        ("[0] > [4]", 3, None, False),
    ],
)
def test_parse_ranking(text, n, expected, guessed):
    parsed = parse_ranking(text, n)
    assert (parsed.value if parsed else None) == expected
    assert parsed is None or (parsed.guess is not None) == guessed


def test_parse_critiques_per_candidate():
    text = "[1] Strengths: clear. Weaknesses: wrong sum.\n[2] Strengths: correct. Weaknesses: terse.\n"
    crit = parse_critiques(text, 2).value
    assert crit[0].startswith("Strengths: clear") and "wrong sum" in crit[0]
    assert crit[1].startswith("Strengths: correct")


def test_parse_critiques_variants_and_garbage():
    text = "Candidate 1: good\n**[2]** weak reasoning\n[7] ignored"
    assert parse_critiques(text, 2).value == {0: "good", 1: "weak reasoning"}
    assert parse_critiques("no structure at all", 3) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The math checks out.\nVerdict: correct", True),
        ("Verdict: incorrect", False),
        ("verdict - **Incorrect**", False),
        ("The answer is wrong.", False),
        ("Yes, this is right.", True),
        ("Hmm.", None),
        ("", None),
        ("It says correct but the final step is wrong.\nVerdict: correct", True),
    ],
)
def test_parse_verdict(text, expected):
    parsed = parse_verdict(text)
    assert (parsed.value if parsed else None) is expected


def test_parse_tests_execute_and_llm():
    text = "```python\nassert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(\nprint('x')\n```"
    assert parse_tests(text, "execute", 5) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert parse_tests(text, "execute", 1) == ["assert add(1, 2) == 3"]
    nl = "1. States the capital is Paris\n2) Mentions the Seine\n- Under 100 words"
    assert parse_tests(nl, "llm", 5) == ["States the capital is Paris", "Mentions the Seine", "Under 100 words"]


def test_parse_test_results():
    assert parse_test_results("1: pass\n2: fail\n3: PASS", 3) == [True, False, True]
    assert parse_test_results("Test 2 - passed", 3) == [False, True, False]
    assert parse_test_results("everything looks fine", 3) is None


def test_normalize_answer():
    assert normalize_answer(" \\frac{1}{2} ") == normalize_answer("\\frac{1}{ 2}")
    assert normalize_answer("Paris") == normalize_answer("paris")
