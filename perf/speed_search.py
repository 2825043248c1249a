"""The search on the constructed landscape (perf/landscape.py), where the true score of every
architecture and the optimum of the space are known: how many trials each sampler needs to find a
near-optimal architecture, and how many LM calls a whole search saves through the response cache.

The trials score architectures as `archon-search run` does: the simulated models write realistic text
(perf/landscape_text.py), the ops' real parsers read rankings, verdicts and critiques from it, and the
real number scorer reads the final answer; the optimum is found by scoring every point of the space
exhaustively with the landscape's exact expected score, which models each parser fallback the text causes."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from archon_search.backends.base import Backend
from archon_search.core.messages import ChatRequest, Completion
from archon_search.eval.benchmark import split_items
from archon_search.ops.generator import GENERATOR_SYSTEM
from archon_search.runtime.cache import CachedBackend, ResponseCache, cache_key
from archon_search.search.objective import Objective, TrialRunner, rebuild
from archon_search.search.records import counted, result_of
from archon_search.search.runner import DEFAULT_SPLIT_SEED, SearchConfig, chunk_for, run_search
from archon_search.search.space import SearchSpace, SpaceContext, baselines, load_space, space_context
from archon_search.search.study import make_pruner, make_sampler
from perf.landscape import SPACE_FILE, Landscape, best_in_space, parse_audit

log = logging.getLogger(__name__)

REACH = 0.95


@dataclass
class Setup:
    """The landscape, the space searched on it, the space's true optimum (expected accuracy), and how the ops'
    parsers read the landscape's replies (`parse_audit`: per reply kind, meant / unreadable / misread)."""

    landscape: Landscape
    space: SearchSpace
    ctx: SpaceContext
    budget: int
    optimum: float
    parsing: dict[str, dict[str, int]] = field(default_factory=dict)


def landscape_setup(n_items: int, budget: int) -> Setup:
    """The landscape of `n_items` questions (half dev, half test) and the optimum of its space at `budget`."""
    landscape = Landscape(n_items=n_items)
    space = load_space(SPACE_FILE)
    ctx = space_context(space, landscape.model_specs(), budget, landscape.benchmark().kind)
    _, optimum = best_in_space(landscape, space, ctx)
    parsing = {kind: dict(counts) for kind, counts in parse_audit(landscape).items()}
    misread = {kind: counts["misread"] for kind, counts in parsing.items() if counts.get("misread")}
    if misread:
        # the optimum assumes every reply reads as meant: a misread makes it wrong, so the figure is too
        log.warning("the ops' parsers misread landscape replies: %s", misread)
    return Setup(landscape, space, ctx, budget, optimum, parsing)


