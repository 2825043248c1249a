"""The executor on scripted models: batching across questions, call accounting, fallbacks, traces, cache."""

import asyncio
import re
import time

import pytest

from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.errors import BackendError, CallBudgetExceeded
from archon_search.lang.spec import OpenAIModel, ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.ops import OpContext, QueryState
from archon_search.runtime.cache import CachedBackend, ResponseCache
from archon_search.runtime.executor import Executor
from archon_search.runtime.pool import BackendPool


def last_number(text):
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else None


CTX = OpContext(extract=last_number, task_kind="answer")


def states(n):
    return [QueryState(id=f"q{i}", question=f"What is {i} + {i}?") for i in range(n)]


def run(checked, backends, qs, ctx=CTX):
    return asyncio.run(Executor(checked, backends, ctx).run(qs))


def scripted(**kw):
    return ScriptedModel(backend="scripted", **kw)


ARCHS = {
    "single": "name: a\nlayers: [{generator: {model: m}}]",
    "sc": "name: a\nlayers: [{generator: {model: m, samples: 5}}, {voter: {}}]",
    "crf": """
name: a
layers:
  - generator: [{model: m, samples: 3}, {model: m, samples: 2}]
  - critic: {model: m}
  - ranker: {model: m, top_k: 3}
  - fuser: [{model: m, samples: 2}]
""",
    "verify": """
name: a
layers:
  - generator: {model: m, samples: 4}
  - verifier: {model: m}
  - ranker: {model: m, top_k: 1}
""",
    "ut-llm": """
name: a
layers:
  - generator: {model: m, samples: 3}
  - unit_test_generator: {model: m, num_tests: 2}
  - unit_test_evaluator: {model: m, mode: llm, top_k: 2}
  - verifier: {model: m}
""",
}


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_runtime_calls_equal_static_count(name):
    spec = scripted(responses=["[1] > [2]\nVerdict: correct\n1. ok\n2. fine\n1: pass\n2: fail\nanswer 42"])
    checked = validate_text(ARCHS[name], models={"m": spec})
    backend = ScriptedBackend(spec)
    results = run(checked, {"m": backend}, states(3))
    assert [r.usage.calls for r in results] == [checked.calls_per_query] * 3
    assert backend.calls == 3 * checked.calls_per_query
    for r in results:
        assert [e["layer"] for e in r.state.events] == list(range(len(checked.arch.layers)))
        assert r.answer


def test_layer_calls_overlap_across_questions():
    spec = scripted(responses=["[2] > [1]\nthe answer is 7"], latency_ms=100)
    checked = validate_text(ARCHS["crf"], models={"m": spec})
    started = time.perf_counter()
    results = run(checked, {"m": ScriptedBackend(spec)}, states(20))
    wall = time.perf_counter() - started
    total_calls = sum(r.usage.calls for r in results)
    assert total_calls == 20 * 9
    # 4 layers at 0.1 s each; one call after another would take 18 s
    assert wall < 4 * 0.1 * 3


def test_voter_picks_majority_answer_and_makes_no_call():
    spec = scripted(responses=["so 3", "so 4", "so 4", "nothing here", "so 3"])
    checked = validate_text(ARCHS["sc"], models={"m": spec})
    backend = ScriptedBackend(spec)
    (result,) = run(checked, {"m": backend}, states(1))
    assert result.answer == "so 3"  # 3 and 4 tie at two votes; 3 was seen first
    event = result.state.events[1]
    assert event["votes"] == {"3": 2, "4": 2} and event["calls"] == []
    assert backend.calls == 5


def test_garbled_ranker_keeps_incoming_order_and_traces_it():
    spec = scripted(
        responses=["first", "second"],
        by_prompt={"Rank ALL candidates": "I refuse to rank these."},
    )
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 2}}, {ranker: {model: m, top_k: 1}}]", models={"m": spec}
    )
    (result,) = run(checked, {"m": ScriptedBackend(spec)}, states(1))
    assert result.answer == "first"
    assert "unreadable" in result.state.events[1]["fallback"]


