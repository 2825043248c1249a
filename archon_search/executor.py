"""The executor: runs an architecture one layer at a time over a batch of questions.

All LM calls of a layer, across every question, are in flight together: each model gets one batch and
bounds its own concurrency. Calls, tokens, cost and latency are counted per question and per op, and a
question that would need more calls than the static count allows raises `CallBudgetExceeded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from archon_search.backends.base import Backend, Completion
from archon_search.backends.registry import cost_usd
from archon_search.errors import CallBudgetExceeded
from archon_search.ops import OPS, Op, OpContext, PlannedCall, QueryState
from archon_search.validate import Validated

log = logging.getLogger(__name__)


@dataclass
class Usage:
    """LM calls and what they cost. `backend_calls` excludes cache hits; `cost` counts only those."""

    calls: int = 0
    backend_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        """Accumulate another usage into this one."""
        for name in ("calls", "backend_calls", "prompt_tokens", "completion_tokens", "cost", "latency_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class QueryResult:
    """One question after the last layer: its answer, the state it went through, and its usage."""

    state: QueryState
    usage: Usage = field(default_factory=Usage)
    per_op: dict[str, Usage] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def answer(self) -> str:
        return self.state.answer


class Executor:
    """Runs one validated architecture against named backends (model name in the file -> `Backend`)."""

    def __init__(self, checked: Validated, backends: Mapping[str, Backend], ctx: OpContext | None = None):
        self.checked = checked
        self.arch = checked.arch
        self.backends = backends
        self.ctx = ctx or OpContext()
        self.ops: list[Op] = [OPS[layer.op](i, layer, self.arch, self.ctx) for i, layer in enumerate(self.arch.layers)]
        self.limits = [count.calls for count in checked.layers]
        missing = {c.model for op in self.ops for c in _models_of(op)} - set(backends)
        if missing:
            raise ValueError(f"no backend for model(s) {sorted(missing)}")

    async def run(self, states: Sequence[QueryState]) -> list[QueryResult]:
        """Run every layer over `states` (mutated in place) and return one result per state, in order."""
        results = [QueryResult(s) for s in states]
        for op, limit in zip(self.ops, self.limits):
            await self._run_layer(op, limit, results)
        return results

    async def _run_layer(self, op: Op, limit: int, results: list[QueryResult]) -> None:
        started = time.perf_counter()
        plans = [op.plan(r.state) for r in results]
        for r, plan in zip(results, plans):
            if len(plan) > limit:
                raise CallBudgetExceeded(
                    f"layer {op.index} ({op.name}) planned {len(plan)} calls for question {r.id}, "
                    f"static count is {limit}: this is a bug, please report it"
                )
        by_model: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for qi, plan in enumerate(plans):
            for ci, call in enumerate(plan):
                by_model[call.model].append((qi, ci))
        completions: list[list[Completion | None]] = [[None] * len(p) for p in plans]

        async def send(model: str, slots: list[tuple[int, int]]) -> None:
            batch = [plans[qi][ci].request for qi, ci in slots]
            answers = await self.backends[model].complete(batch)
            if len(answers) != len(batch):
                raise RuntimeError(
                    f"backend for {model!r} returned {len(answers)} completions for {len(batch)} requests"
                )
            for (qi, ci), answer in zip(slots, answers):
                completions[qi][ci] = answer

        # every model's batch runs to its end even when another fails, so the answers paid for reach the cache
        sent = await asyncio.gather(*(send(model, slots) for model, slots in by_model.items()), return_exceptions=True)
        failed = next((e for e in sent if isinstance(e, BaseException)), None)
        if failed is not None:
            raise failed
        events = await asyncio.gather(
            *(op.apply(r.state, plan, done) for r, plan, done in zip(results, plans, completions))
        )
        wall = time.perf_counter() - started
        for r, plan, done, event in zip(results, plans, completions, events):
            self._account(op, r, plan, done, event, wall)

    def _account(
        self, op: Op, result: QueryResult, plan: list[PlannedCall], done: list[Completion], event: dict, wall: float
    ) -> None:
        usage = Usage(latency_s=wall)
        calls = []
        for call, completion in zip(plan, done):
            usage.calls += 1
            usage.backend_calls += 0 if completion.cached else 1
            usage.prompt_tokens += completion.prompt_tokens
            usage.completion_tokens += completion.completion_tokens
            spec = self.arch.models.get(call.model)
            if spec is not None and not completion.cached:
                usage.cost += cost_usd(spec, completion.prompt_tokens, completion.completion_tokens) or 0.0
            calls.append(
                {
                    "model": call.model,
                    "unit": call.unit,
                    "sample": call.request.sample,
                    "output": completion.text,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "latency_s": round(completion.latency_s, 4),
                    "cached": completion.cached,
                }
            )
        result.usage.add(usage)
        result.per_op.setdefault(op.name, Usage()).add(usage)
        if event.get("fallback"):
            log.info("question %s, layer %d (%s): %s", result.id, op.index, op.name, event["fallback"])
        result.state.events.append(
            {
                "layer": op.index,
                "op": op.name,
                **event,
                # candidates hold only strings: a shallow copy equals asdict() at a tenth of its cost
                "candidates": [dict(vars(c)) for c in result.state.candidates],
                "calls": calls,
                "usage": dict(vars(usage)),
            }
        )


def _models_of(op: Op):
    return [u for u in op.layer.units if getattr(u, "model", None)]
