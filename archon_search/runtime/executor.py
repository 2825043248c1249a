"""The executor: runs an architecture over questions, each question through its layers on its own.

Many questions are in flight at once and a question's next layer starts as soon as its own calls are done, so
varying latencies cost the longest question's path, not every layer's slowest call. A layer sends each of its
models one small batch; each model bounds its own concurrency. Calls, tokens, cost and latency are counted per
question and per op, and a question that would need more calls than the static count allows raises
`CallBudgetExceeded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from archon_search.backends.base import Backend
from archon_search.backends.pricing import cost_usd
from archon_search.core.errors import BackendError, CallBudgetExceeded
from archon_search.core.messages import Completion
from archon_search.core.usage import Usage
from archon_search.lang.validate import Validated
from archon_search.ops import OPS, Op, OpContext, PlannedCall, QueryState

log = logging.getLogger(__name__)


@dataclass
class QueryResult:
    """One question after the last layer (or the layer that failed): its answer, its state, its usage."""

    state: QueryState
    usage: Usage = field(default_factory=Usage)
    per_op: dict[str, Usage] = field(default_factory=dict)
    #: the backend error that stopped this question at some layer (the layers before it are counted as usual)
    error: BackendError | None = None

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def answer(self) -> str:
        return self.state.answer


class Stopped(Exception):
    """A question left before its next layer because the run was told to stop (pruned, or failing)."""


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
        """Answer every state (mutated in place), all in flight together, and return one result each, in order.

        A failure (a backend error included) is raised once every question has stopped, so the answers other
        questions paid for reach the cache.
        """
        answered = await asyncio.gather(*(self.answer(s) for s in states), return_exceptions=True)
        failed = next((a for a in answered if isinstance(a, BaseException)), None)
        failed = failed or next((a.error for a in answered if a.error is not None), None)
        if failed is not None:
            raise failed
        return list(answered)

    async def answer(self, state: QueryState, stop: asyncio.Event | None = None) -> QueryResult:
        """Run one question through every layer, each as soon as its previous layer is done.

        A backend error ends the question, not the run: once the layer's other calls have finished it is kept in
        `error` and in an event of the failing layer. Raises `Stopped` before a layer once `stop` is set.
        """
        result = QueryResult(state)
        for op, limit in zip(self.ops, self.limits):
            if stop is not None and stop.is_set():
                raise Stopped(f"question {state.id} stopped before layer {op.index} ({op.name})")
            try:
                await self._run_layer(op, limit, result)
            except BackendError as exc:
                result.error = exc
                break
        return result

    async def _run_layer(self, op: Op, limit: int, result: QueryResult) -> None:
        started = time.perf_counter()
        plan = op.plan(result.state)
        if len(plan) > limit:
            raise CallBudgetExceeded(
                f"layer {op.index} ({op.name}) planned {len(plan)} calls for question {result.id}, "
                f"static count is {limit}: this is a bug, please report it"
            )
        by_model: dict[str, list[int]] = defaultdict(list)
        for ci, call in enumerate(plan):
            by_model[call.model].append(ci)
        done: list[Completion | None] = [None] * len(plan)

        async def send(model: str, slots: list[int]) -> None:
            batch = [plan[ci].request for ci in slots]
            answers = await self.backends[model].complete(batch)
            if len(answers) != len(batch):
                raise RuntimeError(
                    f"backend for {model!r} returned {len(answers)} completions for {len(batch)} requests"
                )
            for ci, answer in zip(slots, answers):
                done[ci] = answer

        # every model's batch runs to its end even when another fails, so the answers paid for reach the cache;
        # one model needs no gather (a task per layer is most of the executor's own cost)
        try:
            if len(by_model) == 1:
                ((model, slots),) = by_model.items()
                await send(model, slots)
            else:
                sent = await asyncio.gather(*(send(m, slots) for m, slots in by_model.items()), return_exceptions=True)
                failed = next((e for e in sent if isinstance(e, BaseException)), None)
                if failed is not None:
                    raise failed
        except BackendError as failed:
            # the calls were attempted (and may have cost tokens): a failing architecture must not look cheaper
            attempted = Usage(calls=len(plan), backend_calls=len(plan), latency_s=time.perf_counter() - started)
            result.usage.add(attempted)
            result.per_op.setdefault(op.name, Usage()).add(attempted)
            result.state.events.append({"layer": op.index, "op": op.name, "error": str(failed)})
            raise
        event = await op.apply(result.state, plan, done)
        self._account(op, result, plan, done, event, time.perf_counter() - started)

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
                    "finish_reason": completion.finish_reason,
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
