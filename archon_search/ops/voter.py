"""The voter op (self-consistency): the candidates whose extracted answer is most common; no LM call."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState


def normalize_answer(answer: str) -> str:
    """Whitespace- and case-insensitive form, so `\\frac{1}{2}` and ` \\frac{1}{2} ` vote together."""
    return "".join(answer.split()).lower()


class Voter(Op):
    """Orders candidates by how common their answer is (ties: earliest answer first) and keeps `top_k`.

    Candidates with no extractable answer never win a vote; with no extractor at all, whole texts vote.
    """

    name = "voter"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        return []

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        answers = []
        for cand in state.candidates:
            extracted = self.ctx.extract(cand.text)
            answers.append(normalize_answer(extracted) if extracted is not None else None)
        if all(a is None for a in answers) and self.ctx.task_kind == "judge":
            answers = [normalize_answer(c.text) for c in state.candidates]
        counts = Counter(a for a in answers if a is not None)
        first_seen = {a: answers.index(a) for a in counts}
        order = sorted(
            range(len(answers)),
            key=lambda k: (
                -counts.get(answers[k], 0),
                first_seen.get(answers[k], len(answers)),
                k,
            ),
        )
        state.candidates = [state.candidates[k] for k in order][: self.layer.units[0].top_k]
        event: dict = {"answers": answers, "votes": dict(counts)}
        if not counts:
            event["fallback"] = "no answer could be extracted; kept the incoming order"
        return event
