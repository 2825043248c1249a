"""The embedded CPU model for real (SmolLM2-135M-Instruct through llama-cpp-python), on short prompts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time

import pytest

from archon_search.backends.embedded import (
    EmbeddedBackend,
    default_model_path,
    default_threads,
    fit_messages,
    load_model,
    prepare,
)
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
    # the same seed sampled again outside the cache is not compared: decoded in another batch (other sequences,
    # other cells), the logits differ in their last bits and a sample at temperature 0.8 may take another turn


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


def test_a_failure_mid_batch_carries_the_answers_of_the_others(monkeypatch):
    backend = EmbeddedBackend(EmbeddedModel())
    calls = []

    def flaky(model, request):
        calls.append(request)
        if len(calls) == 3:
            raise BackendError("embedded model: prompt too long; raise n_ctx or shorten the prompt")
        return prepare(model, request)

    monkeypatch.setattr(backend, "_prepare", flaky)
    with pytest.raises(BackendError, match="raise n_ctx") as err:
        asyncio.run(backend.complete([ask("One"), ask("Two"), ask("Three"), ask("Four")]))
    assert sorted(err.value.partial) == [0, 1, 3] and len(calls) == 4
    assert all(c.completion_tokens > 0 for c in err.value.partial.values())


def test_a_prompt_that_leaves_no_room_is_a_one_line_error():
    backend = EmbeddedBackend(EmbeddedModel(n_ctx=128))
    # every message keeps at least 32 tokens when cut: five of them overflow 128
    turns = [{"role": role, "content": f"{role} says hi. " * 100} for role in ("system", "user", "assistant") * 2]
    request = ChatRequest.of(turns[:5], 0.0, 8)
    with pytest.raises(BackendError, match="n_ctx is 128; raise n_ctx or shorten the prompt") as err:
        asyncio.run(backend.complete([request]))
    assert "\n" not in str(err.value)


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


def test_concurrent_calls_are_decoded_together_with_a_finish_reason_each():
    backend = EmbeddedBackend(EmbeddedModel())
    story = ask("Write a long story about a dragon.", max_tokens=6)
    short = [ask(q, max_tokens=48) for q in ("What is 2 + 2?", "Say hello.", "What is the capital of France?")]

    async def together():
        return await asyncio.gather(backend.complete([story, short[0]]), backend.complete(short[1:]))

    asyncio.run(backend.complete([ask("Hi", max_tokens=1)]))
    engine = backend.engine
    steps = engine.steps
    first, rest = asyncio.run(together())
    answers = first + rest
    assert all(a.text.strip() and a.completion_tokens >= 1 for a in answers)
    assert answers[0].finish_reason == "length" and answers[0].completion_tokens == 6
    assert any(a.finish_reason == "stop" and a.completion_tokens < 48 for a in answers[1:])
    # one decode step per token of the longest answer (and a few to read the prompts), not one per token of each
    assert engine.steps - steps < sum(a.completion_tokens for a in answers)


def test_greedy_answers_are_the_same_within_a_batch():
    backend = EmbeddedBackend(EmbeddedModel())
    a, b = ask("Name a colour.", max_tokens=12), ask("What is 3 times 3?", max_tokens=12)
    once = asyncio.run(backend.complete([a, b, a, ask("Say yes.", max_tokens=12), a]))
    assert once[0].text == once[2].text == once[4].text and once[0].text.strip()
    assert len({once[0].text, once[1].text, once[3].text}) == 3


def test_json_schemas_constrain_their_answers_in_a_mixed_batch():
    prompt = 'Is "{}" correct? Reply with a JSON object: {{"analysis": "<brief reasoning>", "correct": true or false}}.'
    judged = [
        ChatRequest.of([{"role": "user", "content": prompt.format(claim)}], 0.0, 96, json_schema=VERDICT_SCHEMA)
        for claim in ("2 + 2 = 4", "3 + 3 = 7")
    ]
    answers = asyncio.run(EmbeddedBackend(EmbeddedModel()).complete([judged[0], ask("Say hi."), judged[1]]))
    for out in (answers[0], answers[2]):
        verdict = json.loads(out.text)
        assert set(verdict) == {"analysis", "correct"} and isinstance(verdict["correct"], bool)


def _endless(model, request):
    # a grammar that never lets the answer end: only max_tokens (or a cancel) stops it
    return dataclasses.replace(prepare(model, request), grammar=('root ::= [a-z]+ " " root', "root"))


def _released(engine, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while engine.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    return engine.busy == 0


def test_cancelling_a_call_or_closing_stops_a_long_generation_within_seconds(monkeypatch):
    backend = EmbeddedBackend(EmbeddedModel())
    monkeypatch.setattr(backend, "_prepare", _endless)
    long = ask("Write words.", max_tokens=1500)

    async def cancelled() -> float:
        task = asyncio.create_task(backend.complete([long]))
        await asyncio.sleep(1.0)
        assert not task.done() and backend.engine.busy == 1
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(cancelled()) < 1.0
    assert _released(backend.engine, 2.0), "the engine went on decoding a cancelled request"

    async def closed() -> float:
        task = asyncio.create_task(backend.complete([long, ask("Write more words.", max_tokens=1500)]))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await backend.aclose()
        took = time.monotonic() - started
        with pytest.raises(BackendError, match="closed before it answered"):
            await task
        return took

    assert asyncio.run(closed()) < 3.0
    assert backend.engine.busy == 0


def test_a_gguf_without_a_chat_template_needs_chat_format(tmp_path):
    # the same model with its chat template renamed away (same key length, so nothing else in the file moves)
    data = default_model_path().read_bytes()
    key = b"tokenizer.chat_template"
    assert data.count(key) == 1
    bare = tmp_path / "base-model.gguf"
    bare.write_bytes(data.replace(key, b"tokenizer.chat_templatX"))
    with pytest.raises(BackendError, match=r"no chat template.*set chat_format: \(e\.g\. chatml\)"):
        asyncio.run(EmbeddedBackend(EmbeddedModel(model_path=str(bare))).complete([ask("hi")]))
    with pytest.raises(BackendError, match="unknown chat_format 'chat-ml'; use one of .*chatml"):
        asyncio.run(EmbeddedBackend(EmbeddedModel(model_path=str(bare), chat_format="chat-ml")).complete([ask("hi")]))
    (out,) = asyncio.run(
        EmbeddedBackend(EmbeddedModel(model_path=str(bare), chat_format="chatml")).complete([ask("hi")])
    )
    assert out.completion_tokens >= 1


def test_threads_default_to_half_the_cores():
    assert default_threads() == max(1, (os.cpu_count() or 1) // 2)
    assert EmbeddedBackend(EmbeddedModel()).n_threads == default_threads()
    assert EmbeddedBackend(EmbeddedModel(n_threads=3)).n_threads == 3
