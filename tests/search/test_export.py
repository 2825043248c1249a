"""`export`: a run folder's trial as a self-contained, annotated YAML file that validates, runs, and hits the cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from archon_search import Architecture
from archon_search.cli import app
from archon_search.eval.benchmark import get_benchmark
from archon_search.eval.evaluate import evaluate
from archon_search.lang.validate import load_architecture
from archon_search.runtime.cache import ResponseCache
from archon_search.runtime.pool import BackendPool
from archon_search.scoring.scorers import NUMBER_INSTRUCTION
from archon_search.search.export import ExportError, export_run, read_run
from archon_search.serve import BackgroundServer

SECRET = "sk-very-secret-value"
GSM8K = Path("/work/shared/data/gsm8k_test.jsonl")
ITEMS = 3
UPSTREAM = """
name: oracle
models:
  s:
    backend: scripted
    by_prompt:
      Janet: "She sells 9 eggs at $2 each, so she makes 18 dollars.\n#### 18"
      robe: "2 blue and 1 white make 3 bolts.\n#### 3"
    responses: ["I am not sure, maybe 7.\n#### 7"]
layers:
  - generator: {model: s}
"""


def trial_yaml(name: str, base_url: str, samples: int) -> dict:
    return {
        "name": name,
        "task": get_benchmark("gsm8k").task().model_dump(exclude_none=True),
        "models": {"remote": {"backend": "openai", "model": "oracle", "base_url": base_url}},
        "defaults": {"temperature": 0.7, "max_tokens": 64},
        "layers": [{"generator": {"model": "remote", "samples": samples}}, {"voter": {"top_k": 1}}],
    }


def make_run(root: Path, base_url: str = "http://127.0.0.1:9/v1") -> Path:
    """A run folder laid out as the search writes it: run.json, archs/trial-N.yaml, best.yaml."""
    run = root / "run-demo"
    (run / "archs").mkdir(parents=True)
    trials = [
        {
            "number": 0,
            "state": "COMPLETE",
            "baseline": "self-consistency",
            "dev_score": 0.5,
            "calls_per_query": 2.0,
            "tokens_per_query": 120.5,
        },
        {
            "number": 1,
            "state": "COMPLETE",
            "dev_score": 0.75,
            "test_score": 0.7,
            "calls_per_query": 3.0,
            "tokens_per_query": 180.25,
        },
        {"number": 2, "state": "PRUNED", "dev_score": None, "calls_per_query": None, "tokens_per_query": None},
    ]
    for number, samples in ((0, 2), (1, 3)):
        text = yaml.safe_dump(trial_yaml(f"trial-{number}", base_url, samples), sort_keys=False)
        (run / "archs" / f"trial-{number}.yaml").write_text(text)
    (run / "best.yaml").write_text((run / "archs" / "trial-1.yaml").read_text())
    run_json = {"bench": "gsm8k", "budget": 8, "study": "demo", "best_trial": 1, "trials": trials}
    (run / "run.json").write_text(json.dumps(run_json))
    return run


def test_exports_the_best_trial_with_a_header_and_full_model_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run = make_run(tmp_path)
    exported = export_run(run, tmp_path / "out" / "best.yaml")
    text = exported.path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert exported.trial.number == 1 and exported.checked.calls_per_query == 3
    assert f"trial 1 of run {run}" in header[0] and "study demo" in header[0]
    assert "dev score: 0.7500" in text and "test score: 0.7000" in text and "benchmark: gsm8k" in text
    assert "LM calls per query: 3 at most, 3 measured on dev" in text and "tokens per query: 180.25" in text
    assert "budget: 8 LM calls per query" in text
    assert SECRET not in text
    body = yaml.safe_load(text)
    assert body["models"]["remote"] == {
        "backend": "openai",
        "model": "oracle",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "OPENAI_API_KEY",
        "max_concurrency": 16,
        "structured_output": False,
    }
    assert body["task"] == {
        "benchmark": "gsm8k",
        "kind": "answer",
        "answer_format": "number",
        "instruction": NUMBER_INSTRUCTION,
    }
    assert "serving appends task.instruction to the first user message" in text


def test_export_validates_with_the_same_calls_per_query_and_loads_as_an_architecture(tmp_path):
    run = make_run(tmp_path)
    for number in (0, 1):
        out = tmp_path / f"t{number}.yaml"
        export_run(run, out, trial=number)
        source = load_architecture(run / "archs" / f"trial-{number}.yaml", budget=8)
        again = load_architecture(out, budget=8)
        assert again.calls_per_query == source.calls_per_query
        assert again.arch == source.arch
        assert Architecture.load(out, cache=False).calls_per_query == source.calls_per_query


def test_a_trial_without_scores_says_n_a(tmp_path):
    run = make_run(tmp_path)
    text = export_run(run, tmp_path / "t0.yaml", trial=0).path.read_text()
    assert "dev score: 0.5000; test score: n/a" in text
    assert text.startswith("# archon-search export of trial 0 (baseline self-consistency) of run ")


@pytest.mark.slow
def test_models_file_replaces_the_runs_entries(tmp_path):
    run = make_run(tmp_path)
    replacement = {
        "remote": load_architecture(run / "archs" / "trial-0.yaml")
        .arch.models["remote"]
        .model_copy(update={"base_url": "http://127.0.0.1:8000/v1"})
    }
    text = export_run(run, tmp_path / "prod.yaml", models=replacement).path.read_text()
    assert yaml.safe_load(text)["models"]["remote"]["base_url"] == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    ("setup", "trial", "says"),
    [
        ("run", 2, "no architecture for trial 2; trials with one: 0, 1"),
        ("run", 99, "no architecture for trial 99"),
        ("missing", None, "no such run folder"),
        ("empty", None, "not a run folder (no run.json)"),
        ("bad-json", None, "run.json: unreadable"),
        ("no-best", None, "no best trial yet; pass --trial N"),
    ],
)
def test_unexportable_runs_are_one_line_errors(tmp_path, setup, trial, says):
    run = make_run(tmp_path)
    if setup == "missing":
        run = tmp_path / "nowhere"
    elif setup == "empty":
        run = tmp_path / "empty"
        run.mkdir()
    elif setup == "bad-json":
        (run / "run.json").write_text("{oops")
    elif setup == "no-best":
        data = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps(data | {"best_trial": None}))
    with pytest.raises(ExportError) as caught:
        export_run(run, tmp_path / "x.yaml", trial=trial)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "x.yaml").exists()


def test_read_run_keeps_the_recorded_figures(tmp_path):
    record = read_run(make_run(tmp_path))
    assert record.bench == "gsm8k" and record.budget == 8 and record.best_trial == 1
    assert record.trials[0].test_score is None and record.trials[1].tokens_per_query == 180.25
    assert record.exported_trials() == [0, 1]


def test_cli_export_writes_the_file_or_fails_in_one_line(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "best.yaml"
    ok = CliRunner().invoke(app, ["export", str(run), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "trial 1" in ok.output and out.is_file()
    validated = CliRunner().invoke(app, ["validate", str(out), "--budget", "8"])
    assert validated.exit_code == 0 and "3 LM calls per query" in validated.output
    bad = CliRunner().invoke(app, ["export", str(run), "--out", str(out), "--trial", "7"])
    assert bad.exit_code == 1 and "no architecture for trial 7" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and "Traceback" not in bad.output


def test_round_trip_export_then_eval_scores_the_same_from_the_cache(tmp_path, write_file):
    """export -> validate -> same calls per query -> eval gives the same score, with zero model calls."""
    benchmark = get_benchmark("gsm8k")
    items = benchmark.load(GSM8K)[:ITEMS]
    upstream = Architecture.load(write_file(UPSTREAM, "upstream.yaml"), cache=False)
    cache = ResponseCache(tmp_path / "cache.sqlite")

    async def score(path: Path):
        checked = load_architecture(path, budget=8)
        async with BackendPool(checked.arch.models, cache=cache) as pool:
            return checked, (await evaluate(checked, benchmark, items, pool)).summary

    with BackgroundServer(upstream) as server:
        run = make_run(tmp_path, server.base_url)
        exported = export_run(run, tmp_path / "best.yaml")
        source, first = asyncio.run(score(run / "archs" / "trial-1.yaml"))
        deployed, second = asyncio.run(score(exported.path))
    assert deployed.calls_per_query == source.calls_per_query == 3
    assert first.backend_calls == 3 * ITEMS and second.backend_calls == 0
    assert second.accuracy == first.accuracy == pytest.approx(2 / 3)
    assert second.calls_per_query == first.calls_per_query == 3