def test_ranker_reorders():
    spec = scripted(responses=["alpha", "beta", "gamma"], by_prompt={"Rank ALL": "Best: [3] > [1] > [2]"})
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 3}}, {ranker: {model: m, top_k: 2}}]", models={"m": spec}
    )
    (result,) = run(checked, {"m": ScriptedBackend(spec)}, states(1))
    assert [c.text for c in result.state.candidates] == ["gamma", "alpha"]
    assert result.state.events[1]["ranking"] == [3, 1, 2]


def test_verifier_keeps_correct_and_all_when_none():
    spec = scripted(
        responses=["right 1", "wrong 2", "right 3"],
        by_prompt={"right 1": "Verdict: correct", "wrong 2": "Verdict: incorrect", "right 3": "Verdict: correct"},
    )
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 3}}, {verifier: {model: m}}]", models={"m": spec}
    )
    (result,) = run(checked, {"m": ScriptedBackend(spec)}, states(1))
    assert [c.text for c in result.state.candidates] == ["right 1", "right 3"]
    none = scripted(responses=["a", "b"], by_prompt={"Response:": "Verdict: incorrect"})
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 2}}, {verifier: {model: m}}]", models={"m": none}
    )
    (result,) = run(checked, {"m": ScriptedBackend(none)}, states(1))
    assert [c.text for c in result.state.candidates] == ["a", "b"]
    assert "kept all" in result.state.events[1]["fallback"]


def test_critiques_reach_the_fuser():
    spec = scripted(
        responses=["cand A", "cand B"],
        by_prompt={
            "strengths and weaknesses": "[1] Strengths: none. Weaknesses: bad.\n[2] Strengths: good.",
            "Critique of [1]": "fused",
        },
    )
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 2}}, {critic: {model: m}}, {fuser: {model: m}}]",
        models={"m": spec},
    )
    (result,) = run(checked, {"m": ScriptedBackend(spec)}, states(1))
    assert result.answer == "fused"
    assert result.state.events[1]["critiques"][0].startswith("Strengths: none")


def test_plan_beyond_static_count_raises(monkeypatch):
    spec = scripted(responses=["x"])
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 2}}, {verifier: {model: m}}]", models={"m": spec}
    )
    executor = Executor(checked, {"m": ScriptedBackend(spec)}, CTX)
    verifier = executor.ops[1]
    original = verifier.plan
    monkeypatch.setattr(verifier, "plan", lambda state: original(state) * 2)
    with pytest.raises(CallBudgetExceeded, match="static count is 2"):
        asyncio.run(executor.run(states(1)))


def test_samples_are_distinct_requests_and_units_do_not_collide():
    spec = scripted(responses=["x"])
    checked = validate_text(
        "name: a\nlayers: [{generator: [{model: m, samples: 2}, {model: m, samples: 2}]}]", models={"m": spec}
    )
    executor = Executor(checked, {"m": ScriptedBackend(spec)}, CTX)
    plan = executor.ops[0].plan(states(1)[0])
    assert [c.request.sample for c in plan] == [0, 1, 2, 3]
    assert len({c.request for c in plan}) == 4


def test_a_units_samples_are_the_same_requests_whatever_shares_its_layer():
    spec = scripted(responses=["x"])
    models = {"m": OpenAIModel(backend="openai", model="m"), "k": OpenAIModel(backend="openai", model="k")}
    alone = validate_text("name: a\nlayers: [{generator: {model: m, samples: 2}}]", models=models)
    mixed = validate_text(
        "name: b\nlayers: [{generator: [{model: k, samples: 3}, {model: m, samples: 2}]}]", models=models
    )
    plans = [
        Executor(c, {n: ScriptedBackend(spec) for n in models}, CTX).ops[0].plan(states(1)[0]) for c in (alone, mixed)
    ]
    assert [c.request.sample for c in plans[1]] == [0, 1, 2, 0, 1]
    assert [c.request for c in plans[0]] == [c.request for c in plans[1] if c.model == "m"]


