"""The unit_test_generator op: one call that writes tests for the question; candidates pass through."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState
from archon_search.scoring import compiles

CODE_TESTS_PROMPT = """Write {k} Python unit tests for a correct solution to the task below.
Each test is ONE line: a single `assert` statement calling the function, e.g.
assert add(2, 3) == 5
Write only the {k} assert lines, nothing else.

Task:
{question}

Tests:"""

LLM_TESTS_PROMPT = """Write {k} short, checkable tests that a correct response to the question below must pass
(facts it must state, constraints it must meet, results it must reach). One test per line, numbered 1. to {k}.

Question:
{question}

Tests:"""

_ASSERT = re.compile(r"^\s*(?:>>>\s*)?(assert\b.+?)\s*$", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s*(.+?)\s*$", re.MULTILINE)


def parse_tests(text: str, mode: str, k: int) -> list[str]:
    """Up to `k` tests: `assert` lines for execute mode, numbered or bulleted lines for llm mode."""
    pattern = _ASSERT if mode == "execute" else _NUMBERED
    tests = [m.group(1) for m in pattern.finditer(text.replace("```python", "").replace("```", ""))]
    if mode == "execute":
        tests = [t for t in tests if compiles(t)]
    return tests[:k]


class UnitTestGenerator(Op):
    """Writes tests in the form the following evaluator uses (asserts to execute, or statements for a model)."""

    name = "unit_test_generator"

    @property
    def mode(self) -> str:
        following = self.arch.layers[self.index + 1].units[0]
        return following.mode

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        template = CODE_TESTS_PROMPT if self.mode == "execute" else LLM_TESTS_PROMPT
        prompt = template.format(k=unit.num_tests, question=state.question)
        return [PlannedCall(unit.model, self.request(unit, prompt, state))]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        state.tests = parse_tests(completions[0].text, self.mode, self.layer.units[0].num_tests)
        event: dict = {"tests": state.tests}
        if not state.tests:
            event["fallback"] = "no test could be parsed; the evaluator will keep the incoming order"
        return event
