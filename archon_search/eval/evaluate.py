"""Scoring one architecture on benchmark items: every item flows through its layers (and turns) on its own, many at
once, and is scored as soon as it is answered; coverage, usage, errors, traces, questions.csv."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from archon_search.backends.base import Backend
from archon_search.core.errors import ArchonError, BackendError, ServerUnavailable
from archon_search.core.items import Item
from archon_search.core.usage import Usage
from archon_search.eval.benchmark import Benchmark
from archon_search.eval.metrics import accuracy_ci, results_frame, save_questions_csv
from archon_search.eval.traces import write_trace
from archon_search.lang.validate import Validated
from archon_search.ops import OpContext, QueryState
from archon_search.runtime.executor import Executor, QueryResult, Stopped
from archon_search.runtime.task_context import scorer_context, with_instruction
from archon_search.scoring.judge import Judgement, JudgeScorer

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 16
#: items in flight at once: enough to keep models with a large `max_concurrency` busy, few enough that a pruned
#: trial stops soon and traces are written as questions finish
MAX_IN_FLIGHT = 64
#: an evaluation with more than this share of its questions stopped by backend errors is not scored
MAX_ERROR_RATE = 0.25


class TooManyErrors(ArchonError):
    """More than `MAX_ERROR_RATE` of an evaluation's questions failed on errors of their own requests (a prompt the
    model refuses, say): the architecture cannot be scored, and running it again would fail the same way."""


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
    #: Questions a backend error stopped (a refused prompt, a server down through every retry): scored 0.
    errors: int = 0
    #: Questions whose final answer the token limit cut short: scored 0, no answer read from the cut text.
    truncated: int = 0


@dataclass(frozen=True)
class ChunkDone:
    """Where an evaluation stands once its first `questions` items (in item order) are done: their `scores` in item
    order (NaN for an unparsed judgement), the LM `calls` they made and the `queries` they
    answered (a query is one turn of one item: multi-turn items run the architecture once per turn). Items further
    on may be done or in flight too; they are not counted until every item before them is done."""

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
    return scorer_context(benchmark.scorer)


async def answer_item(
    executor: Executor, benchmark: Benchmark, item: Item, stop: asyncio.Event | None = None
) -> list[QueryResult]:
    """Answer an item's turns one after another; later turns see the conversation so far, the architecture's answers
    included. A turn that failed on a backend error is the last (its result carries the `error`)."""
    history: list[dict[str, str]] = []
    turns: list[QueryResult] = []
    for turn, text in enumerate(item.all_turns):
        question = question_text(benchmark, text) if turn == 0 else text.strip()
        result = await executor.answer(QueryState(id=item.id, question=question, history=list(history)), stop)
        turns.append(result)
        if result.error is not None:
            break
        history += [
            {"role": "user", "content": result.state.question},
            {"role": "assistant", "content": result.answer},
        ]
    return turns


@dataclass(frozen=True)
class FirstLayer:
    """How many candidates the first layer gave a question and how many of them were correct (coverage, pass@k)."""

    candidates: int
    correct: int


async def _score_item(
    benchmark: Benchmark, item: Item, turns: list[QueryResult], coverage: bool
) -> tuple[float, FirstLayer | None, Judgement | None]:
    if turns[-1].error is not None:
        # an unanswered question counts as wrong: leaving it out would favour architectures whose prompts overflow
        # on exactly the hard (long) questions
        return 0.0, FirstLayer(len(turns[0].state.first_layer), 0) if coverage else None, None
    answers = [t.answer for t in turns]
    if turns[-1].state.answer_truncated and benchmark.kind != "judge":
        # a cut text's last number is no final answer: no answer is read from it (a judge still grades what it sees)
        firsts = turns[0].state.first_layer
        return 0.0, FirstLayer(len(firsts), 0) if coverage else None, None
    if isinstance(benchmark.scorer, JudgeScorer):
        judgement = await benchmark.scorer.judge(item, answers)
        return judgement.score, None, judgement
    score = await benchmark.ascore_conversation(item, answers)
    if not coverage:
        return score, None, None
    firsts = turns[0].state.first_layer
    scores = await asyncio.gather(*(benchmark.ascore(item, c.text) for c in firsts))
    return score, FirstLayer(len(firsts), sum(s >= 1.0 for s in scores)), None


@dataclass
class _Answered:
    """One item answered and scored: its questions.csv row, its usage, and the judge's."""

    row: dict
    usage: Usage
    judge: Usage | None


