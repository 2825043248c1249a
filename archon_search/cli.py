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
