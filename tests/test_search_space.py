"""The search space: its YAML, every point valid and within the budget, repairs, baselines."""

from __future__ import annotations

import optuna
import pytest

from archon_search.search.space import (
    GenUnit,
    Point,
    SpaceError,
    baselines,
    fit_to_budget,
    load_space,
    space_context,
    suggest_point,
)
from archon_search.spec import ScriptedModel
from archon_search.validate import check_architecture

MODELS = {"small": ScriptedModel(backend="scripted"), "large": ScriptedModel(backend="scripted")}
KNOWN_PARAMS = {
    "gen_units",
    *(f"gen{i}_{p}" for i in range(3) for p in ("model", "samples", "temperature")),
    "ranker",
    "ranker_model",
    "ranker_top_k",
    "fuser_layers",
    "fuser_units",
    "fuser_samples",
    "fuser_model",
    "critic",
    "critic_model",
    "verifier",
    "verifier_model",
    "unit_tests",
    "unit_tests_model",
    "unit_tests_num_tests",
    "voter",
}


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_built_in_space_loads_with_the_documented_ranges():
    space = load_space()
    assert space.generator.units == (1, 3)
    assert space.fuser.layers == (0, 3)
    assert space.models is None
    assert space.critic and space.ranker.enabled and space.verifier and space.voter and space.unit_tests.enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generator: {units: [1, 3], sample: [1, 2]}\n", "unknown field 'generator.sample'"),
        ("colour: blue\n", "unknown field 'colour'"),
        ("fuser: {layers: [3, 1]}\n", "low 3 is above high 1"),
        ("generator: {samples: [0, 4]}\n", "generator.samples: the low end must be at least 1"),
        ("generator: {temperature: [0.0, 3.0]}\n", "keep it within [0, 2]"),
        ("generator: [1, 2\n", "YAML syntax error"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_what_to_change(tmp_path, text, expected):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_the_context_resolves_models_and_refuses_impossible_budgets(tmp_path):
    space = load_space()
    assert space_context(space, None, 4, "answer").models == ("embedded",)
    assert space_context(space, MODELS, 4, "answer").models == ("small", "large")
    named = tmp_path / "space.yaml"
    named.write_text("models: [small, huge]\n")
    with pytest.raises(SpaceError, match="huge are not defined"):
        space_context(load_space(named), MODELS, 4, "answer")
    named.write_text("generator: {samples: [3, 8]}\n")
    with pytest.raises(SpaceError, match="above the budget of 2"):
        space_context(load_space(named), MODELS, 2, "answer")


def test_the_judge_model_is_not_searched_unless_it_is_the_only_one_or_named(tmp_path):
    space = load_space()
    assert space_context(space, MODELS, 4, "judge", judge="large").models == ("small",)
    assert space_context(space, None, 4, "judge", judge="embedded").models == ("embedded",)
    named = tmp_path / "space.yaml"
    named.write_text("models: [small, large]\n")
    assert space_context(load_space(named), MODELS, 4, "judge", judge="large").models == ("small", "large")


@pytest.mark.parametrize("kind", ["answer", "code", "judge"])
@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8, 16, 40])
def test_every_point_is_a_valid_architecture_within_the_budget(kind, budget):
    space = load_space()
    ctx = space_context(space, MODELS, budget, kind)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
    for _ in range(60):
        trial = study.ask()
        _, checked, notes = fit_to_budget(suggest_point(trial, space, ctx), space, ctx, "p")
        again = check_architecture(checked.arch.to_yaml_obj(), "p", MODELS, budget)
        assert again.calls_per_query == checked.calls_per_query <= budget
        ops = [layer.op for layer in checked.arch.layers]
        assert ("voter" in ops) <= (kind != "judge")
        assert ("unit_test_generator" in ops) <= (kind == "code")
        assert set(trial.params) <= KNOWN_PARAMS
        asked = suggest_point(optuna.trial.FixedTrial(trial.params), space, ctx)
        raw_calls = check_architecture({"name": "raw", "layers": asked.layers()}, "raw", MODELS).calls_per_query
        assert bool(notes) == (raw_calls > budget)
        study.tell(trial, 0.0)


