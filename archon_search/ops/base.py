"""What every op shares: candidates, the per-question state, planned calls, and the op interface.

An op runs in two steps so the executor can batch a whole layer across questions: `plan` says which LM
calls a question needs (pure), the executor makes them all at once, then `apply` turns the completions
into the question's new candidates and a trace event.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from archon_search.core.messages import ChatRequest, Completion
from archon_search.lang.spec import Architecture, Layer, ModelSpec, Unit

log = logging.getLogger(__name__)


#: Characters per token assumed when sizing a prompt: English runs near 4, code, numbers and LaTeX nearer 3.
CHARS_PER_TOKEN = 3
#: Tokens a chat template adds around the messages (role markers, a default system prompt).
PROMPT_OVERHEAD_TOKENS = 64
#: A shrunk candidate keeps at least this many characters, however many candidates there are.
MIN_KEPT_CHARS = 160
CUT_MARK = "\n[... {cut} characters cut to fit the context window ...]\n"


@dataclass
class Candidate:
    """One answer in flight, with the critique a critic attached to it (if any). `truncated`: the token limit cut
    the text short, so its last number is no final answer."""

    text: str
    source: str
    critique: str | None = None
    truncated: bool = False


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

    @property
    def answer_truncated(self) -> bool:
        """Whether the token limit cut the architecture's answer short."""
        return bool(self.candidates) and self.candidates[0].truncated


@dataclass(frozen=True)
class PlannedCall:
    """An LM call an op needs: which model, the request, and which unit/candidate it serves."""

    model: str
    request: ChatRequest
    unit: int = 0
    target: int = 0


@dataclass
class OpContext:
    """What ops need besides the architecture: how to read an answer, how to tell two answers apart, and what
    kind of task this is.

    `same_answer` is the task scorer's own comparison of two extracted answers (math-verify for math): the
    voter merges with it the answers whose `answer_key`s differ. None: the keys alone decide.
    """

    extract: Callable[[str], str | None] = lambda text: None
    task_kind: str = "answer"
    sandbox_timeout_s: float = 10.0
    same_answer: Callable[[str, str], bool] | None = None


class Op(ABC):
    """A layer's behaviour. Subclasses set `name` and implement `plan` and `apply`."""

    name: str = "abstract"

    def __init__(self, index: int, layer: Layer, arch: Architecture, ctx: OpContext):
        self.index = index
        self.layer = layer
        self.arch = arch
        self.ctx = ctx

    def request(
        self,
        unit: Unit,
        prompt: str,
        state: QueryState,
        sample: int = 0,
        system: str | None = None,
        json_schema: dict | None = None,
    ) -> ChatRequest:
        """A request from one user prompt, carrying the conversation so far (multi-turn) and the unit's settings,
        asking for output matching `json_schema` when one is given."""
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        messages += state.history
        messages.append({"role": "user", "content": prompt})
        return ChatRequest.of(
            messages, self.arch.temperature(unit), self.arch.max_tokens(unit), sample, json_schema=json_schema
        )

    def structured(self, unit: Unit) -> bool:
        """Whether the unit's model can be asked for output constrained to a JSON Schema."""
        spec = self._spec(unit)
        return bool(spec is not None and spec.structured_output)

    def fit(
        self,
        units: Sequence[Unit],
        state: QueryState,
        build: Callable[[Sequence[Candidate]], str],
        system: str | None = None,
        candidates: Sequence[Candidate] | None = None,
    ) -> tuple[str, dict | None]:
        """The prompt `build` makes from the candidates, each candidate's text shrunk (head and tail kept) where
        the whole would not fit the smallest context window among `units`' models with their max_tokens to spare.

        Tokens are estimated from characters (`CHARS_PER_TOKEN`, on the safe side); a model whose window is
        unknown sets no limit. Returns the prompt and what was cut (None when nothing was), for the trace.
        """
        candidates = list(state.candidates if candidates is None else candidates)
        prompt = build(candidates)
        windows = [w for w in (self._context_window(u) for u in units) if w is not None]
        if not windows or not candidates:
            return prompt, None
        window = min(windows)
        reserved = max(self.arch.max_tokens(u) for u in units)
        # a max_tokens near the window would leave no prompt at all; the backend or server then caps the answer
        budget_tokens = max(window - reserved - PROMPT_OVERHEAD_TOKENS, window // 4)
        others = sum(len(m["content"]) for m in state.history) + len(system or "")
        budget = budget_tokens * CHARS_PER_TOKEN - others
        if len(prompt) <= budget:
            return prompt, None
        low, high = MIN_KEPT_CHARS, max(len(c.text) for c in candidates)
        while low < high:
            middle = (low + high + 1) // 2
            if len(build(shrink_all(candidates, middle))) <= budget:
                low = middle
            else:
                high = middle - 1
        fitted = build(shrink_all(candidates, low))
        cut = [k + 1 for k, c in enumerate(candidates) if len(c.text) > low]
        log.info(
            "%s: %d candidate(s) shrunk to %d characters to fit a %d-token window", self.name, len(cut), low, window
        )
        return fitted, {
            "context_window": window,
            "reserved_tokens": reserved,
            "prompt_chars": len(prompt),
            "budget_chars": budget,
            "kept_chars": low,
            "candidates": cut,
            "fits": len(fitted) <= budget,
        }

    def _context_window(self, unit: Unit) -> int | None:
        spec = self._spec(unit)
        return spec.context_window if spec is not None else None

    def _spec(self, unit: Unit) -> ModelSpec | None:
        return self.arch.models.get(getattr(unit, "model", None) or "")

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


def shorten(text: str, keep: int) -> str:
    """`text` cut to `keep` characters plus a marker: a third from its start (the approach), the rest from its
    end (where answers conclude)."""
    if len(text) <= keep:
        return text
    head = keep // 3
    return text[:head] + CUT_MARK.format(cut=len(text) - keep) + text[len(text) - (keep - head) :]


def shrink_all(candidates: Sequence[Candidate], keep: int) -> list[Candidate]:
    """The candidates with every text longer than `keep` characters shortened to it."""
    return [replace(c, text=shorten(c.text, keep)) if len(c.text) > keep else c for c in candidates]


def numbered(candidates: Sequence[Candidate], with_critiques: bool = True) -> str:
    """Candidates as `[1] ...`, `[2] ...` blocks (the numbering rankers and critics answer with)."""
    blocks = []
    for i, cand in enumerate(candidates, 1):
        block = f"[{i}]\n{cand.text.strip()}"
        if with_critiques and cand.critique:
            block += f"\nCritique of [{i}]: {cand.critique.strip()}"
        blocks.append(block)
    return "\n\n".join(blocks)
