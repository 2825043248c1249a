"""The Python API: `Architecture.load(...).run/arun/run_batch`, conversations, usage, cache, lifecycle."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

import archon_search
from archon_search import Architecture
from archon_search.runtime import api
from archon_search.runtime.api import ConversationError, conversation
from archon_search.serve import BackgroundServer

SCRIPTED = """
name: scripted-pair
models:
  s:
    backend: scripted
    by_prompt: {capital: Paris, "2+2": "4"}
    responses: [fallback]
    latency_ms: 300
layers:
  - generator: {model: s, samples: 2}
"""


@pytest.fixture
def scripted(write_file):
    arch = Architecture.load(write_file(SCRIPTED), cache=False)
    yield arch
    arch.close()


def test_run_answers_and_reports_the_architecture(scripted):
    assert scripted.name == "scripted-pair" and scripted.calls_per_query == 2
    assert scripted.run("What is the capital of France?") == "Paris"


def test_run_batch_is_one_executor_batch_so_calls_overlap(scripted):
    scripted.run("warm up")
    started = time.perf_counter()
    answers = scripted.run_batch(["the capital?", "what is 2+2", "something else"])
    elapsed = time.perf_counter() - started
    assert answers == ["Paris", "4", "fallback"]
    # three questions x two samples at 300 ms each: one overlapping batch, not six calls in a row
    assert elapsed < 0.55, elapsed


def test_a_batch_must_be_a_list_of_questions(scripted):
    with pytest.raises(ConversationError, match="list of questions"):
        scripted.run_batch("one question")


def test_async_api_and_usage_sum_every_internal_call(scripted):
    async def go():
        text = await scripted.arun("the capital?")
        batch = await scripted.arun_batch(["2+2?", "the capital?"])
        answer = await scripted.arun_with_usage("2+2?")
        return text, batch, answer

    text, batch, answer = asyncio.run(go())
    assert text == "Paris" and batch == ["4", "Paris"]
    assert answer.text == "4" and answer.usage.calls == 2 and answer.usage.backend_calls == 2
    assert answer.usage.completion_tokens == 2 and answer.usage.prompt_tokens > 0


def test_sync_run_works_inside_a_running_event_loop(scripted):
    async def notebook_cell():
        return scripted.run("the capital?")

    assert asyncio.run(notebook_cell()) == "Paris"


def test_a_conversation_answers_its_last_user_message_with_the_rest_as_history(scripted):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is 2+2"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "and the "}, {"type": "text", "text": "capital?"}]},
    ]
    answer = asyncio.run(scripted.arun_with_usage(messages))
    assert answer.text == "Paris"
    assert answer.result.state.question == "and the capital?"
    assert answer.result.state.history == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is 2+2"},
        {"role": "assistant", "content": "4"},
    ]


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "non-empty list"),
        ([{"role": "assistant", "content": "hi"}], "last message must be from the user"),
        ([{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}], "role 'tool' is not supported"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "only text content parts"),
        ([{"role": "user", "content": None}], "content must be a string"),
        (["hello"], "must be a mapping"),
    ],
)
def test_malformed_conversations_are_one_line_errors(messages, says):
    with pytest.raises(ConversationError, match=says) as caught:
        conversation(messages)
    assert "\n" not in str(caught.value)


def test_developer_role_is_read_as_system():
    question, history = conversation([{"role": "developer", "content": "terse"}, {"role": "user", "content": "q"}])
    assert question == "q" and history == [{"role": "system", "content": "terse"}]


def test_close_releases_backends_and_a_later_question_reopens_them(write_file):
    arch = Architecture.load(write_file(SCRIPTED), cache=False)
    with arch:
        assert arch.run("the capital?") == "Paris"
    assert arch.run("2+2") == "4"
    arch.close()
    arch.close()


def test_default_cache_is_the_persistent_one_so_repeats_cost_no_call(write_file, tmp_path, monkeypatch):
    # an openai model in front of a scripted one: scripted models skip the cache, HTTP models do not
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    upstream = Architecture.load(write_file(SCRIPTED, "upstream.yaml"), cache=False)
    with BackgroundServer(upstream) as server:
        front = write_file(
            f"""
            name: front
            models:
              remote: {{backend: openai, model: scripted-pair, base_url: "{server.base_url}"}}
            layers:
              - generator: {{model: remote}}
            """,
            "front.yaml",
        )
        with Architecture.load(front) as arch:
            first = asyncio.run(arch.arun_with_usage("the capital?"))
        with Architecture.load(front) as arch:
            again = asyncio.run(arch.arun_with_usage("the capital?"))
    assert first.text == again.text == "Paris"
    assert first.usage.backend_calls == 1 and again.usage.backend_calls == 0
    assert (tmp_path / "xdg" / "archon-search" / "responses.sqlite").is_file()


def test_importing_the_package_does_not_load_the_api():
    code = "import sys, archon_search; assert 'archon_search.runtime.api' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert archon_search.Architecture is api.Architecture
