"""The generator op: answers the question `samples` times per unit."""

from __future__ import annotations

from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState

GENERATOR_SYSTEM = "You are a helpful, careful assistant. Think step by step, then answer."


class Generator(Op):
    """Each unit samples `samples` candidates (see `Op.sampled_calls` for how samples are numbered)."""

    name = "generator"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        return self.sampled_calls(state, state.question, GENERATOR_SYSTEM)

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        state.candidates = [
            Candidate(c.text, f"L{self.index}.U{call.unit}.S{call.request.sample}", truncated=c.truncated)
            for call, c in zip(calls, completions)
        ]
        if not state.first_layer:
            state.first_layer = list(state.candidates)
        return {}
