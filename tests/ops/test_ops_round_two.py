"""Issue #17 at the ops' level: how the voter, ranker, verifier, critic and unit-test evaluator act on what they
read (votes, cut candidates, fallbacks in the trace), and the lenient JSON reader they share."""

from __future__ import annotations

import asyncio
import time

import pytest

from archon_search.core.messages import Completion
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.ops import OPS, Candidate, OpContext, QueryState
from archon_search.ops import voter as voter_module
from archon_search.ops.critic import parse_critiques
from archon_search.ops.replies import json_objects
from archon_search.scoring.answers import last_boxed
from archon_search.scoring.base import get_scorer

SCRIPTED = ScriptedModel(backend="scripted", responses=["x"])


def op_for(layer: str, ctx: OpContext | None = None):
    """The op of an architecture's second layer, over a generator on model m."""
    checked = validate_text(
        f"name: a\nlayers: [{{generator: {{model: m, samples: 3}}}}, {layer}]", models={"m": SCRIPTED}
    )
    arch = checked.arch
    return OPS[arch.layers[1].op](1, arch.layers[1], arch, ctx or OpContext())


def run(op, state: QueryState, *outputs: str) -> dict:
    """The op's trace event after its planned calls answered `outputs`."""
    calls = op.plan(state)
    return asyncio.run(op.apply(state, calls, [Completion(o) for o in outputs]))


def state_with(*candidates: Candidate | str) -> QueryState:
    cands = [c if isinstance(c, Candidate) else Candidate(c, f"S{k}") for k, c in enumerate(candidates)]
    return QueryState(id="q", question="?", candidates=cands)


def test_the_voter_groups_equal_answers_without_the_scorers_help():
    # a runtime that fills only `extract` still groups by value and spelling
    op = op_for("{voter: {top_k: 1}}", OpContext(extract=last_boxed))
    state = state_with(
        "\\boxed{\\frac{2}{3}}", "\\boxed{0.75}", "\\boxed{\\frac{2}{3}}", "\\boxed{\\dfrac{3}{4}}", "\\boxed{\\frac34}"
    )
    event = run(op, state)
    assert event["votes"] == {"2/3": 2, "0.75": 2, "\\frac34": 1} and state.answer == "\\boxed{\\frac{2}{3}}"


def test_the_voter_merges_what_math_verify_calls_equal():
    math = get_scorer("math")
    op = op_for("{voter: {top_k: 1}}", OpContext(extract=math.extract, same_answer=math.same_answer))
    state = state_with(
        "\\boxed{2}",
        "\\boxed{\\frac{\\sqrt{2}}{2}}",
        "\\boxed{2}",
        "\\boxed{\\frac{1}{\\sqrt{2}}}",
        "\\boxed{\\sqrt{2}/2}",
    )
    event = run(op, state)
    assert max(event["votes"].values()) == 3 and state.answer == "\\boxed{\\frac{\\sqrt{2}}{2}}"
    assert "fallback" not in event


def test_the_voter_stops_comparing_when_its_time_is_up(monkeypatch):
    monkeypatch.setattr(voter_module, "MERGE_BUDGET_S", 0.2)

    def slow(a: str, b: str) -> bool:
        time.sleep(0.5)
        return True

    op = op_for("{voter: {top_k: 3}}", OpContext(extract=last_boxed, same_answer=slow))
    event = run(op, state_with("\\boxed{1}", "\\boxed{2}", "\\boxed{3}"))
    assert event["votes"] == {"1": 1, "2": 1, "3": 1} and "compared" in event["fallback"]


def test_cut_candidates_do_not_vote():
    op = op_for("{voter: {top_k: 3}}", OpContext(extract=get_scorer("number").extract))
    cut = [Candidate(f"Answer: 7 {k}", f"S{k}", truncated=True) for k in range(2)]
    state = state_with(cut[0], "Answer: 5", cut[1])
    event = run(op, state)
    assert event["answers"] == [None, "5", None] and event["cut"] == [1, 3]
    assert state.answer == "Answer: 5" and "do not vote" in event["fallback"]


