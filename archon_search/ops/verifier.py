"""The verifier op: one call per candidate asking whether it is correct; the correct ones go on."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archon_search.backends.base import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState

VERIFIER_PROMPT = """Check whether the response below correctly and completely answers the question.
Reason briefly, then end with a final line that is exactly "Verdict: correct" or "Verdict: incorrect".

Question:
{question}

Response:
{candidate}

Your check:"""

_VERDICT = re.compile(r"\b(incorrect|not correct|wrong|correct|right|yes|no)\b", re.IGNORECASE)
_NEGATIVE = {"incorrect", "not correct", "wrong", "no"}


def parse_verdict(text: str) -> bool | None:
    """True/False from the last verdict word (prefers a `Verdict:` line); None when there is none."""
    tagged = re.findall(r"verdict\s*[:\-]\s*\**\s*([a-z ]+)", text, re.IGNORECASE)
    words = _VERDICT.findall(tagged[-1]) if tagged else _VERDICT.findall(text)
    if not words:
        return None
    return words[0 if tagged else -1].lower() not in _NEGATIVE


class Verifier(Op):
    """Keeps candidates judged correct, all of them when none is; unreadable verdicts keep the candidate (traced)."""

    name = "verifier"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        return [
            PlannedCall(
                unit.model,
                self.request(unit, VERIFIER_PROMPT.format(question=state.question, candidate=c.text), state),
                target=k,
            )
            for k, c in enumerate(state.candidates)
        ]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        verdicts = [parse_verdict(c.text) for c in completions]
        event: dict = {"verdicts": verdicts}
        unreadable = [k + 1 for k, v in enumerate(verdicts) if v is None]
        if unreadable:
            event["fallback"] = f"verdict unreadable for candidate(s) {unreadable}; kept them"
        kept = [c for c, v in zip(state.candidates, verdicts) if v is not False]
        if not kept:
            event["fallback"] = "no candidate judged correct; kept all"
            kept = list(state.candidates)
        state.candidates = kept
        return event
