"""The `Scorer` interface every way of checking answers implements, and the registry benchmark files name them by.

A scorer owns the instruction that asks for its answer format, the extractor that reads the answer back (the
voter groups on it, the unit-test evaluator runs what it reads), and the check against an item's reference. A
scorer that needs a model (the judge) gets it when it is built, so no scorer exists half-made.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import BenchKind, Item


class Scorer(ABC):
    """An answer format: the instruction asking for it, its extractor, and its check against a reference."""

    kind: BenchKind = "answer"
    instruction: str = ""

    @abstractmethod
    def extract(self, text: str) -> str | None:
        """The answer in a completion, or None."""

    @abstractmethod
    def score(self, item: Item, text: str) -> float:
        """1.0 when the completion's answer matches `item.reference`, else 0.0 (a value in [0, 1] when graded)."""

    def same_answer(self, a: str, b: str) -> bool:
        """Whether two extracted answers are the same answer (the voter merges their groups); by default, equal."""
        return a == b

    async def ascore(self, item: Item, text: str) -> float:
        """`score` off the event loop, so slow checkers (sandboxes, math-verify) don't stall other work."""
        return await asyncio.to_thread(self.score, item, text)

    async def ascore_conversation(self, item: Item, answers: Sequence[str]) -> float:
        """Score an item from the architecture's answer to each of its turns; by default the last answer counts."""
        return await self.ascore(item, answers[-1])


SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(name: str) -> Callable[[type[Scorer]], type[Scorer]]:
    """Decorator: make a scorer available to benchmark files as `scorer: NAME`."""

    def add(cls: type[Scorer]) -> type[Scorer]:
        SCORERS[name] = cls
        return cls

    return add


def scorer_class(name: str) -> type[Scorer]:
    """The registered scorer class, to read its `kind` and `instruction` without building it."""
    _import_builtins()
    if name not in SCORERS:
        raise BenchmarkError(f"scorer {name!r} is not available; use one of: {', '.join(sorted(SCORERS))}")
    return SCORERS[name]


def get_scorer(name: str, **needs: Any) -> Scorer:
    """A new scorer by name, built with what it needs (the judge: its backend); BenchmarkError naming the known
    ones otherwise."""
    return scorer_class(name)(**needs)


def _import_builtins() -> None:
    # the built-in scorers register on import; importing them here keeps `get_scorer` usable on its own
    from archon_search.scoring import code, judge, scorers  # noqa: F401
