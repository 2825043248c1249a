"""The HTTP client's own CPU: how much of the client process one completed call through the real `openai`
backend costs, against a loopback OpenAI-compatible server fast enough that the client is what limits.

The server (`sleepy_server` of the lognormal figure, told to sleep a fixed 0.1 ms) runs in child processes, so
`time.process_time()` of this process counts the client alone: the `openai` client building each request, the
connection pool sending it and reading the answer, the backend parsing it, the retry wrapper and the event loop.
A batch of `calls` requests goes through one `OpenAIBackend.complete` with `max_concurrency` of them in flight
at once; one backend serves every repeat, as in a search (its connections stay open), after one batch that
opens them. The figure is the fastest repeat's CPU per call.

For scale, `details` also has `sdk_floor_cpu_us_per_call`: the same request through the same `openai` client
call, one at a time, over a transport that answers at once without any network. It is the part of a call the
SDK's own request building costs, which no connection pool can remove.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import openai

from archon_search.backends.openai_api import OpenAIBackend, httpx
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import OpenAIModel
from perf.speed_lognormal import sleepy_server
from perf.speed_timing import Timing, fastest, stopwatch

SERVER_SLEEP_S = 0.0001
MODEL = "sleepy"
ANSWER = json.dumps(
    {
        "id": "instant",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "The answer is 42."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }
).encode()


@dataclass
class ClientCpu:
    """Client CPU and wall time per completed call (microseconds), fastest of the repeats."""

    calls: int
    max_concurrency: int
    cpu_us: float
    wall_us: float
    sdk_floor_cpu_us: float


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest.of([{"role": "user", "content": f"What is {i} plus {i + 1}? Explain briefly."}], 0.7, 64, sample=i)
        for i in range(n)
    ]


async def _through_backend(url: str, calls: int, max_concurrency: int, repeats: int) -> list[Timing]:
    spec = OpenAIModel(backend="openai", model=MODEL, base_url=url, max_concurrency=max_concurrency)
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


class _Instant(httpx.AsyncBaseTransport):
    """Answers every request at once with the same chat completion, without a network."""

    async def handle_async_request(self, request: Any) -> Any:
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(ANSWER))


async def _sdk_floor(calls: int, repeats: int) -> Timing:
    """The `openai` client's own cost of the backend's call: the same `post`, over `_Instant`."""
    spec = OpenAIModel(backend="openai", model=MODEL, base_url="http://127.0.0.1:9/v1")
    backend = OpenAIBackend(spec)
    await backend._client.close()
    backend._client = backend._client.with_options(http_client=openai.DefaultAsyncHttpxClient(transport=_Instant()))
    bodies = [
        {"model": MODEL, "messages": r.as_messages(), "temperature": r.temperature, "max_tokens": r.max_tokens}
        for r in _requests(calls)
    ]
    timings = []
    try:
        for _ in range(repeats):
            with stopwatch() as timing:
                for body in bodies:
                    await backend._post(body)
            timings.append(timing)
    finally:
        await backend.aclose()
    return fastest(timings)


def client_cpu(calls: int, max_concurrency: int, repeats: int) -> ClientCpu:
    """Client CPU per call over `repeats` batches of `calls` requests, `max_concurrency` in flight."""
    with sleepy_server(SERVER_SLEEP_S, 0.0) as url:
        ours = fastest(asyncio.run(_through_backend(url, calls, max_concurrency, repeats)))
    floor = asyncio.run(_sdk_floor(min(calls, 1000), repeats))
    return ClientCpu(
        calls=calls,
        max_concurrency=max_concurrency,
        cpu_us=ours.cpu_s / calls * 1e6,
        wall_us=ours.wall_s / calls * 1e6,
        sdk_floor_cpu_us=floor.cpu_s / min(calls, 1000) * 1e6,
    )


if __name__ == "__main__":
    import sys

    started = time.perf_counter()
    calls, concurrency, repeats = (int(a) for a in (sys.argv[1:] or ["2048", "1024", "3"]))
    for name, value in vars(client_cpu(calls, concurrency, repeats)).items():
        print(f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}")
    print(f"took {time.perf_counter() - started:.1f}s")