def test_two_entries_for_one_model_never_ask_the_same_sample_twice():
    cheap = OpenAIModel(backend="openai", model="m", base_url="http://127.0.0.1:1/v1")
    models = {"a": cheap, "b": cheap.model_copy(update={"price_in": 1.0})}
    checked = validate_text(
        "name: a\nlayers: [{generator: [{model: a, samples: 2}, {model: b, samples: 2}]}]", models=models
    )
    spec = scripted(responses=["x"])
    plan = Executor(checked, {n: ScriptedBackend(spec) for n in models}, CTX).ops[0].plan(states(1)[0])
    assert [c.request.sample for c in plan] == [0, 1, 2, 3]


def test_second_run_is_answered_from_the_cache(tmp_path):
    spec = scripted(responses=["one 1", "two 2", "three 3"])
    checked = validate_text(ARCHS["crf"], models={"m": spec})
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = ScriptedBackend(spec)
    run(checked, {"m": CachedBackend(first, cache)}, states(4))
    assert first.calls == 4 * checked.calls_per_query
    second = ScriptedBackend(spec)
    results = run(checked, {"m": CachedBackend(second, cache)}, states(4))
    assert second.calls == 0
    assert all(r.usage.backend_calls == 0 and r.usage.calls == checked.calls_per_query for r in results)


def test_cost_from_prices_counts_only_model_calls():
    spec = scripted(responses=["one two three"], price_in=1000000.0, price_out=2000000.0)
    checked = validate_text("name: a\nlayers: [{generator: {model: m}}]", models={"m": spec})

    async def go():
        async with BackendPool(checked.arch.models) as pool:
            return await Executor(checked, pool, CTX).run(states(1))

    (result,) = asyncio.run(go())
    u = result.usage
    assert u.cost == pytest.approx(u.prompt_tokens * 1.0 + u.completion_tokens * 2.0)


def test_unit_tests_execute_mode_ranks_by_tests_passed_in_the_sandbox():
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    hangs = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    spec = scripted(
        responses=[wrong, hangs, right],
        by_prompt={"unit tests": "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0"},
    )
    checked = validate_text(
        """
name: a
layers:
  - generator: {model: m, samples: 3}
  - unit_test_generator: {model: m, num_tests: 3}
  - unit_test_evaluator: {mode: execute, top_k: 1}
""",
        models={"m": spec},
    )

    def fenced(text):
        found = re.search(r"```python\n(.*?)```", text, re.DOTALL)
        return found.group(1) if found else None

    ctx = OpContext(extract=fenced, task_kind="code", sandbox_timeout_s=3)
    (result,) = run(checked, {"m": ScriptedBackend(spec)}, states(1), ctx)
    assert result.answer == right
    event = result.state.events[2]
    assert event["passed"] == [1, 0, 3]  # a - b passes only add(0, 0) == 0; the hanging one passes none
    assert result.usage.calls == checked.calls_per_query == 4


class _Down(ScriptedBackend):
    async def complete(self, requests):
        await asyncio.sleep(0)
        raise BackendError("model down for good")


def test_when_one_model_of_a_layer_fails_the_others_answers_reach_the_cache(tmp_path):
    slow, down = scripted(responses=["kept"], latency_ms=50), scripted(responses=["never"])
    checked = validate_text(
        "name: a\nlayers: [{generator: [{model: slow, samples: 2}, {model: down}]}]",
        models={"slow": slow, "down": down},
    )
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = ScriptedBackend(slow)
    with pytest.raises(BackendError, match="down for good"):
        run(checked, {"slow": CachedBackend(first, cache), "down": _Down(down)}, states(3))
    again = ScriptedBackend(slow)
    with pytest.raises(BackendError):
        run(checked, {"slow": CachedBackend(again, cache), "down": _Down(down)}, states(3))
    assert first.calls == 6 and again.calls == 0
