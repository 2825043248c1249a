"""The foundation commands through Typer's CliRunner: validate, show, import-archon."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.lang.validate import load_architecture

REFUSED = """\
name: bad
layers:
  - generator: {model: embedded, samples: 2}
  - fuser: {model: embedded}
  - critic: {model: embedded}
  - verifier: {model: embedded}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_all_examples(runner, architectures_dir):
    files = sorted(str(p) for p in architectures_dir.glob("*.yaml"))
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich may wrap long lines when not writing to a terminal
    assert out.count("ok ") == len(files)
    assert "critic-rank-fuse.yaml: critic-rank-fuse: 9 LM calls per query" in out


def test_validate_refused(runner, write_file):
    path = write_file(REFUSED)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert (
        f"refused {path}: layer 2 (critic): R3: a critic must be followed by a ranker or fuser, found verifier"
        in result.stderr
    )


def test_validate_budget(runner, architectures_dir):
    path = str(architectures_dir / "critic-rank-fuse.yaml")
    assert runner.invoke(app, ["validate", path, "--budget", "9"]).exit_code == 0
    result = runner.invoke(app, ["validate", path, "--budget", "8"])
    assert result.exit_code == 1
    assert ": R8: 9 LM calls per query exceed the budget of 8" in result.stderr


def test_show_draws_layers_and_totals(runner, architectures_dir):
    result = runner.invoke(app, ["show", str(architectures_dir / "critic-rank-fuse.yaml")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for part in (
        "question",
        "layer 0 · generator",
        "layer 1 · critic",
        "layer 2 · ranker",
        "layer 3 · fuser",
        "answer",
        "6 LM calls",
        "4 calls",
        "6 candidates",
        "3 candidates",
        "top_k 3",
        "total: 9 LM calls per query",
    ):
        assert part in out, part
    assert out.index("layer 0") < out.index("layer 1") < out.index("layer 3") < out.index("total")


def test_show_unit_without_model(runner, architectures_dir):
    result = runner.invoke(app, ["show", str(architectures_dir / "unit-tests-execute.yaml")])
    assert result.exit_code == 0
    assert "runs the tests in the sandbox" in result.stdout and "0 LM calls" in result.stdout


def test_show_with_models_file_and_warning(runner, write_file):
    arch = write_file("name: w\nlayers:\n  - generator: {model: big, samples: 2}\n  - voter: {top_k: 3}\n")
    models = write_file("big: {backend: vllm, model: Qwen/Qwen2.5-72B-Instruct}\n", "models.yaml")
    result = runner.invoke(app, ["show", str(arch), "--models", str(models)])
    assert result.exit_code == 0, result.output
    assert "big (vllm: Qwen/Qwen2.5-72B-Instruct)" in result.stdout
    assert "warning" in result.stderr and "top_k 3 exceeds the 2 candidate(s)" in result.stderr


def test_show_refused(runner, write_file):
    result = runner.invoke(app, ["show", str(write_file(REFUSED))])
    assert result.exit_code == 1
    assert "R3: a critic must be followed by a ranker or fuser" in result.stderr
    assert result.stdout == ""


def test_import_archon_prints_yaml_and_warnings(runner, fixtures_dir):
    result = runner.invoke(app, ["import-archon", str(fixtures_dir / "archon" / "critic-rank-fuse.json")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# imported from critic-rank-fuse.json")
    assert "use_critiques" in result.stderr and "set base_url" in result.stderr
    assert "use_critiques" not in result.stdout


def test_import_archon_out_writes_a_file_that_validates(runner, fixtures_dir, tmp_path):
    out = tmp_path / "sub" / "imported.yaml"
    result = runner.invoke(
        app, ["import-archon", str(fixtures_dir / "archon" / "groq-unit-tests-verify.json"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout.replace("\n", "")
    assert load_architecture(out).calls_per_query == 14
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0


def test_import_archon_refused(runner, fixtures_dir, tmp_path):
    out = tmp_path / "x.yaml"
    path = fixtures_dir / "archon" / "unit-tests-first.json"
    result = runner.invoke(app, ["import-archon", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert f"refused {path}: layer 0 (unit_test_generator): R1: " in result.stderr
    assert not out.exists()


def test_import_archon_bad_json(runner, write_file):
    result = runner.invoke(app, ["import-archon", str(write_file("{oops", "bad.json"))])
    assert result.exit_code == 1
    assert "error" in result.stderr and "invalid JSON at line 1, column 2" in result.stderr
