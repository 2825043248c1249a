"""What an architecture file carries of the task it was scored on, and how a deployment rebuilds it.

A search scores an architecture with the benchmark's answer extractor (the voter groups on it, the
unit-test evaluator takes code with it) and with the benchmark's answer instruction appended to the
question. The file's `task:` field records both, by name (a benchmark file's scorer, never a path that
may vanish), so `serve`, `Architecture.load` and `eval` answer exactly as the trial that scored it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from archon_search.datasets.base import Benchmark
from archon_search.lang.spec import Task
from archon_search.ops.base import OpContext
from archon_search.scoring.scorers import SCORERS, ScoredBenchmark, get_scorer

log = logging.getLogger(__name__)


def _format_name(benchmark: ScoredBenchmark) -> str | None:
    """The registered name of the benchmark's scorer (what a benchmark file writes as `scorer:`)."""
    return next((name for name, factory in SCORERS.items() if type(benchmark.scorer) is factory), None)


@functools.cache
def _warn_unnamed(benchmark: str) -> None:
    # once per benchmark: a search asks for the task of every trial
    log.warning(
        "benchmark %s reads answers with its own extractor, which an architecture file cannot name: deployed, "
        "its voter will find no answers; give the benchmark a registered scorer",
        benchmark,
    )


def task_of(benchmark: Benchmark) -> Task:
    """The `task:` field for architectures scored on `benchmark`."""
    answer_format = _format_name(benchmark) if isinstance(benchmark, ScoredBenchmark) else None
    if answer_format is None and benchmark.kind == "code":
        # a code task always reads code out of fenced blocks; the evaluator's sandbox runs what it reads
        answer_format = "code"
    elif answer_format is None and benchmark.kind != "judge":
        _warn_unnamed(benchmark.name)
    return Task(
        benchmark=benchmark.name,
        kind=benchmark.kind,
        answer_format=answer_format,
        instruction=benchmark.answer_instruction,
    )


def task_context(task: Task | None) -> OpContext:
    """The ops' context for `task`: its extractor and kind; without a task, whole texts and no extractor."""
    if task is None:
        return OpContext()
    if task.answer_format is None:
        return OpContext(task_kind=task.kind)
    return OpContext(extract=get_scorer(task.answer_format).extract, task_kind=task.kind)


def with_instruction(prompt: str, instruction: str) -> str:
    """The prompt with the answer instruction appended (once: a prompt that already ends with it is kept)."""
    text, ask = prompt.strip(), instruction.strip()
    return f"{text}\n\n{ask}" if ask and not text.endswith(ask) else text


def as_scored(task: Task | None, question: str, history: Sequence[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """The question and history as the search asked them: the instruction on the conversation's first user message.

    The search appends it to an item's first turn only, and later turns see that turn as it was sent.
    """
    messages = [dict(m) for m in history]
    if task is None or not task.instruction.strip():
        return question, messages
    first = next((m for m in messages if m["role"] == "user"), None)
    if first is None:
        return with_instruction(question, task.instruction), messages
    first["content"] = with_instruction(first["content"], task.instruction)
    return question, messages


def describe(task: Task | None) -> str:
    """One line on how a deployment reads and asks for answers (the `serve` command prints it)."""
    if task is None:
        return (
            "the file names no task: answers are compared as whole texts and no answer instruction is added; "
            "export it from its run again, or add a task: field, to serve it as it was scored"
        )
    reading = f"answers read as {task.answer_format}" if task.answer_format else "no short answers"
    asking = "; its answer instruction goes on the first user message" if task.instruction.strip() else ""
    return f"task {task.benchmark} ({task.kind}): {reading}{asking}"
