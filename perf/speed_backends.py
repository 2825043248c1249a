"""Fake backends for the speed suite: a fixed latency per batch or per call, and nothing else to measure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from archon_search.backends.base import Backend
from archon_search.core.messages import ChatRequest, Completion

# parses as a ranking, a critique and an answer, so every op takes its normal path (no fallbacks)
CANNED = Completion("[1] > [2] > [3]\n[1] Strengths: clear. Weaknesses: none.\nThe answer is 42.", 12, 16)


class FixedLatencyBackend(Backend):
    """Every call takes `latency_s`. Concurrent (the default): a batch's calls all overlap, as on a server
    with no concurrency limit, so a batch takes `latency_s`. Sequential: one call at a time, even across
    batches sent together, as a client that waits for each answer before sending the next. `calls`
    counts the requests served."""

    kind = "fixed-latency"

    def __init__(self, latency_s: float, sequential: bool = False):
        self.latency_s = latency_s
        self.sequential = sequential
        self.calls = 0
        self._one_at_a_time = asyncio.Lock()

    @property
    def model_id(self) -> str:
        return f"fixed-latency:{self.latency_s}"

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """The canned completion for every request, after the latency."""
        if self.sequential:
            for _ in requests:
                async with self._one_at_a_time:
                    await asyncio.sleep(self.latency_s)
        elif self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.calls += len(requests)
        return [CANNED] * len(requests)
