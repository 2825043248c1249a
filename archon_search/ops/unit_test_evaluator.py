"""The unit_test_evaluator op: keeps the `top_k` candidates that pass most of the generated tests.

`execute` runs the tests against each candidate's code in the sandbox (no LM call), each test in a process
of its own, so a test that hangs or crashes costs only itself; the candidate runs after the code in the
question (the problem's imports and helpers, e.g. a HumanEval prompt) and may be just a function body. A
candidate's code is its whole program: a helper in one block and the function in the next both run.
`llm` asks a model, once per candidate, which tests the candidate meets.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Op, PlannedCall, QueryState
from archon_search.scoring import arun_check, compiles, extract_code, extract_program, join_solution

LLM_EVAL_PROMPT = """Here are a question, a candidate response, and {k} tests a correct response must pass.
For each test decide whether the response passes it. Answer with one line per test, exactly like:
1: pass
2: fail

Question:
{question}

Response:
{candidate}

Tests:
{tests}

Results:"""

# a question's code must define or import something: prose that happens to parse ("Sort it.") is no code
_DEFINES = re.compile(r"^\s*(?:def|async\s+def|class|import|from)\s", re.MULTILINE)
_RESULT = re.compile(
    r"^\s*(?:test\s*)?(\d+)\s*[:.)-]\s*\**\s*(pass|passed|fail|failed|yes|no)\b", re.IGNORECASE | re.MULTILINE
)


def parse_test_results(text: str, k: int) -> list[bool] | None:
    """Per-test pass/fail from lines like `1: pass`; None when no line could be read."""
    results: dict[int, bool] = {}
    for m in _RESULT.finditer(text):
        i = int(m.group(1)) - 1
        if 0 <= i < k and i not in results:
            results[i] = m.group(2).lower() in ("pass", "passed", "yes")
    if not results:
        return None
    return [results.get(i, False) for i in range(k)]


def question_code(question: str) -> str:
    """The code a question gives (a signature with its imports and helpers), or "" when it gives none."""
    code = extract_code(question) or ""
    if not _DEFINES.search(code) or not compiles(code):
        return ""
    return code


class UnitTestEvaluator(Op):
    """Orders candidates by tests passed (stable: ties keep incoming order) and keeps `top_k`."""

    name = "unit_test_evaluator"

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        if unit.mode == "execute" or not state.tests:
            return []
        tests = "\n".join(f"{i}. {t}" for i, t in enumerate(state.tests, 1))
        return [
            PlannedCall(
                unit.model,
                self.request(
                    unit,
                    LLM_EVAL_PROMPT.format(k=len(state.tests), question=state.question, candidate=c.text, tests=tests),
                    state,
                ),
                target=k,
            )
            for k, c in enumerate(state.candidates)
        ]

    async def _execute(self, question: str, candidate_text: str, tests: list[str]) -> list[bool]:
        # the task's extractor reads code tasks' programs; without one, every block of the solution still counts
        code = self.ctx.extract(candidate_text) or extract_program(candidate_text) or ""
        solution = join_solution(question_code(question), code)
        timeout = self.ctx.sandbox_timeout_s
        return list(await asyncio.gather(*(arun_check(f"{solution}\n\n{t}\n", timeout) for t in tests)))

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        unit = self.layer.units[0]
        event: dict = {}
        if not state.tests:
            results: list[list[bool] | None] = [None] * len(state.candidates)
        elif unit.mode == "execute":
            results = list(
                await asyncio.gather(*(self._execute(state.question, c.text, state.tests) for c in state.candidates))
            )
        else:
            results = [parse_test_results(c.text, len(state.tests)) for c in completions]
        unreadable = [k + 1 for k, r in enumerate(results) if r is None]
        if unreadable:
            event["fallback"] = f"no test results for candidate(s) {unreadable}; they count as passing none"
        passed = [sum(r) if r else 0 for r in results]
        order = sorted(range(len(passed)), key=lambda k: -passed[k])
        state.candidates = [state.candidates[k] for k in order][: unit.top_k]
        event["test_results"] = results
        event["passed"] = passed
        return event
