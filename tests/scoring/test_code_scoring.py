"""Code scoring as the official HumanEval harness does it (main blocks unrun, only reaching the end of the tests
passes), and the execute-mode unit-test evaluator: candidates run after the question's code, one test at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.datasets.humaneval import HumanEval
from archon_search.eval.benchmark import make_benchmark
from archon_search.eval.evaluate import question_text
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.ops import Candidate, OpContext, QueryState
from archon_search.ops.unit_test_evaluator import UnitTestEvaluator, question_code
from archon_search.scoring.base import get_scorer
from archon_search.scoring.code import join_solution, run_check
from archon_search.scoring.sandbox import isolation_summary

BENCH = make_benchmark(HumanEval())
ITEM = BENCH.load()[0]  # has_close_elements(numbers: List[float], threshold: float) -> bool

WRONG_WITH_OWN_UNITTEST = """Here is my solution, with tests:

```python
import unittest
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    return False


class TestClose(unittest.TestCase):
    def test_far(self):
        self.assertFalse(has_close_elements([1.0, 5.0], 0.5))


if __name__ == "__main__":
    unittest.main()
```"""

RIGHT_WITH_INPUT_DEMO = """```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])


if __name__ == "__main__":
    values = [float(x) for x in input("numbers: ").split()]
    print(has_close_elements(values, float(input("threshold: "))))
```"""


def test_a_wrong_function_with_its_own_unittest_main_fails() -> None:
    assert BENCH.score(ITEM, WRONG_WITH_OWN_UNITTEST) == 0.0


def test_a_right_function_with_a_demo_block_reading_input_passes() -> None:
    assert BENCH.score(ITEM, RIGHT_WITH_INPUT_DEMO) == 1.0


@pytest.mark.parametrize(
    "escape",
    ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"],
)
def test_exiting_before_the_tests_fails(escape: str) -> None:
    wrong = f"```python\ndef has_close_elements(numbers, threshold):\n    return True\n\n{escape}\n```"
    assert BENCH.score(ITEM, wrong) == 0.0


def test_a_check_passes_only_when_it_runs_to_its_end() -> None:
    assert run_check("x = 1\nassert x == 1\n")
    assert not run_check("assert 1 == 2\n")
    assert not run_check("import atexit, os\natexit.register(lambda: None)\nos._exit(0)\nassert True\n")
    # output the code prints, however long, does not hide the end
    assert run_check("print('x' * 100_000)\n")


def test_join_solution_puts_the_prompt_first_and_continues_a_body() -> None:
    prompt = "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    '''Sum.'''\n"
    whole = "def total(xs: List[int]) -> int:\n    return sum(xs)\n"
    assert join_solution(prompt, whole).endswith("\n\n" + whole) and join_solution(prompt, whole).startswith(prompt)
    assert join_solution(prompt, "return sum(xs)\n") == prompt + "    return sum(xs)\n"
    assert join_solution(prompt, "    return sum(xs)\n") == prompt + "    return sum(xs)\n"
    assert join_solution("", whole) == whole
    assert join_solution("this is not ( code", whole) == whole


def test_question_code_is_the_code_block_of_the_question() -> None:
    question = question_text(BENCH, ITEM.prompt)
    assert question_code(question) == ITEM.meta["code_prompt"]
    assert question_code("Sort the list.") == ""
    assert question_code("What is 2 + 2?") == ""


def _evaluator(timeout_s: float = 3.0) -> UnitTestEvaluator:
    checked = validate_text(
        "name: a\nlayers:\n  - generator: {model: m, samples: 3}\n  - unit_test_generator: {model: m, num_tests: 3}\n"
        "  - unit_test_evaluator: {mode: execute, top_k: 3}\n",
        models={"m": ScriptedModel(backend="scripted", responses=["x"])},
    )
    ctx = OpContext(extract=get_scorer("code").extract, task_kind="code", sandbox_timeout_s=timeout_s)
    return UnitTestEvaluator(2, checked.arch.layers[2], checked.arch, ctx)


def _evaluate(question: str, candidates: list[str], tests: list[str], timeout_s: float = 3.0) -> dict:
    state = QueryState(id="q", question=question, candidates=[Candidate(c, "g") for c in candidates], tests=list(tests))
    return asyncio.run(_evaluator(timeout_s).apply(state, [], []))


HUMANEVAL_TESTS = [
    "assert has_close_elements([1.0, 2.0, 3.9, 4.0], 0.3) == True",
    "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
    "assert has_close_elements([], 1.0) == False",
]


def test_execute_mode_runs_candidates_after_the_prompts_imports() -> None:
    question = question_text(BENCH, ITEM.prompt)
    no_import = (
        "```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```"
    )
    body_only = (
        "```python\n    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n"
        "            if abs(a - b) < threshold:\n                return True\n    return False\n```"
    )
    wrong = "```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return True\n```"
    event = _evaluate(question, [wrong, no_import, body_only], HUMANEVAL_TESTS)
    assert event["passed"] == [1, 3, 3]


def test_execute_mode_candidates_reach_the_prompts_helpers() -> None:
    question = (
        "Complete the function.\n\n```python\nimport math\n\n\ndef is_square(n: int) -> bool:\n"
        "    return math.isqrt(n) ** 2 == n\n\n\ndef count_squares(xs: list) -> int:\n"
        '    """How many of xs are perfect squares."""\n```'
    )
    candidate = "```python\ndef count_squares(xs):\n    return sum(1 for x in xs if is_square(x))\n```"
    tests = ["assert count_squares([1, 2, 4]) == 2", "assert count_squares([]) == 0"]
    assert _evaluate(question, [candidate], tests)["passed"] == [2]


def test_a_hanging_test_costs_only_itself() -> None:
    candidate = "```python\ndef add(a, b):\n    while a == 99:\n        pass\n    return a + b\n```"
    tests = ["assert add(1, 2) == 3", "assert add(99, 1) == 100", "assert add(2, 2) == 4", "assert add(0, 0) == 1"]
    event = _evaluate("Write add(a, b).", [candidate], tests, timeout_s=1.5)
    assert event["test_results"] == [[True, False, True, False]]
    assert event["passed"] == [2]


def test_a_candidate_main_block_does_not_run_under_the_evaluator() -> None:
    candidate = "```python\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(int(input()), 1))\n```"
    assert _evaluate("Write add(a, b).", [candidate], ["assert add(1, 2) == 3"])["passed"] == [1]


def test_eval_on_a_code_benchmark_says_which_isolation_is_active(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text("m: {backend: scripted, responses: ['```python\\ndef f():\\n    return 1\\n```']}\n")
    arch = tmp_path / "one.yaml"
    arch.write_text("name: one\nlayers: [{generator: {model: m}}]\n")
    common = ["eval", str(arch), "--models", str(models), "--no-cache", "--limit", "1", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*common, "--bench", "humaneval"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("sandbox: ")]
    assert lines == [isolation_summary()]
    plain = CliRunner().invoke(app, [*common, "--bench", "arith"], env={"COLUMNS": "300"})
    assert plain.exit_code == 0, plain.output
    assert "sandbox: " not in plain.output
