"""How a deployment answers as the trial that scored it: the ops' context and the question, from the `task:` field.

A search appends the benchmark's answer instruction to each item's first turn and lets ops read answers with the
benchmark's extractor; an architecture file names both (eval/task.py writes the field), and `serve`,
`Architecture.load` and `eval` rebuild them here.
"""

from __future__ import annotations

from collections.abc import Sequence

from archon_search.lang.spec import Task
from archon_search.ops.base import OpContext
from archon_search.scoring.base import Scorer, get_scorer


def task_context(task: Task | None) -> OpContext:
    """The ops' context for `task`: its extractor and kind; without a task, whole texts and no extractor."""
    if task is None:
        return OpContext()
    if task.answer_format is None:
        return OpContext(task_kind=task.kind)
    return scorer_context(get_scorer(task.answer_format))


def scorer_context(scorer: Scorer) -> OpContext:
    """The ops' context of a task checked by `scorer`: its extractor, its kind, its comparison of two answers."""
    return OpContext(extract=scorer.extract, task_kind=scorer.kind, same_answer=scorer.same_answer)


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
