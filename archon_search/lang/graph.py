"""The architecture as a data-flow graph, and the static count of LM calls per query it implies."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from archon_search.lang.spec import Architecture, Unit

QUESTION = "question"
ANSWER = "answer"


@dataclass(frozen=True)
class LayerCount:
    """Static figures for one layer: LM calls per query and candidates in and out (upper bounds)."""

    index: int
    op: str
    calls: int
    candidates_in: int
    candidates_out: int


def unit_calls(op: str, unit: Unit, candidates_in: int) -> tuple[int, int]:
    """(LM calls, candidates out) of one unit given how many candidates reach it (DESIGN §1 table)."""
    if op in ("generator", "fuser"):
        return unit.samples, unit.samples
    if op == "critic":
        return 1, candidates_in
    if op == "ranker":
        return 1, min(unit.top_k, candidates_in)
    if op == "verifier":
        return candidates_in, candidates_in
    if op == "unit_test_generator":
        return 1, candidates_in
    if op == "unit_test_evaluator":
        calls = candidates_in if unit.mode == "llm" else 0
        return calls, min(unit.top_k, candidates_in)
    if op == "voter":
        return 0, min(unit.top_k, candidates_in)
    raise ValueError(f"unknown op {op!r}")


def unit_node(layer: int, unit: int) -> str:
    """The graph node name of a unit."""
    return f"L{layer}.U{unit}"


def build_graph(arch: Architecture) -> nx.DiGraph:
    """Units as nodes (with op, model, calls and candidates out), data flow as edges, from question to answer."""
    graph = nx.DiGraph(name=arch.name)
    graph.add_node(QUESTION, kind="source", out=0)
    previous = [QUESTION]
    for li, layer in enumerate(arch.layers):
        incoming = sum(graph.nodes[p]["out"] for p in previous)
        current = []
        for ui, unit in enumerate(layer.units):
            calls, out = unit_calls(layer.op, unit, incoming)
            node = unit_node(li, ui)
            graph.add_node(
                node,
                kind="unit",
                layer=li,
                op=layer.op,
                model=getattr(unit, "model", None),
                calls=calls,
                out=out,
                candidates_in=incoming,
            )
            for p in previous:
                graph.add_edge(p, node)
            current.append(node)
        previous = current
    graph.add_node(ANSWER, kind="sink", out=0)
    for p in previous:
        graph.add_edge(p, ANSWER)
    return graph


def layer_counts(arch: Architecture, graph: nx.DiGraph | None = None) -> list[LayerCount]:
    """Per-layer static LM calls per query, read off the graph."""
    graph = graph if graph is not None else build_graph(arch)
    counts = []
    for li, layer in enumerate(arch.layers):
        nodes = [graph.nodes[unit_node(li, ui)] for ui in range(len(layer.units))]
        counts.append(
            LayerCount(
                index=li,
                op=layer.op,
                calls=sum(n["calls"] for n in nodes),
                candidates_in=nodes[0]["candidates_in"],
                candidates_out=sum(n["out"] for n in nodes),
            )
        )
    return counts


def calls_per_query(arch: Architecture) -> int:
    """Upper bound on LM calls one query costs (R8 compares this with the budget)."""
    return sum(c.calls for c in layer_counts(arch))
