"""The report's statistics: Wilson intervals at small n, the multiple-comparisons note, pass@k and coverage."""

from __future__ import annotations

import pandas as pd
import pytest

from archon_search.evaluate import EvalResult, summarize
from archon_search.executor import Usage
from archon_search.search.report import _stats_note, compare, pass_at_k_table


def _result(scores: list[float]) -> EvalResult:
    frame = pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(len(scores))],
            "correct": scores,
            "answer": "",
            "reference": "",
            "calls": 1,
            "tokens": 10,
            "covered": float("nan"),
        }
    )
    return EvalResult(frame, summarize(frame, Usage(), 1.0))


def test_twelve_right_out_of_twelve_is_not_reported_as_certainly_100_percent():
    best = compare(("best", 1, _result([1.0] * 12)), [])[0]
    assert best.accuracy == best.ci_high == 1.0
    assert best.ci_low == pytest.approx(0.757, abs=1e-3)


def test_the_report_says_when_several_baselines_are_compared():
    best = _result([1.0] * 8 + [0.0] * 4)
    one = compare(("best", 1, best), [("baseline a", 0, _result([0.0] * 12))])
    three = compare(("best", 1, best), [(f"baseline {n}", i, _result([0.0] * 12)) for i, n in enumerate("abc")])
    assert "Wilson" in _stats_note(one) and "Bonferroni" not in _stats_note(one)
    assert "3 baselines" in _stats_note(three) and "0.017" in _stats_note(three)


def test_pass_at_k_and_coverage_come_from_the_first_layer_candidates():
    rows = pd.DataFrame({"candidates": [4, 4, 4], "candidates_correct": [0, 1, 4]})
    table = dict(pass_at_k_table(rows))
    assert set(table) == {1, 2, 4}
    assert table[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert table[2] == pytest.approx((0 + 0.5 + 1) / 3)
    assert table[4] == pytest.approx(2 / 3)  # coverage: a correct candidate on 2 of the 3 questions
    assert pass_at_k_table(pd.DataFrame({"correct": [1.0]})) == []
