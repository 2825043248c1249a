"""`run_search`: the whole `archon-search run`. Baselines first, then Optuna trials on the dev split until
the study holds N counted trials, then the best is re-scored against the baselines on the test split and
the run folder is written (trials.csv, archs/, best.yaml, run.json, report.md with plots, traces/)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.study import Study
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from archon_search.backends.base import Backend
from archon_search.core.items import Item
from archon_search.datasets.registry import get_dataset
from archon_search.eval.benchmark import Benchmark, judge_name, make_benchmark
from archon_search.eval.evaluate import DEFAULT_CHUNK, EvalResult, TooManyErrors, evaluate
from archon_search.lang.spec import EmbeddedModel
from archon_search.lang.validate import Validated, load_models_file
from archon_search.runtime.cache import ResponseCache
from archon_search.runtime.pool import BackendPool
from archon_search.search.display import SearchDisplay
from archon_search.search.export import export_run
from archon_search.search.objective import (
    Objective,
    SearchError,
    TrialRunner,
    arch_key,
    arch_path,
    build_architecture,
    rebuild,
    write_arch,
)
from archon_search.search.plan import SearchPlan
from archon_search.search.records import FINISHED, RunInfo, counted, public_url, result_of, trials_frame, write_records
from archon_search.search.report import Comparison, compare, write_report
from archon_search.search.space import SearchSpace, SpaceContext, baselines, load_space, space_context
from archon_search.search.study import (
    ERRORED,
    POLL_S,
    THIS_WORKER,
    WORKER,
    Discarded,
    discard_reason,
    fail_stale,
    make_pruner,
    make_sampler,
    make_storage,
    open_study,
    pruning_text,
    requeue,
    resumed_seed,
    tally,
    wait_for_running,
)

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
#: the dev/test split of every run unless --split-seed says otherwise: fixed, so a sampler seed never moves it
DEFAULT_SPLIT_SEED = 0
BEST_FILE = "best.yaml"
#: how often trials.csv and run.json are rewritten while the search runs (and once more when it ends)
RECORDS_EVERY_S = 5.0


@dataclass(frozen=True)
class SearchConfig:
    """The options of `archon-search run` (see its --help)."""

    bench: str
    budget: int
    trials: int = 20
    limit: int | None = None
    data: Path | None = None
    models_file: Path | None = None
    space_file: Path | None = None
    storage: str | None = None
    study: str | None = None
    sampler: str = "tpe"
    objective: str = "accuracy"
    seed: int = 0
    split_seed: int = DEFAULT_SPLIT_SEED
    out: Path | None = None
    cache: Path | None = None
    no_cache: bool = False
    #: dev questions between pruning checks (counted in dev order); None: `chunk_for(len(dev))`
    chunk: int | None = None
    judge: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """Where the run was written and what won."""

    out: Path
    study: str
    storage: str
    best_trial: int
    best: Validated
    dev_score: float
    test_score: float | None
    trials: int
    report: Path


@dataclass
class _Run:
    """One worker's state while it searches."""

    config: SearchConfig
    objective: Objective
    space: SearchSpace
    ctx: SpaceContext
    benchmark: Benchmark
    dev: list[Item]
    test: list[Item]
    out: Path
    study: Study
    info: RunInfo
    loop: asyncio.AbstractEventLoop
    runner: TrialRunner
    display: SearchDisplay
    current: int | None = None
    #: the best's per-question test rows, once scored
    best_rows: pd.DataFrame | None = None
    #: when trials.csv and run.json were last rewritten during the search (monotonic clock)
    records_written: float = -math.inf


def _warn_if_gp_inherits(study: Study) -> None:
    """GP models only the parameters every completed trial has: trials another sampler made define-by-run
    (with conditional parameters) shrink that set for the rest of the study."""
    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "baseline" not in t.user_attrs
    ]
    if len({frozenset(t.params) for t in done}) > 1:
        log.warning(
            "study %s holds trials made by another sampler; --sampler gp will model only the parameters they all "
            "share: start gp in a new --out (or --study)",
            study.study_name,
        )


