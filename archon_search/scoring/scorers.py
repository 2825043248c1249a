"""The short-answer formats (math, number, exact) and their checks, shared by built-in and user benchmarks.

Each registers with `register_scorer` under the name a benchmark file writes as `scorer:`. Code is checked in code.py, and the
judge, which needs a model, lives in judge.py.
"""

from __future__ import annotations

from archon_search.core.items import Item
from archon_search.scoring.answers import (
    answer_key,
    extract_number,
    extract_text_answer,
    last_boxed,
    normalize_text,
    numbers_match,
    parse_number,
)
from archon_search.scoring.base import Scorer, register_scorer
from archon_search.scoring.mathverify import math_equal

MATH_INSTRUCTION = "Reason step by step, then put your final answer within \\boxed{}."
NUMBER_INSTRUCTION = "Reason step by step, then end with the final numeric answer on its own line, as: Answer: <number>"
EXACT_INSTRUCTION = "End your response with the final answer on its own line, as: Answer: <answer>"
#: math-verify's limit when the voter compares two answers: it compares many pairs, so each gets less than scoring.
SAME_ANSWER_TIMEOUT_S = 2.0


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

    def same_answer(self, a: str, b: str) -> bool:
        """Whether two extracted answers are one answer: by value when both are numbers, else by math-verify."""
        key_a, key_b = answer_key(a), answer_key(b)
        if key_a == key_b:
            return True
        if parse_number(key_a) is not None and parse_number(key_b) is not None:
            return numbers_match(key_a, key_b)
        return math_equal(a, b, timeout_s=SAME_ANSWER_TIMEOUT_S)


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

    def same_answer(self, a: str, b: str) -> bool:
        """Whether two extracted numbers are equal (within `numbers_match`'s tolerance)."""
        return numbers_match(a, b)


@register_scorer("exact")
class ExactScorer(Scorer):
    """A short text answer, compared ignoring case, spacing and surrounding punctuation."""

    instruction = EXACT_INSTRUCTION

    def extract(self, text: str) -> str | None:
        """What the last answer marker ("Answer:", `\\boxed{}`) gives, else the last line."""
        return extract_text_answer(text)

    def score(self, item: Item, text: str) -> float:
        """1.0 when the normalized answer equals the normalized reference."""
        answer = self.extract(text)
        return float(answer is not None and normalize_text(answer) == normalize_text(str(item.reference)))

    def same_answer(self, a: str, b: str) -> bool:
        """Whether two extracted answers are equal as this scorer compares them."""
        return normalize_text(a) == normalize_text(b)
