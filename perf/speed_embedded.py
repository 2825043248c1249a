"""The embedded model, four figures.

Overhead: through the executor against llama-cpp-python called directly (same prompts, sampling settings, seeds
and loaded model), so any gap in tokens per second is ours. Parallel decoding: one model using every core, called
one request at a time, against one single-threaded model per core decoding side by side. Batching: the backend's
batch engine given 8 requests at once against the same requests one at a time, and at once again while a second
process decodes beside it (the thread default must not collapse then).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archon_search.backends.embedded import EmbeddedBackend, LoadedModel, default_model_path, load_model
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import EmbeddedModel
from archon_search.lang.validate import Validated, validate_text
from archon_search.ops import OpContext, QueryState
from archon_search.runtime.executor import Executor
from archon_search.runtime.pool import BackendPool
from perf.speed_timing import stopwatch

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


def _chat(llm: Any, request: ChatRequest) -> tuple[str, int]:
    """One call straight to llama-cpp-python: the text and its completion tokens."""
    out = llm.create_chat_completion(
        messages=request.as_messages(),
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        seed=request.seed,
    )
    return out["choices"][0]["message"].get("content") or "", out["usage"]["completion_tokens"]


def _direct(model: LoadedModel, requests: list[ChatRequest]) -> Round:
    with stopwatch() as timing:
        outs = [_chat(model.llm, r) for r in requests]
    return Round(timing.wall_s, [t for t, _ in outs], sum(n for _, n in outs))


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


@dataclass
class ParallelThroughput:
    """Completion tokens per second, one list entry per repeat (each repeat runs every way): one request at a time
    on `cores` threads (the backend before batching, with its old thread default), `cores` single-threaded models
    side by side, and one request at a time on a single thread (which tells a gain of decoding side by side from one
    of simply using fewer threads)."""

    cores: int
    requests: int
    sequential_tokens_per_s: list[float]
    parallel_tokens_per_s: list[float]
    single_thread_tokens_per_s: list[float]
    identical_outputs: float

    @property
    def ratio(self) -> float:
        """Median of the paired parallel / sequential throughputs: each pair saw the same load on the machine."""
        return statistics.median(p / s for p, s in zip(self.parallel_tokens_per_s, self.sequential_tokens_per_s))


def _one_at_a_time(llm: Any, requests: Sequence[ChatRequest]) -> Round:
    llm.reset()
    with stopwatch() as timing:
        outs = [_chat(llm, r) for r in requests]
    return Round(timing.wall_s, [t for t, _ in outs], sum(n for _, n in outs))


def _side_by_side(llms: Sequence[Any], requests: Sequence[ChatRequest]) -> Round:
    free: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for llm in llms:
        llm.reset()
        free.put(llm)

    def on_a_free_model(request: ChatRequest) -> tuple[str, int]:
        # the GIL is released inside llama.cpp's C calls, so the models really decode at the same time
        llm = free.get()
        try:
            return _chat(llm, request)
        finally:
            free.put(llm)

    with ThreadPoolExecutor(len(llms)) as pool, stopwatch() as timing:
        outs = list(pool.map(on_a_free_model, requests))
    return Round(timing.wall_s, [t for t, _ in outs], sum(n for _, n in outs))


def embedded_parallel_throughput(
    n_questions: int, samples: int, max_tokens: int, repeats: int, cores: int | None = None
) -> ParallelThroughput:
    """Tokens per second every way on `n_questions` x `samples` requests, `repeats` times, rotating which way
    goes first; `cores` defaults to the machine's (the embedded backend's thread count before it became half)."""
    # imported here, like the backend does, so that the suite's other figures run without llama-cpp-python
    import llama_cpp

    cores = cores or os.cpu_count() or 1
    n_ctx = EmbeddedModel().n_ctx
    path = default_model_path()
    whole = load_model(path, n_ctx, cores).llm
    # separate instances (not load_model's shared one): each needs its own context to decode alongside the others
    singles = [
        llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_threads_batch=1, verbose=False)
        for _ in range(cores)
    ]
    try:
        requests = [
            ChatRequest.of([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], 0.7, max_tokens, s)
            for i in range(n_questions)
            for s in range(samples)
        ]
        for llm in (whole, *singles):
            _chat(llm, requests[0])
        ways: list[tuple[str, Callable[[], Round]]] = [
            ("sequential", lambda: _one_at_a_time(whole, requests)),
            ("parallel", lambda: _side_by_side(singles, requests)),
            ("single_thread", lambda: _one_at_a_time(singles[0], requests)),
        ]
        rounds: dict[str, list[Round]] = {name: [] for name, _ in ways}
        for r in range(repeats):
            for name, way in ways[r % len(ways) :] + ways[: r % len(ways)]:
                rounds[name].append(way())
    finally:
        for llm in singles:
            llm.close()
    pairs = list(zip(rounds["sequential"], rounds["parallel"]))
    same = sum(a == b for s, p in pairs for a, b in zip(s.texts, p.texts))

    def speeds(name: str) -> list[float]:
        return [r.completion_tokens / r.wall_s for r in rounds[name]]

    return ParallelThroughput(
        cores=cores,
        requests=len(requests),
        sequential_tokens_per_s=speeds("sequential"),
        parallel_tokens_per_s=speeds("parallel"),
        single_thread_tokens_per_s=speeds("single_thread"),
        identical_outputs=same / (len(pairs) * len(requests)),
    )


@dataclass
class BatchSpeed:
    """Completion tokens per second of the embedded backend (its default threads), one entry per round: the prompts
    sent at once (decoded together), the same prompts one call at a time, and sent at once again while a second
    process decodes beside this one (another run of the tool on the same machine)."""

    requests: int
    n_threads: int
    n_parallel: int
    batch_tokens_per_s: list[float]
    one_at_a_time_tokens_per_s: list[float]
    contended_tokens_per_s: list[float]
    #: prompt tokens read by the engine, and those taken from cells already in its cache (shared prefixes)
    prompt_tokens_read: int
    prompt_tokens_shared: int

    @property
    def speedup(self) -> float:
        """Fastest round at once over fastest round one at a time."""
        return max(self.batch_tokens_per_s) / max(self.one_at_a_time_tokens_per_s)

    @property
    def contended_ratio(self) -> float:
        """Fastest round beside a second decoding process over fastest round alone (both sent at once)."""
        return max(self.contended_tokens_per_s) / max(self.batch_tokens_per_s)


def _round_requests(round_: int, max_tokens: int) -> list[ChatRequest]:
    # fresh prompts every round (the round number in each), so that no round finds its prompts already in the cache
    return [
        ChatRequest.of([{"role": "user", "content": f"{prompt} (Question {round_ * 10 + i}.)"}], 0.7, max_tokens, 0)
        for i, prompt in enumerate(PROMPTS)
    ]


async def _at_once(backend: EmbeddedBackend, requests: Sequence[ChatRequest]) -> float:
    with stopwatch() as timing:
        answers = await backend.complete(requests)
    return sum(a.completion_tokens for a in answers) / timing.wall_s


async def _one_by_one(backend: EmbeddedBackend, requests: Sequence[ChatRequest]) -> float:
    tokens = 0
    with stopwatch() as timing:
        for request in requests:
            tokens += (await backend.complete([request]))[0].completion_tokens
    return tokens / timing.wall_s


def decode_forever(max_tokens: int = 64) -> None:
    """The second process of `embedded_batch_speed`: the embedded backend with its defaults, decoding batches of
    the suite's prompts until it is killed (it prints `ready` once the model is loaded)."""
    backend = EmbeddedBackend(EmbeddedModel())

    async def loop() -> None:
        await backend.complete(_round_requests(0, 1))
        print("ready", flush=True)
        round_ = 1000
        while True:
            await backend.complete(_round_requests(round_, max_tokens))
            round_ += 1

    asyncio.run(loop())


