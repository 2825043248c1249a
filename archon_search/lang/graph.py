"""The architecture as a data-flow graph, and the static count of LM calls per query it implies.

networkx is imported only by `build_graph`: counting calls (`layer_counts`, `calls_per_query`) needs no graph,
and loading networkx would cost every process a few hundred milliseconds before its first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archon_search.lang.spec import Architecture, Unit

if TYPE_CHECKING:
    import networkx as nx

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


def unit_nodes(arch: Architecture) -> list[list[dict[str, Any]]]:
    """Per layer, per unit: the attributes of its graph node (op, model, calls, candidates in and out)."""
    layers = []
    incoming = 0  # the question node sends no candidates
    for li, layer in enumerate(arch.layers):
        current = []
        for unit in layer.units:
            calls, out = unit_calls(layer.op, unit, incoming)
            current.append(
                {
                    "kind": "unit",
                    "layer": li,
                    "op": layer.op,
                    "model": getattr(unit, "model", None),
                    "calls": calls,
                    "out": out,
                    "candidates_in": incoming,
                }
            )
        layers.append(current)
        incoming = sum(node["out"] for node in current)
    return layers


def build_graph(arch: Architecture) -> nx.DiGraph:
    """Units as nodes (with op, model, calls and candidates out), data flow as edges, from question to answer."""
    import networkx as nx

    graph = nx.DiGraph(name=arch.name)
    graph.add_node(QUESTION, kind="source", out=0)
    previous = [QUESTION]
    for li, nodes in enumerate(unit_nodes(arch)):
        current = []
        for ui, attributes in enumerate(nodes):
            node = unit_node(li, ui)
            graph.add_node(node, **attributes)
            for p in previous:
                graph.add_edge(p, node)
            current.append(node)
        previous = current
    graph.add_node(ANSWER, kind="sink", out=0)
    for p in previous:
        graph.add_edge(p, ANSWER)
    return graph


def layer_counts(arch: Architecture, graph: nx.DiGraph | None = None) -> list[LayerCount]:
    """Per-layer static LM calls per query: read off `graph` when given, else counted without building one."""
    if graph is None:
        per_layer = unit_nodes(arch)
    else:
        per_layer = [
            [graph.nodes[unit_node(li, ui)] for ui in range(len(layer.units))] for li, layer in enumerate(arch.layers)
        ]
    counts = []
    for li, (layer, nodes) in enumerate(zip(arch.layers, per_layer)):
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
