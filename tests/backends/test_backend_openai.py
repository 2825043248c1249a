"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1, through the real `openai` client."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from servers.openai_stub import Reply, StubOpenAIServer, answer_text

from archon_search.backends.openai_api import OpenAIBackend, is_loopback
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest, Completion
from archon_search.lang.spec import OpenAIModel
from archon_search.ops.verifier import VERDICT_SCHEMA

KEY_ENV = "ARCHON_TEST_KEY"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def backend(url: str, model: str = "stub-model", **options) -> OpenAIBackend:
    """A backend for `url` that retries quickly (tests wait tens of ms, not seconds)."""
    concurrency = options.pop("max_concurrency", 16)
    spec = OpenAIModel(backend="openai", model=model, base_url=url, api_key_env=KEY_ENV, max_concurrency=concurrency)
    return OpenAIBackend(spec, **({"max_attempts": 3, "backoff_s": 0.01, "max_backoff_s": 5.0} | options))


def complete(b: OpenAIBackend, requests: list[ChatRequest]) -> list[Completion]:
    async def go():
        try:
            return await b.complete(requests)
        finally:
            await b.aclose()

    return asyncio.run(go())


def ask(text: str, sample: int = 0) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], temperature=0.7, max_tokens=16, sample=sample)


def test_one_http_request_per_sample_with_distinct_seeds_and_usage():
    with StubOpenAIServer() as stub:
        requests = [ask("what is 2+2?", sample=i) for i in range(3)]
        out = complete(backend(stub.url), requests)
    assert len(stub.bodies) == 3
    assert all("n" not in body or body["n"] == 1 for body in stub.bodies)
    seeds = [body["seed"] for body in stub.bodies]
    assert sorted(seeds) == sorted(r.seed for r in requests) and len(set(seeds)) == 3
    assert [c.text for c in out] == [answer_text({"messages": r.as_messages(), "seed": r.seed}) for r in requests]
    assert all(c.prompt_tokens == 3 and c.completion_tokens == 5 and c.latency_s > 0 for c in out)
    assert {(body["max_tokens"], body["temperature"]) for body in stub.bodies} == {(16, 0.7)}


def test_loopback_needs_no_key_but_sends_the_named_one(monkeypatch):
    with StubOpenAIServer() as stub:
        complete(backend(stub.url), [ask("hi")])
        monkeypatch.setenv(KEY_ENV, "sekret")
        complete(backend(stub.url), [ask("hi")])
    assert stub.headers[0]["authorization"] == "Bearer no-key-needed"
    assert stub.headers[1]["authorization"] == "Bearer sekret"


def test_missing_key_for_a_remote_server_names_the_env_var():
    with pytest.raises(BackendError, match=f"set the environment variable {KEY_ENV}"):
        backend("https://api.example.com/v1")


def test_429_waits_for_retry_after_then_succeeds():
    with StubOpenAIServer() as stub:
        stub.fail_next(Reply(429, {"Retry-After": "1"}))
        start = time.perf_counter()
        out = complete(backend(stub.url), [ask("hi")])
        waited = time.perf_counter() - start
    assert len(stub.bodies) == 2 and out[0].text.endswith("hi")
    assert waited >= 0.9, "Retry-After: 1 must be honoured over the 10 ms backoff"


@pytest.mark.parametrize("failure", [Reply(500), Reply(503), Reply(drop=True)], ids=["500", "503", "dropped"])
def test_server_errors_and_dropped_connections_are_retried(failure):
    with StubOpenAIServer() as stub:
        stub.fail_next(failure, failure)
        out = complete(backend(stub.url), [ask("hi")])
    assert len(stub.bodies) == 3 and out[0].text.endswith("hi")


def test_a_lasting_failure_stops_the_batch_but_keeps_what_was_answered():
    with StubOpenAIServer() as stub:
        # two requests in flight at a time: the first pair is answered, then the server fails for good
        requests = [ask(f"q{i}") for i in range(12)]
        answered = {"n": 0}
        original = stub.record

        def record(*request):
            reply = original(*request)
            answered["n"] += 1
            return reply if answered["n"] <= 2 else Reply(500)

        stub.record = record
        with pytest.raises(BackendError) as err:
            complete(backend(stub.url, max_attempts=3, max_concurrency=2), requests)
    # 2 answered, then at most the 2 in flight retried 3 times each: the 8 still queued are never sent
    assert len(stub.bodies) <= 2 + 2 * 3
    assert len(err.value.partial) == 2 and all(isinstance(c, Completion) for c in err.value.partial.values())


