"""The executor against a real HTTP server whose latencies vary: how close a pipelined run comes to the longest
path of that run's own latencies.

A loopback OpenAI-compatible server (FastAPI under uvicorn, in child processes) sleeps a lognormal time
per request, drawn from a hash of the request so a rerun sees the same latencies, and writes the sleep into its
answer. The run goes through the real `openai` backend (and the cache wrapper, without a cache, as a run without
--no-cache would differ only by SQLite). The ideal is read back from the traces: per question, the sum over layers
of its slowest call in that layer; the longest question's path is the least any schedule could take.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import math
import multiprocessing
import random
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from archon_search.backends.openai_api import OpenAIBackend
from archon_search.lang.spec import OpenAIModel
from archon_search.lang.validate import validate_text
from archon_search.ops import OpContext
from archon_search.runtime.cache import CachedBackend
from archon_search.runtime.executor import Executor, QueryResult
from perf.speed_backends import CANNED
from perf.speed_executor import questions

LOGNORMAL_ARCHITECTURE = """
name: lognormal-4
layers:
  - generator: {model: api, samples: 8}
  - critic: {model: api}
  - ranker: {model: api, top_k: 3}
  - fuser: {model: api}
"""
# far above the 48 x 8 generator calls in flight at once: the figure measures scheduling, not a concurrency cap
MAX_CONCURRENCY = 4096
SLEPT = re.compile(r"slept (\d+\.\d+) s")
# server processes sharing the listening socket: one alone takes about a second to accept and parse the first
# layer's 384 requests on 2 busy cores, and that second would be counted against the client
SERVER_WORKERS = 4


def latency_of(body: dict, median_s: float, sigma: float) -> float:
    """The lognormal sleep for one request, fixed by its content (messages, seed) so reruns see the same."""
    digest = hashlib.sha256(json.dumps([body.get("messages"), body.get("seed")], sort_keys=True).encode()).digest()
    return random.Random(digest).lognormvariate(math.log(median_s), sigma)


def sleepy_app(median_s: float, sigma: float) -> FastAPI:
    """An OpenAI-compatible chat-completions endpoint that sleeps `latency_of` each request, then answers text
    every op parses, with the sleep written in it."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        slept = latency_of(body, median_s, sigma)
        await asyncio.sleep(slept)
        # a Response skips FastAPI's encoder: the server's CPU shares the machine with the client being measured
        return JSONResponse(
            {
                "id": "sleepy",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "sleepy"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{CANNED.text}\n(slept {slept:.6f} s)"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": CANNED.prompt_tokens, "completion_tokens": CANNED.completion_tokens},
            }
        )

    return app


def _serve(sock: socket.socket, median_s: float, sigma: float) -> None:
    config = uvicorn.Config(
        sleepy_app(median_s, sigma), log_level="warning", access_log=False, backlog=4096, timeout_keep_alive=60
    )
    uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def sleepy_server(median_s: float, sigma: float) -> Iterator[str]:
    """Serve `sleepy_app` on 127.0.0.1 (a free port) from `SERVER_WORKERS` child processes, so that the server's
    work does not share the client's interpreter lock; yields the base URL once it answers."""
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it every answer
    # (headers and body written apart) waits 40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_serve, args=(sock, median_s, sigma), daemon=True) for _ in range(SERVER_WORKERS)]
    for child in children:
        child.start()
    try:
        _wait_until_up(port, children[0])
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for child in children:
            child.terminate()
            child.join(timeout=10)
        sock.close()


def _wait_until_up(port: int, child: multiprocessing.process.BaseProcess, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.is_alive():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        try:
            connection.request("GET", "/v1/models")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
        finally:
            connection.close()
    raise RuntimeError("the sleepy server did not start")


def longest_path(results: list[QueryResult]) -> float:
    """Max over questions of the sum over layers of the slowest server sleep of that question's calls."""
    paths = []
    for result in results:
        path = 0.0
        for event in result.state.events:
            slept = [float(m.group(1)) for call in event["calls"] if (m := SLEPT.search(call["output"]))]
            path += max(slept, default=0.0)
        paths.append(path)
    return max(paths)


@dataclass
class LognormalPath:
    """One pipelined run against the sleepy server: the ideal (its longest per-question path) and the wall."""

    ideal_s: float
    actual_s: float
    questions: int
    calls: int

    @property
    def ratio(self) -> float:
        """Ideal over actual: 1.0 means the run took no longer than its slowest question had to."""
        return self.ideal_s / self.actual_s


async def _runs(base_url: str, n_questions: int, repeats: int) -> list[LognormalPath]:
    spec = OpenAIModel(backend="openai", model="sleepy", base_url=base_url, max_concurrency=MAX_CONCURRENCY)
    checked = validate_text(LOGNORMAL_ARCHITECTURE, file="lognormal-4", models={"api": spec})
    # one backend for every repeat, as in a search: after the first, its connections are open and kept alive
    backend = CachedBackend(OpenAIBackend(spec), None)
    runs = []
    try:
        executor = Executor(checked, {"api": backend}, OpContext())
        for _ in range(repeats):
            states = questions(n_questions)
            started = time.perf_counter()
            results = await executor.run(states)
            wall = time.perf_counter() - started
            calls = sum(r.usage.calls for r in results)
            runs.append(LognormalPath(longest_path(results), wall, n_questions, calls))
    finally:
        await backend.aclose()
    return runs


def lognormal_path(n_questions: int, median_s: float, sigma: float, repeats: int) -> LognormalPath:
    """The best of `repeats` runs (same questions, so the same latencies) of the 4-layer architecture over
    `n_questions` against a server with lognormal(median `median_s`, `sigma`) latency."""
    with sleepy_server(median_s, sigma) as url:
        runs = asyncio.run(_runs(url, n_questions, repeats))
    return max(runs, key=lambda r: r.ratio)
