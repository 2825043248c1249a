"""The fuser op: merges the incoming candidates (and their critiques) into new, better candidates."""

from __future__ import annotations

from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState, numbered

FUSER_PROMPT = """You are given a question and several candidate responses to it, possibly with critiques.
Some candidates may be wrong. Critically evaluate them, then write ONE single, accurate, complete response
to the question. Do not mention the candidates; answer the question directly.

Question:
{question}

Candidate responses:
{candidates}

Your response to the question:"""


class Fuser(Op):
    """Each unit writes `samples` fused answers from all incoming candidates."""

    name = "fuser"

    def _prompt(self, state: QueryState) -> tuple[str, dict | None]:
        """One prompt for every unit, fitted to the smallest context window among them."""
        return self.fit(
            self.layer.units,
            state,
            lambda candidates: FUSER_PROMPT.format(question=state.question, candidates=numbered(candidates)),
        )

    def plan(self, state: QueryState) -> list[PlannedCall]:
        return self.sampled_calls(state, self._prompt(state)[0])

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        fused_from = len(state.candidates)
        _, truncated = self._prompt(state)
        state.candidates = [
            Candidate(c.text, f"L{self.index}.U{call.unit}.S{call.request.sample}", truncated=c.truncated)
            for call, c in zip(calls, completions)
        ]
        event: dict = {"fused_from": fused_from}
        if truncated:
            event["truncated"] = truncated
        return event
