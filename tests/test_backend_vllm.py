"""The vLLM backend's batching and output mapping, against a stand-in `vllm` module (no GPU here)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from dataclasses import dataclass

import pytest

from archon_search.backends import vllm as vllm_backend
from archon_search.backends.base import ChatRequest
from archon_search.backends.vllm import VLLMBackend, group_samples
from archon_search.errors import BackendError
from archon_search.spec import VLLMModel


@dataclass
class FakeSampling:
    n: int
    temperature: float
    max_tokens: int
    seed: int


@dataclass
class FakeSample:
    text: str
    token_ids: list[int]


@dataclass
class FakeOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeSample]


class FakeLLM:
    """Answers sample j of a conversation with '<last user message>#j'; can drop outputs to test the checks."""

    created = 0

    def __init__(self, **options):
        self.options = options
        self.calls = []
        self.short_by = 0
        FakeLLM.created += 1

    def chat(self, conversations, sampling_params, use_tqdm):
        self.calls.append((conversations, sampling_params))
        outputs = []
        for messages, params in zip(conversations, sampling_params):
            prompt = messages[-1]["content"]
            samples = [FakeSample(f"{prompt}#{j}", list(range(j + 1))) for j in range(params.n - self.short_by)]
            outputs.append(FakeOutput(list(range(len(prompt.split()))), samples))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSampling
    monkeypatch.setattr(FakeLLM, "created", 0)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_backend, "_ENGINES", {})
    return module


def spec(**fields) -> VLLMModel:
    return VLLMModel(backend="vllm", model="Qwen/Qwen2.5-7B-Instruct", **fields)


def ask(text: str, sample: int = 0, temperature: float = 0.8) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], temperature, 64, sample)


def engine_of(backend: VLLMBackend) -> FakeLLM:
    return vllm_backend.load_engine(backend.spec).llm


def test_a_batch_is_one_chat_call_with_samples_grouped(fake_vllm):
    backend = VLLMBackend(spec())
    requests = [
        ask("alpha beta", 0),
        ask("alpha beta", 1),
        ask("alpha beta", 2),
        ask("gamma", 0),
        ask("alpha beta", 3),  # same prompt, but not next to its earlier samples
        ask("greedy", 0, temperature=0),
        ask("greedy", 1, temperature=0),
    ]
    out = asyncio.run(backend.complete(requests))
    ((conversations, params),) = engine_of(backend).calls
    assert [c[-1]["content"] for c in conversations] == ["alpha beta", "gamma", "alpha beta", "greedy", "greedy"]
    assert [p.n for p in params] == [3, 1, 1, 1, 1]
    assert params[0].seed == requests[0].seed and params[0].max_tokens == 64 and params[3].temperature == 0
    assert [c.text for c in out] == [
        "alpha beta#0",
        "alpha beta#1",
        "alpha beta#2",
        "gamma#0",
        "alpha beta#0",
        "greedy#0",
        "greedy#0",
    ]
    assert [(c.prompt_tokens, c.completion_tokens) for c in out[:4]] == [(2, 1), (2, 2), (2, 3), (1, 1)]


def test_group_samples_needs_consecutive_indices():
    requests = [ask("q", 0), ask("q", 2), ask("q", 3), ask("q", 3)]
    assert group_samples(requests) == [[0], [1, 2], [3]]


def test_fewer_outputs_than_asked_is_an_error(fake_vllm):
    backend = VLLMBackend(spec())
    engine_of(backend).short_by = 1
    with pytest.raises(BackendError, match="1 samples for n=2"):
        asyncio.run(backend.complete([ask("q", 0), ask("q", 1)]))


def test_one_engine_per_model_per_process(fake_vllm):
    first, second = VLLMBackend(spec(max_model_len=4096)), VLLMBackend(spec(max_model_len=4096))
    asyncio.run(first.complete([ask("a")]))
    asyncio.run(second.complete([ask("b")]))
    assert FakeLLM.created == 1
    assert engine_of(first).options == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "max_model_len": 4096,
    }


def test_missing_vllm_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendError, match=r"pip install 'archon-search\[vllm\]'"):
        VLLMBackend(spec())


def test_importing_the_module_does_not_import_vllm():
    code = "import sys, archon_search.backends.registry; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
