"""The scripted fake: answers in turn (cycling), by prompt substring, with overlapping latency."""

from __future__ import annotations

import asyncio
import time

import pytest

from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import ScriptedModel


def scripted(**fields) -> ScriptedBackend:
    return ScriptedBackend(ScriptedModel(backend="scripted", **fields))


def ask(text: str, system: str | None = None) -> ChatRequest:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return ChatRequest.of(messages, temperature=0.7, max_tokens=32)


def texts(backend: ScriptedBackend, *prompts: str) -> list[str]:
    return [c.text for c in asyncio.run(backend.complete([ask(p) for p in prompts]))]


def test_responses_come_in_turn_and_cycle_across_batches():
    backend = scripted(responses=["a", "b", "c"])
    assert texts(backend, "x", "y") == ["a", "b"]
    assert texts(backend, "x", "y", "z") == ["c", "a", "b"]
    assert backend.calls == 5


def test_by_prompt_first_match_wins_else_responses():
    backend = scripted(responses=["fallback"], by_prompt={"capital": "Paris", "France": "Lyon"})
    assert texts(backend, "the capital of France?", "France's best city", "2+2?") == ["Paris", "Lyon", "fallback"]


def test_by_prompt_looks_only_at_the_last_user_message():
    backend = scripted(responses=["fallback"], by_prompt={"capital": "Paris"})
    request = ask("what now?", system="talk about the capital")
    assert asyncio.run(backend.complete([request]))[0].text == "fallback"


def test_no_answer_is_a_one_line_error():
    with pytest.raises(BackendError, match="add a `responses:` list"):
        texts(scripted(by_prompt={"capital": "Paris"}), "2+2?")


def test_usage_is_word_counts():
    backend = scripted(responses=["four is the answer"])
    out = asyncio.run(backend.complete([ask("what is two plus two", system="be brief")]))[0]
    assert (out.prompt_tokens, out.completion_tokens, out.cached) == (7, 4, False)


def test_a_batch_shares_its_latency():
    backend = scripted(responses=["ok"], latency_ms=50)
    start = time.perf_counter()
    out = asyncio.run(backend.complete([ask(f"q{i}") for i in range(50)]))
    elapsed = time.perf_counter() - start
    assert len(out) == 50 and 0.05 <= elapsed < 0.5
    assert all(c.latency_s == pytest.approx(0.05) for c in out)


def test_model_id_tells_scripts_apart():
    assert scripted(responses=["a"]).model_id == scripted(responses=["a"]).model_id
    assert scripted(responses=["a"]).model_id != scripted(responses=["b"]).model_id
    assert scripted(responses=["a"]).model_id != scripted(responses=["a"], by_prompt={"x": "a"}).model_id
