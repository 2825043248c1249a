"""Any OpenAI-compatible chat-completions server, through the official `openai` async client."""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import ipaddress
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import openai
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
# how servers word a request over the model's context window or token limit
LENGTH_WORDS = re.compile(r"context|length|too long|max_tokens|maximum|\btokens?\b", re.IGNORECASE)
# at most one WARNING per backend in this many seconds says that it is retrying; each retry is logged at DEBUG
RETRY_WARNING_EVERY_S = 60.0
# the SDK's telemetry headers (its version, the OS, the Python...): httpx re-reads every header of a request several
# times while building and sending it, so each one costs CPU on every call, and no server needs these
SDK_TELEMETRY_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
)
SDK_PER_REQUEST_HEADERS = ("X-Stainless-Retry-Count", "X-Stainless-Read-Timeout")


def _httpx_module() -> ModuleType:
    """The httpx package the installed `openai` client is built on (`httpx2` for openai 3, `httpx` before)."""
    for base in openai.DefaultAsyncHttpxClient.__mro__:
        if base.__name__ == "AsyncClient":
            return importlib.import_module(base.__module__.partition(".")[0])
    raise ImportError("cannot tell which httpx package the openai client uses")  # pragma: no cover


httpx = _httpx_module()


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


def _chain(exc: BaseException) -> list[BaseException]:
    """A transport error and what it wraps, outermost first (the refused connection under the SDK's error last)."""
    chain = [exc]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(inner)
    return chain


def _timed_out(exc: BaseException) -> bool:
    """Whether a transport error was a timeout. aiohttp's transport reports a refused connection as a connect
    timeout too, so what it wraps decides: a real timeout is a `TimeoutError` somewhere in the chain."""
    return any(isinstance(e, TimeoutError) for e in _chain(exc))


def _one_line(text: object, limit: int = 160) -> str:
    return " ".join(str(text).split())[:limit]


class _NotSent(Exception):
    """A request of a batch left unsent because another request of the batch had already failed for good."""


class _Slots:
    """At most `n` holders at a time, first come first served. Like `asyncio.Semaphore`, whose `release` (Python
    3.11) walks past every waiter already woken but not yet run: with hundreds waiting, that walk was a
    noticeable part of a call's client CPU; here a release hands its slot to the next waiter in O(1)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int):
        self._free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled: pass it on
                self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _quiet_http_logger() -> None:
    """httpx logs every request at INFO: a line per LM call under `--verbose`, and its formatting on every call.
    Unless the application has set that logger's level itself, only its warnings are let through."""
    http_log = logging.getLogger(httpx.__name__)
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)


