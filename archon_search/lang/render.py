"""A terminal diagram of a validated architecture (`archon-search show`): question, layers, answer, LM calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from archon_search.lang.graph import LayerCount, build_graph, unit_node
from archon_search.lang.spec import Architecture, Layer, Unit
from archon_search.lang.validate import Validated

if TYPE_CHECKING:
    import networkx as nx  # only `render_architecture` builds a graph (and so loads networkx)

# op-specific unit fields worth showing, in display order; model, temperature and max_tokens are shown apart
UNIT_FIELDS = ("samples", "top_k", "num_tests", "mode")
NO_MODEL_NOTES = {
    "voter": "no model: majority vote",
    "unit_test_evaluator": "no model: runs the tests in the sandbox",
}


def plural(n: int, word: str) -> str:
    """`1 call`, `3 calls`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _arrow(label: str) -> Text:
    text = Text("   │", style="dim")
    if label:
        text.append(f" {label}", style="cyan")
    text.append("\n   ▼", style="dim")
    return text


def model_label(arch: Architecture, name: str) -> str:
    """`name (backend: model id)`, e.g. `qwen7b (vllm: Qwen/Qwen2.5-7B-Instruct)`."""
    spec = arch.models[name]
    detail = getattr(spec, "model", None) or spec.model_id
    return f"{name} ({spec.backend}: {detail})"


def unit_settings(arch: Architecture, unit: Unit) -> str:
    """The unit's op fields, then its effective temperature and max_tokens when it calls a model."""
    parts = [f"{name} {getattr(unit, name)}" for name in UNIT_FIELDS if hasattr(unit, name)]
    if getattr(unit, "model", None) is not None:
        parts += [f"temperature {arch.temperature(unit)}", f"max_tokens {arch.max_tokens(unit)}"]
    return "  ".join(parts)


def _layer_panel(arch: Architecture, layer: Layer, count: LayerCount, graph: nx.DiGraph) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    several = len(layer.units) > 1
    if several:
        grid.add_column(style="magenta", justify="right", no_wrap=True)
    for ui, unit in enumerate(layer.units):
        name = getattr(unit, "model", None)
        cell = Text(model_label(arch, name) if name is not None else NO_MODEL_NOTES[layer.op], style="bold")
        cell.append(f"\n  {unit_settings(arch, unit)}", style="not bold")
        row = [cell]
        if several:
            row.append(Text(plural(graph.nodes[unit_node(count.index, ui)]["calls"], "call")))
        grid.add_row(*row)
    return Panel(
        grid,
        title=Text(f"layer {count.index} · {layer.op}", style="bold"),
        title_align="left",
        subtitle=Text(plural(count.calls, "LM call"), style="magenta"),
        subtitle_align="right",
        expand=False,
    )


def render_architecture(checked: Validated) -> RenderableType:
    """The architecture as a top-down diagram: question, each layer with its units and LM calls, answer, total."""
    arch = checked.arch
    graph = build_graph(arch)
    header = Text(arch.name, style="bold")
    header.append(f"  ({checked.source})", style="dim")
    if arch.description:
        header.append(f"\n{arch.description}", style="italic")
    parts: list[RenderableType] = [header, Text(""), Text("question", style="bold green")]
    for layer, count in zip(arch.layers, checked.layers):
        label = "" if count.index == 0 else plural(count.candidates_in, "candidate")
        parts += [_arrow(label), _layer_panel(arch, layer, count, graph)]
    parts += [
        _arrow(plural(checked.layers[-1].candidates_out, "candidate")),
        Text("answer (the first candidate left)", style="bold green"),
        Text(""),
        Text(f"total: {plural(checked.calls_per_query, 'LM call')} per query", style="bold"),
    ]
    return Group(*parts)
