"""MATH-500: 500 competition problems (the subset of MATH from "Let's Verify Step by Step"), LaTeX answers."""

from __future__ import annotations

from pathlib import Path

from archon_search.core.items import Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.registry import register_dataset
from archon_search.datasets.sources import HubSource, load_records

HUB = HubSource("HuggingFaceH4/MATH-500", split="test", file_name="math500.jsonl")
FIELDS = ("problem", "answer", "unique_id")


@register_dataset("math")
class Math500(Dataset):
    """MATH-500, scored by math-verify on the last `\\boxed{}` answer; `meta` keeps subject and level."""

    name = "math"
    scorer = "math"
    # competition solutions run long; a cut-off solution has no \\boxed{} answer to score
    max_tokens = 1024

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The problems from `data` (JSON lines with problem, answer, unique_id, subject, level) or the hub."""
        return [
            Item(
                id=str(r["unique_id"]),
                prompt=r["problem"],
                reference=r["answer"],
                meta={"subject": r.get("subject"), "level": r.get("level")},
            )
            for r in load_records(self.name, data, HUB, FIELDS)
        ]
