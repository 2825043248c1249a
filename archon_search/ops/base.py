"""What every op shares: candidates, the per-question state, planned calls, and the op interface.

An op runs in two steps so the executor can batch a whole layer across questions: `plan` says which LM
calls a question needs (pure), the executor makes them all at once, then `apply` turns the completions
into the question's new candidates and a trace event.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archon_search.backends.base import ChatRequest, Completion
from archon_search.spec import Architecture, Layer, Unit


@dataclass
class Candidate:
    """One answer in flight, with the critique a critic attached to it (if any)."""

    text: str
    source: str
    critique: str | None = None


@dataclass
class QueryState:
    """Everything one question accumulates while it passes through the layers."""

    id: str
    question: str
    history: list[dict[str, str]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    first_layer: list[Candidate] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """The architecture's answer: the first candidate left after the last layer."""
        return self.candidates[0].text if self.candidates else ""


@dataclass(frozen=True)
class PlannedCall:
    """An LM call an op needs: which model, the request, and which unit/candidate it serves."""

    model: str
    request: ChatRequest
    unit: int = 0
    target: int = 0


@dataclass
class OpContext:
    """What ops need besides the architecture: how to read an answer, and what kind of task this is."""

    extract: Callable[[str], str | None] = lambda text: None
    task_kind: str = "answer"
    sandbox_timeout_s: float = 10.0


class Op(ABC):
    """A layer's behaviour. Subclasses set `name` and implement `plan` and `apply`."""

    name: str = "abstract"

    def __init__(self, index: int, layer: Layer, arch: Architecture, ctx: OpContext):
        self.index = index
        self.layer = layer
        self.arch = arch
        self.ctx = ctx

    def request(
        self, unit: Unit, prompt: str, state: QueryState, sample: int = 0, system: str | None = None
    ) -> ChatRequest:
        """A request from one user prompt, carrying the conversation so far (multi-turn) and the unit's settings."""
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        messages += state.history
        messages.append({"role": "user", "content": prompt})
        return ChatRequest.of(messages, self.arch.temperature(unit), self.arch.max_tokens(unit), sample)

    def sampled_calls(self, state: QueryState, prompt: str, system: str | None = None) -> list[PlannedCall]:
        """`samples` calls per unit of the layer, all with the same prompt.

        Sample indices count per (model, temperature, max_tokens), so two equal units still ask distinct
        questions while a unit's n-th sample is the same request (one cache entry) whatever other models
        share its layer: a search reuses it across architectures. A model is its backend and model id, not its
        entry name: two entries for one model (say, with other prices) share one cache and one count.
        """
        calls = []
        seen: dict[tuple[object, float, int], int] = {}
        for ui, unit in enumerate(self.layer.units):
            spec = self.arch.models.get(unit.model)
            model = (spec.backend, spec.model_id) if spec is not None else unit.model
            shape = (model, self.arch.temperature(unit), self.arch.max_tokens(unit))
            for _ in range(unit.samples):
                sample = seen.get(shape, 0)
                seen[shape] = sample + 1
                calls.append(PlannedCall(unit.model, self.request(unit, prompt, state, sample, system), ui))
        return calls

    @abstractmethod
    def plan(self, state: QueryState) -> list[PlannedCall]:
        """The LM calls this op needs for one question, in a stable order."""

    @abstractmethod
    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        """Update `state` from the completions of its planned calls; return the trace event's op-specific fields."""


def numbered(candidates: Sequence[Candidate], with_critiques: bool = True) -> str:
    """Candidates as `[1] ...`, `[2] ...` blocks (the numbering rankers and critics answer with)."""
    blocks = []
    for i, cand in enumerate(candidates, 1):
        block = f"[{i}]\n{cand.text.strip()}"
        if with_critiques and cand.critique:
            block += f"\nCritique of [{i}]: {cand.critique.strip()}"
        blocks.append(block)
    return "\n\n".join(blocks)


_INDEX = re.compile(r"\[\s*(\d+)\s*\]|(?:candidate|response|answer)\s*#?\s*(\d+)", re.IGNORECASE)


def cited_indices(text: str, n: int) -> list[int]:
    """0-based candidate indices cited in `text` as `[k]` or `candidate k`, in order of first mention, valid only."""
    seen: list[int] = []
    for match in _INDEX.finditer(text):
        k = int(match.group(1) or match.group(2)) - 1
        if 0 <= k < n and k not in seen:
            seen.append(k)
    return seen
