"""The `archon-search` command line (Typer). Each command is a thin shell over a library module."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from archon_search.errors import ArchonError, ArchitectureError
from archon_search.validate import load_architecture, load_models_file

app = typer.Typer(
    help="Search LLM inference architectures under a call budget, then export and serve the best.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(exc: ArchonError) -> None:
    for line in str(exc).splitlines():
        err_console.print(f"[red]error[/red] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _models(path: Optional[Path]) -> dict | None:
    return load_models_file(path) if path else None


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the library does.")) -> None:
    """archon-search: find the best way to spend inference compute on a task."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Architecture YAML files."),
    budget: Optional[int] = typer.Option(None, "--budget", "-b", help="Refuse files over B LM calls per query (R8)."),
    models: Optional[Path] = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
) -> None:
    """Check architecture files against rules R1-R8; print calls per query and warnings. Exit 1 if any is refused."""
    try:
        extra = _models(models)
    except ArchonError as exc:
        _fail(exc)
    refused = 0
    for file in files:
        try:
            checked = load_architecture(file, extra, budget)
        except ArchitectureError as exc:
            refused += 1
            for issue in exc.issues:
                err_console.print(f"[red]refused[/red] {issue}", highlight=False, soft_wrap=True)
            continue
        console.print(
            f"[green]ok[/green] {file}: {checked.arch.name}: {checked.calls_per_query} LM calls per query",
            highlight=False,
        )
        for warning in checked.warnings:
            console.print(f"[yellow]warning[/yellow] {warning}", highlight=False, soft_wrap=True)
    if refused:
        raise typer.Exit(1)


def _cache(cache: Optional[Path], no_cache: bool):
    from archon_search.cache import ResponseCache

    return None if no_cache else ResponseCache(cache)


@app.command("eval")
def eval_command(
    arch_file: Path = typer.Argument(..., metavar="ARCH.yaml", help="Architecture file to score."),
    bench: str = typer.Option(..., "--bench", help="Built-in benchmark name or a benchmark YAML file."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Score only the first N questions of the split."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark data file (jsonl)."),
    models: Optional[Path] = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for questions.csv and traces/ [results/eval-ARCH-BENCH]."),
    split: str = typer.Option("all", "--split", help="Which items: all, dev or test (the search's seeded split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the dev/test split."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Response cache file [user cache dir]."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for requests seen before."),
) -> None:
    """Score one architecture on a benchmark: accuracy with a 95% CI, coverage, calls, tokens, cost, traces."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from archon_search.backends.registry import BackendPool
    from archon_search.benchmarks.base import split_items
    from archon_search.benchmarks.registry import get_benchmark
    from archon_search.evaluate import evaluate

    if split not in ("all", "dev", "test"):
        _fail(ArchonError(f"--split must be all, dev or test, not {split!r}"))
    try:
        checked = load_architecture(arch_file, _models(models))
        for warning in checked.warnings:
            err_console.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
        benchmark = get_benchmark(bench)
        items = benchmark.load(data)
        if split != "all":
            dev, test = split_items(items, seed)
            items = dev if split == "dev" else test
        items = items[:limit] if limit else items
        if not items:
            raise ArchonError(f"benchmark {benchmark.name} has no items to score; check --data, --split and --limit")
        out_dir = out or Path("results") / f"eval-{checked.arch.name}-{benchmark.name}"

        async def go():
            async with BackendPool(checked.arch.models, cache=_cache(cache, no_cache)) as pool:
                with Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err_console,
                    transient=True,
                ) as bar:
                    task = bar.add_task(f"{checked.arch.name} on {benchmark.name}", total=len(items))
                    return await evaluate(
                        checked, benchmark, items, pool, out_dir=out_dir, progress=lambda n: bar.advance(task, n)
                    )

        result = asyncio.run(go())
    except ArchonError as exc:
        _fail(exc)
    console.print(_summary_table(checked.arch.name, benchmark.name, result.summary))
    console.print(f"questions: {out_dir / 'questions.csv'}   traces: {out_dir / 'traces'}", highlight=False)


def _summary_table(arch: str, bench: str, s):
    """The eval summary as a rich table."""
    from rich.table import Table

    table = Table(title=f"{arch} on {bench} ({s.n} questions)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{s.accuracy:.3f}  [95% CI {s.ci_low:.3f}-{s.ci_high:.3f}]")
    table.add_row("coverage (any first-layer candidate correct)", "n/a" if s.coverage is None else f"{s.coverage:.3f}")
    table.add_row("LM calls per query", f"{s.calls_per_query:.2f}")
    table.add_row("tokens per query", f"{s.tokens_per_query:.1f}")
    table.add_row("model calls made (cache misses)", str(s.backend_calls))
    table.add_row("cost (USD)", f"{s.cost:.4f}")
    table.add_row("wall time (s)", f"{s.wall_s:.1f}")
    return table
