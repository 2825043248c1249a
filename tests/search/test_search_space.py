"""The search space: its YAML, every point valid and within the budget as asked, deep stages, baselines."""

from __future__ import annotations

import optuna
import pytest

from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import check_architecture
from archon_search.search.space import (
    FuseUnit,
    GenUnit,
    Point,
    SpaceError,
    Stage,
    baselines,
    load_space,
    point_architecture,
    space_context,
    suggest_point,
)

MODELS = {"small": ScriptedModel(backend="scripted"), "large": ScriptedModel(backend="scripted")}
KNOWN_PARAMS = {
    "gen_units",
    *(f"gen{i}_{p}" for i in range(5) for p in ("model", "samples", "temperature")),
    "stages",
    *(f"stage{s}_{p}" for s in range(3) for p in ("critic", "critic_model", "ranker", "ranker_model", "ranker_top_k")),
    *(f"stage{s}_{p}" for s in range(3) for p in ("ranker_first", "verifier", "verifier_model", "unit_tests")),
    *(f"stage{s}_{p}" for s in range(3) for p in ("tests_model", "tests_mode", "num_tests", "tests_top_k")),
    *(f"stage{s}_units" for s in range(3)),
    *(f"stage{s}_unit{j}_{p}" for s in range(3) for j in range(3) for p in ("model", "samples")),
    "ranker",
    "ranker_model",
    "ranker_top_k",
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
    assert space.generator.units == (1, 5)
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
def test_every_point_is_a_valid_architecture_within_the_budget_as_asked(kind, budget):
    space = load_space()
    ctx = space_context(space, MODELS, budget, kind)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
    for _ in range(40):
        trial = study.ask()
        checked = point_architecture(suggest_point(trial, space, ctx), space, ctx, "p")
        again = check_architecture(checked.arch.to_yaml_obj(), "p", MODELS, budget)
        assert again.calls_per_query == checked.calls_per_query <= budget
        ops = [layer.op for layer in checked.arch.layers]
        assert ("voter" in ops) <= (kind != "judge")
        assert ("unit_test_generator" in ops) <= (kind == "code")
        assert set(trial.params) <= KNOWN_PARAMS, set(trial.params) - KNOWN_PARAMS
        study.tell(trial, 0.0)


def _ops(checked):
    return [layer.op for layer in checked.arch.layers]


def test_the_stored_parameters_describe_exactly_the_scored_architecture():
    # at budget 8 the old space repaired 78% of proposals, dropping the verifier of most that asked for one
    space = load_space()
    ctx = space_context(space, MODELS, 8, "answer")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    with_verifier = 0
    for _ in range(150):
        trial = study.ask()
        scored = point_architecture(suggest_point(trial, space, ctx), space, ctx, "p")
        rebuilt = point_architecture(suggest_point(optuna.trial.FixedTrial(trial.params), space, ctx), space, ctx, "p")
        assert rebuilt.arch.to_yaml_obj() == scored.arch.to_yaml_obj()
        ops = _ops(scored)
        verifiers = trial.params.get("verifier", False) + sum(
            trial.params.get(f"stage{s}_verifier", False) for s in range(trial.params.get("stages", 0))
        )
        assert verifiers == ops.count("verifier")
        assert trial.params.get("ranker", False) == (
            ops.count("ranker") > sum(trial.params.get(f"stage{s}_ranker", False) for s in range(3))
        )
        assert ops.count("fuser") == trial.params.get("stages", 0)
        samples = sum(trial.params[f"gen{i}_samples"] for i in range(trial.params["gen_units"]))
        assert scored.arch.layers[0].units and sum(u.samples for u in scored.arch.layers[0].units) == samples
        with_verifier += "verifier" in ops
        study.tell(trial, 0.0)
    assert with_verifier > 10


def test_the_space_holds_archons_deep_designs_within_the_budget():
    space = load_space()
    ctx = space_context(space, MODELS, 40, "answer")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    shapes = set()
    for _ in range(200):
        trial = study.ask()
        checked = point_architecture(suggest_point(trial, space, ctx), space, ctx, "p")
        ops = _ops(checked)
        # R3 holds everywhere: a critic is immediately followed by a ranker or a fuser
        assert all(ops[i + 1] in ("ranker", "fuser") for i, op in enumerate(ops) if op == "critic")
        fusers = [layer for layer in checked.arch.layers if layer.op == "fuser"]
        shapes.add((len(fusers), any(len({u.model for u in f.units}) > 1 for f in fusers), "critic" in ops))
        study.tell(trial, 0.0)
    assert {(3, True, True), (2, True, True), (0, False, False)} <= shapes


def test_a_deep_point_makes_the_layers_of_its_stages_in_order():
    stage = Stage((FuseUnit("small", 2), FuseUnit("large")), critic="small", ranker="large", ranker_top_k=2)
    point = Point(generator=(GenUnit("small", 3, 0.7),), stages=(stage, Stage((FuseUnit("large"),))), verifier="small")
    space = load_space()
    checked = point_architecture(point, space, space_context(space, MODELS, 16, "answer"), "deep")
    assert _ops(checked) == ["generator", "critic", "ranker", "fuser", "fuser", "verifier"]
    assert [u.model for u in checked.arch.layers[3].units] == ["small", "large"]
    with pytest.raises(SpaceError, match="above the budget of 4"):
        point_architecture(point, space, space_context(space, MODELS, 4, "answer"), "deep")


def test_a_space_whose_smallest_point_is_over_the_budget_is_refused(tmp_path):
    named = tmp_path / "space.yaml"
    named.write_text("generator: {units: [3, 3], samples: [1, 2]}\n")
    with pytest.raises(SpaceError, match="smallest architecture makes 3 LM calls"):
        space_context(load_space(named), MODELS, 2, "answer")


def test_units_get_the_benchmarks_max_tokens_unless_the_space_sets_them(tmp_path):
    point = Point(generator=(GenUnit("small", 2, 0.7),), stages=(Stage((FuseUnit("large"),)),))
    ctx = space_context(load_space(), MODELS, 6, "answer", max_tokens=1024)
    checked = point_architecture(point, load_space(), ctx, "p")
    assert {checked.arch.max_tokens(u) for layer in checked.arch.layers for u in layer.units} == {1024}
    named = tmp_path / "space.yaml"
    named.write_text("max_tokens: 64\n")
    ctx = space_context(load_space(named), MODELS, 6, "answer", max_tokens=1024)
    checked = point_architecture(point, load_space(named), ctx, "p")
    assert {checked.arch.max_tokens(u) for layer in checked.arch.layers for u in layer.units} == {64}


def _baseline_arch(space, ctx, params):
    return point_architecture(suggest_point(optuna.trial.FixedTrial(params), space, ctx), space, ctx, "b")


def test_baselines_are_one_call_per_model_and_self_consistency_at_the_budget():
    space = load_space()
    ctx = space_context(space, MODELS, 8, "answer")
    found = {b.name: b for b in baselines(space, ctx)}
    assert list(found) == ["single-small", "single-large", "self-consistency-8"]
    single = _baseline_arch(space, ctx, found["single-large"].params)
    assert single.calls_per_query == 1
    assert single.arch.layers[0].units[0].model == "large"
    sc = _baseline_arch(space, ctx, found["self-consistency-8"].params)
    assert sc.calls_per_query == 8
    assert _ops(sc) == ["generator", "voter"]


def test_without_an_extractor_the_sampling_baseline_is_best_of_with_a_ranker():
    space = load_space()
    ctx = space_context(space, MODELS, 5, "judge")
    found = {b.name: b for b in baselines(space, ctx)}
    assert "best-of-4" in found
    best_of = _baseline_arch(space, ctx, found["best-of-4"].params)
    assert best_of.calls_per_query == 5
    assert _ops(best_of) == ["generator", "ranker"]


def test_a_budget_of_one_leaves_only_the_single_calls():
    space = load_space()
    ctx = space_context(space, None, 1, "answer")
    assert [b.name for b in baselines(space, ctx)] == ["single-embedded"]