class OpenAIBackend(Backend):
    """One HTTP request per `ChatRequest`, at most `max_concurrency` in flight, retried with backoff; a JSON
    Schema goes out as `response_format` only to servers the model entry says support it.

    One `openai` client per backend, over one aiohttp pool of up to `max_concurrency` connections. The client's own
    retries are off so tenacity's policy is the only one; each retry is logged at DEBUG, and at most one WARNING a minute says that the backend is
    retrying. Failures that retrying cannot fix become a one-line `BackendError` naming the model, the server
    and what to change.
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
        _quiet_http_logger()
        key = os.environ.get(spec.api_key_env)
        if not key:
            if not is_loopback(self.base_url):
                raise BackendError(
                    f"model '{spec.model}' at {self.base_url}: no API key; set the environment variable "
                    f"{spec.api_key_env} (or name another one with api_key_env)"
                )
            key = LOCAL_PLACEHOLDER_KEY
        # one pool of max_concurrency connections shared by every call, on aiohttp (the SDK's `aiohttp` extra):
        # httpx's own pool scans every connection on each request, which at hundreds of connections cost more
        # client CPU per call than the whole rest of the call
        connections = spec.max_concurrency
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        http_client = openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout_s,
            http_client=http_client,
            default_headers={name: openai.Omit() for name in SDK_TELEMETRY_HEADERS},
        )
        self._options: Any = {"headers": {name: openai.Omit() for name in SDK_PER_REQUEST_HEADERS}}
        self._slots = _Slots(spec.max_concurrency)
        self._warned_at: float | None = None

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def _where(self) -> str:
        """The model and server, as every error and warning of this backend names them."""
        return f"model '{self.spec.model}' at {self.base_url}"

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
        async with self._slots:
            if stop.is_set():
                raise _NotSent
            try:
                return await self._send(request)
            except BaseException:
                stop.set()
                raise

    async def _send(self, request: ChatRequest) -> Completion:
        start = time.perf_counter()
        body = {
            "model": self.spec.model,
            "messages": request.as_messages(),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
            **self._structured(request),
        }
        try:
            try:
                # the first attempt goes without tenacity, whose bookkeeping costs more CPU than the rest of a call
                # here; a retryable failure enters its loop as the first attempt, so its policy is unchanged
                response = await self._post(body)
            except openai.OpenAIError as exc:
                if not is_retryable(exc):
                    raise
                response = await self._retry(body, exc)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        latency = time.perf_counter() - start
        return self._completion(response, latency)

    async def _post(self, body: dict[str, Any]) -> Any:
        # the client's generic `post` sends the body as built (`create()` would first walk it against its typed
        # parameters), and asking for the raw response skips building pydantic models of the answer: the JSON is
        # read by `_completion`, which checks what it uses
        return await self._client.post("/chat/completions", cast_to=httpx.Response, body=body, options=self._options)

    async def _retry(self, body: dict[str, Any], first: openai.OpenAIError) -> Any:
        failure: openai.OpenAIError | None = first
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        ):
            with attempt:
                if failure is not None:
                    failure, exc = None, failure
                    raise exc
                return await self._post(body)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _completion(self, response: Any, latency: float) -> Completion:
        """The completion in a chat-completions answer; an answer without one is a one-line `BackendError`."""
        where = self._where
        try:
            data = json.loads(response.content)
        except ValueError:
            raise BackendError(
                f"{where}: the answer is not JSON ({_one_line(response.text, 80)!r}); "
                "check that the server implements /v1/chat/completions"
            ) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise BackendError(
                f"{where}: the server answered with no choices; check that it implements /v1/chat/completions"
            )
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is not None and not isinstance(text, str):
            raise BackendError(f"{where}: the answer's message content is not text; check the server")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=latency,
            finish_reason=choice.get("finish_reason") or STOP,
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
        """Each retry at DEBUG; the first in a minute also at WARNING, so that a dead or overloaded server gives
        one line, not one per request per attempt, before its one-line error."""
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        where = self._where
        # the SDK's connection errors say only "Connection error."; what went wrong is in their cause
        what = _one_line(f"{exc} ({exc.__cause__})" if exc is not None and exc.__cause__ is not None else exc)
        log.debug("%s: %s; retry %d/%d in %.1fs", where, what, state.attempt_number, self.max_attempts - 1, sleep)
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= RETRY_WARNING_EVERY_S:
            self._warned_at = now
            log.warning(
                "%s: %s; retrying (up to %d attempts per request; retries in the next %.0f s are logged at DEBUG)",
                where,
                what,
                self.max_attempts,
                RETRY_WARNING_EVERY_S,
            )

    def _error(self, exc: openai.OpenAIError) -> BackendError:
        where = self._where
        tries = f"after {self.max_attempts} attempts"
        if isinstance(exc, openai.APIConnectionError) and not _timed_out(exc):
            cause = _one_line(_chain(exc)[-1])
            return ServerUnavailable(f"{where}: cannot connect {tries} ({cause}); start the server or fix base_url")
        if isinstance(exc, openai.APITimeoutError):
            return ServerUnavailable(f"{where}: timed out {tries}; check the server is up and not overloaded")
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, where, tries)
        return BackendError(f"{where}: unexpected response ({_one_line(exc)}); check the server is OpenAI-compatible")

    def _status_error(self, exc: openai.APIStatusError, where: str, tries: str) -> BackendError:
        """An HTTP error answer as a one-line error that keeps its status (`serve` passes a 4xx on as that 4xx)."""
        status, message = exc.status_code, _one_line(exc.message)
        if status in (401, 403):
            return BackendError(
                f"{where}: the server refused the API key (HTTP {status}); put a valid key in ${self.spec.api_key_env}",
                status=status,
            )
        if status == 404:
            return BackendError(
                f"{where}: not found (HTTP 404); set `model:` to a model this server serves, "
                "and check base_url (usually ends in /v1)",
                status=status,
            )
        if status == 429:
            return ServerUnavailable(
                f"{where}: still rate limited (HTTP 429) {tries}; lower max_concurrency or retry later", status=status
            )
        if status >= 500 or status in RETRY_STATUSES:
            return ServerUnavailable(f"{where}: server error (HTTP {status}) {tries}: {message}", status=status)
        # the hint only where the server spoke of length: a refused role or field has nothing to do with max_tokens
        hint = "; check max_tokens and prompt length fit this model" if LENGTH_WORDS.search(message) else ""
        return BackendError(f"{where}: request refused (HTTP {status}: {message}){hint}", status=status)

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.close()
