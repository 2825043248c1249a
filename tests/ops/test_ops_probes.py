"""Issue 12's probes 2-5: the ranker, critic, verifier and number extractor on what real models write.

Written against the ops' public behaviour (plan/apply and the trace event), so they ran, and failed, on the
code before the fix too.
"""

from __future__ import annotations

import asyncio

import pytest

from archon_search.core.messages import Completion
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.ops import OPS, Candidate, OpContext, QueryState
from archon_search.scoring.answers import extract_number

SCRIPTED = ScriptedModel(backend="scripted")


def op_for(layer: str, models: dict | None = None, defaults: str = ""):
    """The op of the architecture's second layer, over a generator on model m."""
    text = f"name: a\n{defaults}layers: [{{generator: {{model: m, samples: 3}}}}, {layer}]"
    checked = validate_text(text, models=models or {"m": SCRIPTED})
    arch = checked.arch
    return OPS[arch.layers[1].op](1, arch.layers[1], arch, OpContext())


def state_with(*texts: str, question: str = "How much does Janet make?") -> QueryState:
    """A question whose candidates are `texts`."""
    state = QueryState(id="q", question=question)
    state.candidates = [Candidate(t, f"L0.U0.S{i}") for i, t in enumerate(texts)]
    return state


def apply(op, state: QueryState, *outputs: str) -> dict:
    """The op's trace event after its planned calls answered `outputs`."""
    calls = op.plan(state)
    return asyncio.run(op.apply(state, calls, [Completion(o) for o in outputs]))


# Probe 2: the ranker takes the FINAL ranking, not the order candidates are first mentioned in.
@pytest.mark.parametrize(
    ("output", "ranking"),
    [
        ("Candidate [1] slips. Candidate [2] is exact. Candidate [3] is close.\nRanking: [2] > [3] > [1]", [2, 3, 1]),
        ("2 > 1 > 3", [2, 1, 3]),
        ("Answer 3 is wrong, answer 1 is fine.\nFinal ranking: [2] > [1] > [3]", [2, 1, 3]),
        ("<think>Draft: [1] > [3] > [2]. Hmm, [1] is wrong.</think>\n[3] > [2] > [1]", [3, 2, 1]),
        ('{"analysis": "only [3] is right", "ranking": [3, 1, 2]}', [3, 1, 2]),
    ],
)
def test_probe2_ranker_reads_the_final_ranking(output, ranking):
    op = op_for("{ranker: {model: m, top_k: 3}}")
    event = apply(op, state_with("a", "b", "c"), output)
    assert event["ranking"] == ranking and "fallback" not in event


def test_probe2_answer_k_prose_is_no_ranking_and_a_guess_is_traced():
    op = op_for("{ranker: {model: m, top_k: 1}}")
    state = state_with("a", "b", "c")
    event = apply(op, state, "Answer 2 is longer, answer 3 shorter; both answer the question.")
    assert event["ranking"] == [1, 2, 3] and "unreadable" in event["fallback"]
    state = state_with("a", "b", "c")
    event = apply(op, state, "Honestly the best one is [2], the others are weaker.")
    assert event["ranking"][0] == 2 and "named best" in event["fallback"] and state.answer == "b"


# Probe 3: a numbered list inside one critique stays in that critique.
def test_probe3_numbered_list_stays_in_its_critique():
    op = op_for("{critic: {model: m}}, {ranker: {model: m}}")
    state = state_with("16 dollars", "18 dollars")
    output = (
        "[1] Strengths: shows its work.\nWeaknesses:\n1. The multiplication is wrong.\n2. The total is off.\n\n"
        "[2] Strengths: correct, 18. Weaknesses: terse."
    )
    event = apply(op, state, output)
    first, second = (c.critique for c in state.candidates)
    assert "multiplication is wrong" in first and "total is off" in first
    assert second.startswith("Strengths: correct") and "multiplication" not in second
    assert "fallback" not in event


# Probe 4: "The response is correct. There are no errors." is a positive verdict.
@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("The response is correct. There are no errors.", True),
        ("**Verdict: Correct**", True),
        ("<think>is it wrong? no</think>\nThe response is not correct: 7 x 8 is 56.", False),
        ('{"analysis": "9 is not prime", "correct": false}', False),
        ("The correct answer is 18, but the response says 20, so it is wrong.", False),
    ],
)
def test_probe4_verifier_reads_verdicts(output, verdict):
    op = op_for("{verifier: {model: m}}")
    event = apply(op, state_with("a"), output)
    assert event["verdicts"] == [verdict]


# Probe 5: the number extractor prefers an explicit final-answer marker over the last "=" after it.
@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Answer: 18 (16-3-4 = 9 eggs, sold at $2 each)", "18"),
        ("<think>maybe it is 20</think>\nShe makes $18 a day.", "18"),
        ("She sells 9 eggs for **$18** in total at 2 dollars for 1 egg.", "18"),
        ("**Final Answer:**\n$18", "18"),
        ("<think>so far 9 eggs and", None),
    ],
)
def test_probe5_number_extractor_prefers_the_final_answer(text, number):
    assert extract_number(text) == number