def test_an_over_budget_point_is_repaired_by_cutting_samples_first():
    space = load_space()
    ctx = space_context(space, MODELS, 6, "answer")
    point = Point(generator=(GenUnit("small", 8, 0.7), GenUnit("large", 2, 0.7)), ranker="large", verifier="small")
    fixed, checked, notes = fit_to_budget(point, space, ctx, "p")
    assert checked.calls_per_query <= 6
    assert notes[0] == "gen0_samples -1"
    assert fixed.ranker == "large"


def test_units_get_the_benchmarks_max_tokens_unless_the_space_sets_them(tmp_path):
    point = Point(generator=(GenUnit("small", 2, 0.7),), fuser_layers=1, fuser_model="large")
    ctx = space_context(load_space(), MODELS, 6, "answer", max_tokens=1024)
    _, checked, _ = fit_to_budget(point, load_space(), ctx, "p")
    assert {checked.arch.max_tokens(u) for layer in checked.arch.layers for u in layer.units} == {1024}
    named = tmp_path / "space.yaml"
    named.write_text("max_tokens: 64\n")
    ctx = space_context(load_space(named), MODELS, 6, "answer", max_tokens=1024)
    _, checked, _ = fit_to_budget(point, load_space(named), ctx, "p")
    assert {checked.arch.max_tokens(u) for layer in checked.arch.layers for u in layer.units} == {64}


def test_repair_drops_the_most_optional_op_when_calls_tie():
    space = load_space()
    ctx = space_context(space, MODELS, 2, "answer")
    point = Point(generator=(GenUnit("small", 1, 0.7),), critic="small", ranker="small", verifier="small")
    _, checked, notes = fit_to_budget(point, space, ctx, "p")
    assert notes == ["dropped the verifier", "dropped the critic"]
    assert [layer.op for layer in checked.arch.layers] == ["generator", "ranker"]


def _baseline_arch(space, ctx, params):
    return fit_to_budget(suggest_point(optuna.trial.FixedTrial(params), space, ctx), space, ctx, "b")


def test_baselines_are_one_call_per_model_and_self_consistency_at_the_budget():
    space = load_space()
    ctx = space_context(space, MODELS, 8, "answer")
    found = {b.name: b for b in baselines(space, ctx)}
    assert list(found) == ["single-small", "single-large", "self-consistency-8"]
    _, single, notes = _baseline_arch(space, ctx, found["single-large"].params)
    assert not notes and single.calls_per_query == 1
    assert single.arch.layers[0].units[0].model == "large"
    _, sc, notes = _baseline_arch(space, ctx, found["self-consistency-8"].params)
    assert not notes and sc.calls_per_query == 8
    assert [layer.op for layer in sc.arch.layers] == ["generator", "voter"]


def test_without_an_extractor_the_sampling_baseline_is_best_of_with_a_ranker():
    space = load_space()
    ctx = space_context(space, MODELS, 5, "judge")
    found = {b.name: b for b in baselines(space, ctx)}
    assert "best-of-4" in found
    _, best_of, notes = _baseline_arch(space, ctx, found["best-of-4"].params)
    assert not notes and best_of.calls_per_query == 5
    assert [layer.op for layer in best_of.arch.layers] == ["generator", "ranker"]


def test_a_budget_of_one_leaves_only_the_single_calls():
    space = load_space()
    ctx = space_context(space, None, 1, "answer")
    assert [b.name for b in baselines(space, ctx)] == ["single-embedded"]


def test_a_gp_study_asks_every_parameter_on_every_trial_and_builds_the_same_point():
    space = load_space()
    ctx = space_context(space, MODELS, 8, "code")
    gp = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0), direction="maximize")
    tpe = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    names = set()
    for _ in range(5):
        trial = gp.ask()
        point = suggest_point(trial, space, ctx)
        names.add(frozenset(trial.params))
        # the unused parameters change nothing: define-by-run on the same values gives the same point
        assert suggest_point(optuna.trial.FixedTrial(trial.params), space, ctx) == point
        gp.tell(trial, 0.0)
    assert len(names) == 1 and {"gen2_model", "ranker_model", "critic_model", "unit_tests_model"} <= next(iter(names))
    trial = tpe.ask()
    suggest_point(trial, space, ctx)
    assert len(trial.params) < len(next(iter(names)))