class _Flow:
    """One evaluation in progress: items run concurrently and finish in any order, but are reported to `on_chunk`
    in item order, so a report after k questions always means the first k items."""

    def __init__(
        self,
        executor: Executor,
        benchmark: Benchmark,
        items: Sequence[Item],
        out_dir: Path | None,
        chunk_size: int,
        on_chunk: Callable[[ChunkDone], None] | None,
        progress: Callable[[int], None] | None,
        max_error_rate: float,
        on_calls: Callable[[int], None] | None = None,
    ):
        self.executor = executor
        self.benchmark = benchmark
        self.items = items
        self.out_dir = out_dir
        self.chunk_size = chunk_size
        self.on_chunk = on_chunk
        self.progress = progress
        self.on_calls = on_calls
        self.max_error_rate = max_error_rate
        self.with_coverage = benchmark.kind != "judge"
        self.answered: list[_Answered | None] = [None] * len(items)
        self.errors: list[BackendError] = []
        self.stop = asyncio.Event()
        self.failure: BaseException | None = None
        self.ready = 0
        self.ready_scores: list[float] = []
        self.ready_calls = 0
        self.ready_queries = 0

    async def run(self, max_in_flight: int) -> list[_Answered]:
        """Answer every item, at most `max_in_flight` at once; raise what stopped the evaluation, if anything did,
        once the questions in flight have finished their current layer (their answers reach the cache)."""
        slots = asyncio.Semaphore(max_in_flight)
        await asyncio.gather(*(self._item(i, slots) for i in range(len(self.items))))
        if self.failure is not None:
            raise self.failure
        return [a for a in self.answered if a is not None]

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.stop.set()

    async def _item(self, index: int, slots: asyncio.Semaphore) -> None:
        item = self.items[index]
        try:
            async with slots:
                if self.stop.is_set():
                    return
                turns = await answer_item(self.executor, self.benchmark, item, self.stop)
                scored = await _score_item(self.benchmark, item, turns, self.with_coverage)
            if self.failure is None:
                self._finish(index, item, turns, *scored)
        except Stopped:
            return
        # whatever stops one item (a bug, a budget breach, the pruner raising from on_chunk) stops the evaluation,
        # and is raised once the other items in flight have stopped
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _finish(
        self,
        index: int,
        item: Item,
        turns: list[QueryResult],
        score: float,
        first: FirstLayer | None,
        judgement: Judgement | None,
    ) -> None:
        covered = None if first is None else float(first.correct > 0)
        usage = Usage()
        for turn in turns:
            usage.add(turn.usage)
        error = turns[-1].error
        truncated = turns[-1].state.answer_truncated
        row = {
            "id": item.id,
            "correct": score,
            "answer": turns[-1].answer,
            "extracted": None if truncated else self.benchmark.extract(turns[-1].answer),
            "truncated": int(truncated),
            "reference": item.reference,
            "calls": usage.calls,
            "tokens": usage.tokens,
            "turns": len(turns),
            "backend_calls": usage.backend_calls,
            "cost": usage.cost,
            "covered": covered,
            "candidates": None if first is None else first.candidates,
            "candidates_correct": None if first is None else first.correct,
            "errors": int(error is not None),
            "error": str(error) if error is not None else "",
        }
        if judgement is not None:
            row.update(category=item.meta.get("category"), **judgement.columns())
        if self.out_dir is not None:
            header = {
                "id": item.id,
                "turns": list(item.all_turns),
                "reference": item.reference,
                "answer": turns[-1].answer,
                "score": score,
                "covered": covered,
                "truncated": truncated,
            }
            if error is not None:
                header["error"] = str(error)
            if judgement is not None:
                header["judge"] = judgement.trace()
            events = [dict(e, turn=t) for t, turn in enumerate(turns) for e in turn.state.events]
            write_trace(self.out_dir / "traces", item.id, header, events)
        self.answered[index] = _Answered(row, usage, judgement.usage if judgement is not None else None)
        if self.progress is not None:
            self.progress(1)
        if self.on_calls is not None:
            self.on_calls(usage.calls)
        if error is not None:
            log.warning("question %s failed: %s", item.id, error)
            self.errors.append(error)
            if len(self.errors) > self.max_error_rate * len(self.items):
                self._fail(self._too_many())
                return
        self._report()

    def _too_many(self) -> Exception:
        # a server that was down is not the architecture's fault: its own error ends the run, and a resume retries
        outage = next((e for e in self.errors if isinstance(e, ServerUnavailable)), None)
        if outage is not None:
            return outage
        return TooManyErrors(
            f"{len(self.errors)} of {len(self.items)} questions failed (more than {self.max_error_rate:.0%}); "
            f"the first: {self.errors[0]}"
        )

    def _report(self) -> None:
        """Tell `on_chunk` of every `chunk_size` items done in order, and of the last."""
        n = len(self.items)
        while self.ready < n and self.answered[self.ready] is not None:
            done = self.answered[self.ready]
            self.ready += 1
            self.ready_calls += done.usage.calls
            self.ready_queries += done.row["turns"]
            self.ready_scores.append(done.row["correct"])
            if self.on_chunk is not None and (self.ready % self.chunk_size == 0 or self.ready == n):
                self.on_chunk(ChunkDone(self.ready, list(self.ready_scores), self.ready_calls, self.ready_queries))


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
    on_calls: Callable[[int], None] | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_error_rate: float = MAX_ERROR_RATE,
) -> EvalResult:
    """Run the architecture on `items`, score each answer, and summarise.

    Up to `max_in_flight` items are in flight at once, each through its layers (and turns) on its own, scored as soon
    as it is answered. `on_chunk(ChunkDone)` hears of the first `chunk_size`, 2 x `chunk_size`, ... items in item
    order (and of all of them at the end) and may raise to stop early (the search's pruner does); `progress(n)` is
    told how many questions just finished, `on_calls(n)` how many LM calls each finished question made. A question a backend error stopped is scored 0 and counted in `errors`;
    with more than `max_error_rate` of them the evaluation stops with `TooManyErrors` (or, when a server was down,
    with that server's `ServerUnavailable`).
    """
    started = time.perf_counter()
    flow = _Flow(
        Executor(checked, backends, op_context(benchmark)),
        benchmark,
        items,
        out_dir,
        chunk_size,
        on_chunk,
        progress,
        max_error_rate,
        on_calls,
    )
    answered = await flow.run(max_in_flight)
    total = Usage()
    judge_total = Usage()
    for done in answered:
        total.add(done.usage)
        if done.judge is not None:
            judge_total.add(done.judge)
    frame = results_frame([done.row for done in answered])
    if out_dir is not None:
        save_questions_csv(frame, out_dir / "questions.csv")
    return EvalResult(frame, summarize(frame, total, time.perf_counter() - started, judge_total))


def summarize(frame: pd.DataFrame, total: Usage, wall_s: float, judge: Usage | None = None) -> EvalSummary:
    """Accuracy with a Wilson CI, coverage, and per-query usage from the per-question rows.

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
        errors=int(frame["errors"].sum()) if n and "errors" in frame else 0,
        truncated=int(frame["truncated"].sum()) if n and "truncated" in frame else 0,
    )
