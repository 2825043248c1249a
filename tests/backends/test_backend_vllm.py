"""The vLLM backend against a stand-in `vllm` module that models the async engine (no GPU here): one streamed
request per sample, all in flight together, guided decoding in both spellings, the context-length checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from archon_search.backends import vllm as vllm_backend
from archon_search.backends.vllm import VLLMBackend
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import VLLMModel

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@dataclass
class FakeSamplingParams:
    n: int
    temperature: float
    max_tokens: int
    seed: int
    guided_decoding: Any = None
    structured_outputs: Any = None


@dataclass
class FakeGuide:
    json: dict


@dataclass
class FakeEngineArgs:
    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    disable_log_requests: bool = False


@dataclass
class FakeSample:
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[FakeSample]
    finished: bool


class FakeTokenizer:
    """A chat template that tags each turn; one token per whitespace-separated word."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def encode(self, text, add_special_tokens):
        assert add_special_tokens is False
        return [len(word) for word in text.split()]


@dataclass
class FakeModelConfig:
    max_model_len: int


@dataclass
class FakeEngine:
    """Streams '<prompt token count>#<seed>' a word per step, two steps per request, like `AsyncLLMEngine`."""

    args: FakeEngineArgs
    calls: list[tuple[dict, FakeSamplingParams, str]] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    fail_on_length: int | None = None
    hold_until: int = 0

    created: int = 0

    @classmethod
    def from_engine_args(cls, args):
        FakeEngine.created += 1
        return cls(args)

    async def get_tokenizer(self):
        return FakeTokenizer()

    async def get_model_config(self):
        return FakeModelConfig(self.args.max_model_len or 4096)

    async def generate(self, prompt, sampling_params, request_id):
        self.calls.append((prompt, sampling_params, request_id))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            # a continuously batched engine takes a step for every request in flight: wait (briefly) for company
            for _ in range(1000):
                if self.most_active >= self.hold_until:
                    break
                await asyncio.sleep(0.002)
            ids = prompt["prompt_token_ids"]
            if len(ids) == self.fail_on_length:
                raise ValueError("bad request\nfrom the engine")
            words = [f"{len(ids)}#{sampling_params.seed}", "done"][: sampling_params.max_tokens]
            for step in range(1, len(words) + 1):
                await asyncio.sleep(0)
                yield FakeRequestOutput(
                    request_id, ids, [FakeSample(" ".join(words[:step]), list(range(step)))], step == len(words)
                )
        finally:
            self.active -= 1


def make_vllm(monkeypatch, guide_name: str | None = "StructuredOutputsParams") -> types.ModuleType:
    """Install the stand-in as `vllm` (and `vllm.sampling_params`, holding the guided-decoding class if any)."""
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = FakeSamplingParams
    if guide_name is not None:
        setattr(sampling, guide_name, FakeGuide)
    module = types.ModuleType("vllm")
    module.AsyncLLMEngine = FakeEngine
    module.AsyncEngineArgs = FakeEngineArgs
    module.SamplingParams = FakeSamplingParams
    module.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    monkeypatch.setattr(FakeEngine, "created", 0)
    monkeypatch.setattr(vllm_backend, "_ENGINES", {})
    return module


@pytest.fixture
def fake_vllm(monkeypatch):
    return make_vllm(monkeypatch)


def spec(**fields) -> VLLMModel:
    return VLLMModel(backend="vllm", model="Qwen/Qwen2.5-7B-Instruct", **fields)


def ask(text: str, sample: int = 0, temperature: float = 0.8, max_tokens: int = 64, schema=None) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], temperature, max_tokens, sample, schema)


def engine_of(backend: VLLMBackend) -> FakeEngine:
    (task,) = vllm_backend._ENGINES.values()
    return task.result().engine


def test_every_sample_is_its_own_request_with_its_own_seed(fake_vllm):
    backend = VLLMBackend(spec())
    requests = [ask("alpha beta", 0), ask("alpha beta", 1), ask("gamma", 0, temperature=0, max_tokens=7)]
    out = asyncio.run(backend.complete(requests))
    calls = engine_of(backend).calls
    assert len(calls) == 3
    assert len({request_id for _, _, request_id in calls}) == 3
    by_seed = {params.seed: (prompt, params) for prompt, params, _ in calls}
    assert set(by_seed) == {r.seed for r in requests}
    # the chat template is applied and encoded without extra special tokens
    prompt, params = by_seed[requests[0].seed]
    assert prompt == {"prompt_token_ids": [6, 5, 4, 11]}
    assert (params.n, params.temperature, params.max_tokens) == (1, 0.8, 64)
    assert (by_seed[requests[2].seed][1].temperature, by_seed[requests[2].seed][1].max_tokens) == (0, 7)
    assert [c.text for c in out] == [f"{4 if i < 2 else 3}#{r.seed} done" for i, r in enumerate(requests)]
    assert [(c.prompt_tokens, c.completion_tokens) for c in out] == [(4, 2), (4, 2), (3, 2)]
    assert all(c.latency_s >= 0 for c in out)