@dataclass
class Reach:
    """Trials one sampler needed, per seed, to score an architecture within `REACH` of the optimum; None
    where it did not within `cap` trials (counted as cap + 1 in the median)."""

    sampler: str
    cap: int
    trials: list[int | None] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median over seeds, a run that never reached counting as cap + 1."""
        return statistics.median(self.cap + 1 if n is None else n for n in self.trials)

    @property
    def censored(self) -> bool:
        """The median lies past the cap, so it is only a lower bound."""
        return self.median > self.cap


def trials_to_reach(setup: Setup, sampler: str, seed: int, cap: int) -> int | None:
    """Search as `archon-search run` does (its sampler, pruner, baselines, budget-cut ranges, twin reuse and dev
    scoring on the simulated models), in memory and without the run folder, until a trial completes with
    an architecture whose true score is within `REACH` of the optimum; its 1-based position, or None."""
    bench = setup.landscape.benchmark()
    dev, _ = split_items(bench.load(), DEFAULT_SPLIT_SEED)
    objective = Objective.parse("accuracy")
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(sampler, seed, cap), pruner=make_pruner(objective, sampler, len(dev))
    )
    for baseline in baselines(setup.space, setup.ctx):
        study.enqueue_trial(baseline.params, user_attrs={"baseline": baseline.name})
    target = REACH * setup.optimum
    reached: list[int] = []

    def check(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            score = setup.landscape.expected_score(rebuild(trial, setup.space, setup.ctx))
            if score >= target:
                reached.append(trial.number + 1)
                study.stop()

    loop = asyncio.new_event_loop()
    try:
        with tempfile.TemporaryDirectory() as out:
            runner = TrialRunner(
                setup.space,
                setup.ctx,
                objective,
                bench,
                dev,
                setup.landscape.backends(),
                Path(out),
                chunk_for(len(dev)),
                "speed",
            )
            study.optimize(
                lambda trial: loop.run_until_complete(runner.run(trial)),
                n_trials=cap,
                callbacks=[check],
                gc_after_trial=False,
            )
    finally:
        loop.close()
    return reached[0] if reached else None


def search_efficiency(
    setup: Setup, samplers: list[str], seeds: int, cap: int
) -> tuple[dict[str, Reach], dict[str, str]]:
    """Trials to reach, per sampler over `seeds` seeds; and why each sampler that cannot run here cannot."""
    reaches: dict[str, Reach] = {}
    unavailable: dict[str, str] = {}
    for sampler in samplers:
        missing = [m for m in ("torch", "scipy") if sampler == "gp" and importlib.util.find_spec(m) is None]
        if missing:
            unavailable[sampler] = f"the gp sampler needs {' and '.join(missing)}, not installed here"
            continue
        reach = Reach(sampler, cap)
        for seed in range(seeds):
            reach.trials.append(trials_to_reach(setup, sampler, seed, cap))
            log.info("%s seed %d: %s trials", sampler, seed, reach.trials[-1])
        reaches[sampler] = reach
    return reaches, unavailable


@dataclass
class Dedupe:
    """LM calls of a whole search: asked for by the executor (`logical`) and sent to a model (`backend`),
    also split by phase (`search` on dev, `test` re-scoring) and layer kind (`generator`, `other`).
    `distinct` holds the cache key of every request asked for: a search that wastes no call makes exactly
    one backend call per distinct request."""

    logical: int = 0
    backend: int = 0
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    distinct: set[str] = field(default_factory=set)

    @property
    def ratio(self) -> float:
        """Backend calls per logical call."""
        return self.backend / self.logical

    def add(self, part: str, logical: int, backend: int) -> None:
        """Count `logical` calls of `part`, of which `backend` reached a model."""
        counts = self.parts.setdefault(part, {"logical": 0, "backend": 0})
        counts["logical"] += logical
        counts["backend"] += backend
        self.logical += logical
        self.backend += backend


class _Counted(CachedBackend):
    """The cached backend of a search, counting every call into a `Dedupe` by phase and layer kind."""

    def __init__(self, inner: Backend, cache: ResponseCache, dedupe: Dedupe, test_prompts: list[str]):
        super().__init__(inner, cache)
        self.dedupe = dedupe
        self.test_prompts = test_prompts

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer as the cached backend does, and count."""
        answers = await super().complete(requests)
        for request, answer in zip(requests, answers):
            self.dedupe.distinct.add(cache_key(self.inner.kind, self.inner.model_id, request))
            prompt = request.messages[-1][1]
            phase = "test" if any(p in prompt for p in self.test_prompts) else "search"
            kind = "generator" if request.messages[0][1] == GENERATOR_SYSTEM else "other"
            self.dedupe.add(f"{phase}_{kind}", 1, 0 if answer.cached else 1)
        return answers


def cache_dedupe(setup: Setup, trials: int, seed: int) -> Dedupe:
    """Run `archon-search run` for `trials` trials on the landscape behind one fresh response cache."""
    dedupe = Dedupe()
    bench = setup.landscape.benchmark()
    _, test = split_items(bench.load(), DEFAULT_SPLIT_SEED)
    with tempfile.TemporaryDirectory() as folder:
        cache = ResponseCache(Path(folder) / "responses.sqlite")
        backends = {
            name: _Counted(sim, cache, dedupe, [item.prompt for item in test])
            for name, sim in setup.landscape.backends().items()
        }
        config = SearchConfig(
            bench=bench.name,
            budget=setup.budget,
            trials=trials,
            space_file=SPACE_FILE,
            seed=seed,
            out=Path(folder) / "run",
        )
        result = run_search(
            config, benchmark=bench, models=setup.landscape.model_specs(), backends=backends, show_progress=False
        )
        cache.close()
        study = optuna.load_study(study_name=result.study, storage=result.storage)
        # a trial that repeats an earlier trial's architecture takes its result without any call
        for trial in counted(study.get_trials(deepcopy=False)):
            result = result_of(trial)
            if "same_as" in result:
                dedupe.add("search_twin", round(result["calls_per_query"] * result["dev_n"]), 0)
    return dedupe
