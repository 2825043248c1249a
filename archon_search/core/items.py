"""One question of a task, and the kinds of answer a task can ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

BenchKind = Literal["answer", "code", "judge"]


@dataclass(frozen=True)
class Item:
    """One benchmark question. `turns` holds every user turn of a multi-turn item; `prompt` is the first."""

    id: str
    prompt: str
    reference: Any = None
    turns: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def all_turns(self) -> tuple[str, ...]:
        return self.turns or (self.prompt,)
