"""A deterministic fake model for tests, demos and dry runs: canned answers, optional fixed latency."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from archon_search.backends.base import Backend
from archon_search.core.errors import BackendError
from archon_search.core.messages import LENGTH, STOP, ChatRequest, Completion
from archon_search.lang.spec import ScriptedModel


def last_user_message(request: ChatRequest) -> str:
    """The content of the request's last `user` message ("" when it has none)."""
    return next((content for role, content in reversed(request.messages) if role == "user"), "")


def word_count(text: str) -> int:
    """A rough token count: whitespace-separated words."""
    return len(text.split())


class ScriptedBackend(Backend):
    """Answers from `by_prompt` (first substring of the last user message that matches) or else from
    `responses` in turn, cycling; every batch sleeps `latency_ms` once, so its calls overlap like real
    concurrent calls. `calls` counts the requests served. A request's JSON Schema is ignored: the script's
    text comes back as written, for the op's lenient parser to read."""

    kind = "scripted"

    def __init__(self, spec: ScriptedModel):
        self.spec = spec
        self.calls = 0
        self._next = 0
        # two scripted models with different scripts must not share cache entries
        script = repr((spec.responses, sorted(spec.by_prompt.items())))
        self._model_id = f"scripted:{hashlib.sha256(script.encode()).hexdigest()[:16]}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def _answer(self, request: ChatRequest) -> str:
        prompt = last_user_message(request)
        for needle, response in self.spec.by_prompt.items():
            if needle in prompt:
                return response
        if not self.spec.responses:
            raise BackendError(
                f"scripted model has no answer for {prompt[:60]!r}: add a `responses:` list or a matching `by_prompt` key"
            )
        response = self.spec.responses[self._next % len(self.spec.responses)]
        self._next += 1
        return response

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer the batch after one shared `latency_ms` pause."""
        texts = [self._answer(r) for r in requests]
        latency = self.spec.latency_ms / 1000
        if latency:
            await asyncio.sleep(latency)
        self.calls += len(requests)
        return [self._completion(r, text, latency) for r, text in zip(requests, texts)]

    def _completion(self, request: ChatRequest, text: str, latency: float) -> Completion:
        """The reply, cut to max_tokens words (finish_reason "length") when the entry truncates."""
        finish = STOP
        if self.spec.truncate and word_count(text) > request.max_tokens:
            text, finish = " ".join(text.split()[: request.max_tokens]), LENGTH
        return Completion(
            text=text,
            prompt_tokens=sum(word_count(content) for _, content in request.messages),
            completion_tokens=word_count(text),
            latency_s=latency,
            finish_reason=finish,
        )
