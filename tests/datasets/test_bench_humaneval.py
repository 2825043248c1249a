"""HumanEval in the sandbox: every canonical solution passes, empty or wrong ones fail, answers are extracted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from archon_search.datasets.humaneval import HumanEval
from archon_search.eval.benchmark import make_benchmark

BENCH = make_benchmark(HumanEval())
ITEMS = BENCH.load()


def test_every_canonical_solution_passes_and_an_empty_one_fails() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        passed = list(pool.map(lambda item: BENCH.score(item, item.meta["canonical_solution"]), ITEMS))
        empty = list(pool.map(lambda item: BENCH.score(item, ""), ITEMS[:16]))
    failing = [item.id for item, score in zip(ITEMS, passed) if score != 1.0]
    assert failing == []
    assert empty == [0.0] * 16


@pytest.mark.parametrize(
    "completion",
    [
        "```python\n{prompt}{body}```",
        "Here is the function:\n\n```python\nfrom typing import List\n\n{whole}```\nIt loops over pairs.",
        "```\n{whole}```",
        "{body}",
        "```python\n{flush_body}\n```",
    ],
)
def test_completion_forms_that_pass(completion: str) -> None:
    item = ITEMS[0]
    body = item.meta["canonical_solution"]
    whole = "def has_close_elements(numbers, threshold):\n" + body
    flush_body = "\n".join(line[4:] for line in body.splitlines())
    text = completion.format(prompt=item.meta["code_prompt"], body=body, whole=whole, flush_body=flush_body)
    assert BENCH.score(item, text) == 1.0


def test_wrong_crashing_or_hanging_code_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BENCH.scorer, "timeout_s", 2.0)
    item = ITEMS[0]
    assert BENCH.score(item, "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```") == 0.0
    assert BENCH.score(item, "```python\ndef has_close_elements(numbers, threshold):\n    while True: pass\n```") == 0.0
    assert BENCH.score(item, "```python\ndef has_close_elements(numbers, threshold)\n```") == 0.0
