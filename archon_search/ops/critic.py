"""The critic op: one call that writes strengths and weaknesses for every candidate."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archon_search.backends.base import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState, numbered

CRITIC_PROMPT = """Below are a question and {n} candidate responses, numbered [1] to [{n}].
For EACH candidate, write its strengths and weaknesses (is it correct? complete? clear?).
Use exactly this format, one block per candidate:

[1] Strengths: ... Weaknesses: ...
[2] Strengths: ... Weaknesses: ...

Question:
{question}

Candidates:
{candidates}

Critiques:"""

_BLOCK = re.compile(r"^\s*(?:\*\*)?\[?\s*(?:candidate|response)?\s*#?\s*(\d+)\s*[\]\):.]", re.IGNORECASE | re.MULTILINE)


def parse_critiques(text: str, n: int) -> dict[int, str]:
    """0-based candidate index -> critique, from blocks that start a line with `[k]` (or `Candidate k:`)."""
    marks = [(m.start(), m.end(), int(m.group(1)) - 1) for m in _BLOCK.finditer(text)]
    critiques: dict[int, str] = {}
    for (start, end, k), nxt in zip(marks, marks[1:] + [(len(text), 0, -1)]):
        body = text[end : nxt[0]].strip(" *\n\t-:")
        if 0 <= k < n and body and k not in critiques:
            critiques[k] = body
    return critiques


class Critic(Op):
    """Attaches a critique to each candidate; candidates whose critique can't be found keep none (traced)."""

    name = "critic"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        prompt = CRITIC_PROMPT.format(
            n=len(state.candidates), question=state.question, candidates=numbered(state.candidates, False)
        )
        return [PlannedCall(unit.model, self.request(unit, prompt, state))]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        critiques = parse_critiques(completions[0].text, len(state.candidates))
        if len(state.candidates) == 1 and not critiques and completions[0].text.strip():
            critiques = {0: completions[0].text.strip()}
        for k, cand in enumerate(state.candidates):
            cand.critique = critiques.get(k)
        missing = [k + 1 for k in range(len(state.candidates)) if k not in critiques]
        event: dict = {"critiques": [c.critique for c in state.candidates]}
        if missing:
            event["fallback"] = f"no critique parsed for candidate(s) {missing}; they go on without one"
        return event
