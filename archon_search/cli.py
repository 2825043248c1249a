"""The `archon-search` command line (Typer). Each command is a thin shell over a library module."""

# Typer declares options and arguments as default values, which is what B008 flags.
# ruff: noqa: B008

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from archon_search.core.errors import ArchitectureError, ArchonError
from archon_search.lang.render import plural
from archon_search.lang.validate import load_architecture, load_models_file

app = typer.Typer(
    help="Search LLM inference architectures under a call budget, then export and serve the best.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _score(value: float | None) -> str:
    """A score for a summary line; None or NaN (nothing scored) as n/a."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _per_query(calls: int) -> str:
    return f"{plural(calls, 'LM call')} per query"


def _fail(exc: ArchonError) -> NoReturn:
    for line in str(exc).splitlines():
        err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _reported() -> Iterator[None]:
    """Report a refused architecture issue by issue, any other library error as such, and exit 1."""
    try:
        yield
    except ArchitectureError as exc:
        _refuse(exc)
    except ArchonError as exc:
        _fail(exc)


def _models(path: Path | None) -> dict | None:
    return load_models_file(path) if path else None


def _note_isolation(runs_code: bool) -> None:
    """Say once, before model-written code runs, which sandbox isolation it gets (and how to get the strongest)."""
    if runs_code:
        from archon_search.scoring.sandbox import isolation_summary

        err_console.print(escape(isolation_summary()), highlight=False, soft_wrap=True)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        console.print(f"archon-search {version('archon-search')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the library does."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """archon-search: find the best way to spend inference compute on a task."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM (a supervisor, `kill`) stops a command as Ctrl-C does: in-flight calls are cancelled, backends closed
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def run(
    budget: int = typer.Option(..., "--budget", "-b", help="LM calls per query that no architecture may exceed."),
    bench: str = typer.Option(..., "--bench", help="Built-in benchmark name or a benchmark YAML file."),
    trials: int = typer.Option(
        20, "--trials", help="Trials the study holds when done, baselines included (a resume stops there)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Use at most N dev questions (and N test questions)."),
    data: Path | None = typer.Option(None, "--data", help="Benchmark data file (jsonl)."),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries the space may use."),
    space: Path | None = typer.Option(None, "--space", help="Search space YAML (default: the built-in space)."),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Optuna storage URL shared by workers, e.g. postgresql://user@host/db (default: sqlite in --out).",
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: BENCH-bBUDGET)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (multivariate), random, or gp (needs torch)."),
    objective: str = typer.Option("accuracy", "--objective", help="accuracy | accuracy,calls | accuracy,tokens"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler."),
    split_seed: int = typer.Option(
        0, "--split-seed", help="Seed of the dev/test split (fixed, so every run holds out the same test questions)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: results/BENCH-bBUDGET)."),
    cache: Path | None = typer.Option(None, "--cache", help="Response cache file (default: in the user cache dir)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for requests seen before."),
    chunk: int | None = typer.Option(
        None,
        "--chunk",
        help="Dev questions between pruning checks, counted in dev order (default: a third of dev, 4 to 16).",
    ),
    judge: str | None = typer.Option(None, "--judge", help="Model entry that grades judged benchmarks."),
) -> None:
    """Search architectures within --budget LM calls per query (Optuna), re-score the best on held-out questions
    against baselines, and write the run folder. The same command again resumes the study."""
    from archon_search.datasets.registry import get_dataset
    from archon_search.eval.benchmark import kind_of
    from archon_search.search.runner import SearchConfig, run_search

    config = SearchConfig(
        bench=bench,
        budget=budget,
        trials=trials,
        limit=limit,
        data=data,
        models_file=models,
        space_file=space,
        storage=storage,
        study=study,
        sampler=sampler,
        objective=objective,
        seed=seed,
        split_seed=split_seed,
        out=out,
        cache=cache,
        no_cache=no_cache,
        chunk=chunk,
        judge=judge,
    )
    try:
        with _reported():
            _note_isolation(kind_of(get_dataset(bench)) == "code")
            result = run_search(config)
    except KeyboardInterrupt:
        err_console.print("interrupted: the running trial is marked failed; run the same command again to resume")
        raise typer.Exit(130) from None
    test = _score(result.test_score)
    console.print(
        f"[green]done[/green] {result.trials} trials in study {escape(result.study)}; best: trial {result.best_trial} "
        f"(at most {_per_query(result.best.calls_per_query)}), dev {_score(result.dev_score)}, test {test}\n"
        f"report: {escape(str(result.report))}   best: {escape(str(result.out / 'best.yaml'))}",
        highlight=False,
    )


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Architecture YAML files."),
    budget: int | None = typer.Option(None, "--budget", "-b", help="Refuse files over B LM calls per query (R8)."),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
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
                err_console.print(f"[red]refused[/red] {escape(str(issue))}", highlight=False, soft_wrap=True)
            continue
        console.print(
            f"[green]ok[/green] {escape(str(file))}: {checked.arch.name}: {_per_query(checked.calls_per_query)}",
            highlight=False,
            soft_wrap=True,
        )
        for warning in checked.warnings:
            console.print(f"[yellow]warning[/yellow] {escape(str(warning))}", highlight=False, soft_wrap=True)
    if refused:
        raise typer.Exit(1)


def _cache(cache: Path | None, no_cache: bool):
    from archon_search.runtime.cache import ResponseCache

    return None if no_cache else ResponseCache(cache)


def _split_seed(given: int | None, run_dir: Path | None, arch_file: Path) -> int:
    """The dev/test split seed: --split-seed, else the run folder's (--run, or the folder holding ARCH.yaml or its
    archs/), else the default."""
    import json

    from archon_search.search.export import RUN_FILE, read_run
    from archon_search.search.runner import DEFAULT_SPLIT_SEED

    if given is not None:
        return given
    folders = [run_dir] if run_dir else [arch_file.parent, arch_file.parent.parent]
    for folder in folders:
        if run_dir or (folder / RUN_FILE).is_file():
            read_run(folder)
            record = json.loads((folder / RUN_FILE).read_text())
            # runs from before --split-seed split with their sampler seed
            return int(record.get("split_seed", record.get("seed", DEFAULT_SPLIT_SEED)))
    return DEFAULT_SPLIT_SEED


@app.command("eval")
def eval_command(
    arch_file: Path = typer.Argument(..., metavar="ARCH.yaml", help="Architecture file to score."),
    bench: str = typer.Option(..., "--bench", help="Built-in benchmark name or a benchmark YAML file."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Score only the first N questions of the split."),
    data: Path | None = typer.Option(None, "--data", help="Benchmark data file (jsonl)."),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for questions.csv and traces/ (default: results/eval-ARCH-BENCH)."
    ),
    split: str = typer.Option("all", "--split", help="Which items: all, dev or test (the search's seeded split)."),
    split_seed: int | None = typer.Option(
        None,
        "--split-seed",
        help="Seed of the dev/test split (default: the run folder's, from --run or the folder ARCH.yaml is in; else 0).",
    ),
    run_dir: Path | None = typer.Option(None, "--run", help="Run folder whose dev/test split to use (its run.json)."),
    cache: Path | None = typer.Option(None, "--cache", help="Response cache file (default: in the user cache dir)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for requests seen before."),
    judge: str | None = typer.Option(
        None, "--judge", help="Model entry that grades answers of judged benchmarks (mt-bench, scorer: judge)."
    ),
) -> None:
    """Score one architecture on a benchmark: accuracy with a 95% CI, coverage, calls, tokens, cost, traces."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from archon_search.datasets.registry import get_dataset
    from archon_search.eval.benchmark import kind_of, make_benchmark, split_items
    from archon_search.eval.evaluate import evaluate
    from archon_search.runtime.pool import BackendPool

    if split not in ("all", "dev", "test"):
        _fail(ArchonError(f"--split must be all, dev or test, not {split!r}"))
    try:
        extra = _models(models) or {}
        checked = load_architecture(arch_file, extra)
        for warning in checked.warnings:
            err_console.print(f"[yellow]warning[/yellow] {escape(str(warning))}", highlight=False, soft_wrap=True)
        dataset = get_dataset(bench)
        executes = any(
            layer.op == "unit_test_evaluator" and layer.units[0].mode == "execute" for layer in checked.arch.layers
        )
        _note_isolation(kind_of(dataset) == "code" or executes)
        items = dataset.load(data)
        if split != "all":
            dev, test = split_items(items, _split_seed(split_seed, run_dir, arch_file))
            items = dev if split == "dev" else test
        items = items[:limit] if limit else items
        if not items:
            raise ArchonError(f"benchmark {dataset.name} has no items to score; check --data, --split and --limit")
        out_dir = out or Path("results") / f"eval-{checked.arch.name}-{dataset.name}"

        async def go():
            # every --models entry, not just those the layers use: the judge may be one of the others
            async with BackendPool({**extra, **checked.arch.models}, cache=_cache(cache, no_cache)) as pool:
                benchmark = make_benchmark(dataset, pool, judge)
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
    console.print(_summary_table(checked.arch.name, dataset.name, result.summary))
    if kind_of(dataset) == "judge":
        _print_categories(result.rows)
    console.print(f"questions: {out_dir / 'questions.csv'}   traces: {out_dir / 'traces'}", highlight=False)


def _summary_table(arch: str, bench: str, s):
    """The eval summary as a rich table."""
    from rich.table import Table

    table = Table(title=f"{arch} on {bench} ({s.n} questions)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row(
        "accuracy",
        f"{s.accuracy:.3f}  [95% CI {s.ci_low:.3f}-{s.ci_high:.3f}]" if s.n > s.unscored else "n/a (nothing scored)",
    )
    table.add_row("coverage (any first-layer candidate correct)", "n/a" if s.coverage is None else f"{s.coverage:.3f}")
    table.add_row("LM calls per query", f"{s.calls_per_query:.2f}")
    table.add_row("tokens per query", f"{s.tokens_per_query:.1f}")
    table.add_row("model calls made (cache misses)", str(s.backend_calls))
    table.add_row("cost (USD)", f"{s.cost:.4f}")
    table.add_row("wall time (s)", f"{s.wall_s:.1f}")
    if s.judge_calls:
        table.add_row("judge calls (not counted in the budget)", str(s.judge_calls))
        table.add_row("judge tokens", str(s.judge_tokens))
        table.add_row("judge cost (USD)", f"{s.judge_cost:.4f}")
    if s.unscored:
        table.add_row("unscored (judge unreadable; left out of accuracy)", str(s.unscored))
    if s.errors:
        table.add_row("questions stopped by a failed request (scored wrong; see questions.csv)", str(s.errors))
    if s.truncated:
        table.add_row("answers cut by the token limit (scored wrong; raise max_tokens)", str(s.truncated))
    return table


def _print_categories(rows) -> None:
    """A judged evaluation's scores per category (when its items have categories): mean score and raw grade."""
    import math

    from rich.table import Table

    from archon_search.scoring.judge import per_category

    categories = per_category(rows)
    if categories.empty:
        return
    table = Table(title="per category")
    for column in ("category", "questions", "score (0-1)", "grade (1-10)", "unparsed turns"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for r in categories.itertuples():
        score = "n/a" if math.isnan(r.score) else f"{r.score:.3f}"
        grade = "n/a" if math.isnan(r.grade) else f"{r.grade:.2f}"
        table.add_row(str(r.category), str(r.n), score, grade, str(int(r.unparsed)))
    console.print(table)


def _refuse(exc: ArchitectureError) -> NoReturn:
    for issue in exc.issues:
        err_console.print(f"[red]refused[/red] {escape(str(issue))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def show(
    arch_file: Path = typer.Argument(..., metavar="ARCH.yaml", help="Architecture file to draw."),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
) -> None:
    """Draw an architecture in the terminal: question, layers with their units, answer, and LM calls per query."""
    from archon_search.lang.render import render_architecture

    try:
        checked = load_architecture(arch_file, _models(models))
    except ArchitectureError as exc:
        _refuse(exc)
    console.print(render_architecture(checked))
    for warning in checked.warnings:
        err_console.print(f"[yellow]warning[/yellow] {escape(str(warning))}", highlight=False, soft_wrap=True)


@app.command("import-archon")
def import_archon_command(
    config: Path = typer.Argument(..., metavar="CONFIG.json", help="Archon JSON config to convert."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the YAML to this file instead of printing it."),
) -> None:
    """Convert an Archon JSON config into an architecture file, or say which rule keeps it from being one."""
    from archon_search.lang.archon_import import import_archon

    with _reported():
        result = import_archon(config)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if out is None:
        typer.echo(result.yaml_text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.yaml_text)
    except OSError as exc:
        _fail(ArchonError(f"cannot write {out}: {exc.strerror}; choose another --out"))
    console.print(f"[green]wrote[/green] {escape(str(out))}", highlight=False)


@app.command()
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder written by `archon-search run`."),
    out: Path = typer.Option(Path("best.yaml"), "--out", "-o", help="File to write."),
    trial: int | None = typer.Option(None, "--trial", help="Export this trial instead of the run's best."),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries replacing the run's."),
) -> None:
    """Write a run's best architecture (or --trial N) as a self-contained YAML file, ready to validate and serve."""
    from archon_search.search.export import export_run

    with _reported():
        exported = export_run(run, out, trial, _models(models))
    console.print(
        f"[green]wrote[/green] {escape(str(out))}: trial {exported.trial.number} of {escape(str(run))}, "
        f"{_per_query(exported.checked.calls_per_query)}; serve it with: archon-search serve {escape(str(out))}",
        highlight=False,
    )


@app.command()
def serve(
    arch_file: Path = typer.Argument(..., metavar="ARCH.yaml", help="Architecture file to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port to listen on."),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Require 'Authorization: Bearer <key>', the key read from this environment variable.",
    ),
    models: Path | None = typer.Option(None, "--models", help="YAML file of model entries (wins on name clash)."),
    cache: Path | None = typer.Option(None, "--cache", help="Response cache file (default: in the user cache dir)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for requests seen before."),
) -> None:
    """Serve an architecture as an OpenAI-compatible endpoint: POST /v1/chat/completions, GET /v1/models, GET /health."""
    from archon_search.runtime.api import Architecture
    from archon_search.runtime.task_context import describe
    from archon_search.serve import api_key_from_env
    from archon_search.serve import serve as serve_forever

    with _reported():
        key = api_key_from_env(api_key_env) if api_key_env else None
        arch = Architecture.load(arch_file, _models(models), cache=_cache(cache, no_cache))
        console.print(
            f"serving {arch.name} ({_per_query(arch.calls_per_query)}) at http://{host}:{port}/v1",
            highlight=False,
        )
        console.print(describe(arch.checked.arch.task), highlight=False)
        serve_forever(arch, host, port, key)
