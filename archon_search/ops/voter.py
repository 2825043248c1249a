"""The voter op (self-consistency): the candidates whose extracted answer is most common; no LM call.

Answers vote together when they are one answer written differently: first by `answer_key` (`\\frac{3}{4}` and
`0.75`, `x = 3` and `3`, `$18` and `18 eggs`), then, where the task can compare answers itself
(`OpContext.same_answer`, math-verify for math), the groups left are merged with it within `MERGE_BUDGET_S`.
A candidate the token limit cut short does not vote while complete ones exist: its last number is no answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from archon_search.core.errors import BenchmarkError
from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState
from archon_search.scoring import answer_key, looks_truncated

#: Seconds the voter may spend merging answer groups with `same_answer`; groups not compared in time stay apart.
MERGE_BUDGET_S = 3.0
#: Only the largest groups are compared pairwise (at most n(n-1)/2 comparisons): a rare answer cannot win anyway.
MAX_MERGED_GROUPS = 8


def normalize_answer(answer: str) -> str:
    """Whitespace- and case-insensitive form, so `\\frac{1}{2}` and ` \\frac{1}{2} ` vote together."""
    return "".join(answer.split()).lower()


class Voter(Op):
    """Orders candidates by how common their answer is (ties: earliest answer first) and keeps `top_k`.

    Candidates with no extractable answer never win a vote; with no extractor at all, whole texts vote. Cut
    candidates (`Candidate.truncated`, or a text that clearly stops mid-sentence) do not vote; when every
    candidate is cut, the incoming order stays.
    """

    name = "voter"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        return []

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        cut = [c.truncated or looks_truncated(c.text) for c in state.candidates]
        answers = self._answers(state.candidates, cut)
        keys = [answer_key(a) if a is not None else None for a in answers]
        by_key: dict[str, list[int]] = {}
        for k, key in enumerate(keys):
            if key is not None:
                by_key.setdefault(key, []).append(k)
        groups, complete = await self._merge(_largest_first(by_key.values()), answers)
        rank = {k: (-len(g), g[0], k) for g in groups for k in g}
        order = sorted(range(len(keys)), key=lambda k: rank.get(k, (0, len(keys), k)))
        state.candidates = [state.candidates[k] for k in order][: self.layer.units[0].top_k]
        event: dict = {"answers": keys, "votes": {keys[g[0]]: len(g) for g in groups}}
        notes = (
            [] if complete else [f"not every answer could be compared within {MERGE_BUDGET_S:g}s; some may vote apart"]
        )
        if any(cut):
            event["cut"] = [k + 1 for k, c in enumerate(cut) if c]
            notes.append(
                "every candidate was cut by the token limit; kept the incoming order"
                if all(cut)
                else f"candidate(s) {event['cut']} cut by the token limit; their answers do not vote"
            )
        elif not groups:
            notes.append("no answer could be extracted; kept the incoming order")
        if notes:
            event["fallback"] = "; ".join(notes)
        return event

    def _answers(self, candidates: Sequence[Candidate], cut: Sequence[bool]) -> list[str | None]:
        """Each candidate's extracted answer (None when it is cut short or has none); whole texts on judged
        tasks, which have no short answer."""
        if all(cut):
            return [None] * len(candidates)
        answers = [None if c_cut else self.ctx.extract(c.text) for c, c_cut in zip(candidates, cut)]
        if all(a is None for a in answers) and self.ctx.task_kind == "judge":
            answers = [None if c_cut else normalize_answer(c.text) for c, c_cut in zip(candidates, cut)]
        return answers

    async def _merge(self, groups: list[list[int]], answers: Sequence[str | None]) -> tuple[list[list[int]], bool]:
        """`groups` (candidate indices, largest first) with those `same_answer` calls equal merged into the
        earlier one, largest first again; and whether every comparison was made within `MERGE_BUDGET_S`."""
        same = self.ctx.same_answer
        if same is None or len(groups) < 2:
            return groups, True
        merged = [list(g) for g in groups]
        head = merged[:MAX_MERGED_GROUPS]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MERGE_BUDGET_S
        for i, first in enumerate(head):
            for second in head[i + 1 :]:
                if not first or not second:
                    continue
                comparison = asyncio.to_thread(same, answers[first[0]] or "", answers[second[0]] or "")
                try:
                    equal = await asyncio.wait_for(comparison, max(deadline - loop.time(), 0))
                except (asyncio.TimeoutError, BenchmarkError):
                    # a comparison that overruns (or a checker that cannot start) leaves the rest apart
                    return _largest_first(merged), False
                if equal:
                    first.extend(second)
                    second.clear()
        return _largest_first(merged), True


def _largest_first(groups: Iterable[list[int]]) -> list[list[int]]:
    """Non-empty groups of candidate indices, each in order, the most votes first (ties: the earliest answer)."""
    return sorted((sorted(g) for g in groups if g), key=lambda g: (-len(g), g[0]))
