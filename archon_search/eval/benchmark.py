"""A benchmark as `eval` and the search use it: a dataset, the scorer that checks its answers, and its split.

The scorer is built with everything it needs before the benchmark exists: a judged dataset gets its judge's
backend from the run's pool here, so no benchmark can be half-made and fail at its first score.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import BenchKind, Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.registry import get_dataset
from archon_search.eval.task import task_of
from archon_search.lang.spec import Task
from archon_search.runtime.pool import BackendPool
from archon_search.scoring.base import Scorer, get_scorer, scorer_class


def split_items(items: Sequence[Item], seed: int = 0, dev_fraction: float = 0.5) -> tuple[list[Item], list[Item]]:
    """A seeded dev/test split: search scores on dev, the winner is re-scored on test."""
    order = list(items)
    random.Random(f"split:{seed}").shuffle(order)
    cut = max(1, round(len(order) * dev_fraction)) if len(order) > 1 else len(order)
    return order[:cut], order[cut:]


@dataclass
class Benchmark:
    """A scored task: `dataset` gives the items, `scorer` reads and checks the answers, `split` divides the items
    into dev (searched on) and test (the winner re-scored)."""

    dataset: Dataset
    scorer: Scorer

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def kind(self) -> BenchKind:
        return self.scorer.kind

    @property
    def answer_instruction(self) -> str:
        """Appended to the generator's prompt so answers come in a form `extract` can read."""
        return self.scorer.instruction

    @property
    def max_tokens(self) -> int:
        """max_tokens of every unit a search builds when its space leaves `max_tokens` unset."""
        return self.dataset.max_tokens

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The dataset's items, from `data` when given."""
        return self.dataset.load(data)

    def split(self, items: Sequence[Item], seed: int) -> tuple[list[Item], list[Item]]:
        """The seeded dev/test split of `items`."""
        return split_items(items, seed)

    def task(self) -> Task:
        """The `task:` field of architectures scored on this benchmark."""
        return task_of(self.dataset, type(self.scorer))

    def extract(self, text: str) -> str | None:
        """The final answer (or code) in a completion, or None; the voter groups on it."""
        return self.scorer.extract(text)

    def score(self, item: Item, text: str) -> float:
        """The scorer's check of one completion."""
        return self.scorer.score(item, text)

    async def ascore(self, item: Item, text: str) -> float:
        """`score` without blocking the event loop."""
        return await self.scorer.ascore(item, text)

    async def ascore_conversation(self, item: Item, answers: Sequence[str]) -> float:
        """Score an item from the architecture's answer to each of its turns."""
        return await self.scorer.ascore_conversation(item, answers)


def kind_of(dataset: Dataset) -> BenchKind:
    """What a dataset's answers are (short answers, code, judged), known before its scorer is built."""
    return scorer_class(dataset.scorer).kind


def judge_name(dataset: Dataset, name: str | None) -> str | None:
    """The judge a dataset is graded by: `name` (`--judge`), else the one the dataset names; None when not judged."""
    return (name or dataset.judge.model) if dataset.judge is not None else None


def make_benchmark(
    dataset: Dataset,
    pool: BackendPool | None = None,
    judge: str | None = None,
    *,
    judge_max_tokens: int | None = None,
) -> Benchmark:
    """`dataset` with its scorer built; a judged dataset's judge is pool model `judge` (`--judge`), else the one the
    dataset names, served by `pool` so it shares the run's response cache."""
    if dataset.judge is None:
        return Benchmark(dataset, get_scorer(dataset.scorer))
    chosen = judge_name(dataset, judge)
    if not chosen:
        raise BenchmarkError(
            f"benchmark {dataset.name} is scored by a judge model: pass --judge NAME (a model entry, e.g. --judge embedded)"
        )
    if pool is None or chosen not in pool:
        defined = ", ".join(sorted(pool)) if pool is not None else "none"
        raise BenchmarkError(f"judge model {chosen!r} is not defined: add it to the --models FILE (defined: {defined})")
    scorer = get_scorer(
        dataset.scorer,
        backend=pool[chosen],
        mode=dataset.judge.mode,
        spec=pool.spec(chosen),
        max_tokens=judge_max_tokens or dataset.judge.max_tokens,
    )
    return Benchmark(dataset, scorer)


def get_benchmark(
    name_or_path: str | Path,
    pool: BackendPool | None = None,
    judge: str | None = None,
    **options: Any,
) -> Benchmark:
    """The benchmark `--bench` names (a built-in name or a benchmark file), its scorer built (see `make_benchmark`)."""
    return make_benchmark(get_dataset(name_or_path, **options), pool, judge)
