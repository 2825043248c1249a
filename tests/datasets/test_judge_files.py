"""User-defined open-ended benchmarks (scorer: judge): the example file, loading, errors, and scoring through the
registry with a scripted judge named in the file."""

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.open_ended import OpenEndedDataset
from archon_search.datasets.registry import get_dataset
from archon_search.eval.benchmark import make_benchmark
from archon_search.eval.evaluate import evaluate
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.runtime.pool import BackendPool

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-open-ended.yaml"


def test_example_file_loads_with_references_baselines_and_a_two_turn_item():
    bench = get_dataset(str(EXAMPLE))
    assert isinstance(bench, OpenEndedDataset) and bench.scorer == "judge"
    assert bench.judge.model == "embedded" and bench.judge.mode == "single"
    items = {i.id: i for i in bench.load()}
    assert len(items) == 6
    assert items["explain-tides"].reference and items["haiku-tea"].reference is None
    assert all(i.meta["baseline"] for i in items.values())
    plan = items["plan-trip"]
    assert len(plan.all_turns) == 2 and len(plan.meta["baseline"]) == 2
    assert items["train-meeting"].meta["category"] == "reasoning"


def bench_file(write_file, rows, **fields):
    write_file("\n".join(json.dumps(r) for r in rows) + "\n", "items.jsonl")
    spec = {"name": "mine", "data": "items.jsonl", "prompt_field": "q", "scorer": "judge"} | fields
    return write_file("\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.items()) + "\n", "bench.yaml")


def test_pairwise_needs_baselines(write_file):
    path = bench_file(
        write_file, [{"q": "Hi?", "b": "Hello."}, {"q": "Bye?"}], judge_mode="pairwise", baseline_field="b"
    )
    with pytest.raises(BenchmarkError, match=r"record 2: pairwise judging needs a baseline answer"):
        get_dataset(str(path)).load()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"judge_mode": "best"}, r"judge_mode: Input should be 'single' or 'pairwise'"),
        ({"judge_model": "x"}, r"unknown field 'judge_model' \(allowed: name, data"),
        ({"name": "Bad Name"}, r"name: String should match pattern"),
    ],
)
def test_file_mistakes_are_one_line_errors(write_file, fields, message):
    path = bench_file(write_file, [{"q": "Hi?"}], **fields)
    with pytest.raises(BenchmarkError, match=message) as caught:
        get_dataset(str(path))
    assert "\n" not in str(caught.value)


def test_bad_prompt_field_is_reported(write_file):
    path = bench_file(write_file, [{"q": ["ok", 3]}])
    with pytest.raises(BenchmarkError, match=r"record 1: field 'q' must be a non-empty string or list of strings"):
        get_dataset(str(path)).load()


def test_judge_named_in_the_file_scores_pairwise(write_file, tmp_path):
    path = bench_file(
        write_file,
        [{"q": "Greet me.", "b": "Hello."}, {"q": "Say bye.", "b": "Bye."}],
        judge="referee",
        judge_mode="pairwise",
        baseline_field="b",
    )
    dataset = get_dataset(str(path))
    models = {
        "m": ScriptedModel(backend="scripted", responses=["Good day to you!"]),
        # prefers our answer in both positions for the first item, always says A (position bias) for the second
        "referee": ScriptedModel(
            backend="scripted",
            by_prompt={"<answer_a>\nGood day to you!\n</answer_a>\n\n<answer_b>\nHello.": "[[A]]", "Greet": "[[B]]"},
            responses=["[[A]]"],
        ),
    }
    checked = validate_text("name: a\nlayers: [{generator: {model: m}}]", models=models)

    async def go():
        async with BackendPool({**models, **checked.arch.models}) as pool:
            bench = make_benchmark(dataset, pool, None)
            return await evaluate(checked, bench, bench.load(), pool, out_dir=tmp_path)

    result = asyncio.run(go())
    assert result.rows["correct"].tolist() == [1.0, 0.5]
    assert result.summary.accuracy == 0.75 and result.summary.judge_calls == 4 and result.summary.calls_per_query == 1


def test_eval_command_prints_judge_usage_and_per_category_scores(write_file, tmp_path):
    from typer.testing import CliRunner

    from archon_search.cli import app

    rows = [
        {"question_id": 1, "category": "math", "turns": ["1+1?", "Times 3?"]},
        {"question_id": 2, "category": "writing", "turns": ["A haiku.", "Shorter."]},
    ]
    questions = write_file("\n".join(json.dumps(r) for r in rows) + "\n", "questions.jsonl")
    models = write_file(
        'm: {backend: scripted, responses: ["An answer."]}\n'
        'referee: {backend: scripted, by_prompt: {"1+1": "[[10]]"}, responses: ["Rating: [[4]]"]}\n',
        "models.yaml",
    )
    arch = write_file("name: one\nlayers: [{generator: {model: m}}]\n")
    common = [
        "eval", str(arch), "--bench", "mt-bench", "--data", str(questions), "--models", str(models), "--no-cache",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    missing = CliRunner().invoke(app, common)
    assert missing.exit_code == 1 and "pass --judge NAME" in missing.output
    result = CliRunner().invoke(app, [*common, "--judge", "referee"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "judge calls (not counted in the budget)" in result.output and "per category" in result.output
    math_row = next(line for line in result.output.splitlines() if "│ math" in line)
    assert "1.000" in math_row and "10.00" in math_row
    saved = pd.read_csv(tmp_path / "out" / "questions.csv")
    assert saved["judge_calls"].tolist() == [2, 2] and saved["grade"].tolist() == [10.0, 4.0]
