"""The embedded CPU model for real (SmolLM2-135M-Instruct through llama-cpp-python), on short prompts."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from archon_search.backends.embedded import EmbeddedBackend, default_model_path, fit_messages, load_model
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import EmbeddedModel
from archon_search.ops.verifier import VERDICT_SCHEMA
from archon_search.runtime.cache import CachedBackend, ResponseCache

pytestmark = pytest.mark.embedded


def ask(text: str, sample: int = 0, temperature: float = 0.0, max_tokens: int = 8) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], temperature, max_tokens, sample)


def test_answers_a_short_prompt_with_usage():
    backend = EmbeddedBackend(EmbeddedModel())
    (out,) = asyncio.run(backend.complete([ask("What is the capital of France?")]))
    assert out.text.strip() and not out.cached
    assert out.prompt_tokens > 5 and 1 <= out.completion_tokens <= 8 and out.latency_s > 0
    assert backend.model_id == "SmolLM2-135M-Instruct" and backend.path == default_model_path()


def test_samples_may_differ_are_reproducible_and_cached_apart(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = CachedBackend(EmbeddedBackend(EmbeddedModel()), cache)
    requests = [ask("Write a word.", sample=i, temperature=0.8, max_tokens=6) for i in range(4)]
    first = asyncio.run(backend.complete(requests[:2]))
    assert len(cache) == 2 and backend.misses == 2
    again = asyncio.run(backend.complete(requests[:2]))
    assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
    rest = asyncio.run(backend.complete(requests[2:]))
    assert len({c.text for c in first + rest}) > 1, "distinct seeds should give distinct samples at temperature 0.8"
    uncached = EmbeddedBackend(EmbeddedModel())
    assert asyncio.run(uncached.complete(requests[1:2]))[0].text == first[1].text


def test_an_overlong_prompt_is_cut_not_crashed(caplog):
    backend = EmbeddedBackend(EmbeddedModel(n_ctx=256))
    long_prompt = "Remember this. " + "filler words go here " * 300 + "Now say OK."
    with caplog.at_level(logging.WARNING, logger="archon_search.backends.embedded"):
        (out,) = asyncio.run(backend.complete([ask(long_prompt, max_tokens=4)]))
    assert "cutting its middle" in caplog.text
    assert out.prompt_tokens < 256 and out.completion_tokens >= 1


def test_fit_keeps_the_end_of_the_last_user_message():
    model = load_model(default_model_path(), 256, 1)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question start. " + "padding " * 500 + "Final instruction: answer now."},
    ]
    fitted = fit_messages(model.llm, messages, n_ctx=256, max_tokens=32)
    assert fitted[0] == messages[0]
    content = fitted[1]["content"]
    assert content.startswith("Question start.") and content.endswith("Final instruction: answer now.")
    assert "[...]" in content and len(model.llm.tokenize(content.encode(), add_bos=False)) < 256
    assert fit_messages(model.llm, messages[:1], n_ctx=256, max_tokens=32) == messages[:1]


def test_missing_gguf_is_a_one_line_error(tmp_path):
    with pytest.raises(BackendError, match="model_path .* is not a file"):
        EmbeddedBackend(EmbeddedModel(model_path=str(tmp_path / "nope.gguf")))


def test_an_invalid_gguf_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    backend = EmbeddedBackend(EmbeddedModel(model_path=str(bad)))
    with pytest.raises(BackendError, match="cannot load GGUF .*bad.gguf"):
        asyncio.run(backend.complete([ask("hi")]))


def test_a_failure_mid_batch_carries_the_answers_made_before_it(monkeypatch):
    backend = EmbeddedBackend(EmbeddedModel())
    real = backend._generate
    calls = []

    def flaky(request):
        calls.append(request)
        if len(calls) == 3:
            raise BackendError("embedded model: prompt too long; raise n_ctx or shorten the prompt")
        return real(request)

    monkeypatch.setattr(backend, "_generate", flaky)
    with pytest.raises(BackendError) as err:
        asyncio.run(backend.complete([ask("One"), ask("Two"), ask("Three"), ask("Four")]))
    assert sorted(err.value.partial) == [0, 1] and len(calls) == 3
    assert all(c.completion_tokens > 0 for c in err.value.partial.values())


def test_a_json_schema_constrains_the_answer_to_valid_json():
    schema = VERDICT_SCHEMA
    prompt = (
        'Is "2 + 2 = 4" correct? Reply with a JSON object: {"analysis": "<brief reasoning>", "correct": true or false}.'
    )
    request = ChatRequest.of([{"role": "user", "content": prompt}], 0.0, 96, json_schema=schema)
    (out,) = asyncio.run(EmbeddedBackend(EmbeddedModel()).complete([request]))
    answer = json.loads(out.text)
    assert set(answer) == {"analysis", "correct"}
    assert isinstance(answer["analysis"], str) and isinstance(answer["correct"], bool)
