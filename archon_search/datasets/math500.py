"""MATH-500: 500 competition problems (the subset of MATH from "Let's Verify Step by Step"), LaTeX answers."""

from __future__ import annotations

from pathlib import Path

from archon_search.core.items import Item
from archon_search.datasets.registry import register_benchmark
from archon_search.datasets.sources import HubSource, load_records
from archon_search.scoring.scorers import MathScorer, ScoredBenchmark

HUB = HubSource("HuggingFaceH4/MATH-500", split="test")
FIELDS = ("problem", "answer", "unique_id")


@register_benchmark("math")
class Math500(ScoredBenchmark):
    """MATH-500, scored by math-verify on the last `\\boxed{}` answer; `meta` keeps subject and level."""

    name = "math"
    # competition solutions run long; a cut-off solution has no \\boxed{} answer to score
    max_tokens = 1024

    def __init__(self) -> None:
        super().__init__(MathScorer())

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
