"""`serve` in front of an upstream OpenAI-compatible server that refuses a request: the client gets the same 4xx
(which the openai client does not retry), not a 502 it would retry, and the max_tokens hint only when the upstream
said something about length."""

from __future__ import annotations

import openai
import pytest
from servers.openai_stub import Reply, StubOpenAIServer

from archon_search import Architecture
from archon_search.serve import BackgroundServer

LENGTH = (
    "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens "
    "(1024 in the messages, 4096 in the completion). Please reduce the length of the messages or completion."
)
OTHER = "Invalid value for 'messages[0].role': 'tool' is not supported by this model."


def _arch(write_file, url: str):
    text = (
        "name: relay\n"
        f"models:\n  up: {{backend: openai, model: stub-model, base_url: '{url}', api_key_env: STUB_KEY}}\n"
        "layers:\n  - generator: {model: up}\n"
    )
    return Architecture.load(write_file(text, "relay.yaml"), cache=False)


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [(400, LENGTH, True), (400, OTHER, False), (422, OTHER, False), (404, "no such model", False)],
    ids=["400-length", "400-other", "422", "404"],
)
def test_an_upstream_refusal_reaches_the_client_as_the_same_4xx(write_file, monkeypatch, status, message, hint):
    monkeypatch.setenv("STUB_KEY", "k")
    with StubOpenAIServer() as stub:
        stub.fail_next(Reply(status, message=message))
        with BackgroundServer(_arch(write_file, stub.url)) as srv:
            client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="relay", messages=[{"role": "user", "content": "hi"}])
        # one request upstream: a 4xx is not retried there either
        assert len(stub.bodies) == 1
    assert caught.value.status_code == status
    error = caught.value.body
    assert error["code"] == "upstream_refused" and "refused" in error["message"]
    assert ("max_tokens" in error["message"]) == hint


def test_an_upstream_outage_is_still_a_502(write_file, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "k")
    with StubOpenAIServer() as stub:
        stub.fail_next(*[Reply(500)] * 10)
        with BackgroundServer(_arch(write_file, stub.url)) as srv:
            client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="relay", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
