"""Answers the token limit cut short: recorded as truncated in traces, questions.csv, trials.csv and report.md, and
never scored as if they were complete; failed calls still count as calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pandas as pd

from archon_search.backends.base import Backend
from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.errors import BackendError
from archon_search.core.items import Item
from archon_search.core.messages import ChatRequest, Completion
from archon_search.datasets.arith import Arith
from archon_search.eval.benchmark import make_benchmark
from archon_search.eval.evaluate import evaluate
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.runtime.cache import ResponseCache

ITEM = Item("q1", "Tom has 3 apples and buys 4 more. How many apples does Tom have now?", reference="7")
# the model's worked answer reaches "7" only in its 12th word: a 6-word limit cuts it after "3"
WORKED = "Tom starts with 3 apples. He buys 4 more, so 3 + 4 = 7. Answer: 7"


def _run(max_tokens: int, tmp_path, arch_text: str | None = None, truncate: bool = True):
    spec = ScriptedModel(backend="scripted", responses=[WORKED], truncate=truncate)
    text = arch_text or f"name: a\ndefaults: {{max_tokens: {max_tokens}}}\nlayers: [{{generator: {{model: m}}}}]"
    checked = validate_text(text, models={"m": spec})
    bench = make_benchmark(Arith(size=1))
    return asyncio.run(evaluate(checked, bench, [ITEM], {"m": ScriptedBackend(spec)}, out_dir=tmp_path))


def test_a_cut_answer_is_recorded_and_scored_wrong_without_reading_a_number_from_it(tmp_path):
    result = _run(6, tmp_path)
    row = result.rows.iloc[0]
    # the cut text ends "... 4 more, so 3": its last number is not the answer, and none is read from it
    assert row["truncated"] == 1 and row["correct"] == 0.0 and pd.isna(row["extracted"])
    assert result.summary.truncated == 1
    saved = pd.read_csv(tmp_path / "questions.csv")
    assert saved.loc[0, "truncated"] == 1
    trace = [json.loads(line) for line in (tmp_path / "traces" / "q1.jsonl").read_text().splitlines()]
    assert trace[0]["truncated"] is True
    calls = [call for event in trace[1:] for call in event.get("calls", [])]
    assert [call["finish_reason"] for call in calls] == ["length"]


def test_a_complete_answer_is_scored_as_usual(tmp_path):
    result = _run(64, tmp_path)
    row = result.rows.iloc[0]
    assert row["truncated"] == 0 and row["correct"] == 1.0 and row["extracted"] == "7"


def test_the_voter_ignores_cut_candidates_when_complete_ones_exist(tmp_path):
    # two samples at a limit that cuts one of them: the scripted model cycles a long and a short answer
    spec = ScriptedModel(backend="scripted", responses=[WORKED, "Answer: 7"], truncate=True)
    arch = "name: a\ndefaults: {max_tokens: 6}\nlayers: [{generator: {model: m, samples: 2}}, {voter: {}}]"
    checked = validate_text(arch, models={"m": spec})
    bench = make_benchmark(Arith(size=1))
    result = asyncio.run(evaluate(checked, bench, [ITEM], {"m": ScriptedBackend(spec)}))
    row = result.rows.iloc[0]
    assert row["truncated"] == 0 and row["correct"] == 1.0


def test_the_cache_keeps_finish_reason(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many({"cut": Completion("half an ans", 3, 3, finish_reason="length"), "whole": Completion("done", 1, 1)})
    got = cache.get_many(["cut", "whole"])
    assert got["cut"].truncated and got["cut"].cached and not got["whole"].truncated


def test_a_cache_written_before_finish_reason_is_upgraded_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
            "completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
        conn.execute("INSERT INTO responses VALUES ('k', 'old answer', 1, 2, 0)")
    got = ResponseCache(path).get_many(["k"])["k"]
    assert got.text == "old answer" and got.finish_reason == "stop"


class Refusing(Backend):
    """Refuses every request, as an API does a prompt over its context window."""

    kind = "refusing"

    @property
    def model_id(self) -> str:
        return "refusing"

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        raise BackendError("prompt too long for the context window")


def test_refused_calls_count_as_attempted_calls(tmp_path):
    spec = ScriptedModel(backend="scripted", responses=["x"])
    checked = validate_text("name: a\nlayers: [{generator: {model: m, samples: 3}}]", models={"m": spec})
    bench = make_benchmark(Arith(size=1))
    result = asyncio.run(evaluate(checked, bench, [ITEM], {"m": Refusing()}, max_error_rate=1.0))
    row = result.rows.iloc[0]
    # a baseline whose calls fail must not look cheaper than one whose calls succeed
    assert row["errors"] == 1 and row["calls"] == 3 and result.summary.calls_per_query == 3
