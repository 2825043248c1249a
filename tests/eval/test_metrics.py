"""Metrics: pass@k against hand values, bootstrap CIs, paired p-values, coverage, questions.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archon_search.eval.metrics import (
    QUESTION_COLUMNS,
    accuracy_ci,
    coverage,
    paired_bootstrap_pvalue,
    pass_at_k,
    results_frame,
    save_questions_csv,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 3, 1, 0.3),
        (10, 3, 5, 1 - 21 / 252),
        (10, 0, 3, 0.0),
        (10, 10, 1, 1.0),
        (5, 2, 4, 1.0),
        (4, 1, 2, 0.5),
        (200, 20, 10, 1 - np.prod([(180 - i) / (200 - i) for i in range(10)])),
    ],
)
def test_pass_at_k_matches_hand_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 0), (5, 2, 6), (3, -1, 1)])
def test_pass_at_k_refuses_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_accuracy_ci_contains_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(3)
    small = (rng.random(30) < 0.6).astype(float).tolist()
    large = (rng.random(3000) < 0.6).astype(float).tolist()
    for scores in (small, large):
        mean, lo, hi = accuracy_ci(scores)
        assert mean == pytest.approx(np.mean(scores))
        assert 0 <= lo <= mean <= hi <= 1
    assert accuracy_ci(large)[2] - accuracy_ci(large)[1] < accuracy_ci(small)[2] - accuracy_ci(small)[1]
    mean, lo, hi = accuracy_ci(small, confidence=0.5)
    assert hi - lo < accuracy_ci(small, confidence=0.99)[2] - accuracy_ci(small, confidence=0.99)[1]
    with pytest.raises(ValueError):
        accuracy_ci([])


def test_accuracy_ci_is_the_wilson_interval_and_is_not_degenerate_at_small_n() -> None:
    # 12/12: the percentile bootstrap gave [100%, 100%]; Wilson's 95% low end is 12 / (12 + 1.96^2)
    mean, lo, hi = accuracy_ci([1.0] * 12)
    assert (mean, hi) == (1.0, 1.0)
    assert lo == pytest.approx(12 / (12 + 1.959964**2), abs=1e-6)
    # hand value for 6/12 (Wilson 95%): [0.2538, 0.7462]
    assert accuracy_ci([1.0] * 6 + [0.0] * 6)[1:] == pytest.approx((0.2538, 0.7462), abs=1e-4)


def test_accuracy_ci_covers_the_truth_about_as_often_as_it_says_at_n_12() -> None:
    rng = np.random.default_rng(0)
    truth, hits, runs = 0.8, 0, 2000
    for _ in range(runs):
        _, lo, hi = accuracy_ci((rng.random(12) < truth).astype(float).tolist())
        hits += lo <= truth <= hi
    assert hits / runs >= 0.9


def test_paired_pvalue_is_small_for_a_real_gain_and_large_otherwise() -> None:
    rng = np.random.default_rng(0)
    baseline = (rng.random(300) < 0.5).astype(float)
    better = np.maximum(baseline, (rng.random(300) < 0.3).astype(float))
    assert paired_bootstrap_pvalue(better, baseline) < 0.01
    assert paired_bootstrap_pvalue(baseline, better) > 0.9
    assert paired_bootstrap_pvalue(baseline, baseline) > 0.5
    noise = (rng.random(300) < 0.5).astype(float)
    assert paired_bootstrap_pvalue(noise, baseline) > 0.01
    with pytest.raises(ValueError):
        paired_bootstrap_pvalue([1.0, 0.0], [1.0])


def test_coverage_counts_questions_with_any_correct_candidate() -> None:
    assert coverage([[0, 1, 0], [0, 0], [1], []]) == 0.5
    assert coverage([[0.4, 0.6]], threshold=0.5) == 1.0
    assert coverage([]) == 0.0


def test_results_frame_orders_the_questions_csv_columns(tmp_path: Path) -> None:
    rows = [
        {"tokens": 12, "extracted": "4", "id": "a", "correct": 1, "answer": "\\boxed{4}", "reference": "4", "calls": 3},
        {"tokens": 20, "extracted": None, "id": "b", "correct": 0, "answer": "no", "reference": "5", "calls": 3},
    ]
    frame = results_frame(rows)
    assert list(frame.columns) == [*QUESTION_COLUMNS, "extracted"]
    path = save_questions_csv(frame, tmp_path / "run" / "questions.csv")
    back = pd.read_csv(path)
    assert list(back.columns[:6]) == list(QUESTION_COLUMNS)
    assert back["correct"].tolist() == [1, 0]
    assert list(results_frame([]).columns) == list(QUESTION_COLUMNS)
    with pytest.raises(ValueError, match="calls"):
        results_frame([{"id": "a", "correct": 1, "answer": "", "reference": "", "tokens": 1}])
