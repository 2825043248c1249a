"""The report's comparison: paired on the questions both architectures scored, NaN judgements left out."""

from __future__ import annotations

import math

import pandas as pd

from archon_search.evaluate import EvalResult, summarize
from archon_search.executor import Usage
from archon_search.search.report import compare


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
