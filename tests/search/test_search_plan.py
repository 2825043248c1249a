"""The plan a search states before it spends anything, and its ETA once trials have been timed."""

from __future__ import annotations

from pathlib import Path

from archon_search.lang.spec import ScriptedModel
from archon_search.search.plan import SearchPlan, eta_seconds, eta_text


def plan(**changes) -> SearchPlan:
    fields = {
        "bench": "math",
        "budget": 32,
        "trials": 20,
        "dev_n": 50,
        "test_n": 50,
        "models": {"solver": ScriptedModel(backend="scripted")},
        "baselines": [("single-solver", 1), ("self-consistency-32", 32)],
        "max_tokens": 1024,
        "out": Path("results/math-b32"),
    }
    return SearchPlan(**(fields | changes))


def test_the_plan_names_models_questions_baselines_bounds_and_output():
    text = "\n".join(plan().lines())
    assert "math, at most 32 LM calls per question, 20 trials" in text
    assert "solver (scripted)" in text
    assert "50 dev (searched on), 50 test (held out)" in text
    assert "self-consistency-32 (32 calls per question)" in text
    # 20 trials x 32 calls x 50 dev questions, then the best (32) and the baselines (1 + 32) on 50 test questions
    assert "at most 35,250 LM calls (32,000 searching, 3,250 on test)" in text
    assert f"{35_250 * 1024:,} generated tokens" in text
    assert "output: results/math-b32" in text


def test_a_resumed_plan_says_how_many_trials_the_study_holds():
    assert "; 7 already in the study" in plan(resumed_trials=7).lines()[0]


def test_the_eta_is_the_mean_trial_time_times_the_trials_left():
    assert eta_seconds([], remaining=5) is None and eta_text(None) == "ETA after the first trial"
    # trials of 60 s: 4 left, the running one 20 s in -> 220 s
    assert eta_seconds([50.0, 70.0], remaining=4, running_for=20.0) == 220.0
    assert eta_seconds([10.0], remaining=1, running_for=30.0) == 0.0
    assert eta_text(220.0) == "ETA 3m40s" and eta_text(7260.0) == "ETA 2h01m"