def chunk_for(dev_n: int) -> int:
    """A third of the dev questions, 4 to DEFAULT_CHUNK: small dev sets still get pruning points, large ones
    keep chunks big enough for API backends to work on many questions at once."""
    return max(4, min(DEFAULT_CHUNK, math.ceil(dev_n / 3)))


def _check_numbers(config: SearchConfig) -> None:
    for name, value, low in (
        ("--budget", config.budget, 1),
        ("--trials", config.trials, 1),
        ("--chunk", config.chunk, 1),
    ):
        if value is not None and value < low:
            raise SearchError(f"{name} must be at least {low}, found {value}")
    if config.limit is not None and config.limit < 1:
        raise SearchError(f"--limit must be at least 1, found {config.limit}")


def _split(items: list[Item], benchmark: Benchmark, config: SearchConfig) -> tuple[list[Item], list[Item]]:
    dev, test = benchmark.split(items, config.split_seed)
    if config.limit:
        dev, test = dev[: config.limit], test[: config.limit]
    if not dev:
        raise SearchError(f"benchmark {benchmark.name} has no items to search on; check --data and --limit")
    return dev, test


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _data_hash(data: Path | None, items: list[Item]) -> str:
    """The benchmark data's content: the file's bytes, else (built-in data) every item."""
    if data is not None:
        return hashlib.sha256(Path(data).read_bytes()).hexdigest()[:16]
    return _digest([repr(item) for item in items])


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial log lines would interleave with the live display; our own logging says what matters."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass
class _Setup:
    """What a run is before it spends anything: the benchmark, its split, where it writes, the study it resumes."""

    benchmark: Benchmark
    ctx: SpaceContext
    judge: str | None
    items: list[Item]
    dev: list[Item]
    test: list[Item]
    out: Path
    url: str
    study: str
    #: the sampler's seed: workers sharing a storage must not propose the same points from the same seed
    seed: int


def run_search(
    config: SearchConfig,
    *,
    benchmark: Benchmark | None = None,
    models: Mapping[str, Any] | None = None,
    backends: Mapping[str, Backend] | None = None,
    show_progress: bool = True,
) -> SearchResult:
    """Search architectures for `config.bench` within `config.budget` LM calls per query and write the run folder.

    `benchmark`, `models` (name -> model spec) and `backends` (name -> Backend) replace what the config names,
    for tests and simulations; without `backends` a `BackendPool` with the response cache serves the models.
    Re-running with the same storage and study resumes; KeyboardInterrupt marks the running trial FAIL (rerun on
    resume) and propagates.
    """
    objective = Objective.parse(config.objective)
    _check_numbers(config)
    space = load_space(config.space_file)
    specs = dict(models) if models is not None else (load_models_file(config.models_file) if config.models_file else {})
    loop = asyncio.new_event_loop()
    pool = None
    if backends is None:
        pool = BackendPool(specs, cache=None if config.no_cache else ResponseCache(config.cache))
    try:
        setup = _set_up(config, space, specs, benchmark, pool)
        with _quiet_optuna():
            study = _open_study(config, objective, space, specs, setup)
            served = pool if pool is not None else backends
            return _run_study(config, objective, space, setup, study, served, loop, show_progress)
    finally:
        _close(loop, pool)


