"""Answer formats and how to score them (math, number, exact, code), shared by built-in and user benchmarks.

A `Scorer` owns the instruction that asks for an answer format, the extractor that reads it back, and the
check against the reference. `ScoredBenchmark` is a benchmark whose scoring is one of them; new answer formats
register with `register_scorer`. (Judged benchmarks live in judged.py: they need a judge model.)
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable

from archon_search.benchmarks.answers import (
    extract_code,
    extract_number,
    extract_text_answer,
    last_boxed,
    normalize_text,
    numbers_match,
)
from archon_search.benchmarks.base import BenchKind, Benchmark, Item
from archon_search.benchmarks.mathverify import math_equal
from archon_search.errors import BenchmarkError
from archon_search.sandbox import run_python

MATH_INSTRUCTION = "Reason step by step, then put your final answer within \\boxed{}."
NUMBER_INSTRUCTION = "Reason step by step, then end with the final numeric answer on its own line, as: Answer: <number>"
EXACT_INSTRUCTION = "End your response with the final answer on its own line, as: Answer: <answer>"
CODE_INSTRUCTION = "Reply with the complete Python code in a single ```python code block."

#: Wall-clock limit for running one candidate program against its tests.
CODE_TIMEOUT_S = 10.0


class Scorer(ABC):
    """An answer format: the instruction asking for it, its extractor, and its check against a reference."""

    kind: BenchKind = "answer"
    instruction: str = ""

    @abstractmethod
    def extract(self, text: str) -> str | None:
        """The answer in a completion, or None."""

    @abstractmethod
    def score(self, item: Item, text: str) -> float:
        """1.0 when the completion's answer matches `item.reference`, else 0.0."""


ScorerFactory = Callable[[], Scorer]
SCORERS: dict[str, ScorerFactory] = {}


def register_scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Decorator: make a scorer available to benchmark files as `scorer: NAME`."""

    def add(factory: ScorerFactory) -> ScorerFactory:
        SCORERS[name] = factory
        return factory

    return add


def get_scorer(name: str) -> Scorer:
    """A new scorer by name; BenchmarkError naming the known ones otherwise."""
    if name not in SCORERS:
        raise BenchmarkError(f"scorer {name!r} is not available; use one of: {', '.join(sorted(SCORERS))}")
    return SCORERS[name]()


@register_scorer("math")
class MathScorer(Scorer):
    """LaTeX answers in `\\boxed{}`, compared for mathematical equivalence by math-verify."""

    instruction = MATH_INSTRUCTION

    def extract(self, text: str) -> str | None:
        """The last `\\boxed{}`'s contents."""
        return last_boxed(text)

    def score(self, item: Item, text: str) -> float:
        """1.0 when the boxed answer is equivalent to the reference."""
        answer = self.extract(text)
        return float(answer is not None and math_equal(str(item.reference), answer))


@register_scorer("number")
class NumberScorer(Scorer):
    """A final number, compared by value (`1,000` = `1000.0` = `$1000`)."""

    instruction = NUMBER_INSTRUCTION

    def extract(self, text: str) -> str | None:
        """The final number, canonically spelled."""
        return extract_number(text)

    def score(self, item: Item, text: str) -> float:
        """1.0 when the final number equals the reference."""
        return float(numbers_match(self.extract(text), str(item.reference)))


@register_scorer("exact")
class ExactScorer(Scorer):
    """A short text answer, compared ignoring case, spacing and surrounding punctuation."""

    instruction = EXACT_INSTRUCTION

    def extract(self, text: str) -> str | None:
        """The text after the last "Answer:", else the last `\\boxed{}`, else the last line."""
        return extract_text_answer(text)

    def score(self, item: Item, text: str) -> float:
        """1.0 when the normalized answer equals the normalized reference."""
        answer = self.extract(text)
        return float(answer is not None and normalize_text(answer) == normalize_text(str(item.reference)))


@register_scorer("code")
class CodeScorer(Scorer):
    """Python code, run in the sandbox followed by the reference (test code); passing means exit status 0.

    When `item.meta` holds a `code_prompt` (a signature and docstring, as in HumanEval), the completion may
    be just the function body, or the whole function; the prompt is put first either way, so the imports and
    helpers it defines are there.
    """

    kind: BenchKind = "code"
    instruction = CODE_INSTRUCTION

    def __init__(self, timeout_s: float = CODE_TIMEOUT_S):
        self.timeout_s = timeout_s

    def extract(self, text: str) -> str | None:
        """The completion's code (fenced block, or the raw text)."""
        return extract_code(text)

    def program(self, item: Item, text: str) -> str:
        """The program to run: the prompt's code and the completion's, then the tests."""
        code = self.extract(text) or ""
        prompt = item.meta.get("code_prompt", "")
        entry = item.meta.get("entry_point")
        if prompt and not (entry and re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)):
            code = _as_body(code)
            solution = prompt + code
        else:
            solution = f"{prompt}\n\n{code}" if prompt else code
        return f"{solution}\n\n{item.reference}\n"

    def score(self, item: Item, text: str) -> float:
        """1.0 when the program exits with status 0 within `timeout_s`."""
        return float(run_python(self.program(item, text), timeout_s=self.timeout_s).ok)


def _as_body(code: str) -> str:
    """A completion that continues a function: indent it if the model wrote the body flush left."""
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [f"    {line}" if line.strip() else line for line in lines]
    return "\n".join(lines) + "\n"


class ScoredBenchmark(Benchmark):
    """A benchmark that scores with a `Scorer`; subclasses implement `load` and set `name`."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.kind = scorer.kind
        self.answer_instruction = scorer.instruction

    def extract(self, text: str) -> str | None:
        """The scorer's extractor."""
        return self.scorer.extract(text)

    def score(self, item: Item, text: str) -> float:
        """The scorer's check."""
        return self.scorer.score(item, text)
