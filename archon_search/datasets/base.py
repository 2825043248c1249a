"""The benchmark interface: items, the answer format asked for, an answer extractor and a scorer."""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from archon_search.core.items import BenchKind, Item


class Benchmark(ABC):
    """A scored task. Subclasses set `name`, `kind` and `answer_instruction` and implement the three methods."""

    name: str = "abstract"
    kind: BenchKind = "answer"
    #: Appended to the generator's prompt so answers come in a form `extract` can read.
    answer_instruction: str = ""
    #: max_tokens of every unit a search builds when its space leaves `max_tokens` unset: room for this task's answers.
    max_tokens: int = 512

    @abstractmethod
    def load(self, data: str | Path | None = None) -> list[Item]:
        """All items, from `data` when given, else from the benchmark's default source."""

    @abstractmethod
    def extract(self, text: str) -> str | None:
        """The final answer (or code) in a completion, or None when there is none; the voter groups on it."""

    @abstractmethod
    def score(self, item: Item, text: str) -> float:
        """1.0 for a correct completion, 0.0 for a wrong one (a value in [0, 1] for graded benchmarks)."""

    async def ascore(self, item: Item, text: str) -> float:
        """`score` off the event loop, so slow checkers (sandboxes, math-verify) don't stall other work."""
        return await asyncio.to_thread(self.score, item, text)

    async def ascore_conversation(self, item: Item, answers: Sequence[str]) -> float:
        """Score an item from the architecture's answer to each of its turns; by default the last answer counts."""
        return await self.ascore(item, answers[-1])


def split_items(items: Sequence[Item], seed: int = 0, dev_fraction: float = 0.5) -> tuple[list[Item], list[Item]]:
    """A seeded dev/test split: search scores on dev, the winner is re-scored on test."""
    order = list(items)
    random.Random(f"split:{seed}").shuffle(order)
    cut = max(1, round(len(order) * dev_fraction)) if len(order) > 1 else len(order)
    return order[:cut], order[cut:]