class _SecondDecoder:
    """A second process decoding beside this one, paused (SIGSTOP) except inside `running()`, so that rounds alone
    and rounds beside it can alternate without reloading it each time."""

    def __init__(self, max_tokens: int):
        root = Path(__file__).resolve().parent.parent
        code = f"from perf.speed_embedded import decode_forever; decode_forever({max_tokens})"
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the second decoding process did not start")
        self.process.send_signal(signal.SIGSTOP)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.process.send_signal(signal.SIGCONT)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def embedded_batch_speed(max_tokens: int, repeats: int) -> BatchSpeed:
    """`repeats` rounds of three ways (at once, one at a time, at once beside a second decoding process), rotating
    which way goes first, so that a slow spell of the machine does not always fall on the same way."""
    spec = EmbeddedModel()
    backend = EmbeddedBackend(spec)

    async def measure(second: _SecondDecoder) -> BatchSpeed:
        # the first call loads the model and starts the engine: keep it out of the timings
        await backend.complete(_round_requests(99, 2))
        engine = backend.engine
        assert engine is not None
        read, shared = engine.prompt_read, engine.prompt_shared
        speeds: dict[str, list[float]] = {"at_once": [], "one": [], "contended": []}

        async def contended(requests: list[ChatRequest]) -> float:
            with second.running():
                return await _at_once(backend, requests)

        ways = {
            "at_once": lambda requests: _at_once(backend, requests),
            "one": lambda requests: _one_by_one(backend, requests),
            "contended": contended,
        }
        names = list(ways)
        for r in range(repeats):
            for k, name in enumerate(names[r % 3 :] + names[: r % 3]):
                speeds[name].append(await ways[name](_round_requests(3 * r + k, max_tokens)))
        return BatchSpeed(
            requests=len(PROMPTS),
            n_threads=backend.n_threads,
            n_parallel=spec.n_parallel,
            batch_tokens_per_s=speeds["at_once"],
            one_at_a_time_tokens_per_s=speeds["one"],
            contended_tokens_per_s=speeds["contended"],
            prompt_tokens_read=engine.prompt_read - read,
            prompt_tokens_shared=engine.prompt_shared - shared,
        )

    second = _SecondDecoder(max_tokens)
    try:
        return asyncio.run(measure(second))
    finally:
        second.close()