def _close(loop: asyncio.AbstractEventLoop, pool: BackendPool | None) -> None:
    """Cancel what an interrupt left running (a trial's questions, their calls), then close the backends: a model
    stops decoding at once instead of finishing generations nobody will read."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    if pool is not None:
        loop.run_until_complete(pool.aclose())
    loop.close()


def _set_up(
    config: SearchConfig,
    space: SearchSpace,
    specs: Mapping[str, Any],
    benchmark: Benchmark | None,
    pool: BackendPool | None,
) -> _Setup:
    """The benchmark (a judged one's judge from `pool`), the space's context, the dev/test split and the names."""
    bench = benchmark if benchmark is not None else make_benchmark(get_dataset(config.bench), pool, config.judge)
    judge = judge_name(bench.dataset, config.judge)
    ctx = space_context(space, specs, config.budget, bench.kind, judge=judge, max_tokens=bench.max_tokens)
    items = bench.load(config.data)
    dev, test = _split(items, bench, config)
    out = config.out or Path("results") / f"{bench.name}-b{config.budget}"
    out.mkdir(parents=True, exist_ok=True)
    return _Setup(
        benchmark=bench,
        ctx=ctx,
        judge=judge,
        items=items,
        dev=dev,
        test=test,
        out=out,
        url=config.storage or f"sqlite:///{(out / STUDY_DB).resolve()}",
        study=config.study or f"{bench.name}-b{config.budget}",
        seed=config.seed if config.storage is None else config.seed + os.getpid(),
    )


def _fingerprint(
    config: SearchConfig, objective: Objective, space: SearchSpace, specs: Mapping[str, Any], setup: _Setup
) -> dict[str, Any]:
    """What a resumed study must share with this run: a run that differs in any of these starts a new study."""
    judge, ctx = setup.judge, setup.ctx
    return {
        "bench": setup.benchmark.name,
        "budget": config.budget,
        "objective": objective.name,
        "space": _digest([space.model_dump(), ctx.models, ctx.max_tokens]),
        "dev_questions": _digest([item.id for item in setup.dev]),
        "split_seed": config.split_seed,
        "judge": judge,
        "model_entries": _digest({n: specs.get(n) for n in sorted({*ctx.models, *([judge] if judge else [])})}),
        "data": _data_hash(config.data, setup.items),
    }


def _open_study(
    config: SearchConfig, objective: Objective, space: SearchSpace, specs: Mapping[str, Any], setup: _Setup
) -> Study:
    """The study (new, or resumed with a sampler reseeded past the trials it holds)."""
    sampler = make_sampler(config.sampler, setup.seed, config.trials)
    study = open_study(
        make_storage(setup.url),
        setup.study,
        objective,
        sampler,
        make_pruner(objective, config.sampler, len(setup.dev)),
        _fingerprint(config, objective, space, specs, setup),
    )
    so_far = len(study.get_trials(deepcopy=False))
    if so_far:
        study.sampler = make_sampler(config.sampler, resumed_seed(setup.seed, so_far), config.trials)
    if config.sampler == "gp":
        _warn_if_gp_inherits(study)
    return study


def _run_info(config: SearchConfig, objective: Objective, setup: _Setup) -> RunInfo:
    """The run's description for run.json and the report."""
    return RunInfo(
        bench=setup.benchmark.name,
        budget=config.budget,
        study=setup.study,
        storage=public_url(setup.url),
        objective=objective.name,
        sampler=config.sampler,
        seed=config.seed,
        split_seed=config.split_seed,
        target_trials=config.trials,
        space=str(config.space_file) if config.space_file else "built-in",
        models=list(setup.ctx.models),
        dev_n=len(setup.dev),
        test_n=len(setup.test),
        pruning=pruning_text(objective, config.sampler, len(setup.dev)),
    )


def _plan(config: SearchConfig, space: SearchSpace, setup: _Setup, study: Study) -> SearchPlan:
    """What the run will do, stated before its first call."""
    ctx = setup.ctx
    fixed = [(b.name, build_architecture(FixedTrial(b.params, 0), 0, space, ctx)[1]) for b in baselines(space, ctx)]
    return SearchPlan(
        bench=setup.benchmark.name,
        budget=config.budget,
        trials=config.trials,
        dev_n=len(setup.dev),
        test_n=len(setup.test),
        # a run without --models gets the pool's default entry, the embedded model
        models={name: ctx.model_specs.get(name) or EmbeddedModel() for name in ctx.models},
        baselines=[(name, checked.calls_per_query) for name, checked in fixed],
        max_tokens=ctx.max_tokens,
        out=setup.out,
        resumed_trials=len(counted(study.get_trials(deepcopy=False))),
    )


def _run_study(
    config: SearchConfig,
    objective: Objective,
    space: SearchSpace,
    setup: _Setup,
    study: Study,
    backends: Mapping[str, Backend],
    loop: asyncio.AbstractEventLoop,
    show_progress: bool,
) -> SearchResult:
    """Trials until the study holds the target, then the best re-scored on test and the run folder written."""
    with SearchDisplay(config.trials, f"{setup.benchmark.name} b{config.budget}", show_progress) as display:
        runner = TrialRunner(
            space,
            setup.ctx,
            objective,
            setup.benchmark,
            setup.dev,
            backends,
            setup.out,
            config.chunk or chunk_for(len(setup.dev)),
            setup.study,
            display.advance,
            display.spend,
        )
        display.announce(_plan(config, space, setup, study).lines())
        info = _run_info(config, objective, setup)
        run = _Run(
            config, objective, space, setup.ctx, setup.benchmark, setup.dev, setup.test, setup.out, study, info, loop,
            runner, display,
        )  # fmt: skip
        try:
            with _interruptible(run):
                _search(run)
        finally:
            # the run folder shows the study as it stands, however the search stopped (after an interrupted trial
            # is marked failed)
            write_records(run.out, info, study.get_trials(deepcopy=False))
        wait_for_running(study, on_wait=lambda n: display.update(*_progress(study.get_trials(deepcopy=False)), n))
        return _finish(run)


@contextmanager
def _interruptible(run: _Run) -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, and leave no trial of this worker RUNNING when either stops it.

    Optuna fails a trial interrupted inside the objective; an interrupt that lands while Optuna records the
    trial's result would leave it RUNNING until its heartbeat goes stale, so it is failed here.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        yield
    except KeyboardInterrupt:
        running = {t.number for t in run.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if run.current in running:
            run.study.tell(run.current, state=TrialState.FAIL)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _best_text(trials: list[FrozenTrial]) -> str:
    done = [t for t in counted(trials) if t.state == TrialState.COMPLETE and result_of(t)]
    if not done:
        return "n/a"
    top = max(done, key=lambda t: result_of(t)["dev_score"])
    return f"{result_of(top)['dev_score']:.3f} (#{top.number})"


def _progress(trials: list[FrozenTrial]) -> tuple[int, str]:
    return tally(trials)[0], _best_text(trials)


def _search(run: _Run) -> None:
    """Run trials until the study holds the target number of finished counted trials (another worker's running
    trial counts once it finishes; one whose worker died is rerun here)."""
    study, target = run.study, run.config.trials
    fixed = {b.name: b.params for b in baselines(run.space, run.ctx)}

    def objective(trial: optuna.Trial) -> list[float]:
        reason = discard_reason(study, trial.number, target)
        if reason:
            trial.set_user_attr("discarded", reason)
            log.info("trial %d set aside: %s", trial.number, reason)
            raise Discarded(reason)
        trial.set_user_attr(WORKER, THIS_WORKER)
        label = trial.user_attrs.get("baseline") or ("rerun" if "retry_of" in trial.user_attrs else "")
        run.display.start_trial(trial.number, label, len(run.dev))
        run.current = trial.number
        try:
            return run.loop.run_until_complete(run.runner.run(trial))
        except TooManyErrors as exc:
            # its own requests fail (a prompt over the context window, say): FAIL for good, and the search goes on
            trial.set_user_attr(ERRORED, str(exc))
            log.warning("trial %d failed: %s", trial.number, exc)
            raise
        finally:
            run.display.end_trial()

    _trials(run, objective, fixed)


def _trials(run: _Run, objective: Callable[[optuna.Trial], list[float]], fixed: dict[str, dict]) -> None:
    """The search loop: requeue what must be rerun, then one trial at a time until the study holds the target."""
    study, target = run.study, run.config.trials
    while True:
        fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        if requeue(study, trials, fixed):
            trials = study.get_trials(deepcopy=False)
        finished, running = tally(trials)
        run.display.update(*_progress(trials), running)
        if time.monotonic() - run.records_written >= RECORDS_EVERY_S:
            # rewriting every trial's row after each trial would make the search's own cost grow with the study;
            # `_run_study` writes them once more however the search stops
            write_records(run.out, run.info, trials)
            run.records_written = time.monotonic()
        if finished >= target:
            return
        if finished + running >= target:
            # other workers' trials complete the study, unless one of them dies: then its rerun is ours to run
            time.sleep(POLL_S)
            continue
        study.optimize(objective, n_trials=1, catch=(Discarded, TooManyErrors), gc_after_trial=False)
        run.current = None


def _pick_best(run: _Run, complete: list[FrozenTrial]) -> tuple[FrozenTrial, list[int]]:
    """The best trial (highest dev accuracy; ties: fewer calls, then earlier) and, with two objectives, the front."""

    def rank(t: FrozenTrial) -> tuple:
        r = result_of(t)
        return (r["dev_score"], -r.get("calls_per_query", 0.0), -t.number)

    if not run.objective.multi:
        return max(complete, key=rank), []
    front = [t for t in run.study.best_trials if "discarded" not in t.user_attrs]
    return max(front or complete, key=rank), sorted(t.number for t in front)


async def _score_test(
    run: _Run, best: FrozenTrial, best_checked: Validated, others: list[FrozenTrial]
) -> list[Comparison]:
    """The best (its traces and questions.csv into the run folder) and the baselines on the test split."""
    if not run.test:
        return []
    shutil.rmtree(run.out / "traces", ignore_errors=True)
    scored: dict[str, tuple[int, EvalResult]] = {}

    async def score(trial: FrozenTrial, checked: Validated, out_dir: Path | None) -> EvalResult:
        key = arch_key(checked)
        if key not in scored:
            run.display.start_trial(trial.number, "test questions", len(run.test))
            result = await evaluate(
                checked,
                run.benchmark,
                run.test,
                run.runner.backends,
                out_dir=out_dir,
                chunk_size=run.runner.chunk,
                progress=run.display.advance,
            )
            run.display.end_trial()
            scored[key] = (trial.number, result)
        return scored[key][1]

    best_result = await score(best, best_checked, run.out)
    run.best_rows = best_result.rows
    label = f"best (baseline {best.user_attrs['baseline']})" if "baseline" in best.user_attrs else "best"
    rows = []
    for t in others:
        rows.append(
            (f"baseline {t.user_attrs['baseline']}", t.number, await score(t, rebuild(t, run.space, run.ctx), None))
        )
    return compare((label, best.number, best_result), rows)


def _finish(run: _Run) -> SearchResult:
    """Re-score the best against the baselines on test; write archs/, records, best.yaml and the report."""
    trials = run.study.get_trials(deepcopy=False)
    kept = counted(trials)
    complete = [t for t in kept if t.state == TrialState.COMPLETE and result_of(t)]
    if not complete:
        raise SearchError("no trial completed, so there is no best architecture; run again with more --trials")
    for t in kept:
        if t.state in FINISHED and t.params and not arch_path(run.out, t.number).exists():
            description = (
                f"baseline {t.user_attrs['baseline']}"
                if "baseline" in t.user_attrs
                else f"trial {t.number} of study {run.info.study}"
            )
            write_arch(run.out, t.number, rebuild(t, run.space, run.ctx), description, run.benchmark.task())
    best, front = _pick_best(run, complete)
    best_checked = rebuild(best, run.space, run.ctx)
    others = [t for t in complete if "baseline" in t.user_attrs and t.number != best.number]
    comparisons = run.loop.run_until_complete(_score_test(run, best, best_checked, others))
    test_scores = {c.number: c.accuracy for c in comparisons}
    info = replace(run.info, best_trial=best.number, pareto_front=front)
    write_records(run.out, info, trials, test_scores)
    export_run(run.out, run.out / BEST_FILE)
    cost_column = (
        {"calls": "calls_per_query", "tokens": "tokens_per_query"}.get(run.objective.metrics[-1])
        if run.objective.multi
        else None
    )
    report = write_report(
        run.out,
        info,
        trials_frame(trials, test_scores),
        best_checked,
        comparisons,
        front,
        cost_column,
        run.best_rows,
    )
    return SearchResult(
        out=run.out,
        study=info.study,
        storage=info.storage,
        best_trial=best.number,
        best=best_checked,
        dev_score=result_of(best)["dev_score"],
        test_score=test_scores.get(best.number),
        trials=len([t for t in kept if t.state in FINISHED]),
        report=report,
    )
