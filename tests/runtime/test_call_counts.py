"""Static LM calls per query (DESIGN §1's table), against a hand-computed table of architectures."""

from __future__ import annotations

import pytest
import yaml

from archon_search.lang.graph import ANSWER, QUESTION, build_graph, calls_per_query
from archon_search.lang.validate import validate_text

E = "embedded"

# name -> (layers, hand-computed calls per layer, candidates out of each layer)
TABLE = {
    "single": ([{"generator": {"model": E}}], [1], [1]),
    "self-consistency": ([{"generator": {"model": E, "samples": 8}}, {"voter": {}}], [8, 0], [8, 1]),
    "best-of-5": ([{"generator": {"model": E, "samples": 5}}, {"ranker": {"model": E, "top_k": 1}}], [5, 1], [5, 1]),
    "moa": (
        [
            {"generator": [{"model": E}, {"model": E}, {"model": E}]},
            {"fuser": [{"model": E}, {"model": E}, {"model": E}]},
            {"fuser": {"model": E}},
        ],
        [3, 3, 1],
        [3, 3, 1],
    ),
    "critic-rank-fuse": (
        [
            {"generator": [{"model": E, "samples": 4}, {"model": E, "samples": 2}]},
            {"critic": {"model": E}},
            {"ranker": {"model": E, "top_k": 3}},
            {"fuser": {"model": E}},
        ],
        [6, 1, 1, 1],
        [6, 6, 3, 1],
    ),
    # a verifier makes one call per candidate it receives
    "verify-then-rank": (
        [{"generator": {"model": E, "samples": 5}}, {"verifier": {"model": E}}, {"ranker": {"model": E}}],
        [5, 5, 1],
        [5, 5, 1],
    ),
    "rank-then-verify": (
        [{"generator": {"model": E, "samples": 5}}, {"ranker": {"model": E, "top_k": 2}}, {"verifier": {"model": E}}],
        [5, 1, 2],
        [5, 2, 2],
    ),
    "unit-tests-llm": (
        [
            {"generator": {"model": E, "samples": 4}},
            {"unit_test_generator": {"model": E, "num_tests": 7}},
            {"unit_test_evaluator": {"model": E, "mode": "llm", "top_k": 2}},
            {"verifier": {"model": E}},
        ],
        [4, 1, 4, 2],
        [4, 4, 2, 2],
    ),
    "unit-tests-execute": (
        [
            {"generator": {"model": E, "samples": 4}},
            {"unit_test_generator": {"model": E}},
            {"unit_test_evaluator": {"mode": "execute"}},
        ],
        [4, 1, 0],
        [4, 4, 1],
    ),
    "fuser-units-with-samples": (
        [
            {"generator": {"model": E, "samples": 2}},
            {"fuser": [{"model": E, "samples": 3}, {"model": E, "samples": 3}]},
            {"verifier": {"model": E}},
        ],
        [2, 6, 6],
        [2, 6, 6],
    ),
    # top_k above the candidates received keeps them all: the verifier after it still sees only 2
    "top-k-over-candidates": (
        [{"generator": {"model": E, "samples": 2}}, {"ranker": {"model": E, "top_k": 5}}, {"verifier": {"model": E}}],
        [2, 1, 2],
        [2, 2, 2],
    ),
    "vote-keeps-three": (
        [{"generator": {"model": E, "samples": 6}}, {"voter": {"top_k": 3}}, {"verifier": {"model": E}}],
        [6, 0, 3],
        [6, 3, 3],
    ),
    "deep": (
        [
            {"generator": [{"model": E, "samples": 3}, {"model": E, "samples": 3}]},
            {"critic": {"model": E}},
            {"ranker": {"model": E, "top_k": 4}},
            {"fuser": {"model": E, "samples": 2}},
            {"verifier": {"model": E}},
            {"ranker": {"model": E, "top_k": 1}},
        ],
        [6, 1, 1, 2, 2, 1],
        [6, 6, 4, 2, 2, 1],
    ),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_calls_per_layer_and_total(name):
    layers, calls, outs = TABLE[name]
    checked = validate_text(yaml.safe_dump({"name": name, "layers": layers}), f"{name}.yaml")
    assert [c.calls for c in checked.layers] == calls
    assert [c.candidates_out for c in checked.layers] == outs
    assert [c.candidates_in for c in checked.layers[1:]] == outs[:-1]
    assert checked.calls_per_query == sum(calls) == calls_per_query(checked.arch)


def test_graph_runs_from_question_through_every_unit_to_answer():
    layers, calls, _ = TABLE["critic-rank-fuse"]
    checked = validate_text(yaml.safe_dump({"name": "g", "layers": layers}))
    graph = build_graph(checked.arch)
    assert list(graph.successors(QUESTION)) == ["L0.U0", "L0.U1"]
    assert sorted(graph.predecessors("L1.U0")) == ["L0.U0", "L0.U1"]
    assert list(graph.predecessors(ANSWER)) == ["L3.U0"]
    assert sum(d["calls"] for _, d in graph.nodes(data=True) if d["kind"] == "unit") == sum(calls)