def test_requests_are_in_flight_together(fake_vllm):
    backend = VLLMBackend(spec())
    asyncio.run(backend.complete([ask("warm up")]))
    engine_of(backend).hold_until = 6
    asyncio.run(backend.complete([ask(f"question {i}", s) for i in range(3) for s in range(2)]))
    assert engine_of(backend).most_active == 6


@pytest.mark.parametrize(
    ("guide_name", "keyword"),
    [("StructuredOutputsParams", "structured_outputs"), ("GuidedDecodingParams", "guided_decoding")],
)
def test_a_schema_becomes_guided_decoding_in_either_spelling(monkeypatch, guide_name, keyword):
    make_vllm(monkeypatch, guide_name)
    backend = VLLMBackend(spec())
    asyncio.run(backend.complete([ask("json please", schema=SCHEMA), ask("free text")]))
    guided, free = (params for _, params, _ in engine_of(backend).calls)
    assert getattr(guided, keyword) == FakeGuide(json=SCHEMA)
    assert free.guided_decoding is None and free.structured_outputs is None


def test_a_vllm_without_guided_decoding_decodes_freely(monkeypatch, caplog):
    make_vllm(monkeypatch, guide_name=None)
    backend = VLLMBackend(spec())
    (out,) = asyncio.run(backend.complete([ask("json please", schema=SCHEMA)]))
    ((_, params, _),) = engine_of(backend).calls
    assert params.guided_decoding is None and params.structured_outputs is None
    assert out.text.endswith("done")
    assert "no guided decoding" in caplog.text


def test_max_tokens_shrinks_to_the_room_left_in_max_model_len(fake_vllm):
    backend = VLLMBackend(spec(max_model_len=6))
    asyncio.run(backend.complete([ask("one two three", max_tokens=64)]))
    ((prompt, params, _),) = engine_of(backend).calls
    assert len(prompt["prompt_token_ids"]) == 5 and params.max_tokens == 1


def test_a_prompt_over_max_model_len_is_a_one_line_error(fake_vllm):
    backend = VLLMBackend(spec(max_model_len=4))
    with pytest.raises(BackendError, match="prompt is 5 tokens, over max_model_len=4; raise max_model_len") as info:
        asyncio.run(backend.complete([ask("one two three")]))
    assert "\n" not in str(info.value)


def test_a_failed_request_keeps_the_others_answers(fake_vllm):
    backend = VLLMBackend(spec())
    asyncio.run(backend.complete([ask("warm up")]))
    engine_of(backend).fail_on_length = 5  # "<user> bad words here <assistant>"
    with pytest.raises(BackendError, match="ValueError: bad request from the engine") as info:
        asyncio.run(backend.complete([ask("fine"), ask("bad words here"), ask("also fine")]))
    assert sorted(info.value.partial) == [0, 2]
    assert info.value.partial[2].text.endswith("done")


def test_one_engine_per_model_shared_across_event_loops(fake_vllm):
    first, second = VLLMBackend(spec(max_model_len=4096)), VLLMBackend(spec(max_model_len=4096))
    # two asyncio.run calls are two event loops: the engine must outlive the first one
    asyncio.run(first.complete([ask("a")]))
    (out,) = asyncio.run(second.complete([ask("b")]))
    assert out.text.endswith("done")
    assert FakeEngine.created == 1
    assert engine_of(first).args == FakeEngineArgs(
        model="Qwen/Qwen2.5-7B-Instruct",
        tensor_parallel_size=1,
        gpu_memory_utilization=0.9,
        max_model_len=4096,
        disable_log_requests=True,
    )


def test_newer_releases_log_no_requests_without_being_told():
    @dataclass
    class NewerEngineArgs:
        model: str
        enable_log_requests: bool = False
        disable_log_requests: bool = False  # still accepted, deprecated

    module = types.SimpleNamespace(AsyncEngineArgs=NewerEngineArgs)
    assert "disable_log_requests" not in vllm_backend.engine_options(module, spec())


def test_an_engine_that_cannot_start_is_a_one_line_error_and_is_retried(fake_vllm, monkeypatch):
    def refuse(args):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(fake_vllm.AsyncLLMEngine, "from_engine_args", staticmethod(refuse))
    with pytest.raises(BackendError, match=r"cannot start vLLM for Qwen/Qwen2.5-7B-Instruct \(RuntimeError: CUDA"):
        asyncio.run(VLLMBackend(spec()).complete([ask("a")]))
    assert vllm_backend._ENGINES == {}


def test_missing_vllm_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendError, match=r"pip install 'archon-search\[vllm\]'"):
        VLLMBackend(spec())


def test_importing_the_module_does_not_import_vllm():
    code = "import sys, archon_search.runtime.pool; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
