"""`archon-search run --bench mt-bench --judge NAME --budget B` end to end on scripted models: the search runs on
the judge's grades like on any other score, the judge never answers, its calls are reported apart from the
architecture's, and answers the judge gave no readable grade for are left out rather than scored 0."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.core.items import Item
from archon_search.datasets.mtbench import MtBench
from archon_search.eval.benchmark import split_items
from archon_search.lang.validate import load_architecture
from archon_search.scoring.judge import GRADE_REMINDER

REPO_ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = REPO_ROOT.parent / "shared" / "data" / "mt_bench_questions.jsonl"
BUDGET = 4
TRIALS = 3
LIMIT = 3
TURNS = 2  # every MT-Bench question has two turns
JUDGE = "grader"
GOOD = "GOOD ANSWER: a careful, complete and accurate reply."
POOR = "POOR ANSWER: no idea."
GOOD_GRADE, POOR_GRADE = 9, 3
FINISHED = ("COMPLETE", "PRUNED")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not QUESTIONS.is_file(), reason=f"MT-Bench data not present at {QUESTIONS}"),
]


def score(grade: float) -> float:
    """What the search sees of a 1-10 grade (archon_search.scoring.judge.normalized)."""
    return (grade - 1) / 9


def dev_test() -> tuple[list[Item], list[Item]]:
    """The questions the run sees: the first LIMIT dev and LIMIT test items of the seeded split."""
    dev, test = split_items(MtBench().load(QUESTIONS), 0)
    return dev[:LIMIT], test[:LIMIT]


def needle(item: Item) -> str:
    """A piece of the item's first turn that the judge's prompts for both its turns contain."""
    return item.prompt.strip()[:60]


def models_file(path: Path, judge_by_prompt: dict[str, str], judge_responses: list[str]) -> Path:
    """Two answering models, one good and one poor, and the scripted judge (its `by_prompt` tried in order)."""
    models = {
        "good": {"backend": "scripted", "responses": [GOOD]},
        "poor": {"backend": "scripted", "responses": [POOR]},
        JUDGE: {"backend": "scripted", "by_prompt": judge_by_prompt, "responses": judge_responses},
    }
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False, width=200))
    return path


FAIR_JUDGE = {
    "GOOD ANSWER": f"Accurate and helpful.\nRating: [[{GOOD_GRADE}]]",
    "POOR ANSWER": f"Unhelpful.\nRating: [[{POOR_GRADE}]]",
}


def search(tmp_path: Path, models: Path):
    args = [
        "run",
        "--bench",
        "mt-bench",
        "--data",
        str(QUESTIONS),
        "--judge",
        JUDGE,
        "--budget",
        str(BUDGET),
        "--models",
        str(models),
        "--trials",
        str(TRIALS),
        "--limit",
        str(LIMIT),
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(tmp_path / "c.sqlite"),
    ]
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def read_traces(out: Path) -> dict[str, list[dict]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted((out / "traces").glob("*.jsonl"))
    }


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory) -> Path:
    """One search on MT-Bench judged by the fair judge; the tests below read its run folder."""
    tmp_path = tmp_path_factory.mktemp("judged")
    result = search(tmp_path, models_file(tmp_path / "M.yaml", FAIR_JUDGE, ["Rating: [[5]]"]))
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def graded_trials(out: Path) -> pd.DataFrame:
    """The run's trials.csv, checked: every trial finished, and the baselines scored by the judge's grades of
    their answers (`good` always 9, `poor` always 3)."""
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == TRIALS and trials["state"].isin(FINISHED).all()
    assert trials["dev_score"].between(0, 1).all()
    baselines = trials.set_index("baseline")["dev_score"]
    assert baselines["single-good"] == pytest.approx(score(GOOD_GRADE))
    assert baselines["single-poor"] == pytest.approx(score(POOR_GRADE))
    return trials


def test_the_search_runs_on_the_judges_grades(judged_run):
    out = judged_run
    for name in ("trials.csv", "best.yaml", "report.md", "run.json", "questions.csv", "study.db"):
        assert (out / name).is_file(), name
    # the judge's grades are the scores: every answer of `good` got 9, every answer of `poor` 3
    trials = graded_trials(out)
    run = json.loads((out / "run.json").read_text())
    assert trials.set_index("number").loc[run["best_trial"], "dev_score"] == pytest.approx(score(GOOD_GRADE))
    report = (out / "report.md").read_text()
    assert "mt-bench" in report and f"budget {BUDGET}" in report and "baseline single-poor" in report
    # the best beats the poor baseline on the held-out questions too
    assert f"{100 * score(GOOD_GRADE):.1f}%" in report and f"{100 * score(POOR_GRADE):.1f}%" in report


def test_the_judge_never_answers(judged_run):
    out = judged_run
    run = json.loads((out / "run.json").read_text())
    assert run["models"] == ["good", "poor"]
    archs = sorted((out / "archs").glob("trial-*.yaml"))
    assert len(archs) == TRIALS
    for path in [*archs, out / "best.yaml"]:
        arch = load_architecture(path, budget=BUDGET).arch
        assert JUDGE not in arch.models, path.name
        used = {getattr(unit, "model", None) for layer in arch.layers for unit in layer.units}
        assert used - {None} <= {"good", "poor"}, path.name
    for item, events in read_traces(out).items():
        models = {call["model"] for e in events if e["kind"] == "layer" for call in e["calls"]}
        assert models and JUDGE not in models, item


def test_judge_calls_are_reported_apart_and_the_architecture_stays_in_budget(judged_run):
    out = judged_run
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["static_calls"] <= BUDGET).all()
    # every turn of every question is one query: at most BUDGET calls each, judge calls not among them
    assert (trials["calls_per_query"] <= BUDGET).all()
    assert (trials["backend_calls"] == trials["calls_per_query"] * trials["dev_n"] * TURNS).all()
    best = load_architecture(out / "best.yaml", budget=BUDGET)
    assert best.calls_per_query <= BUDGET

    questions = pd.read_csv(out / "questions.csv")
    assert len(questions) == LIMIT
    for column in ("judge_calls", "judge_tokens", "judge_cost", "grade", "unparsed", "category"):
        assert column in questions.columns, column
    assert (questions["judge_calls"] == TURNS).all(), "one judge call per turn, none retried"
    assert (questions["unparsed"] == 0).all() and (questions["grade"] == GOOD_GRADE).all()
    assert (questions["calls"] == best.calls_per_query * TURNS).all()

    traces = read_traces(out)
    assert len(traces) == LIMIT
    for item, events in traces.items():
        head = next(e for e in events if e["kind"] == "question")
        assert head["judge"]["usage"]["calls"] == TURNS
        assert [t["value"] for t in head["judge"]["turns"]] == [GOOD_GRADE] * TURNS
        per_turn: dict[int, int] = defaultdict(int)
        for e in events:
            if e["kind"] == "layer":
                per_turn[e["turn"]] += e["usage"]["calls"]
        assert sorted(per_turn) == list(range(TURNS)) and max(per_turn.values()) <= BUDGET, item
        row = questions.set_index(questions["id"].astype(str)).loc[item]
        assert row["calls"] == sum(per_turn.values())


def test_calls_per_query_in_trials_csv_is_within_the_budget_for_multi_turn_items(judged_run):
    trials = pd.read_csv(judged_run / "trials.csv")
    assert "best-of-3" in set(trials["baseline"].dropna())
    assert (trials["calls_per_query"] <= BUDGET).all(), trials[["number", "baseline", "calls_per_query"]]


def test_unreadable_judgements_are_left_out_not_scored_zero(tmp_path, caplog):
    dev, test = dev_test()
    # the judge writes no grade at all for one dev and one test question (not even when reminded)
    garbage = "I would rather talk about the weather."
    judge = {needle(dev[0]): garbage, needle(test[0]): garbage, GRADE_REMINDER[:40]: "Still no opinion."}
    with caplog.at_level("WARNING", logger="archon_search.scoring.judge"):
        result = search(tmp_path, models_file(tmp_path / "M.yaml", judge | FAIR_JUDGE, ["Rating: [[5]]"]))
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    unread_items = {r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records if "no readable judgement" in r.message}
    assert unread_items == {dev[0].id, test[0].id}
    # the mean of the two graded questions; as a 0 the unreadable one would pull single-good to 2/3 of that
    trials = graded_trials(out)

    questions = pd.read_csv(out / "questions.csv").set_index("id")
    questions.index = questions.index.astype(str)
    unread = questions.loc[test[0].id]
    assert math.isnan(unread["correct"]) and math.isnan(unread["grade"])
    assert unread["unparsed"] == TURNS
    assert unread["judge_calls"] == 2 * TURNS, "each unreadable reply is asked again once, with the format"
    graded = questions.drop(index=test[0].id)
    assert graded["correct"].tolist() == pytest.approx([score(GOOD_GRADE)] * (LIMIT - 1))
    assert (graded["unparsed"] == 0).all()
    head = next(e for e in read_traces(out)[test[0].id] if e["kind"] == "question")
    assert all(t["value"] is None and t["outputs"] == [garbage, "Still no opinion."] for t in head["judge"]["turns"])
    # the report's test accuracy is over the graded questions only
    assert f"best (baseline single-good) | {trials.set_index('baseline').loc['single-good', 'number']} | 88.9%" in (
        (out / "report.md").read_text()
    )


def test_a_judge_that_never_grades_is_not_read_as_zero_scores(tmp_path):
    result = search(tmp_path, models_file(tmp_path / "M.yaml", {}, ["I do not grade answers."]))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "no readable grade" in errors[0] and "--judge" in errors[0], result.output
    # the first trial failed (no score was recorded as a 0); a resume would run it again
    study = optuna.load_study(study_name="mt-bench-b4", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert study.trials[0].state.name == "FAIL" and study.trials[0].values is None
    assert all(t.state.name in ("FAIL", "WAITING") for t in study.trials)


def test_the_judge_named_in_a_benchmark_file_is_not_searched_either(tmp_path):
    bench = tmp_path / "open.yaml"
    data = REPO_ROOT / "examples" / "example-open-ended.jsonl"
    bench.write_text(
        yaml.safe_dump(
            {
                "name": "open",
                "data": str(data),
                "prompt_field": "prompt",
                "reference_field": "reference",
                "id_field": "id",
                "scorer": "judge",
                "judge": JUDGE,
                "judge_mode": "single",
            }
        )
    )
    models = models_file(tmp_path / "M.yaml", FAIR_JUDGE, ["Rating: [[5]]"])
    args = ["run", "--bench", str(bench), "--budget", "2", "--models", str(models), "--trials", "2", "--limit", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["models"] == ["good", "poor"]
