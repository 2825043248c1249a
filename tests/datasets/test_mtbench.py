"""MT-Bench: the loader on the shared data, references, one-line errors, and an end-to-end eval on the
embedded model as both answerer and judge."""

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.mtbench import MtBench, find_references
from archon_search.eval.benchmark import make_benchmark
from archon_search.eval.evaluate import evaluate
from archon_search.lang.validate import validate_text
from archon_search.runtime.pool import BackendPool
from archon_search.scoring.judge import per_category

DATA = Path("/work/shared/data")
QUESTIONS = DATA / "mt_bench_questions.jsonl"
needs_data = pytest.mark.skipif(not QUESTIONS.is_file(), reason="MT-Bench data not present")


@needs_data
def test_loads_80_two_turn_questions_in_8_categories():
    items = MtBench().load(QUESTIONS)
    assert len(items) == 80 and len({i.id for i in items}) == 80
    assert Counter(i.meta["category"] for i in items) == {
        c: 10 for c in ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
    }
    assert all(len(i.all_turns) == 2 and i.prompt == i.turns[0] for i in items)


@needs_data
def test_gpt4_references_beside_the_questions_for_math_reasoning_coding_only():
    assert find_references(QUESTIONS) == DATA / "mt_bench_reference_gpt4.jsonl"
    items = {i.id: i for i in MtBench().load(QUESTIONS)}
    with_reference = {i.meta["category"] for i in items.values() if i.reference}
    assert with_reference == {"math", "reasoning", "coding"}
    assert len(items["101"].reference) == 2 and "second place" in items["101"].reference[0]
    assert items["95"].reference is None  # roleplay: MT-Bench grades it without a reference


def test_falls_back_to_the_questions_own_reference(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"question_id": 1, "category": "math", "turns": ["1+1?", "Times 3?"], "reference": ["2", "6"]},
        {"question_id": 2, "category": "writing", "turns": ["A poem.", "Shorter."], "reference": ["x", "y"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = MtBench().load(path)
    assert items[0].reference == ("2", "6") and items[1].reference is None


def test_references_given_explicitly_win(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 7, "category": "coding", "turns": ["Sort.", "Faster."]}) + "\n")
    refs = tmp_path / "elsewhere.jsonl"
    refs.write_text(json.dumps({"question_id": 7, "choices": [{"turns": ["use sorted()", "it is O(n log n)"]}]}) + "\n")
    assert MtBench().load(questions)[0].reference is None
    assert MtBench(references=refs).load(questions)[0].reference == ("use sorted()", "it is O(n log n)")


def test_one_line_errors(tmp_path):
    with pytest.raises(BenchmarkError, match=r"pass --data .*mt_bench_questions.jsonl") as no_data:
        MtBench().load(None)
    assert "\n" not in str(no_data.value)
    with pytest.raises(BenchmarkError, match="not found"):
        MtBench().load(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "category": "math", "turns": ["q"]}\n{oops\n')
    with pytest.raises(BenchmarkError, match=r"bad.jsonl:2: not valid JSON"):
        MtBench().load(bad)
    bad.write_text('{"question_id": 1, "turns": ["q"]}\n')
    with pytest.raises(BenchmarkError, match=r"bad.jsonl:1: no field 'category'"):
        MtBench().load(bad)


ARCH = "name: small\ndefaults: {temperature: 0.0, max_tokens: 48}\nlayers: [{generator: {model: embedded}}]"


@pytest.mark.embedded
@needs_data
def test_embedded_model_answers_and_judges_three_questions(tmp_path):
    dataset = MtBench()
    items = dataset.load(QUESTIONS)[:3]
    checked = validate_text(ARCH)

    async def go():
        async with BackendPool(checked.arch.models) as pool:
            bench = make_benchmark(dataset, pool, "embedded", judge_max_tokens=48)
            return await evaluate(checked, bench, items, pool, out_dir=tmp_path)

    result = asyncio.run(go())
    s = result.summary
    # two turns each, one call per turn; the judge's calls are not in here
    assert s.n == 3 and s.calls_per_query == 1 and result.rows["calls"].tolist() == [2, 2, 2]
    assert 6 <= s.judge_calls <= 12 and s.judge_tokens > 0  # 2 turns x 3 questions, plus at most one retry each
    for score, grade in zip(result.rows["correct"], result.rows["grade"]):
        assert math.isnan(score) or (0.0 <= score <= 1.0 and 1.0 <= grade <= 10.0)
    assert per_category(result.rows)["category"].tolist() == ["writing"]
    assert (tmp_path / "questions.csv").is_file() and len(list((tmp_path / "traces").iterdir())) == 3
