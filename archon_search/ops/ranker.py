"""The ranker op: one call that orders the candidates; the best `top_k` go on."""

from __future__ import annotations

from collections.abc import Sequence

from archon_search.backends.base import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState, cited_indices, numbered

RANKER_PROMPT = """Below are a question and {n} candidate responses, numbered [1] to [{n}].
Rank ALL candidates from best to worst by correctness and quality.
Answer with the ranking only, in this format: [2] > [1] > [3]

Question:
{question}

Candidates:
{candidates}

Ranking:"""


def parse_ranking(text: str, n: int) -> list[int] | None:
    """0-based order from an answer like `[2] > [1] > [3]` amid stray text; unranked ones follow in incoming
    order. None when no valid index is found."""
    cited = cited_indices(text, n)
    if not cited:
        return None
    return cited + [k for k in range(n) if k not in cited]


class Ranker(Op):
    """Keeps the `top_k` best candidates; an unreadable ranking keeps the incoming order (traced)."""

    name = "ranker"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        prompt = RANKER_PROMPT.format(
            n=len(state.candidates), question=state.question, candidates=numbered(state.candidates)
        )
        return [PlannedCall(unit.model, self.request(unit, prompt, state))]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        n = len(state.candidates)
        order = parse_ranking(completions[0].text, n)
        event: dict = {}
        if order is None:
            order = list(range(n))
            event["fallback"] = "ranking unreadable; kept the incoming order"
        state.candidates = [state.candidates[k] for k in order][: self.layer.units[0].top_k]
        event["ranking"] = [k + 1 for k in order]
        return event
