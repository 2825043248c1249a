"""The Python API: load an architecture file once, then ask it questions or whole conversations.

    with Architecture.load("best.yaml") as arch:
        print(arch.run("What is 17 * 23?"))

A file exported from a search carries its `task:`, so questions get the benchmark's answer instruction
and the ops read answers with its extractor, as in the trial that scored the architecture.

Backends are opened on first use and closed by `close()` (or leaving the `with` block). Like
`archon-search eval`, answers go through the persistent response cache by default, so asking the same
thing twice costs no model call; pass `cache=False` for fresh calls or a path for another cache file.

The backends live on a private event loop in a worker thread. That one loop owns every connection,
lock and semaphore, so the same object serves sync callers (`run`), any asyncio loop (`arun`, a web
server's handlers) and notebooks, whose loop is already running when `run` is called.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from typing_extensions import Self

from archon_search.core.errors import ArchonError
from archon_search.core.loop_thread import LoopThread
from archon_search.core.usage import Usage
from archon_search.lang.validate import Validated, load_architecture
from archon_search.ops import OpContext, QueryState
from archon_search.runtime.cache import ResponseCache
from archon_search.runtime.executor import Executor, QueryResult
from archon_search.runtime.pool import BackendPool
from archon_search.runtime.task_context import as_scored, task_context

log = logging.getLogger(__name__)

T = TypeVar("T")
Messages = Sequence[Mapping[str, Any]]
Question = str | Messages
CacheChoice = bool | str | Path | ResponseCache | None

# roles a conversation may hold; `developer` is OpenAI's newer name for `system`
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ConversationError(ArchonError):
    """A question or conversation the architecture cannot take (wrong shape, roles or content)."""


@dataclass
class Answer:
    """The architecture's answer with the usage summed over every internal LM call it took."""

    text: str
    usage: Usage
    result: QueryResult


def _content_text(content: Any, index: int) -> str:
    """A message's text: a string, or OpenAI content parts of type `text` joined."""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ConversationError(f"message {index}: only text content parts are supported")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise ConversationError(f"message {index}: content must be a string or a list of text parts")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        # JSON may carry lone surrogates (\ud800) that no model or cache can take
        raise ConversationError(f"message {index}: content is not valid Unicode; remove lone surrogates") from None
    return content


def conversation(question: Question) -> tuple[str, list[dict[str, str]]]:
    """(question, history) from a plain question or OpenAI-style messages whose last one is from the user."""
    if isinstance(question, str):
        return question, []
    if not isinstance(question, Sequence) or not question:
        raise ConversationError("give a question string or a non-empty list of messages")
    history = []
    for i, message in enumerate(question):
        if not isinstance(message, Mapping):
            raise ConversationError(f"message {i}: must be a mapping with role and content")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ConversationError(f"message {i}: role {role!r} is not supported; use one of {', '.join(ROLES)}")
        history.append({"role": ROLES[role], "content": _content_text(message.get("content"), i)})
    last = history.pop()
    if last["role"] != "user":
        raise ConversationError(f"the last message must be from the user, found {last['role']}")
    return last["content"], history


def _open_cache(cache: CacheChoice) -> ResponseCache | None:
    if isinstance(cache, ResponseCache):
        return cache
    if cache is True:
        return ResponseCache()
    if cache is False or cache is None:
        return None
    return ResponseCache(cache)


def _batch(questions: Sequence[Question]) -> list[Question]:
    if isinstance(questions, str):
        raise ConversationError("a batch is a list of questions; for one question use run or arun")
    return list(questions)


class _LoopThread(LoopThread):
    """The architecture's loop thread, with the lock that opens its backends once."""

    def __init__(self, name: str):
        super().__init__(name)
        self.open_lock = asyncio.Lock()


