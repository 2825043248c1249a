"""Built-in benchmarks: loading MATH-500, GSM8K, HumanEval and arith, the source order, and the registry."""

from __future__ import annotations

import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.arith import Arith
from archon_search.datasets.gsm8k import gsm8k_reference
from archon_search.datasets.registry import benchmark_names
from archon_search.eval.benchmark import get_benchmark, make_benchmark, split_items

DATA = Path(os.environ.get("ARCHON_TEST_DATA", "/work/shared/data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found in {DATA}")


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import datasets` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "datasets", None)


@needs_data
def test_math500_loads_500_problems_with_subject_and_level() -> None:
    bench = get_benchmark("math")
    items = bench.load(DATA / "math500.jsonl")
    assert len(items) == 500 and len({i.id for i in items}) == 500
    first = items[0]
    assert first.id == "test/precalculus/807.json"
    assert first.prompt.startswith("Convert the point $(0,3)$")
    assert first.reference == r"\left( 3, \frac{\pi}{2} \right)"
    assert first.meta == {"subject": "Precalculus", "level": 2}
    assert {i.meta["level"] for i in items} == {1, 2, 3, 4, 5}
    assert bench.kind == "answer" and "\\boxed{}" in bench.answer_instruction


@needs_data
def test_math500_scores_its_own_reference_answers() -> None:
    bench = get_benchmark("math")
    items = bench.load(DATA / "math500.jsonl")[:25]
    assert all(bench.score(i, f"Done: $\\boxed{{{i.reference}}}$") == 1.0 for i in items)
    assert bench.score(items[0], r"\boxed{(3, \pi)}") == 0.0


@needs_data
def test_gsm8k_loads_1319_problems_with_numeric_references() -> None:
    bench = get_benchmark("gsm8k")
    items = bench.load(DATA / "gsm8k_test.jsonl")
    assert len(items) == 1319 and len({i.id for i in items}) == 1319
    assert items[0].id == "gsm8k-0" and items[0].reference == "18"
    assert items[0].prompt.startswith("Janet")
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", i.reference) for i in items)
    assert "2125" in {i.reference for i in items}
    assert bench.kind == "answer" and "Answer:" in bench.answer_instruction
    assert bench.score(items[0], "16 - 3 - 4 = 9 eggs, 9 * $2 = $18.\nAnswer: $18") == 1.0
    assert bench.score(items[0], "Answer: 16") == 0.0


def test_gsm8k_reference_strips_commas() -> None:
    assert gsm8k_reference("so 1,000 + 125 = 1,125\n#### 1,125") == "1125"
    assert gsm8k_reference("#### -10") == "-10"
    with pytest.raises(BenchmarkError, match="####"):
        gsm8k_reference("no final line")


def test_data_path_comes_first_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "g.jsonl"
    good.write_text(json.dumps({"question": "1+1?", "answer": "2\n#### 2"}) + "\n\n")
    assert [i.reference for i in get_benchmark("gsm8k").load(good)] == ["2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q"}\n')
    with pytest.raises(BenchmarkError, match=r"bad.jsonl:2: no field 'answer'"):
        get_benchmark("gsm8k").load(bad)
    bad.write_text("{not json\n")
    with pytest.raises(BenchmarkError, match=r"bad.jsonl:1: not valid JSON"):
        get_benchmark("math").load(bad)
    with pytest.raises(BenchmarkError, match="not found"):
        get_benchmark("math").load(tmp_path / "missing.jsonl")


def test_without_data_or_hub_the_error_says_to_pass_data(no_hub: None) -> None:
    for name, file in (("math", "math500.jsonl"), ("gsm8k", "gsm8k_test.jsonl")):
        with pytest.raises(BenchmarkError, match=f"--data PATH/{file}") as err:
            get_benchmark(name).load()
        assert "\n" not in str(err.value)


def test_hub_is_used_when_datasets_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(repo: str, config: str | None, split: str) -> list[dict]:
        calls.append((repo, config, split))
        return [{"question": "2+2?", "answer": "4\n#### 4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items = get_benchmark("gsm8k").load()
    assert calls == [("openai/gsm8k", "main", "test")] and items[0].reference == "4"


def test_hub_failure_falls_back_to_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(*args: object, **kwargs: object) -> list:
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(BenchmarkError, match="--data PATH"):
        get_benchmark("math").load()


def test_humaneval_loads_164_problems_from_the_package() -> None:
    bench = get_benchmark("humaneval")
    items = bench.load()
    assert len(items) == 164 and items[0].id == "HumanEval/0"
    assert bench.kind == "code" and "```python" in bench.answer_instruction
    first = items[0]
    assert "def has_close_elements" in first.prompt and first.prompt.rstrip().endswith("```")
    assert first.meta["entry_point"] == "has_close_elements"
    assert first.reference.rstrip().endswith("check(has_close_elements)")


def test_arith_is_deterministic_and_its_answers_are_right() -> None:
    items = Arith(size=50, seed=3).load()
    assert items == Arith(size=50, seed=3).load()
    assert [i.prompt for i in items] != [i.prompt for i in Arith(size=50, seed=4).load()]
    assert [i.meta["level"] for i in items[:6]] == [1, 2, 3, 4, 5, 1]
    assert Arith(size=10, seed=3).load() == items[:10]
    for item in items:
        assert item.reference.isdigit() and item.prompt.count("Then ") == (
            item.meta["level"] if item.meta["level"] > 1 else 0
        )
        assert _solve(item.prompt) == int(item.reference)


def test_arith_level_one_is_a_single_easy_step() -> None:
    items = Arith(size=20, seed=0, level=1).load()
    assert all(i.meta["level"] == 1 for i in items)
    for item in items:
        assert re.fullmatch(r"\w+ has \d \w+ and [a-z ]+ \d+[a-z ]*\. How many \w+ does \w+ have now\?", item.prompt)
        assert 0 < int(item.reference) < 20
    bench = make_benchmark(Arith(size=1, level=1))
    item = bench.load()[0]
    assert bench.score(item, f"So the total is {item.reference}.") == 1.0


def test_arith_options_are_checked() -> None:
    with pytest.raises(BenchmarkError, match="level"):
        Arith(level=6)
    with pytest.raises(BenchmarkError, match="size"):
        Arith(size=0)
    with pytest.raises(BenchmarkError, match="--data"):
        Arith().load("x.jsonl")
    assert len(get_benchmark("arith", size=7, level=2).load()) == 7


def test_registry_lists_builtins_and_refuses_unknown_names() -> None:
    assert {"arith", "gsm8k", "humaneval", "math"} <= set(benchmark_names())
    with pytest.raises(BenchmarkError) as err:
        get_benchmark("mathh")
    message = str(err.value)
    assert "\n" not in message and "mathh" in message and "arith, gsm8k, humaneval, math" in message
    with pytest.raises(BenchmarkError, match="option"):
        get_benchmark("math", size=3)


def test_split_is_seeded_and_disjoint() -> None:
    items = Arith(size=40).load()
    dev, test = split_items(items, seed=1)
    assert split_items(items, seed=1) == (dev, test)
    assert {i.id for i in dev}.isdisjoint({i.id for i in test}) and len(dev) + len(test) == 40


def _solve(prompt: str) -> int:
    """Re-derive an arith answer from its wording, independently of the generator."""
    count = int(re.search(r"has (\d+)", prompt).group(1))
    for sentence in re.split(r"(?<=\.) ", prompt.split(" has ", 1)[1]):
        if m := re.search(r"boxes with (\d+) \w+ in each", sentence):
            count += int(re.search(r"buys (\d+) boxes", sentence).group(1)) * int(m.group(1))
        elif m := re.search(r"(?:buys|finds|gets) (\d+) more", sentence):
            count += int(m.group(1))
        elif m := re.search(r"(?:gives|loses|sells) (\d+)", sentence):
            count -= int(m.group(1))
        elif m := re.search(r"into (\d+) equal piles", sentence):
            count //= int(m.group(1))
        elif "doubles" in sentence:
            count *= 2
        elif "triples" in sentence:
            count *= 3
    return count
