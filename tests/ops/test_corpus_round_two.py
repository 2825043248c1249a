"""Round two of the corpus (tests/corpus/round_two.yaml, issue #17): the classes of output the first round missed.

Answer lines before later commentary, signed and grouped numbers, truncated texts, programs spread over several
code blocks, votes between equal answers written differently, rankings written worst-first or in prose,
closing remarks after critiques, and verdicts retracted later.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from corpus_checks import check_critiques, check_ranking

from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.ops import Candidate, OpContext, QueryState
from archon_search.ops.verifier import parse_verdict
from archon_search.ops.voter import Voter
from archon_search.scoring.answers import extract_number, extract_program, extract_text_answer
from archon_search.scoring.base import get_scorer

CORPUS = yaml.safe_load((Path(__file__).resolve().parents[1] / "corpus" / "round_two.yaml").read_text())
EXTRACTORS = {"number": extract_number, "text": extract_text_answer, "program": extract_program}
FAMILIES = {"llama", "qwen2.5", "deepseek", "qwq", "gpt", "claude", "mistral", "smollm2"}


def cases(section: str) -> list:
    return [pytest.param(e, id=f"{section}-{i}-{e['model']}") for i, e in enumerate(CORPUS[section])]


def test_the_round_is_big_and_varied():
    every = [e for entries in CORPUS.values() for e in entries]
    assert len(every) >= 60
    families = {e["model"].split("-")[0] for e in every}
    assert FAMILIES <= families, FAMILIES - families
    texts = [e.get("text", "") for e in every] + [c["text"] for e in CORPUS["voter"] for c in e["candidates"]]
    assert sum("<think>" in t for t in texts) >= 3 and sum('{"' in t or '"1"' in t for t in texts) >= 4


@pytest.mark.parametrize("case", [p for kind in EXTRACTORS for p in cases(kind)])
def test_extractors(case, request):
    kind = request.node.callspec.id.split("-")[0]
    assert EXTRACTORS[kind](case["text"]) == case["expected"]


def _voter(scorer: str) -> Voter:
    checked = validate_text(
        "name: a\nlayers: [{generator: {model: m, samples: 2}}, {voter: {top_k: 9}}]",
        models={"m": ScriptedModel(backend="scripted", responses=["x"])},
    )
    reader = get_scorer(scorer)
    ctx = OpContext(extract=reader.extract, task_kind=reader.kind, same_answer=reader.same_answer)
    return Voter(1, checked.arch.layers[1], checked.arch, ctx)


@pytest.mark.parametrize("case", cases("voter"))
def test_voter(case):
    candidates = [
        Candidate(c["text"], f"S{k}", truncated=c.get("truncated", False)) for k, c in enumerate(case["candidates"])
    ]
    state = QueryState(id="q", question="?", candidates=list(candidates))
    event = asyncio.run(_voter(case["scorer"]).apply(state, [], []))
    assert state.candidates[0] is candidates[case["winner"]], event
    assert max(event["votes"].values(), default=0) == case["votes"], event


@pytest.mark.parametrize("case", cases("ranker"))
def test_ranker(case):
    check_ranking(case)


@pytest.mark.parametrize("case", cases("critic"))
def test_critic(case):
    check_critiques(case)


@pytest.mark.parametrize("case", cases("verifier"))
def test_verifier(case):
    parsed = parse_verdict(case["text"])
    assert (parsed.value if parsed else None) is case["correct"], parsed
    assert (parsed is not None and parsed.guess is not None) == case["guess"], parsed