class Architecture:
    """A validated architecture bound to its models, ready to answer questions.

    Build one with `Architecture.load(path)`; use it as a (sync or async) context manager or call
    `close()` when done. The file's `task:` says how the search read answers (the voter groups on them,
    the unit-test evaluator runs the code in them) and which answer instruction it appended to the first
    user message; the architecture does both the same way. `context` replaces how answers are read.
    """

    def __init__(self, checked: Validated, cache: CacheChoice = True, context: OpContext | None = None):
        self.checked = checked
        self._cache = _open_cache(cache)
        self._owns_cache = self._cache is not None and not isinstance(cache, ResponseCache)
        self._context = context or task_context(checked.arch.task)
        self._pool: BackendPool | None = None
        self._executor: Executor | None = None
        self._runner: _LoopThread | None = None
        self._opening = threading.Lock()
        self._ids = itertools.count()

    @classmethod
    def load(
        cls,
        path: str | Path,
        models: Mapping[str, Any] | None = None,
        cache: CacheChoice = True,
        context: OpContext | None = None,
    ) -> Architecture:
        """Read and validate an architecture file; `models` (parsed model entries) win over the file's.

        `cache`: True (default) uses the persistent cache in the user's cache folder, False or None makes
        every call, a path picks another cache file, and a `ResponseCache` is used as is.
        """
        return cls(load_architecture(path, dict(models) if models else None), cache, context)

    @property
    def name(self) -> str:
        """The architecture's name (what `serve` reports as the model)."""
        return self.checked.arch.name

    @property
    def calls_per_query(self) -> int:
        """The static upper bound on LM calls one question costs."""
        return self.checked.calls_per_query

    def _loop_thread(self) -> _LoopThread:
        with self._opening:
            if self._runner is None:
                self._runner = _LoopThread(f"archon-{self.name}")
            return self._runner

    async def _executor_ready(self) -> Executor:
        # the lock keeps two concurrent first questions from opening two pools
        async with self._loop_thread().open_lock:
            if self._executor is None:
                pool = BackendPool(self.checked.arch.models, cache=self._cache)
                self._pool = pool
                # building every backend now surfaces a missing key or model file before any question
                backends = {name: pool[name] for name in self.checked.arch.models}
                self._executor = Executor(self.checked, backends, self._context)
                log.info("%s: backends ready for model(s) %s", self.name, ", ".join(backends))
        return self._executor

    async def _answer_all(self, questions: Sequence[Question]) -> list[Answer]:
        states = []
        for question in questions:
            text, history = as_scored(self.checked.arch.task, *conversation(question))
            states.append(QueryState(id=f"q{next(self._ids)}", question=text, history=history))
        executor = await self._executor_ready()
        results = await executor.run(states)
        return [Answer(r.answer, r.usage, r) for r in results]

    async def _close(self) -> None:
        pool, self._pool, self._executor = self._pool, None, None
        if pool is not None:
            await pool.aclose()
        if self._owns_cache:
            # closes this thread's connection; the cache reconnects if questions come again
            self._cache.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop_thread().submit(coro).result()

    async def _acall(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self._loop_thread().submit(coro))

    def open(self) -> None:
        """Build the backends now (which checks keys and model files) instead of on the first question."""
        self._call(self._executor_ready())

    async def aopen(self) -> None:
        """`open` for async callers."""
        await self._acall(self._executor_ready())

    def run(self, question: Question) -> str:
        """The answer to one question, or to the last user message of a conversation."""
        return self._call(self._answer_all([question]))[0].text

    async def arun(self, question: Question) -> str:
        """`run` for async callers."""
        return (await self._acall(self._answer_all([question])))[0].text

    def run_batch(self, questions: Sequence[Question]) -> list[str]:
        """Answers to many questions in one executor batch, so their model calls overlap."""
        return [a.text for a in self._call(self._answer_all(_batch(questions)))]

    async def arun_batch(self, questions: Sequence[Question]) -> list[str]:
        """`run_batch` for async callers."""
        return [a.text for a in await self._acall(self._answer_all(_batch(questions)))]

    async def arun_with_usage(self, question: Question) -> Answer:
        """The answer with its usage (calls, tokens) summed over every internal LM call."""
        return (await self._acall(self._answer_all([question])))[0]

    def close(self) -> None:
        """Close the backends and stop the private loop; a later question opens them again."""
        with self._opening:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.submit(self._close()).result()
            runner.stop()

    async def aclose(self) -> None:
        """`close` for async callers (the wait for the worker thread runs off the caller's loop)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
