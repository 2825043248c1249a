"""The MATH scorer: `\\boxed{}` extraction and math-verify equivalence, bounded in time off the main thread."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from archon_search.core.items import Item
from archon_search.scoring.answers import last_boxed
from archon_search.scoring.mathverify import canonical_latex, math_equal
from archon_search.scoring.scorers import MathScorer

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{1}{2}", r"\dfrac{1}{2}"),
    (r"\frac{1}{2}", r"\dfrac12"),
    (r"\frac{1}{2}", "1/2"),
    (r"\frac{5}{6}", r"\frac{10}{12}"),
    (r"\frac{14}{3}", r"4\frac{2}{3}"),
    ("5.25", r"\frac{21}{4}"),
    (r"90^\circ", "90"),
    ("90", r"90^{\circ}"),
    ("10", "10.0"),
    ("1000", "1,000"),
    ("-2", "- 2"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"6\sqrt{2}", r"\sqrt{72}"),
    (r"\sqrt{3}/3", r"\frac{\sqrt{3}}{3}"),
    ("x^2+1", "1+x^2"),
    ("2i", "2 i"),
    (r"\infty", r"\infty"),
    ("[2,5)", "[2, 5)"),
    (r"(-\infty,0]", r"(-\infty, 0]"),
    (r"(2, \infty)", r"(2,\infty)"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    ("(2,3)", "(2, 3)"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"\text{Evelyn}", "Evelyn"),
    (r"\text{(C)}", "C"),
    (r"\$18", "18"),
    ("3", "x=3"),
]

NOT_EQUIVALENT = [
    ("[2,5)", "(2,5)"),
    (r"(-\infty,0]", r"(-\infty,0)"),
    ("(2,3)", "(3,2)"),
    (r"\{1,2\}", r"\{1,3\}"),
    ("5", "6"),
    ("10", "100"),
    ("-2", "2"),
    ("5.25", "5.2"),
    ("0.333", r"\frac{1}{3}"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    (r"\sqrt{2}", "2"),
    (r"2\sqrt{2}", r"2\sqrt{3}"),
    ("x^2+1", "x^2-1"),
    (r"90^\circ", "45"),
    (r"\infty", r"-\infty"),
    (r"\text{Evelyn}", r"\text{Bob}"),
    ("5", ""),
]


@pytest.mark.parametrize(("reference", "answer"), EQUIVALENT)
def test_equivalent_answers_match(reference: str, answer: str) -> None:
    assert math_equal(reference, answer)


@pytest.mark.parametrize(("reference", "answer"), NOT_EQUIVALENT)
def test_different_answers_do_not_match(reference: str, answer: str) -> None:
    assert not math_equal(reference, answer)


def test_cosmetic_latex_is_compared_without_sympy() -> None:
    assert canonical_latex(r"\left( 3, \dfrac{\pi}{2} \right).") == canonical_latex(r"(3,\frac{\pi}{2})")
    assert canonical_latex(r"\text{ Evelyn }") == "Evelyn"


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        (r"so the answer is $\boxed{\frac{\sqrt{3}}{3}}$.", r"\frac{\sqrt{3}}{3}"),
        (r"first \boxed{1}, then \boxed{ \{1, 2\} }", r"\{1, 2\}"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\fbox{7}", "7"),
        (r"\boxed {x^{2^{3}}}", "x^{2^{3}}"),
        ("the answer is 5", None),
        (r"\boxed{\frac{1}{2}", None),
    ],
)
def test_last_boxed_handles_nested_braces(text: str, boxed: str | None) -> None:
    assert last_boxed(text) == boxed


def test_math_scorer_scores_the_last_boxed_answer() -> None:
    scorer = MathScorer()
    item = Item(id="q", prompt="1/2?", reference=r"\frac{1}{2}")
    assert scorer.score(item, r"Halving gives $\boxed{\dfrac{1}{2}}$.") == 1.0
    assert scorer.score(item, r"Maybe \boxed{0.5}, no: \boxed{0.25}.") == 0.0
    assert scorer.score(item, "The answer is 1/2.") == 0.0
    assert scorer.extract(r"thus \boxed{\frac{1}{2}}") == r"\frac{1}{2}"


def test_runaway_comparison_is_cut_off_and_the_pool_recovers() -> None:
    started = time.perf_counter()
    assert not math_equal("3", "2^{2^{2^{2^{2^{2}}}}}-1", timeout_s=1.0)
    assert time.perf_counter() - started < 60
    assert math_equal(r"\frac{1}{4}", "0.25")


def test_comparisons_work_from_worker_threads() -> None:
    pairs = EQUIVALENT[:6] + NOT_EQUIVALENT[:6]
    with ThreadPoolExecutor(max_workers=6) as pool:
        verdicts = list(pool.map(lambda pair: math_equal(*pair), pairs))
    assert verdicts == [True] * 6 + [False] * 6