def test_when_every_candidate_is_cut_the_incoming_order_stays():
    op = op_for("{voter: {top_k: 1}}", OpContext(extract=get_scorer("number").extract))
    state = state_with(*(Candidate(f"so the total is {k} and", f"S{k}") for k in (3, 4, 4)))
    event = run(op, state)
    assert state.answer == "so the total is 3 and" and event["votes"] == {}
    assert "every candidate was cut" in event["fallback"]


def test_a_guess_worse_than_the_incoming_order_keeps_it():
    op = op_for("{ranker: {model: m, top_k: 3}}")
    event = run(op, state_with("a", "b", "c"), "[3] is wrong, yet I would pick [3].")
    assert event["ranking"] == [1, 2, 3] and "kept the incoming order" in event["fallback"]


def test_a_worst_first_ranking_reaches_the_op():
    op = op_for("{ranker: {model: m, top_k: 1}}")
    state = state_with("a", "b", "c")
    event = run(op, state, "Ordered from worst to best: Response 1 -> Response 3 -> Response 2")
    assert event["ranking"] == [2, 3, 1] and state.answer == "b" and "fallback" not in event


def test_the_verifier_traces_a_contradiction_and_follows_a_retraction():
    op = op_for("{verifier: {model: m}}")
    state = state_with("one", "two")
    event = run(
        op, state, "The response is correct. The response is incorrect.", "Verdict: correct\nWait, no: it is wrong."
    )
    assert event["verdicts"] == [False, False]
    assert event["fallback"].startswith("candidate 1: the reply calls") and "candidate 2:" not in event["fallback"]


def test_the_critic_attaches_json_keyed_by_candidate():
    op = op_for("{critic: {model: m}}, {fuser: {model: m}}")
    state = state_with("one", "two")
    event = run(op, state, '{"2": {"pros": ["short"], "cons": ["wrong sign"]}, "1": "Correct and complete."}')
    assert event["critiques"] == ["Critique: Correct and complete.", "Pros: short Cons: wrong sign"]
    assert "fallback" not in event


def test_the_critic_keeps_a_closing_remark_off_the_last_critique():
    parsed = parse_critiques("[1] Clear. [2] Off by one. In short, [1] is the one to keep.", 2)
    assert parsed is not None and parsed.value == {0: "Clear.", 1: "Off by one."}


@pytest.mark.parametrize(
    ("text", "objects"),
    [
        ('{"ranking": [2, 1,],}', [{"ranking": [2, 1]}]),
        ("```json\n{\n  'ranking': [1, 2],\n  'ok': True,\n}\n```", [{"ranking": [1, 2], "ok": True}]),
        ('prose {not json} then {"a": "}"}', [{"a": "}"}]),
        ('{"critiques": [{"candidate": 1}, {"candidate": 2, "s": "cut', [{"candidate": 1}]),
    ],
)
def test_json_objects_reads_loose_json(text, objects):
    assert json_objects(text) == objects


def test_the_unit_test_evaluator_runs_every_block_of_the_solution():
    code = get_scorer("code")
    checked = validate_text(
        "name: a\nlayers:\n  - generator: {model: m, samples: 2}\n  - unit_test_generator: {model: m, num_tests: 2}\n"
        "  - unit_test_evaluator: {mode: execute, top_k: 2}\n",
        models={"m": SCRIPTED},
    )
    ctx = OpContext(extract=code.extract, task_kind="code", sandbox_timeout_s=5)
    op = OPS["unit_test_evaluator"](2, checked.arch.layers[2], checked.arch, ctx)
    helper_first = (
        "```python\nSQUARES = {n: n * n for n in range(10)}\n```\n\n"
        "```python\ndef square(n):\n    return SQUARES[n]\n```\n\n```python\nprint(square(3))\n```"
    )
    wrong = "```python\ndef square(n):\n    return n + n\n```"
    state = state_with(wrong, helper_first)
    state.tests = ["assert square(3) == 9", "assert square(0) == 0"]
    event = asyncio.run(op.apply(state, [], []))
    assert event["passed"] == [1, 2] and state.answer == helper_first
