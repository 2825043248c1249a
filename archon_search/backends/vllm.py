"""vLLM's async engine on local GPUs: every sample is its own request, and the engine batches them continuously.

`vllm` is imported only when a backend is built, so this module loads on machines without it. Engines live on one
event loop in a daemon thread: callers come from several loops (one `asyncio.run` per command, the API's own loop
thread), and an engine's background loop must outlive every one of them.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import importlib
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archon_search.backends.base import Backend
from archon_search.core.errors import BackendError
from archon_search.core.loop_thread import LoopThread
from archon_search.core.messages import STOP, ChatRequest, Completion
from archon_search.lang.spec import VLLMModel

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'archon-search[vllm]' on a machine with an NVIDIA GPU"


@dataclass
class Engine:
    """A started vLLM async engine, its release's `vllm.sampling_params` module, its tokenizer and context length."""

    engine: Any
    sampling: Any
    tokenizer: Any
    max_model_len: int


_ENGINES: dict[tuple, asyncio.Task[Engine]] = {}
_LOOP: LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def _engine_loop() -> LoopThread:
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = LoopThread("archon-vllm")
        return _LOOP


@atexit.register
def _shut_down_all() -> None:
    # vLLM's V1 engine runs its core in a child process: stop it while the interpreter is whole
    for task in _ENGINES.values():
        if task.done() and not task.cancelled() and task.exception() is None:
            shutdown = getattr(task.result().engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
    _ENGINES.clear()


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise BackendError(f"the vllm backend needs vLLM: {INSTALL_HINT}") from None
    return vllm


def _one_line(exc: BaseException, limit: int = 200) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]


async def _resolved(value: Any) -> Any:
    """`value`, awaited first when it is awaitable (vLLM made some getters async and others sync over releases)."""
    return await value if inspect.isawaitable(value) else value


def engine_options(vllm: Any, spec: VLLMModel) -> dict[str, Any]:
    """Keyword arguments of `vllm.AsyncEngineArgs` for this model entry."""
    options: dict[str, Any] = {
        "model": spec.model,
        "tensor_parallel_size": spec.tensor_parallel_size,
        "gpu_memory_utilization": spec.gpu_memory_utilization,
    }
    if spec.max_model_len is not None:
        options["max_model_len"] = spec.max_model_len
    fields = {f.name for f in dataclasses.fields(vllm.AsyncEngineArgs)}
    # releases before `enable_log_requests` log every request with its whole prompt unless told not to
    if "disable_log_requests" in fields and "enable_log_requests" not in fields:
        options["disable_log_requests"] = True
    return options


async def _start_engine(spec: VLLMModel) -> Engine:
    vllm = _require_vllm()
    start = time.perf_counter()
    try:
        engine = vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(**engine_options(vllm, spec)))
        tokenizer = await _resolved(engine.get_tokenizer())
        config = getattr(engine, "model_config", None) or await _resolved(engine.get_model_config())
    except Exception as exc:  # noqa: BLE001 - a missing model, CUDA out of memory, a bad setting: all mean "cannot start"
        raise BackendError(
            f"cannot start vLLM for {spec.model} ({_one_line(exc)}); check the model name, "
            "gpu_memory_utilization and max_model_len"
        ) from None
    log.info("vLLM engine for %s ready in %.0fs", spec.model, time.perf_counter() - start)
    return Engine(engine, importlib.import_module("vllm.sampling_params"), tokenizer, int(config.max_model_len))


async def _engine_for(spec: VLLMModel) -> Engine:
    """The process-wide engine for this model and its GPU settings, started on first use (runs on the engine loop)."""
    key = (spec.model, spec.tensor_parallel_size, spec.gpu_memory_utilization, spec.max_model_len)
    if key not in _ENGINES:
        _ENGINES[key] = asyncio.ensure_future(_start_engine(spec))
    task = _ENGINES[key]
    try:
        return await asyncio.shield(task)
    except BackendError:
        # a failed start is not cached, so that a later run (with the GPU freed) can try again
        if _ENGINES.get(key) is task:
            del _ENGINES[key]
        raise


def structured_output_options(sampling: Any, schema: dict | None) -> dict[str, Any]:
    """`SamplingParams` keywords that constrain decoding to the JSON Schema `schema` in this vLLM release.

    `sampling` is the `vllm.sampling_params` module: newer releases take `structured_outputs=`, older ones (from
    0.6) `guided_decoding=`; a release with neither decodes freely (the ops parse leniently anyway).
    """
    if schema is None:
        return {}
    if hasattr(sampling, "StructuredOutputsParams"):
        return {"structured_outputs": sampling.StructuredOutputsParams(json=schema)}
    if hasattr(sampling, "GuidedDecodingParams"):
        return {"guided_decoding": sampling.GuidedDecodingParams(json=schema)}
    log.warning("this vLLM has no guided decoding; a JSON Schema is ignored (upgrade vllm to constrain answers)")
    return {}


def chat_prompt(tokenizer: Any, request: ChatRequest) -> list[int]:
    """The request's conversation through the model's chat template, as token ids.

    The template already writes the special tokens, so encoding adds none (as `LLM.chat` does).
    """
    text = tokenizer.apply_chat_template(request.as_messages(), tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


class VLLMBackend(Backend):
    """One engine request per `ChatRequest`, all in flight at once: vLLM's scheduler batches them continuously
    and a request finishes as soon as its own answer does. Each sample keeps its own seed."""

    kind = "vllm"

    def __init__(self, spec: VLLMModel):
        self.spec = spec
        _require_vllm()

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    async def _generate(self, request: ChatRequest) -> Completion:
        engine = await _engine_for(self.spec)
        start = time.perf_counter()
        prompt = chat_prompt(engine.tokenizer, request)
        room = engine.max_model_len - len(prompt)
        if room < 1:
            raise BackendError(
                f"vLLM model {self.spec.model}: the prompt is {len(prompt)} tokens, over max_model_len="
                f"{engine.max_model_len}; raise max_model_len or shorten the prompt"
            )
        params = engine.sampling.SamplingParams(
            n=1,
            temperature=request.temperature,
            max_tokens=min(request.max_tokens, room),
            seed=request.seed,
            **structured_output_options(engine.sampling, request.schema),
        )
        final = None
        try:
            async for output in engine.engine.generate({"prompt_token_ids": prompt}, params, f"archon-{uuid.uuid4()}"):
                final = output
        except Exception as exc:  # noqa: BLE001 - vLLM's error types differ per release (ValueError, EngineDeadError...)
            raise BackendError(f"vLLM model {self.spec.model}: {_one_line(exc)}") from None
        if final is None or not final.outputs:
            raise BackendError(f"vLLM model {self.spec.model}: the engine finished a request with no output")
        sample = final.outputs[0]
        return Completion(
            text=sample.text,
            prompt_tokens=len(final.prompt_token_ids or prompt),
            completion_tokens=len(sample.token_ids),
            latency_s=time.perf_counter() - start,
            finish_reason=sample.finish_reason or STOP,
        )

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Send every request to the engine at once; each one's latency is its own.

        When one fails, the others still finish (the GPU did the work) and the first failure is raised with
        their answers in `BackendError.partial`.
        """
        loop = _engine_loop()
        results = await asyncio.gather(
            *(asyncio.wrap_future(loop.submit(self._generate(r))) for r in requests), return_exceptions=True
        )
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is None:
            return list(results)
        if isinstance(failed, BackendError):
            failed.partial = {i: r for i, r in enumerate(results) if isinstance(r, Completion)}
        raise failed
