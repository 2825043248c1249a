"""Scoring one architecture on benchmark items: run, score, coverage, usage, traces, questions.csv."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from archon_search.backends.base import Backend
from archon_search.benchmarks.base import Benchmark, Item
from archon_search.benchmarks.judged import JudgedBenchmark
from archon_search.executor import Executor, QueryResult, Usage
from archon_search.judge import Judgement
from archon_search.metrics import accuracy_ci, results_frame, save_questions_csv
from archon_search.ops import OpContext, QueryState
from archon_search.task import with_instruction
from archon_search.traces import write_trace
from archon_search.validate import Validated

DEFAULT_CHUNK = 16


@dataclass
class EvalSummary:
    """The headline figures of one evaluation."""

    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    coverage: float | None
    calls_per_query: float
    tokens_per_query: float
    backend_calls: int
    cost: float
    wall_s: float
    #: The judge's calls (judged benchmarks): reported apart, never counted against the architecture's budget.
    judge_calls: int = 0
    judge_tokens: int = 0
    judge_cost: float = 0.0
    #: Questions whose score is NaN (the judge gave nothing readable): left out of `accuracy` and its CI.
    unscored: int = 0


@dataclass(frozen=True)
class ChunkDone:
    """Where an evaluation stands after a chunk: `questions` done so far, their `scores` without the NaN ones
    (unparsed judgements; the list may be empty), the LM `calls` made and the `queries` answered (a query is one
    turn of one item: multi-turn items run the architecture once per turn)."""

    questions: int
    scores: list[float]
    calls: int
    queries: int


@dataclass
class EvalResult:
    """Per-question rows (DESIGN §4's questions.csv columns and more) and the summary."""

    rows: pd.DataFrame
    summary: EvalSummary


def question_text(benchmark: Benchmark, prompt: str) -> str:
    """The user message a generator sees: the item's prompt plus the benchmark's answer format."""
    return with_instruction(prompt, benchmark.answer_instruction)


def op_context(benchmark: Benchmark) -> OpContext:
    """What ops need to know of the benchmark: its answer extractor and task kind."""
    return OpContext(extract=benchmark.extract, task_kind=benchmark.kind)


async def run_items(executor: Executor, benchmark: Benchmark, items: Sequence[Item]) -> list[list[QueryResult]]:
    """Answer every turn of every item; later turns see the conversation so far, the architecture's answers included."""
    histories: list[list[dict[str, str]]] = [[] for _ in items]
    per_item: list[list[QueryResult]] = [[] for _ in items]
    max_turns = max(len(item.all_turns) for item in items)
    for turn in range(max_turns):
        active = [i for i, item in enumerate(items) if turn < len(item.all_turns)]
        states = []
        for i in active:
            text = items[i].all_turns[turn]
            question = question_text(benchmark, text) if turn == 0 else text.strip()
            states.append(QueryState(id=items[i].id, question=question, history=list(histories[i])))
        for i, result in zip(active, await executor.run(states)):
            per_item[i].append(result)
            histories[i] += [
                {"role": "user", "content": result.state.question},
                {"role": "assistant", "content": result.answer},
            ]
    return per_item


async def _score_item(
    benchmark: Benchmark, item: Item, turns: list[QueryResult], coverage: bool
) -> tuple[float, float | None, Judgement | None]:
    answers = [t.answer for t in turns]
    if isinstance(benchmark, JudgedBenchmark):
        judgement = await benchmark.ajudge(item, answers)
        return judgement.score, None, judgement
    score = await benchmark.ascore_conversation(item, answers)
    if not coverage:
        return score, None, None
    firsts = turns[0].state.first_layer
    scores = await asyncio.gather(*(benchmark.ascore(item, c.text) for c in firsts))
    return score, float(any(s >= 1.0 for s in scores)), None


async def evaluate(
    checked: Validated,
    benchmark: Benchmark,
    items: Sequence[Item],
    backends: Mapping[str, Backend],
    *,
    out_dir: Path | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    on_chunk: Callable[[ChunkDone], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run the architecture on `items` in chunks, score each answer, and summarise.

    `on_chunk(ChunkDone)` runs after each chunk and may raise to stop early (the search's pruner does).
    `progress(n)` is told how many questions just finished.
    """
    started = time.perf_counter()
    executor = Executor(checked, backends, op_context(benchmark))
    with_coverage = benchmark.kind != "judge"
    rows: list[dict] = []
    total = Usage()
    judge_total = Usage()
    for start in range(0, len(items), chunk_size):
        chunk = list(items[start : start + chunk_size])
        per_item = await run_items(executor, benchmark, chunk)
        scored = await asyncio.gather(
            *(_score_item(benchmark, item, turns, with_coverage) for item, turns in zip(chunk, per_item))
        )
        for item, turns, (score, covered, judgement) in zip(chunk, per_item, scored):
            usage = Usage()
            for turn in turns:
                usage.add(turn.usage)
            total.add(usage)
            row = {
                "id": item.id,
                "correct": score,
                "answer": turns[-1].answer,
                "extracted": benchmark.extract(turns[-1].answer),
                "reference": item.reference,
                "calls": usage.calls,
                "tokens": usage.tokens,
                "turns": len(turns),
                "backend_calls": usage.backend_calls,
                "cost": usage.cost,
                "covered": covered,
            }
            if judgement is not None:
                judge_total.add(judgement.usage)
                row.update(category=item.meta.get("category"), **judgement.columns())
            rows.append(row)
            if out_dir is not None:
                header = {
                    "id": item.id,
                    "turns": list(item.all_turns),
                    "reference": item.reference,
                    "answer": turns[-1].answer,
                    "score": score,
                    "covered": covered,
                }
                if judgement is not None:
                    header["judge"] = judgement.trace()
                events = [dict(e, turn=t) for t, turn in enumerate(turns) for e in turn.state.events]
                write_trace(out_dir / "traces", item.id, header, events)
        if progress is not None:
            progress(len(chunk))
        if on_chunk is not None:
            scores = [r["correct"] for r in rows if not math.isnan(r["correct"])]
            on_chunk(ChunkDone(len(rows), scores, total.calls, sum(r["turns"] for r in rows)))
    frame = results_frame(rows)
    if out_dir is not None:
        save_questions_csv(frame, out_dir / "questions.csv")
    return EvalResult(frame, summarize(frame, total, time.perf_counter() - started, judge_total))


def summarize(frame: pd.DataFrame, total: Usage, wall_s: float, judge: Usage | None = None) -> EvalSummary:
    """Accuracy with a bootstrap CI, coverage, and per-query usage from the per-question rows.

    NaN scores (unparsed judgements) are left out of the accuracy and counted in `unscored`; with none left the
    accuracy is NaN, never a score of 0. Usage is per query: per turn where rows have a `turns` column. `judge` is
    the judge model's usage, reported apart from the architecture's.
    """
    n = len(frame)
    scores = frame["correct"].astype(float).dropna().tolist() if n else []
    mean, lo, hi = accuracy_ci(scores) if scores else (math.nan,) * 3
    queries = int(frame["turns"].sum()) if n and "turns" in frame else n
    judge = judge or Usage()
    covered = frame["covered"].dropna() if n else pd.Series(dtype=float)
    return EvalSummary(
        n=n,
        accuracy=mean,
        ci_low=lo,
        ci_high=hi,
        coverage=float(covered.astype(float).mean()) if len(covered) else None,
        calls_per_query=total.calls / queries if queries else 0.0,
        tokens_per_query=total.tokens / queries if queries else 0.0,
        backend_calls=total.backend_calls,
        cost=total.cost,
        wall_s=wall_s,
        judge_calls=judge.calls,
        judge_tokens=judge.tokens,
        judge_cost=judge.cost,
        unscored=n - len(scores),
    )
