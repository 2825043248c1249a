"""vLLM's offline engine on local GPUs: a whole batch goes to the engine in one `chat` call.

`vllm` is imported only when a backend is built, so this module loads on machines without it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archon_search.backends.base import Backend, ChatRequest, Completion
from archon_search.errors import BackendError
from archon_search.spec import VLLMModel

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'archon-search[vllm]' on a machine with an NVIDIA GPU"


@dataclass
class Engine:
    """A loaded `vllm.LLM`, the module it came from, and the lock that keeps one batch in it at a time."""

    llm: Any
    vllm: Any
    lock: threading.Lock


_ENGINES: dict[tuple, Engine] = {}
_LOADING = threading.Lock()


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise BackendError(f"the vllm backend needs vLLM: {INSTALL_HINT}") from None
    return vllm


def load_engine(spec: VLLMModel) -> Engine:
    """The process-wide engine for this model and its GPU settings, created on first use."""
    key = (spec.model, spec.tensor_parallel_size, spec.gpu_memory_utilization, spec.max_model_len)
    with _LOADING:
        if key not in _ENGINES:
            vllm = _require_vllm()
            options: dict[str, Any] = {
                "model": spec.model,
                "tensor_parallel_size": spec.tensor_parallel_size,
                "gpu_memory_utilization": spec.gpu_memory_utilization,
            }
            if spec.max_model_len is not None:
                options["max_model_len"] = spec.max_model_len
            start = time.perf_counter()
            _ENGINES[key] = Engine(vllm.LLM(**options), vllm, threading.Lock())
            log.info("vLLM engine for %s ready in %.0fs", spec.model, time.perf_counter() - start)
        return _ENGINES[key]


def group_samples(requests: Sequence[ChatRequest]) -> list[list[int]]:
    """Indices of the requests, grouped so each group can be one prompt with `n` = its size.

    A group is a run of neighbours with identical messages, temperature and max_tokens whose sample
    indices go up by one. Greedy requests (temperature 0) stay alone: some vLLM versions refuse n > 1
    without sampling, and the n answers would be identical anyway.
    """
    groups: list[list[int]] = []
    for i, request in enumerate(requests):
        if groups and request.temperature > 0:
            last = requests[groups[-1][-1]]
            same = (last.messages, last.temperature, last.max_tokens) == (
                request.messages,
                request.temperature,
                request.max_tokens,
            )
            if same and request.sample == last.sample + 1:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


class VLLMBackend(Backend):
    """Sends a batch as ONE `LLM.chat` call, k consecutive samples of a prompt as one prompt with `n=k`,
    and maps the outputs back to the requests in order after checking their counts."""

    kind = "vllm"

    def __init__(self, spec: VLLMModel):
        self.spec = spec
        _require_vllm()

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def _run(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        engine = load_engine(self.spec)
        groups = group_samples(requests)
        conversations = [requests[g[0]].as_messages() for g in groups]
        params = [
            engine.vllm.SamplingParams(
                n=len(g),
                temperature=requests[g[0]].temperature,
                max_tokens=requests[g[0]].max_tokens,
                seed=requests[g[0]].seed,
            )
            for g in groups
        ]
        with engine.lock:
            start = time.perf_counter()
            outputs = engine.llm.chat(conversations, sampling_params=params, use_tqdm=False)
            elapsed = time.perf_counter() - start
        if len(outputs) != len(groups):
            raise BackendError(
                f"vLLM model {self.spec.model}: {len(outputs)} outputs for {len(groups)} prompts; upgrade vllm"
            )
        completions: list[Completion | None] = [None] * len(requests)
        for group, output in zip(groups, outputs):
            samples = list(output.outputs)
            if len(samples) != len(group):
                raise BackendError(
                    f"vLLM model {self.spec.model}: {len(samples)} samples for n={len(group)}; upgrade vllm"
                )
            prompt_tokens = len(output.prompt_token_ids or [])
            for index, sample in zip(group, samples):
                completions[index] = Completion(
                    text=sample.text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(sample.token_ids),
                    latency_s=elapsed,
                )
        return [c for c in completions if c is not None]

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Run the whole batch in the engine off the event loop; every request's latency is the batch's."""
        if not requests:
            return []
        return await asyncio.to_thread(self._run, requests)
