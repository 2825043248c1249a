"""`serve` for real: uvicorn on 127.0.0.1 and the official `openai` client (scripted models, and the embedded one)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest
from typer.testing import CliRunner

from archon_search import Architecture
from archon_search.cli import app
from archon_search.serve import BackgroundServer

KEY = "test-key-123"
SCRIPTED = """
name: scripted-serve
models:
  s:
    backend: scripted
    by_prompt: {capital: Paris}
    responses: [four words right here]
    latency_ms: 300
layers:
  - generator: {model: s, samples: 2}
  - ranker: {model: s}
"""
SINGLE = """
name: single-layer
models:
  s: {backend: scripted, responses: [done], latency_ms: 300}
layers:
  - generator: {model: s}
"""
FAILING = """
name: failing
models:
  broken: {backend: scripted, by_prompt: {never: x}}
layers:
  - generator: {model: broken}
"""


def serving(path, api_key=None) -> BackgroundServer:
    return BackgroundServer(Architecture.load(path, cache=False), api_key=api_key)


@pytest.fixture
def server(write_file):
    with serving(write_file(SCRIPTED)) as srv:
        yield srv


@pytest.fixture
def keyed(write_file):
    with serving(write_file(SCRIPTED), api_key=KEY) as srv:
        yield srv


def client(srv: BackgroundServer, key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ask(text: str = "What is the capital of France?") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_completion_has_the_openai_shape_and_summed_usage(server):
    reply = client(server).chat.completions.create(model="whatever", messages=ask())
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-") and reply.created > 0
    assert reply.model == "scripted-serve"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Paris" and choice.finish_reason == "stop"
    # two generator samples and one ranker call, each answering "Paris" (one word)
    assert reply.usage.completion_tokens == 3
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_multi_turn_conversation_answers_the_last_user_turn(server):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a capital."},
        {"role": "assistant", "content": "Rome"},
        {"role": "user", "content": "Another one?"},
    ]
    reply = client(server).chat.completions.create(model="scripted-serve", messages=messages)
    assert reply.choices[0].message.content == "four words right here"


def test_models_list_and_retrieve(server):
    c = client(server)
    assert [m.id for m in c.models.list()] == ["scripted-serve"]
    assert c.models.retrieve("scripted-serve").owned_by == "archon-search"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4o")


def test_health_needs_no_key(keyed):
    with urllib.request.urlopen(keyed.base_url.removesuffix("/v1") + "/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok", "model": "scripted-serve"}


def test_auth_on_refuses_missing_or_wrong_keys_with_401(keyed):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(keyed, "wrong").chat.completions.create(model="m", messages=ask())
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(keyed, "wrong").models.list()
    status, body = post(keyed.base_url + "/chat/completions", json.dumps({"messages": ask()}).encode())
    assert status == 401 and set(body["error"]) >= {"message", "type", "code"}
    reply = client(keyed, KEY).chat.completions.create(model="m", messages=ask())
    assert reply.choices[0].message.content == "Paris"


def test_auth_off_accepts_any_key(server):
    assert client(server, "no-key-at-all").chat.completions.create(model="m", messages=ask()).choices


def test_streaming_sends_sse_chunks_then_done(server):
    stream = client(server).chat.completions.create(
        model="m", messages=ask(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > 0 and all(c.object == "chat.completion.chunk" for c in chunks)
    raw = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=json.dumps({"messages": ask(), "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(raw, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON|needs a JSON body"),
        (b"{}", "messages"),
        (b'{"messages": "hello"}', "messages"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "content must be a string"),
        (b'{"messages": [{"role": "robot", "content": "hi"}]}', "role 'robot'"),
        (b'{"messages": [{"role": "assistant", "content": "hi"}]}', "last message must be from the user"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "stream": "maybe"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n > 1 is not supported"),
        (b"[1, 2]", "body|valid dictionary"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_000, "parsing the body"),
        (b'{"messages": [{"role": ["user"], "content": "hi"}]}', "role \\['user'\\]"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "not valid Unicode"),
    ],
)
def test_malformed_requests_get_400_with_an_openai_error_body(server, body, says):
    status, reply = post(server.base_url + "/chat/completions", body)
    assert status == 400, reply
    error = reply["error"]
    assert error["type"] == "invalid_request_error" and error["code"]
    assert re.search(says, error["message"]), error["message"]


def test_a_body_not_sent_as_json_is_a_400_that_says_so(server):
    status, reply = post(server.base_url + "/chat/completions", b"{}", {"Content-Type": "text/plain"})
    assert status == 400 and "Content-Type: application/json" in reply["error"]["message"]


def test_unknown_route_is_an_openai_style_404(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.base_url + "/completions-nope", timeout=5)
    assert caught.value.code == 404 and "error" in json.loads(caught.value.read())


def test_failing_upstream_model_is_a_502_saying_why(write_file):
    with serving(write_file(FAILING, "failing.yaml")) as srv, pytest.raises(openai.APIStatusError) as caught:
        client(srv).chat.completions.create(model="failing", messages=ask("hello"))
    assert caught.value.status_code == 502
    assert "scripted model has no answer" in caught.value.body["message"]
    assert caught.value.body["type"] == "upstream_error"


def test_two_concurrent_requests_overlap_in_time(write_file):
    async def both(srv: BackgroundServer):
        c = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        await c.chat.completions.create(model="m", messages=ask("warm up"))
        started = time.perf_counter()
        replies = await asyncio.gather(
            *(c.chat.completions.create(model="m", messages=ask(f"question {i}")) for i in range(2))
        )
        await c.close()
        return replies, time.perf_counter() - started

    with serving(write_file(SINGLE, "single.yaml")) as srv:
        replies, elapsed = asyncio.run(both(srv))
    assert [r.choices[0].message.content for r in replies] == ["done", "done"]
    # each request waits 300 ms on its model; one after the other would take 600 ms
    assert 0.3 <= elapsed < 0.5, elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serve_runs_the_server_with_a_key_from_the_environment(write_file):
    path = write_file(SCRIPTED)
    port = _free_port()
    env = dict(os.environ, SERVE_TEST_KEY=KEY)
    cmd = [sys.executable, "-c", "from archon_search.cli import app; app()", "serve", str(path), "--port", str(port)]
    process = subprocess.Popen(
        [*cmd, "--api-key-env", "SERVE_TEST_KEY", "--no-cache"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        c = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
        assert c.chat.completions.create(model="m", messages=ask()).choices[0].message.content == "Paris"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="nope", max_retries=0).models.list()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_serve_with_an_unset_key_variable_is_one_line(write_file, monkeypatch):
    monkeypatch.delenv("SERVE_UNSET_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", str(write_file(SCRIPTED)), "--api-key-env", "SERVE_UNSET_KEY"])
    assert result.exit_code == 1
    assert "SERVE_UNSET_KEY" in result.output and "Traceback" not in result.output


@pytest.mark.embedded
def test_embedded_model_behind_the_server(write_file):
    path = write_file(
        """
        name: embedded-one
        defaults: {temperature: 0.0, max_tokens: 24}
        layers:
          - generator: {model: embedded}
        """
    )
    with serving(path) as srv:
        c = client(srv)
        reply = c.chat.completions.create(model="embedded-one", messages=ask("Say hello."))
        assert reply.choices[0].message.content.strip()
        assert 0 < reply.usage.completion_tokens <= 24 and reply.usage.prompt_tokens > 0
        chunks = list(c.chat.completions.create(model="embedded-one", messages=ask("Name a color."), stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip()
