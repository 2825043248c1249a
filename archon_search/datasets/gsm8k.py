"""GSM8K: 1,319 grade-school math word problems (test split); the answer is the number after `####`."""

from __future__ import annotations

from pathlib import Path

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.registry import register_dataset
from archon_search.datasets.sources import HubSource, load_records
from archon_search.scoring.answers import format_number, parse_number

HUB = HubSource("openai/gsm8k", split="test", config="main", file_name="gsm8k_test.jsonl")
FIELDS = ("question", "answer")


def gsm8k_reference(solution: str) -> str:
    """The final number of a GSM8K solution (after `####`), commas removed."""
    _, sep, tail = solution.rpartition("####")
    value = parse_number(tail) if sep else None
    if value is None:
        raise BenchmarkError(f"gsm8k: a solution does not end with '#### <number>': {solution[-60:]!r}")
    return format_number(value)


@register_dataset("gsm8k")
class GSM8K(Dataset):
    """GSM8K test problems, scored by comparing the final number with the reference."""

    name = "gsm8k"
    scorer = "number"

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The problems from `data` (JSON lines with question and answer) or the hub; ids are `gsm8k-<line>`."""
        return [
            Item(id=f"gsm8k-{i}", prompt=r["question"], reference=gsm8k_reference(r["answer"]))
            for i, r in enumerate(load_records(self.name, data, HUB, FIELDS))
        ]
