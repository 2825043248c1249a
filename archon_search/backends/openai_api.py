"""Any OpenAI-compatible chat-completions server, through the official `openai` async client."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import itertools
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from archon_search.backends.base import Backend
from archon_search.core.errors import BackendError, ServerUnavailable
from archon_search.core.messages import STOP, ChatRequest, Completion
from archon_search.lang.spec import OpenAIModel

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# local servers (vLLM serve, llama.cpp, Ollama...) mostly ignore the key but the client insists on one
LOCAL_PLACEHOLDER_KEY = "no-key-needed"
RETRY_STATUSES = frozenset({408, 409, 429})
# httpx places each request by scanning every connection of its pool: one pool of hundreds of connections costs
# milliseconds of CPU per request, so a model with a high max_concurrency spreads its requests over several clients
CONNECTIONS_PER_CLIENT = 64


def is_loopback(base_url: str) -> bool:
    """Whether `base_url` points at this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and dropped or refused connections are worth another try."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's `Retry-After` hint (seconds or HTTP date; `retry-after-ms` too), if the error carries one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


class WaitRetryAfter(wait_base):
    """Tenacity wait that follows the server's `Retry-After` (capped), else the fallback backoff."""

    def __init__(self, fallback: wait_base, cap_s: float):
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            return min(hinted, self.cap_s)
        return self.fallback(retry_state)


def _one_line(text: object, limit: int = 160) -> str:
    return " ".join(str(text).split())[:limit]


class _NotSent(Exception):
    """A request of a batch left unsent because another request of the batch had already failed for good."""


class OpenAIBackend(Backend):
    """One HTTP request per `ChatRequest`, at most `max_concurrency` in flight, retried with backoff; a JSON
    Schema goes out as `response_format` only to servers the model entry says support it.

    The client's own retries are off so tenacity's policy is the only one; failures that retrying
    cannot fix become a one-line `BackendError` naming the model, the server and what to change.
    """

    kind = "openai"

    def __init__(
        self,
        spec: OpenAIModel,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 600.0,
    ):
        self.spec = spec
        self.base_url = spec.base_url or OPENAI_BASE_URL
        self.max_attempts = max_attempts
        self._wait = WaitRetryAfter(
            wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s), cap_s=max_backoff_s
        )
        key = os.environ.get(spec.api_key_env)
        if not key:
            if not is_loopback(self.base_url):
                raise BackendError(
                    f"model '{spec.model}' at {self.base_url}: no API key; set the environment variable "
                    f"{spec.api_key_env} (or name another one with api_key_env)"
                )
            key = LOCAL_PLACEHOLDER_KEY
        clients = math.ceil(spec.max_concurrency / CONNECTIONS_PER_CLIENT)
        self._clients = [
            openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s)
            for _ in range(clients)
        ]
        self._client = self._clients[0]
        self._turn = itertools.count()
        self._semaphore = asyncio.Semaphore(spec.max_concurrency)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Send every request concurrently (bounded by `max_concurrency`).

        When one fails for good, the requests already sent still finish (they are paid for) and those still
        waiting for a slot are not sent; then the first failure is raised with the answers that came back in
        `BackendError.partial`.
        """
        stop = asyncio.Event()
        results = await asyncio.gather(*(self._complete_one(r, stop) for r in requests), return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException) and not isinstance(r, _NotSent)), None)
        if failed is None:
            return list(results)
        partial = {i: r for i, r in enumerate(results) if isinstance(r, Completion)}
        if isinstance(failed, BackendError):
            failed.partial = partial
        raise failed

    async def _complete_one(self, request: ChatRequest, stop: asyncio.Event) -> Completion:
        async with self._semaphore:
            if stop.is_set():
                raise _NotSent
            try:
                return await self._send(request)
            except BaseException:
                stop.set()
                raise

    async def _send(self, request: ChatRequest) -> Completion:
        start = time.perf_counter()
        client = self._clients[next(self._turn) % len(self._clients)]
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_retryable),
                stop=stop_after_attempt(self.max_attempts),
                wait=self._wait,
                before_sleep=self._log_retry,
                reraise=True,
            ):
                with attempt:
                    # the client's generic `post` sends the body as built: `create()` would first walk it against
                    # its typed parameters, a millisecond of CPU per request that a many-question run pays in full
                    response = await client.post(
                        "/chat/completions",
                        cast_to=ChatCompletion,
                        body={
                            "model": self.spec.model,
                            "messages": request.as_messages(),
                            "temperature": request.temperature,
                            "max_tokens": request.max_tokens,
                            "seed": request.seed,
                            **self._structured(request),
                        },
                    )
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        latency = time.perf_counter() - start
        if not response.choices:
            raise BackendError(
                f"model '{self.spec.model}' at {self.base_url}: the server answered with no choices; "
                "check that it implements /v1/chat/completions"
            )
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content or "",
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            latency_s=latency,
            finish_reason=response.choices[0].finish_reason or STOP,
        )

    def _structured(self, request: ChatRequest) -> dict[str, Any]:
        """`response_format` asking for the request's JSON Schema, when it has one and the entry declares that
        the server honours it (`structured_output: true`); servers that do not may refuse the field."""
        schema = request.schema
        if schema is None or not self.spec.structured_output:
            return {}
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.pop("title", None) or "response"))[:64]
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        }

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "model %s at %s: %s; retry %d/%d in %.1fs",
            self.spec.model,
            self.base_url,
            _one_line(exc),
            state.attempt_number,
            self.max_attempts - 1,
            state.next_action.sleep if state.next_action else 0.0,
        )

    def _error(self, exc: openai.OpenAIError) -> BackendError:
        where = f"model '{self.spec.model}' at {self.base_url}"
        tries = f"after {self.max_attempts} attempts"
        if isinstance(exc, openai.APITimeoutError):
            return ServerUnavailable(f"{where}: timed out {tries}; check the server is up and not overloaded")
        if isinstance(exc, openai.APIConnectionError):
            cause = _one_line(exc.__cause__ or exc)
            return ServerUnavailable(f"{where}: cannot connect {tries} ({cause}); start the server or fix base_url")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return BackendError(
                    f"{where}: the server refused the API key (HTTP {status}); put a valid key in ${self.spec.api_key_env}"
                )
            if status == 404:
                return BackendError(
                    f"{where}: not found (HTTP 404); set `model:` to a model this server serves, "
                    "and check base_url (usually ends in /v1)"
                )
            if status == 429:
                return ServerUnavailable(
                    f"{where}: still rate limited (HTTP 429) {tries}; lower max_concurrency or retry later"
                )
            if status >= 500 or status in RETRY_STATUSES:
                return ServerUnavailable(f"{where}: server error (HTTP {status}) {tries}: {_one_line(exc.message)}")
            return BackendError(
                f"{where}: request refused (HTTP {status}: {_one_line(exc.message)}); "
                "check max_tokens and prompt length fit this model"
            )
        return BackendError(f"{where}: unexpected response ({_one_line(exc)}); check the server is OpenAI-compatible")

    async def aclose(self) -> None:
        """Close the HTTP connection pools."""
        for client in self._clients:
            await client.close()
