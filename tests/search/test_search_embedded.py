"""A real search on the embedded CPU model, as small as it gets: two trials (the baselines) on two questions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.lang.validate import load_architecture

pytestmark = pytest.mark.embedded


def test_a_tiny_search_on_the_cpu_model_writes_the_whole_run_folder(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("max_tokens: 32\n")
    out = tmp_path / "run"
    args = ["run", "--budget", "2", "--trials", "2", "--limit", "2", "--bench", "arith", "--space", str(space)]
    result = CliRunner().invoke(app, [*args, "--no-cache", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("study.db", "trials.csv", "best.yaml", "run.json", "report.md", "history.png", "questions.csv"):
        assert (out / name).is_file(), name
    assert len(list((out / "traces").glob("*.jsonl"))) == 2
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["baseline"]) == ["self-consistency-2", "single-embedded"]
    assert (trials["tokens_per_query"] > 0).all()
    run = json.loads((out / "run.json").read_text())
    assert run["dev_n"] == 2 and run["test_n"] == 2 and run["best_trial"] in (0, 1)
    assert load_architecture(out / "best.yaml", budget=2).arch.models["embedded"].backend == "embedded"
    assert "95% CI" in (out / "report.md").read_text()
