"""The embedded model through the executor against llama-cpp-python called directly: same prompts, same
sampling settings, same seeds, same loaded model, so any gap in tokens per second is our overhead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from archon_search.backends.base import ChatRequest
from archon_search.backends.embedded import EmbeddedBackend, LoadedModel, load_model
from archon_search.backends.registry import BackendPool
from archon_search.executor import Executor
from archon_search.ops import OpContext, QueryState
from archon_search.spec import EmbeddedModel
from archon_search.validate import Validated, validate_text
from benchmarks.speed_timing import stopwatch

PROMPTS = (
    "What is 12 times 7?",
    "Name a prime number larger than 50.",
    "Why is the sky blue? One sentence.",
    "Give a synonym for happy.",
    "What is the capital of Italy?",
    "Write a haiku about rain.",
    "How many legs does a spider have?",
    "Convert 3 kilometres to metres.",
)


@dataclass
class Round:
    """One timed pass over the prompts: wall seconds, the texts written, the completion tokens."""

    wall_s: float
    texts: list[str]
    completion_tokens: int


@dataclass
class Throughput:
    """Completion tokens per second both ways, and whether both ways wrote the same text."""

    direct_tokens_per_s: float
    executor_tokens_per_s: float
    completion_tokens: int
    same_outputs: bool

    @property
    def ratio(self) -> float:
        """Executor throughput over direct throughput."""
        return self.executor_tokens_per_s / self.direct_tokens_per_s


def _architecture(spec: EmbeddedModel, samples: int, max_tokens: int) -> Validated:
    text = (
        f"name: embedded-speed\ndefaults: {{temperature: 0.7, max_tokens: {max_tokens}}}\n"
        f"layers: [{{generator: {{model: embedded, samples: {samples}}}}}]"
    )
    return validate_text(text, file="embedded-speed", models={"embedded": spec})


def _states(n: int) -> list[QueryState]:
    return [QueryState(id=f"q{i}", question=PROMPTS[i % len(PROMPTS)]) for i in range(n)]


def _direct(model: LoadedModel, requests: list[ChatRequest]) -> Round:
    with stopwatch() as timing:
        outs = [
            model.llm.create_chat_completion(
                messages=r.as_messages(), temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed
            )
            for r in requests
        ]
    texts = [o["choices"][0]["message"].get("content") or "" for o in outs]
    return Round(timing.wall_s, texts, sum(o["usage"]["completion_tokens"] for o in outs))


async def _through_executor(checked: Validated, n_questions: int) -> Round:
    async with BackendPool(checked.arch.models) as pool:
        executor = Executor(checked, pool, OpContext())
        states = _states(n_questions)
        with stopwatch() as timing:
            results = await executor.run(states)
    texts = [call["output"] for r in results for call in r.state.events[0]["calls"]]
    return Round(timing.wall_s, texts, sum(r.usage.completion_tokens for r in results))


def embedded_throughput(n_questions: int, samples: int, max_tokens: int, n_threads: int, repeats: int) -> Throughput:
    """Fastest of `repeats` rounds each way on `n_questions` x `samples` calls; rounds alternate which way
    goes first, so that a slow spell of the machine does not always fall on the same side."""
    spec = EmbeddedModel(n_threads=n_threads)
    checked = _architecture(spec, samples, max_tokens)
    backend = EmbeddedBackend(spec)
    model = load_model(backend.path, spec.n_ctx, backend.n_threads)
    planner = Executor(checked, {"embedded": backend}, OpContext()).ops[0]
    requests = [call.request for state in _states(n_questions) for call in planner.plan(state)]
    # the first call pays one-off setup (buffers, threads): keep it out of both timings
    _direct(model, requests[:1])
    direct: list[Round] = []
    executed: list[Round] = []
    ways = [
        lambda: direct.append(_direct(model, requests)),
        lambda: executed.append(asyncio.run(_through_executor(checked, n_questions))),
    ]
    for r in range(repeats):
        for way in ways if r % 2 == 0 else ways[::-1]:
            # llama.cpp reuses the previous prompt's prefix, which shifts the numerics a little: every way
            # starts from an empty context so that both see the same sequence of evaluations
            model.llm.reset()
            way()
    best_direct = min(direct, key=lambda x: x.wall_s)
    best_executed = min(executed, key=lambda x: x.wall_s)
    return Throughput(
        direct_tokens_per_s=best_direct.completion_tokens / best_direct.wall_s,
        executor_tokens_per_s=best_executed.completion_tokens / best_executed.wall_s,
        completion_tokens=best_direct.completion_tokens,
        same_outputs=all(d.texts == e.texts for d, e in zip(direct, executed)),
    )
