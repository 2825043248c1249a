"""The executor's share of wall time: how close a run comes to its critical path, how much faster it is than
calling one model after another, and what it costs per LM call (without and with the response cache)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from archon_search.backends.base import Backend
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import Validated, validate_text
from archon_search.ops import OpContext, QueryState
from archon_search.runtime.cache import CachedBackend, ResponseCache
from archon_search.runtime.executor import Executor
from perf.speed_backends import FixedLatencyBackend
from perf.speed_timing import Timing, fastest, stopwatch

# 4 layers, 16 calls per query (10 + 1 + 1 + 4), over two models so that their batches must overlap too
SPEED_ARCHITECTURE = """
name: speed-4x16
layers:
  - generator: [{model: a, samples: 6}, {model: b, samples: 4}]
  - critic: {model: a}
  - ranker: {model: b, top_k: 5}
  - fuser: [{model: a, samples: 2}, {model: b, samples: 2}]
"""
MODELS = ("a", "b")


def speed_architecture() -> Validated:
    """The suite's 4-layer, 16-call architecture (its model entries only satisfy validation)."""
    placeholder = ScriptedModel(backend="scripted", responses=["unused"])
    return validate_text(SPEED_ARCHITECTURE, file="speed-4x16", models={m: placeholder for m in MODELS})


def questions(n: int) -> list[QueryState]:
    """`n` distinct short questions."""
    return [QueryState(id=f"q{i}", question=f"What is {i} plus {i + 1}? Explain briefly.") for i in range(n)]


async def timed_run(checked: Validated, backends: Mapping[str, Backend], n_questions: int) -> Timing:
    """Time one executor run over `n_questions` fresh questions (building them is not timed)."""
    states = questions(n_questions)
    executor = Executor(checked, backends, OpContext())
    with stopwatch() as timing:
        await executor.run(states)
    return timing


def _shared(backend: Backend) -> dict[str, Backend]:
    return {m: backend for m in MODELS}


def _separate(latency_s: float) -> dict[str, Backend]:
    return {m: FixedLatencyBackend(latency_s) for m in MODELS}


@dataclass
class CriticalPath:
    """Wall time of the architecture over a batch of questions against its ideal (layers x latency)."""

    ideal_s: float
    actual_s: float

    @property
    def ratio(self) -> float:
        """Ideal over actual: 1.0 means no time lost beyond the model latency itself."""
        return self.ideal_s / self.actual_s


def critical_path(n_questions: int, latency_s: float, repeats: int) -> CriticalPath:
    """Fastest of `repeats` runs against backends where every call takes `latency_s` and all calls overlap."""
    checked = speed_architecture()
    runs = [asyncio.run(timed_run(checked, _separate(latency_s), n_questions)) for _ in range(repeats)]
    return CriticalPath(len(checked.arch.layers) * latency_s, fastest(runs).wall_s)


def sequential_wall(n_questions: int, latency_s: float) -> float:
    """Wall time of the same calls made one after another: a question at a time, a call at a time."""
    checked = speed_architecture()
    executor = Executor(checked, _shared(FixedLatencyBackend(latency_s, sequential=True)), OpContext())

    async def one_by_one() -> float:
        with stopwatch() as timing:
            for state in questions(n_questions):
                await executor.run([state])
        return timing.wall_s

    return asyncio.run(one_by_one())


@dataclass
class Overhead:
    """Microseconds of executor time per LM call against zero-latency backends."""

    cpu_us: float
    wall_us: float
    calls: int


def _per_call(timing: Timing, calls: int) -> Overhead:
    return Overhead(timing.cpu_s / calls * 1e6, timing.wall_s / calls * 1e6, calls)


def overhead(n_questions: int, repeats: int) -> Overhead:
    """Executor time per call, fastest of `repeats` runs, no cache."""
    checked = speed_architecture()
    runs = [asyncio.run(timed_run(checked, _separate(0.0), n_questions)) for _ in range(repeats)]
    return _per_call(fastest(runs), n_questions * checked.calls_per_query)


def cache_overhead(n_questions: int, repeats: int) -> dict[str, Overhead]:
    """Executor + SQLite response cache time per call: `miss` (a fresh cache, every answer stored) and
    `hit` (the same run again, every answer read back)."""
    checked = speed_architecture()
    calls = n_questions * checked.calls_per_query
    misses, hits = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            cache = ResponseCache(Path(folder) / "responses.sqlite")
            backends = _shared(CachedBackend(FixedLatencyBackend(0.0), cache))
            misses.append(asyncio.run(timed_run(checked, backends, n_questions)))
            hits.append(asyncio.run(timed_run(checked, backends, n_questions)))
            cache.close()
    return {"miss": _per_call(fastest(misses), calls), "hit": _per_call(fastest(hits), calls)}
