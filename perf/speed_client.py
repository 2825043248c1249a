"""The HTTP client's own CPU: how much of the client process one completed call through the real `openai`
backend costs, against a loopback OpenAI-compatible server fast enough that the client is what limits.

The server (`sleepy_server` of the lognormal figure, told to sleep a fixed 0.1 ms) runs in child processes, so
`time.process_time()` of this process counts the client alone: building and sending each request, reading and
parsing each answer, the connection pool, the retry wrapper and the event loop. A batch of `calls` requests goes
through one `OpenAIBackend.complete` with `max_concurrency` of them in flight at once; one backend serves every
repeat, as in a search (its connections stay open), after one batch that opens them. The figure is the fastest
repeat's CPU per call. For scale, `details` also has the same requests through a bare `httpx2` client (the
transport the `openai` client is built on) with its JSON read by `json.loads`: the floor of any HTTP client here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx2

from archon_search.backends.openai_api import OpenAIBackend
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import OpenAIModel
from perf.speed_lognormal import sleepy_server
from perf.speed_timing import Timing, fastest, stopwatch

SERVER_SLEEP_S = 0.0001


@dataclass
class ClientCpu:
    """Client CPU and wall time per completed call (microseconds), fastest of the repeats."""

    calls: int
    max_concurrency: int
    cpu_us: float
    wall_us: float
    bare_httpx_cpu_us: float


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest.of([{"role": "user", "content": f"What is {i} plus {i + 1}? Explain briefly."}], 0.7, 64, sample=i)
        for i in range(n)
    ]


async def _through_backend(url: str, calls: int, max_concurrency: int, repeats: int) -> list[Timing]:
    spec = OpenAIModel(backend="openai", model="sleepy", base_url=url, max_concurrency=max_concurrency)
    backend = OpenAIBackend(spec)
    timings = []
    try:
        await backend.complete(_requests(calls))  # opens the connections, as the first batch of a run does
        for _ in range(repeats):
            batch = _requests(calls)
            with stopwatch() as timing:
                out = await backend.complete(batch)
            assert len(out) == calls and all(c.text for c in out)
            timings.append(timing)
    finally:
        await backend.aclose()
    return timings


async def _through_bare_httpx(url: str, calls: int, max_concurrency: int, repeats: int) -> list[Timing]:
    limits = httpx2.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
    semaphore = asyncio.Semaphore(max_concurrency)
    timings = []
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=600.0) as client:

        async def one(request: ChatRequest) -> str:
            async with semaphore:
                body = {
                    "model": "sleepy",
                    "messages": request.as_messages(),
                    "temperature": request.temperature,
                    "max_tokens": request.max_tokens,
                    "seed": request.seed,
                }
                response = await client.post("/chat/completions", json=body)
                response.raise_for_status()
                return json.loads(response.content)["choices"][0]["message"]["content"]

        await asyncio.gather(*(one(r) for r in _requests(calls)))
        for _ in range(repeats):
            batch = _requests(calls)
            with stopwatch() as timing:
                await asyncio.gather(*(one(r) for r in batch))
            timings.append(timing)
    return timings


def client_cpu(calls: int, max_concurrency: int, repeats: int) -> ClientCpu:
    """Client CPU per call over `repeats` batches of `calls` requests, `max_concurrency` in flight."""
    with sleepy_server(SERVER_SLEEP_S, 0.0) as url:
        ours = fastest(asyncio.run(_through_backend(url, calls, max_concurrency, repeats)))
        bare = fastest(asyncio.run(_through_bare_httpx(url, calls, max_concurrency, repeats)))
    return ClientCpu(
        calls=calls,
        max_concurrency=max_concurrency,
        cpu_us=ours.cpu_s / calls * 1e6,
        wall_us=ours.wall_s / calls * 1e6,
        bare_httpx_cpu_us=bare.cpu_s / calls * 1e6,
    )


if __name__ == "__main__":
    import sys

    calls, concurrency, repeats = (int(a) for a in (sys.argv[1:] or ["2048", "1024", "3"]))
    for name, value in vars(client_cpu(calls, concurrency, repeats)).items():
        print(f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}")
