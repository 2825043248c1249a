"""`run_search` and `archon-search run` end to end on the landscape: the run folder, resuming, Ctrl-C,
two objectives, refusing a mismatched study, and trials that must not count."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from run_states import trial_states
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.lang.validate import load_architecture
from archon_search.search.objective import SearchError
from archon_search.search.records import public_url
from archon_search.search.runner import SearchConfig, chunk_for, run_search
from archon_search.search.space import baselines, load_space, space_context
from archon_search.search.study import discard_reason
from perf.landscape import SPACE_FILE, Landscape

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BUDGET = 6


@pytest.fixture
def landscape() -> Landscape:
    return Landscape(n_items=24)


def search(landscape: Landscape, out: Path, trials: int, **options) -> object:
    config = SearchConfig(bench="landscape", budget=BUDGET, trials=trials, space_file=SPACE_FILE, out=out, **options)
    return landscape.search(config)


def load_study(out: Path, name: str = f"landscape-b{BUDGET}") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def test_a_run_writes_the_whole_run_folder(landscape, tmp_path):
    out = tmp_path / "run"
    result = search(landscape, out, trials=8, chunk=4)
    for name in ("study.db", "trials.csv", "best.yaml", "run.json", "report.md", "history.png", "questions.csv"):
        assert (out / name).is_file(), name
    assert list((out / "traces").glob("*.jsonl"))
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 8
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    for column in ("number", "state", "dev_score", "calls_per_query", "tokens_per_query", "cost", "pruned", "baseline"):
        assert column in trials.columns
    assert any(c.startswith("param_") for c in trials.columns)
    assert set(trials["baseline"].dropna()) == {"single-alpha", "single-beta", "self-consistency-6"}
    for number in trials["number"]:
        load_architecture(out / "archs" / f"trial-{number}.yaml", budget=BUDGET)
    best = load_architecture(out / "best.yaml", budget=BUDGET)
    assert best.calls_per_query <= BUDGET
    run = json.loads((out / "run.json").read_text())
    assert run["best_trial"] == result.best_trial
    assert {run["bench"], run["budget"], run["objective"]} == {"landscape", BUDGET, "accuracy"}
    scored = [t for t in run["trials"] if t["test_score"] is not None]
    assert {t["number"] for t in scored} >= {result.best_trial}
    report = (out / "report.md").read_text()
    assert "95% CI" in report and "baseline self-consistency-6" in report and "history.png" in report


def test_the_storage_url_is_recorded_without_its_password():
    assert public_url("postgresql://archon:s3cret@127.0.0.1:5432/study") == "postgresql://archon@127.0.0.1:5432/study"


def test_rerunning_resumes_and_never_redoes_a_finished_trial(landscape, tmp_path):
    out = tmp_path / "run"
    search(landscape, out, trials=5)
    before = {t.number: (t.datetime_complete, t.user_attrs["result"]) for t in load_study(out).get_trials()}
    result = search(landscape, out, trials=9)
    trials = load_study(out).get_trials()
    assert sorted(t.number for t in trials) == list(range(9))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert {t.number: (t.datetime_complete, t.user_attrs["result"]) for t in trials if t.number in before} == before
    assert result.trials == 9
    search(landscape, out, trials=9)
    assert len(load_study(out).get_trials()) == 9


def test_a_study_run_with_other_settings_is_refused(landscape, tmp_path):
    out = tmp_path / "run"
    search(landscape, out, trials=3)
    with pytest.raises(SearchError, match="objective 'accuracy'"):
        search(landscape, out, trials=3, objective="accuracy,calls")


def test_two_objectives_give_a_pareto_front(landscape, tmp_path):
    out = tmp_path / "run"
    result = search(landscape, out, trials=8, objective="accuracy,calls")
    run = json.loads((out / "run.json").read_text())
    assert run["pareto_front"] and result.best_trial in run["pareto_front"]
    assert (out / "pareto.png").is_file()
    assert "## Pareto front" in (out / "report.md").read_text()


def test_a_baseline_enqueued_twice_runs_once(landscape, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    space = load_space(SPACE_FILE)
    first = baselines(space, space_context(space, landscape.model_specs(), BUDGET, "answer"))[0]
    study = optuna.create_study(
        study_name=f"landscape-b{BUDGET}", storage=f"sqlite:///{out / 'study.db'}", direction="maximize"
    )
    for _ in range(2):
        study.enqueue_trial(first.params, user_attrs={"baseline": first.name})
    search(landscape, out, trials=6)
    trials = load_study(out).get_trials()
    discarded = [t for t in trials if "discarded" in t.user_attrs]
    assert len(discarded) == 1 and discarded[0].state == TrialState.FAIL
    counted = [t for t in trials if "discarded" not in t.user_attrs]
    assert len(counted) == 6
    assert [t.user_attrs.get("baseline") for t in counted].count(first.name) == 1
    assert len(pd.read_csv(out / "trials.csv")) == 6


def test_a_trial_that_starts_after_the_target_is_surplus():
    study = optuna.create_study()
    for value in (1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    trial = study.ask()
    assert discard_reason(study, trial.number, target=2) == "the study already has 2 trials"
    assert discard_reason(study, trial.number, target=3) is None


def _worker_scoring(out: Path) -> subprocess.Popen:
    """A landscape search in a subprocess, returned once 3 trials are done and the next one is scoring."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "perf.landscape", "--trials", "40", "--items", "24", "--latency-ms", "150"]
        + ["--sampler", "random", "--out", str(out)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = trial_states(out)
        if states.count("COMPLETE") + states.count("PRUNED") >= 3 and "SCORING" in states:
            break
        time.sleep(0.05)
    return worker


def test_ctrl_c_fails_the_running_trial_and_a_resume_reruns_it(landscape, tmp_path):
    out = tmp_path / "run"
    worker = _worker_scoring(out)
    try:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode != 0
    trials = load_study(out).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    search(landscape, out, trials=done + 2, sampler="random")
    after = load_study(out).get_trials()
    reruns = [t for t in after if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(reruns) == 1 and reruns[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert reruns[0].params == failed[0].params
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == done + 2


def test_a_resume_after_a_crash_ends_with_exactly_the_trials_asked_for(landscape, tmp_path):
    out = tmp_path / "run"
    worker = _worker_scoring(out)
    # a crash: no handler runs, the trial stays RUNNING in the study
    worker.kill()
    worker.wait(timeout=30)
    stuck = [t for t in load_study(out).get_trials() if t.state == TrialState.RUNNING]
    assert len(stuck) == 1
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in load_study(out).get_trials())
    started = time.monotonic()
    result = search(landscape, out, trials=done + 1, sampler="random")
    # the dead worker's trial is failed at once (its process is gone), not after the heartbeat's grace period
    assert time.monotonic() - started < 45
    after = load_study(out).get_trials()
    assert result.trials == done + 1
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == done + 1
    reruns = [t for t in after if t.user_attrs.get("retry_of") == stuck[0].number]
    assert len(reruns) == 1 and reruns[0].params == stuck[0].params
    states = set(pd.read_csv(out / "trials.csv")["state"])
    assert not states & {"RUNNING", "WAITING"}


SCRIPTED_MODELS = """
solver: {backend: scripted, responses: ["Two plus two.\\nAnswer: 4"]}
"""


def test_the_cli_runs_a_search_and_says_what_won(tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(SCRIPTED_MODELS)
    out = tmp_path / "run"
    args = ["run", "--budget", "3", "--bench", "arith", "--trials", "4", "--limit", "4", "--models", str(models)]
    result = CliRunner().invoke(app, [*args, "--no-cache", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "best: trial" in result.output
    assert (out / "report.md").is_file() and (out / "best.yaml").is_file()
    # not a terminal: one plain progress line per finished trial instead of the live view
    progress = [line for line in result.output.splitlines() if line.startswith("arith b3: ")]
    assert [line.split(",")[0] for line in progress] == [f"arith b3: {n}/4 trials" for n in range(1, 5)]
    # the plan comes before the first trial, and the ETA once a trial is timed
    lines = result.output.splitlines()
    assert lines[0].startswith("plan: arith, at most 3 LM calls per question, 4 trials")
    assert any(line.strip().startswith("baselines: single-solver (1 call per question)") for line in lines)
    assert "ETA " in progress[0] and "ETA after the first trial" not in progress[-1]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--objective", "accuracy,cost"], "--objective 'accuracy,cost' is not known"),
        (["--trials", "0"], "--trials must be at least 1"),
    ],
)
def test_the_cli_refuses_bad_options_in_one_line(tmp_path, option, message):
    result = CliRunner().invoke(
        app, ["run", "--budget", "2", "--bench", "arith", "--out", str(tmp_path / "r"), *option]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


@pytest.mark.skipif(
    all(importlib.util.find_spec(m) for m in ("torch", "scipy")), reason="the gp sampler's needs are installed"
)
def test_the_gp_sampler_without_torch_is_a_one_line_error(landscape, tmp_path):
    with pytest.raises(SearchError, match="--sampler gp needs .*pip install torch scipy"):
        search(landscape, tmp_path / "run", trials=2, sampler="gp")


def test_small_dev_sets_get_several_pruning_points_large_ones_big_chunks():
    assert [chunk_for(n) for n in (1, 6, 12, 30, 250)] == [4, 4, 4, 10, 16]


def test_gp_on_a_study_made_by_another_sampler_is_warned_about(caplog):
    from archon_search.search.runner import _warn_if_gp_inherits

    dist = optuna.distributions.IntDistribution(0, 3)
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"a": 1}, distributions={"a": dist}, value=0.5))
    with caplog.at_level("WARNING", logger="archon_search.search.runner"):
        _warn_if_gp_inherits(study)
    assert "another sampler" not in caplog.text
    both = {"a": 1, "b": 2}
    study.add_trial(optuna.trial.create_trial(params=both, distributions={"a": dist, "b": dist}, value=0.5))
    with caplog.at_level("WARNING", logger="archon_search.search.runner"):
        _warn_if_gp_inherits(study)
    assert "another sampler" in caplog.text and "new --out" in caplog.text


def test_a_resumed_random_search_proposes_new_points_not_the_first_sessions_again(landscape, tmp_path):
    out = tmp_path / "run"
    search(landscape, out, trials=8, sampler="random")
    first = {t.number: t.params for t in load_study(out).get_trials() if "baseline" not in t.user_attrs}
    search(landscape, out, trials=16, sampler="random")
    later = [t for t in load_study(out).get_trials() if t.number not in first and "baseline" not in t.user_attrs]
    assert len(later) == 8
    repeats = [t.number for t in later if t.params in first.values()]
    assert repeats == []


def test_the_sampler_seed_does_not_move_the_dev_test_split(landscape, tmp_path):
    search(landscape, tmp_path / "a", trials=3, seed=0)
    search(landscape, tmp_path / "b", trials=3, seed=3)
    first, second = (load_study(tmp_path / name).user_attrs for name in ("a", "b"))
    assert first["dev_questions"] == second["dev_questions"]
    search(landscape, tmp_path / "c", trials=3, seed=3, split_seed=7)
    assert load_study(tmp_path / "c").user_attrs["dev_questions"] != first["dev_questions"]
    assert json.loads((tmp_path / "c" / "run.json").read_text())["split_seed"] == 7


def test_eval_takes_the_split_seed_of_the_run_folder_the_architecture_is_in(landscape, tmp_path):
    from archon_search.cli import _split_seed

    out = tmp_path / "run"
    search(landscape, out, trials=3, split_seed=7)
    assert _split_seed(None, None, out / "best.yaml") == 7
    assert _split_seed(None, None, out / "archs" / "trial-0.yaml") == 7
    assert _split_seed(None, out, tmp_path / "elsewhere.yaml") == 7
    assert _split_seed(2, out, out / "best.yaml") == 2
    assert _split_seed(None, None, tmp_path / "elsewhere.yaml") == 0


def test_a_resume_is_refused_when_the_data_or_the_model_entries_changed(landscape, tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text('{"q": "a"}\n')
    out = tmp_path / "run"
    search(landscape, out, trials=3, data=data)
    data.write_text('{"q": "b"}\n')
    with pytest.raises(SearchError, match="with data "):
        search(landscape, out, trials=3, data=data)
    data.write_text('{"q": "a"}\n')
    config = SearchConfig(bench="landscape", budget=BUDGET, trials=3, space_file=SPACE_FILE, out=out, data=data)
    specs = landscape.model_specs()
    specs["alpha"] = specs["alpha"].model_copy(update={"price_in": 1.0})
    with pytest.raises(SearchError, match="model_entries"):
        run_search(
            config, benchmark=landscape.benchmark(), models=specs, backends=landscape.backends(), show_progress=False
        )


def test_small_dev_sets_are_not_pruned_larger_ones_by_a_paired_test():
    from archon_search.search.objective import Objective
    from archon_search.search.study import PairedSignPruner, make_pruner, sign_test_p

    assert sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert sign_test_p(3, 3) == pytest.approx(42 / 64)

    accuracy = Objective.parse("accuracy")
    assert isinstance(make_pruner(accuracy, "tpe", 12), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(accuracy, "tpe", 40), PairedSignPruner)
    assert isinstance(make_pruner(Objective.parse("accuracy,calls"), "tpe", 40), optuna.pruners.NopPruner)


def test_pruned_trials_say_why_and_the_report_counts_them(tmp_path):
    out = tmp_path / "run"
    search(Landscape(n_items=80), out, trials=14, sampler="random", chunk=8)
    trials = pd.read_csv(out / "trials.csv")
    pruned = trials[trials["state"] == "PRUNED"]
    assert len(pruned) and pruned["pruned_because"].str.contains("sign test").all()
    assert trials.loc[trials["state"] == "COMPLETE", "pruned_because"].isna().all()
    report = (out / "report.md").read_text()
    assert "paired sign test" in report and f"{len(pruned)} trial" in report
    small = tmp_path / "small"
    search(Landscape(n_items=24), small, trials=6, chunk=4)
    assert "PRUNED" not in set(pd.read_csv(small / "trials.csv")["state"])
    assert "no pruning: 12 dev questions" in (small / "report.md").read_text()
