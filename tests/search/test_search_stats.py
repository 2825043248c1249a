"""The report's statistics: Wilson intervals at small n, the paired comparison (NaN judgements left out), the
multiple-comparisons note, the reading, pass@k and coverage."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from archon_search.core.usage import Usage
from archon_search.eval.evaluate import EvalResult, summarize
from archon_search.search.report import (
    Comparison,
    _stats_note,
    compare,
    detectable_gain,
    pass_at_k_table,
    reading,
    recommendation,
)


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


def _covered_result(scores: list[float], covered: list[float]) -> EvalResult:
    result = _result(scores)
    result.rows["covered"] = covered
    return EvalResult(result.rows, summarize(result.rows, Usage(), 1.0))


def test_the_reading_says_a_small_win_is_chance_and_what_selection_lost():
    best = _covered_result([1.0] * 4 + [0.0] * 8, [1.0] * 9 + [0.0] * 3)
    single = _covered_result([1.0] * 3 + [0.0] * 9, [1.0] * 3 + [0.0] * 9)
    text = "\n".join(reading(compare(("best", 3, best), [("single call", 0, single)])))
    assert "within chance" in text
    assert "on 75.0% of the questions" in text and "33.3%" in text
    assert "lost 41.7 points of what sampling found" in text
    assert "12 test questions" in text


def test_the_reading_calls_a_clear_win_reliable_and_a_loss_not_better():
    best = _result([1.0] * 40 + [0.0] * 10)
    weak = _result([0.0] * 40 + [1.0] * 10)
    strong = _result([1.0] * 50)
    lines = reading(compare(("best", 1, best), [("weak", 0, weak), ("strong", 2, strong)]))
    assert any("weak" in line and "reliably better" in line for line in lines)
    assert any("strong" in line and "is not better (-20.0 points" in line for line in lines)


def test_unparsed_judgements_are_left_out_of_accuracy_and_p_value():
    nan = float("nan")
    best = _result([1.0, 1.0, nan, 1.0, 0.0, 1.0])
    other = _result([0.0, nan, 1.0, 0.0, 0.0, 0.0])
    rows = compare(("best", 3, best), [("baseline one-call", 0, other)])
    assert rows[0].accuracy == 0.8 and rows[0].ci_low <= 0.8 <= rows[0].ci_high
    assert rows[1].accuracy == 0.2
    assert rows[1].p_value is not None and 0.0 < rows[1].p_value < 0.5


def test_nothing_scored_gives_nan_not_an_error():
    nan = float("nan")
    rows = compare(("best", 1, _result([nan, nan])), [("baseline", 0, _result([1.0, nan]))])
    assert math.isnan(rows[0].accuracy) and rows[1].p_value is None


def test_the_power_statement_says_what_n_questions_can_detect():
    # 50 questions on which the two disagree a third of the time: a gain needs about 20 points to show 80% of the time
    assert detectable_gain(1 / 3, 50, 0.05) == pytest.approx(0.203, abs=0.005)
    assert detectable_gain(1 / 3, 500, 0.05) == pytest.approx(0.064, abs=0.005)
    # even identical answers cannot make a 5-question test sensitive
    assert detectable_gain(0.0, 5, 0.05) > 0.5


def test_a_small_gain_on_few_questions_is_inconclusive_not_no_gain():
    # the best wins 10 questions the other misses, loses 5 the other gets: +10 points on 50 questions
    best = _result([1.0] * 30 + [0.0] * 20)
    other = _result([1.0] * 20 + [0.0] * 10 + [1.0] * 5 + [0.0] * 15)
    text = "\n".join(reading(compare(("best", 1, best), [("single", 0, other)])))
    assert "inconclusive" in text and "50 questions detect a true gain of" in text


def _comparison(label: str, number: int, accuracy: float, calls: float, p: float | None) -> Comparison:
    return Comparison(label, number, 50, accuracy, accuracy - 0.1, accuracy + 0.1, calls, 100.0 * calls, p)


def test_the_report_recommends_the_cheapest_architecture_not_reliably_worse_than_the_best():
    best = _comparison("best", 7, 0.60, 12.0, None)
    cheap_and_as_good = _comparison("baseline single", 0, 0.62, 1.0, 0.71)
    worse_and_cheaper = _comparison("baseline tiny", 1, 0.30, 0.5, 0.001)
    text = "\n".join(recommendation([best, cheap_and_as_good, worse_and_cheaper], 0.025))
    assert "Deploy baseline single (trial 0" in text and "1.00 LM calls per query against 12.00" in text
    alone = "\n".join(recommendation([best, worse_and_cheaper], 0.05))
    assert "Deploy the best (trial 7" in alone
