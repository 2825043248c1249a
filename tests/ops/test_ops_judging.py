"""The judging ops (ranker, critic, verifier) and the fuser meeting real model output: issue 12's probes 2-5,
their own temperature and max_tokens, structured-output requests, and prompts kept within the context window."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from test_ops_probes import SCRIPTED, apply, op_for, state_with

from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.messages import Completion
from archon_search.lang.spec import EmbeddedModel, OpenAIModel, ScriptedModel, VLLMModel
from archon_search.lang.validate import validate_text
from archon_search.ops import OpContext
from archon_search.ops.base import CHARS_PER_TOKEN, CUT_MARK
from archon_search.ops.critic import critiques_schema
from archon_search.ops.ranker import ranking_schema
from archon_search.ops.verifier import VERDICT_SCHEMA
from archon_search.runtime.executor import Executor


# Judging ops' own temperature and max_tokens.
def test_judges_default_to_temperature_0_and_room_to_reason():
    defaults = "defaults: {temperature: 0.9, max_tokens: 128}\n"
    for layer in ("{critic: {model: m}}, {ranker: {model: m}}", "{ranker: {model: m}}", "{verifier: {model: m}}"):
        op = op_for(layer, defaults=defaults)
        (request, *_) = [c.request for c in op.plan(state_with("a", "b"))]
        assert (request.temperature, request.max_tokens) == (0.0, 512)
    checked = validate_text(f"name: a\n{defaults}layers: [{{generator: {{model: m}}}}]", models={"m": SCRIPTED})
    unit = checked.arch.layers[0].units[0]
    assert (checked.arch.temperature(unit), checked.arch.max_tokens(unit)) == (0.9, 128)


def test_judge_defaults_are_settable_and_unit_values_win():
    defaults = "defaults: {judge_temperature: 0.3, judge_max_tokens: 900}\n"
    op = op_for("{verifier: {model: m, max_tokens: 64}}", defaults=defaults)
    request = op.plan(state_with("a"))[0].request
    assert (request.temperature, request.max_tokens) == (0.3, 64)
    checked = validate_text(f"name: a\n{defaults}layers: [{{generator: {{model: m}}}}]", models={"m": SCRIPTED})
    again = validate_text(yaml.safe_dump(checked.arch.to_yaml_obj()), models={"m": SCRIPTED})
    assert again.arch.defaults == checked.arch.defaults
    assert (again.arch.defaults.judge_temperature, again.arch.defaults.judge_max_tokens) == (0.3, 900)


# Structured output: asked for where the model entry supports it.
@pytest.mark.parametrize(
    ("spec", "asks"),
    [
        (EmbeddedModel(), True),
        (VLLMModel(backend="vllm", model="Qwen/Qwen2.5-7B-Instruct"), True),
        (OpenAIModel(backend="openai", model="gpt-4o", structured_output=True), True),
        (OpenAIModel(backend="openai", model="gpt-4o"), False),
        (SCRIPTED, False),
    ],
    ids=["embedded", "vllm", "openai-declared", "openai", "scripted"],
)
def test_judges_ask_for_json_where_the_model_supports_it(spec, asks):
    for layer, schema in (
        ("{critic: {model: m}}, {ranker: {model: m}}", critiques_schema(2)),
        ("{ranker: {model: m}}", ranking_schema(2)),
        ("{verifier: {model: m}}", VERDICT_SCHEMA),
    ):
        op = op_for(layer, models={"m": spec})
        requests = [c.request for c in op.plan(state_with("a", "b"))]
        assert all(r.schema == (schema if asks else None) for r in requests)
        assert all(("JSON" in r.messages[-1][1]) == asks for r in requests)


def test_schemas_put_reasoning_before_the_verdict_and_are_strict():
    for schema, first in ((ranking_schema(3), "analysis"), (VERDICT_SCHEMA, "analysis")):
        # ChatRequest stores canonical (sorted) JSON; generation follows property order, so reasoning comes first
        canonical = json.loads(json.dumps(schema, sort_keys=True))
        assert next(iter(canonical["properties"])) == first
    for schema in (ranking_schema(3), critiques_schema(3), VERDICT_SCHEMA):
        objects = [schema, *(p.get("items", {}) for p in schema["properties"].values())]
        for obj in (o for o in objects if o.get("type") == "object"):
            assert obj["additionalProperties"] is False and set(obj["required"]) == set(obj["properties"])
    assert ranking_schema(3)["properties"]["ranking"]["items"]["enum"] == [1, 2, 3]


# Context: judging and fuser prompts shrink candidates to fit the model's window, and say so in the trace.
LONG = [f"Start of answer {k}. " + "step " * 2000 + f"So the answer is {k}." for k in range(1, 9)]


@pytest.mark.parametrize(
    "layer", ["{critic: {model: m}}, {ranker: {model: m}}", "{ranker: {model: m}}", "{fuser: {model: m}}"]
)
def test_long_candidates_are_shrunk_to_fit_the_context(layer):
    window = 4096
    op = op_for(layer, models={"m": EmbeddedModel(n_ctx=window)})
    state = state_with(*LONG)
    (call,) = op.plan(state)
    prompt = call.request.messages[-1][1]
    assert len(prompt) / CHARS_PER_TOKEN + call.request.max_tokens <= window
    for k, text in enumerate(LONG, 1):
        assert f"Start of answer {k}." in prompt and f"So the answer is {k}." in prompt
    assert prompt.count("characters cut to fit") == 8
    event = apply(op, state, *(["[1] > [2]"] * 1))
    truncated = event["truncated"]
    assert truncated["context_window"] == window and truncated["candidates"] == list(range(1, 9))
    assert truncated["fits"] and truncated["kept_chars"] < len(LONG[0])


def test_verifier_shrinks_each_long_candidate_on_its_own():
    op = op_for("{verifier: {model: m}}", models={"m": EmbeddedModel(n_ctx=1024)})
    state = state_with("short and right: 4", LONG[0])
    calls = op.plan(state)
    assert "short and right: 4" in calls[0].request.messages[-1][1]
    assert CUT_MARK.split("{")[0] in calls[1].request.messages[-1][1]
    event = asyncio.run(op.apply(state, calls, [Completion("Verdict: correct")] * 2))
    assert [t["candidate"] for t in event["truncated"]] == [2]


def test_no_truncation_when_it_fits_or_the_window_is_unknown():
    op = op_for("{ranker: {model: m}}", models={"m": EmbeddedModel(n_ctx=4096)})
    assert "truncated" not in apply(op, state_with("a", "b"), "[1] > [2]")
    unknown = op_for("{ranker: {model: m}}", models={"m": OpenAIModel(backend="openai", model="x")})
    state = state_with(*LONG)
    assert all(t in unknown.plan(state)[0].request.messages[-1][1] for t in LONG)
    assert "truncated" not in apply(unknown, state, "[1] > [2]")


def test_executor_trace_records_the_cut_and_a_guessed_ranking():
    models = {"m": EmbeddedModel(n_ctx=2048)}
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 4}}, {ranker: {model: m, top_k: 1}}]", models=models
    )
    script = ScriptedModel(backend="scripted", responses=LONG[:4], by_prompt={"Rank ALL": "The best is [3]."})
    (result,) = asyncio.run(Executor(checked, {"m": ScriptedBackend(script)}, OpContext()).run([state_with()]))
    event = result.state.events[1]
    assert event["truncated"]["candidates"] == [1, 2, 3, 4] and "named best" in event["fallback"]
    assert result.answer == LONG[2]
