"""User benchmark files (DESIGN §1b): loading, each scorer, and one-line errors that say what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.registry import get_dataset
from archon_search.eval.benchmark import get_benchmark, kind_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-math.yaml"


def _bench(tmp_path: Path, records: list[dict], **fields: object) -> Path:
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"name": "mine", "data": "items.jsonl", "prompt_field": "q", "reference_field": "a", "scorer": "exact"}
    spec.update(fields)
    path = tmp_path / "bench.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in spec.items() if v is not None))
    return path


def test_example_benchmark_loads_and_scores_its_references() -> None:
    bench = get_benchmark(str(EXAMPLE))
    items = bench.load()
    assert bench.name == "example-math" and len(items) == 10
    assert items[0].id == "half" and items[0].reference == r"\frac{5}{6}"
    assert all(bench.score(i, f"so $\\boxed{{{i.reference}}}$") == 1.0 for i in items)
    assert bench.score(items[0], r"\boxed{\frac{2}{5}}") == 0.0


def test_ids_default_to_line_numbers_and_data_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _bench(tmp_path, [{"q": "Capital of France?", "a": "Paris", "topic": "geo"}, {"q": "2+2?", "a": "4"}])
    monkeypatch.chdir("/")
    bench = get_benchmark(str(path))
    items = bench.load()
    assert [i.id for i in items] == ["1", "2"]
    assert items[0].meta == {"topic": "geo"}
    assert bench.score(items[0], "It is Paris.\nAnswer: paris") == 1.0
    assert bench.score(items[0], "Answer: Lyon") == 0.0


def test_data_override_replaces_the_files_data(tmp_path: Path) -> None:
    path = _bench(tmp_path, [{"q": "x", "a": "1"}])
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"q": "y", "a": "2"}) + "\n" + json.dumps({"q": "z", "a": "3"}) + "\n")
    assert [i.prompt for i in get_benchmark(str(path)).load(other)] == ["y", "z"]


def test_number_scorer(tmp_path: Path) -> None:
    bench = get_benchmark(str(_bench(tmp_path, [{"q": "Cost?", "a": "1,250", "n": 7}], scorer="number", id_field="n")))
    item = bench.load()[0]
    assert item.id == "7"
    assert bench.score(item, "Total: $1250.00\nAnswer: $1,250") == 1.0
    assert bench.score(item, "Answer: 1,205") == 0.0


def test_code_scorer_runs_reference_tests_in_the_sandbox(tmp_path: Path) -> None:
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
    bench = get_benchmark(str(_bench(tmp_path, [{"q": "Write add(a, b).", "a": tests}], scorer="code")))
    item = bench.load()[0]
    assert bench.kind == "code"
    assert bench.score(item, "```python\ndef add(a, b):\n    return a + b\n```") == 1.0
    assert bench.score(item, "```python\ndef add(a, b):\n    return a - b\n```") == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scorrer": "exact"}, "unknown field 'scorrer' (allowed: name, data, prompt_field"),
        ({"data": None}, "missing field 'data'"),
        ({"name": "My Bench"}, "name must use only a-z, 0-9"),
        ({"scorer": "fuzzy"}, "scorer: Input should be 'math', 'number', 'exact', 'code' or 'judge'"),
        ({"prompt_field": "question"}, "items.jsonl:1: no field 'question'"),
        ({"data": "nowhere.jsonl"}, "nowhere.jsonl not found"),
    ],
)
def test_errors_are_one_line_and_say_what_to_change(tmp_path: Path, fields: dict, message: str) -> None:
    path = _bench(tmp_path, [{"q": "x", "a": "1"}], **fields)
    with pytest.raises(BenchmarkError) as err:
        get_benchmark(str(path)).load()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not found"):
        get_benchmark(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(BenchmarkError, match="line 2, column 1: YAML syntax error"):
        get_benchmark(str(bad))
    bad.write_text("- just\n- a list\n")
    with pytest.raises(BenchmarkError, match="expected a mapping"):
        get_benchmark(str(bad))
    dup = _bench(tmp_path, [{"q": "x", "a": "1", "i": "k"}, {"q": "y", "a": "2", "i": "k"}], id_field="i")
    with pytest.raises(BenchmarkError, match="id 'k' appears more than once"):
        get_benchmark(str(dup)).load()
    with pytest.raises(BenchmarkError, match="takes no options"):
        get_benchmark(str(dup), size=3)


def test_judge_files_are_read_as_judged_benchmarks(tmp_path: Path) -> None:
    bench = get_dataset(str(_bench(tmp_path, [{"q": "Write a haiku.", "a": "any"}], scorer="judge")))
    assert kind_of(bench) == "judge" and bench.name == "mine"
    assert [i.prompt for i in bench.load()] == ["Write a haiku."]
