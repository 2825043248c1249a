"""The dataset interface: where a task's questions come from, and which scorer checks their answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from archon_search.core.items import Item
from archon_search.lang.spec import DEFAULT_JUDGE_MAX_TOKENS
from archon_search.scoring.judge import JudgeMode


@dataclass(frozen=True)
class JudgeSettings:
    """How a judged dataset wants its answers graded: the judge's mode, the model entry it names (`--judge NAME`
    wins over it) and the room a judge's reply gets."""

    mode: JudgeMode = "single"
    model: str | None = None
    max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS


class Dataset(ABC):
    """A benchmark's questions. Subclasses set `name` and `scorer` (a registered scorer name) and implement `load`."""

    name: str = "abstract"
    #: The registered scorer (scoring.base) that checks this dataset's answers.
    scorer: str = "exact"
    #: max_tokens of every unit a search builds when its space leaves `max_tokens` unset: room for these answers.
    max_tokens: int = 512
    #: Set on datasets graded by a judge model (`scorer = "judge"`).
    judge: JudgeSettings | None = None

    @abstractmethod
    def load(self, data: str | Path | None = None) -> list[Item]:
        """All items, from `data` when given, else from the dataset's default source."""