def test_gives_up_after_max_attempts_with_one_line():
    with StubOpenAIServer() as stub:
        stub.fail_next(*[Reply(500)] * 5)
        with pytest.raises(BackendError) as err:
            complete(backend(stub.url, max_attempts=3), [ask("hi")])
    assert len(stub.bodies) == 3
    message = str(err.value)
    assert "\n" not in message and "HTTP 500" in message and "after 3 attempts" in message and stub.url in message


def test_unknown_model_is_a_404_error_without_retries():
    with StubOpenAIServer() as stub, pytest.raises(BackendError, match="model 'gpt-nope' at .*HTTP 404.*set `model:`"):
        complete(backend(stub.url, model="gpt-nope"), [ask("hi")])
    assert len(stub.bodies) == 1


def test_refused_key_says_which_env_var():
    with StubOpenAIServer() as stub:
        stub.fail_next(Reply(401))
        with pytest.raises(BackendError, match=f"HTTP 401.*\\${KEY_ENV}"):
            complete(backend(stub.url), [ask("hi")])
    assert len(stub.bodies) == 1


def dead_url() -> str:
    """A loopback base_url where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_unreachable_server_names_the_url():
    url = dead_url()
    with pytest.raises(
        BackendError, match=f"at {url}: cannot connect after 2 attempts .*start the server or fix base_url"
    ):
        complete(backend(url, max_attempts=2), [ask("hi")])


def test_concurrency_is_bounded():
    with StubOpenAIServer(delay_s=0.1) as stub:
        out = complete(backend(stub.url, max_concurrency=2), [ask(f"q{i}") for i in range(6)])
    assert len(out) == 6 and [c.text.split(": ")[1] for c in out] == [f"q{i}" for i in range(6)]
    assert stub.max_in_flight == 2


@pytest.mark.parametrize(
    "url,loopback",
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://127.0.1.1/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
    ],
)
def test_is_loopback(url, loopback):
    assert is_loopback(url) is loopback


def test_a_json_schema_goes_out_as_response_format_only_where_declared():
    schema = VERDICT_SCHEMA
    request = ChatRequest.of([{"role": "user", "content": "Is 2 + 2 = 4?"}], 0.0, 16, json_schema=schema)
    with StubOpenAIServer() as stub:
        declared = OpenAIModel(
            backend="openai", model="stub-model", base_url=stub.url, api_key_env=KEY_ENV, structured_output=True
        )
        complete(OpenAIBackend(declared), [request, ask("plain text")])
        complete(backend(stub.url), [request])
    # the first two requests went out together, in either order
    with_schema, plain = sorted(stub.bodies[:2], key=lambda body: body["messages"][-1]["content"] == "plain text")
    undeclared = stub.bodies[2]
    sent = {k: v for k, v in schema.items() if k != "title"}
    assert with_schema["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": sent, "strict": True},
    }
    assert "response_format" not in plain and "response_format" not in undeclared


def test_a_dead_endpoint_gives_one_warning_at_most_and_a_one_line_error(caplog):
    caplog.set_level(logging.DEBUG)
    url = dead_url()
    with pytest.raises(BackendError) as err:
        complete(backend(url, max_attempts=4), [ask(f"q{i}") for i in range(16)])
    message = str(err.value)
    assert "\n" not in message and f"at {url}: cannot connect after 4 attempts" in message
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]
    # every retry is still there for whoever asks for DEBUG
    retries = [r for r in caplog.records if r.levelno == logging.DEBUG and "; retry " in r.getMessage()]
    assert len(retries) >= 3


def test_successful_calls_log_nothing_per_call(caplog):
    caplog.set_level(logging.INFO)
    with StubOpenAIServer() as stub:
        out = complete(backend(stub.url), [ask(f"q{i}") for i in range(8)])
    assert len(out) == 8 and not [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_one_pool_reuses_its_connections_across_batches():
    async def go(b: OpenAIBackend) -> None:
        try:
            for _ in range(3):
                await b.complete([ask(f"q{i}") for i in range(8)])
        finally:
            await b.aclose()

    with StubOpenAIServer() as stub:
        asyncio.run(go(backend(stub.url, max_concurrency=4)))
    # 24 requests over at most 4 connections (each a client port the server saw)
    assert len(stub.bodies) == 24 and 1 <= len(set(stub.peers)) <= 4


@pytest.mark.parametrize(
    "body,reason",
    [(b"not json", "not JSON"), (b'{"choices": []}', "no choices"), (b'{"object": "list"}', "no choices")],
)
def test_an_answer_that_is_not_a_chat_completion_is_a_one_line_error(body, reason):
    class Raw:
        content = body
        text = body.decode()

    b = backend("http://127.0.0.1:9/v1")
    with pytest.raises(BackendError, match=reason) as err:
        b._completion(Raw, 0.1)
    assert "\n" not in str(err.value) and "/v1/chat/completions" in str(err.value)
