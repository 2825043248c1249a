"""The constructed landscape: its ground truth agrees with its simulation, its optimum is no baseline, and
TPE finds (near) that optimum more often than random search at the same trial count."""

from __future__ import annotations

import asyncio
import math

import optuna
import pytest

from archon_search.evaluate import evaluate
from archon_search.search.runner import SearchConfig, run_search
from archon_search.search.space import baselines, load_space, point_architecture, space_context, suggest_point
from archon_search.validate import validate_text
from benchmarks.landscape import SPACE_FILE, Landscape, best_in_space

BUDGET = 6
EVERY_OP = """
name: every-op
layers:
  - generator: [{model: alpha, samples: 3, temperature: 0.5}, {model: beta, samples: 1, temperature: 1.0}]
  - critic: {model: beta}
  - ranker: {model: beta, top_k: 2}
  - fuser: {model: beta, samples: 2}
  - voter: {}
"""
VERIFIED = """
name: verified
layers:
  - generator: {model: alpha, samples: 3, temperature: 0.9}
  - verifier: {model: beta}
  - voter: {}
"""


@pytest.fixture(scope="module")
def optimum():
    landscape = Landscape(n_items=80)
    space = load_space(SPACE_FILE)
    ctx = space_context(space, landscape.model_specs(), BUDGET, "answer")
    return landscape, space, ctx, best_in_space(landscape, space, ctx)


@pytest.mark.parametrize("text", [EVERY_OP, VERIFIED])
def test_the_expected_score_matches_the_simulated_accuracy(text):
    landscape = Landscape(n_items=1000, seed=3)
    checked = validate_text(text, models=landscape.model_specs())
    expected = landscape.expected_score(checked)
    result = asyncio.run(
        evaluate(checked, landscape.benchmark(), landscape.items, landscape.backends(), chunk_size=1000)
    )
    standard_error = math.sqrt(expected * (1 - expected) / len(landscape.items))
    assert abs(result.summary.accuracy - expected) < 4 * standard_error


def test_the_optimum_of_the_small_space_mixes_models_and_beats_every_baseline(optimum):
    landscape, space, ctx, (best, score) = optimum
    ops = [layer.op for layer in best.arch.layers]
    assert ops[:1] == ["generator"] and "ranker" in ops
    assert best.calls_per_query <= BUDGET
    for baseline in baselines(space, ctx):
        fixed = optuna.trial.FixedTrial(baseline.params)
        checked = point_architecture(suggest_point(fixed, space, ctx), space, ctx, baseline.name)
        assert landscape.expected_score(checked) < 0.95 * score


def _found(landscape, tmp_path, sampler: str, seed: int) -> float:
    config = SearchConfig(
        bench="landscape",
        budget=BUDGET,
        # the median TPE search needs 36 trials to reach 95% of the optimum (benchmarks/speed_search.py)
        trials=60,
        space_file=SPACE_FILE,
        sampler=sampler,
        seed=seed,
        out=tmp_path / f"{sampler}-{seed}",
    )
    result = run_search(
        config,
        benchmark=landscape.benchmark(),
        models=landscape.model_specs(),
        backends=landscape.backends(),
        show_progress=False,
    )
    return landscape.expected_score(result.best)


def test_tpe_reaches_the_optimum_more_often_than_random_search(optimum, tmp_path):
    landscape, _, _, (_, score) = optimum
    seeds = range(4)
    tpe = [_found(landscape, tmp_path, "tpe", seed) for seed in seeds]
    random = [_found(landscape, tmp_path, "random", seed) for seed in seeds]
    hits = {name: sum(s >= 0.95 * score for s in found) for name, found in (("tpe", tpe), ("random", random))}
    assert hits["tpe"] > hits["random"], (tpe, random, score)
    assert sum(tpe) > sum(random)
