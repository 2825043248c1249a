"""What a trial optimises, and how one trial turns its parameters into a scored architecture.

A trial asks the space for a point (within the budget as asked), writes `archs/trial-N.yaml`, and scores it
on the dev split, every question in flight at once; a single-objective search reports each question's score in
dev order (step k is always question k), and every `chunk` questions the pruner may stop a weak trial early. An architecture already scored by an earlier trial of the
study is not scored again: the trial takes that trial's result (`same_as`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from archon_search.backends.base import Backend
from archon_search.core.errors import ArchonError
from archon_search.core.items import Item
from archon_search.eval.benchmark import Benchmark
from archon_search.eval.evaluate import ChunkDone, EvalSummary, evaluate
from archon_search.lang.spec import Task
from archon_search.lang.validate import Validated
from archon_search.search.export import ARCHS_DIR
from archon_search.search.records import arch_of, atomic_write, result_of
from archon_search.search.space import Point, SearchSpace, SpaceContext, point_architecture, suggest_point

log = logging.getLogger(__name__)

#: the paired pruner's p-value threshold (a trial that trails the best with p below it is stopped)
PRUNE_P = 0.1
OBJECTIVES = ("accuracy", "accuracy,calls", "accuracy,tokens")


class SearchError(ArchonError):
    """A search that cannot start or go on as asked."""


@dataclass(frozen=True)
class Objective:
    """Dev accuracy (maximised), optionally with LM calls or tokens per query (minimised) as a second objective."""

    metrics: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Objective:
        """From the --objective value: accuracy | accuracy,calls | accuracy,tokens."""
        cleaned = ",".join(part.strip() for part in text.split(","))
        if cleaned not in OBJECTIVES:
            raise SearchError(f"--objective {text!r} is not known; use one of {' | '.join(OBJECTIVES)}")
        return cls(tuple(cleaned.split(",")))

    @property
    def name(self) -> str:
        return ",".join(self.metrics)

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def directions(self) -> list[str]:
        return ["maximize" if m == "accuracy" else "minimize" for m in self.metrics]

    def values(self, result: Mapping) -> list[float]:
        """The objective values from a trial's `result` attribute."""
        column = {"accuracy": "dev_score", "calls": "calls_per_query", "tokens": "tokens_per_query"}
        return [float(result[column[m]]) for m in self.metrics]


def arch_key(checked: Validated) -> str:
    """What makes two architectures the same: their layers and the models those name (not their names)."""
    body = checked.arch.to_yaml_obj()
    body.pop("name")
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def arch_name(number: int) -> str:
    """The architecture name of trial `number` (as in `archs/trial-N.yaml`)."""
    return f"trial-{number}"


def arch_path(out: Path, number: int) -> Path:
    """Where a run folder keeps trial `number`'s architecture (the place `archon-search export` reads)."""
    return out / ARCHS_DIR / f"{arch_name(number)}.yaml"


def build_architecture(
    params_trial: optuna.Trial | optuna.trial.FixedTrial, number: int, space: SearchSpace, ctx: SpaceContext
) -> tuple[Point, Validated]:
    """A trial's architecture: its point (within the budget as asked) and the point validated."""
    point = suggest_point(params_trial, space, ctx)
    return point, point_architecture(point, space, ctx, arch_name(number))


def rebuild(trial: FrozenTrial, space: SearchSpace, ctx: SpaceContext) -> Validated:
    """The architecture a finished trial scored, rebuilt from its parameters (the same on every worker)."""
    return build_architecture(optuna.trial.FixedTrial(trial.params, trial.number), trial.number, space, ctx)[1]


def write_arch(out: Path, number: int, checked: Validated, description: str, task: Task | None = None) -> Path:
    """Write `archs/trial-N.yaml`, self-contained (models included, and the `task` it is scored on), atomically."""
    arch = checked.arch.model_copy(update={"description": description, "task": task})
    path = arch_path(out, number)
    atomic_write(path, yaml.safe_dump(arch.to_yaml_obj(), sort_keys=False, allow_unicode=True, width=100))
    return path


@dataclass
class TrialRunner:
    """Everything one trial needs: the space, the dev items, the backends, and where to write.

    `progress(n)` hears of every chunk of scored questions, `on_calls(n)` of the LM calls of each finished one.
    """

    space: SearchSpace
    ctx: SpaceContext
    objective: Objective
    benchmark: Benchmark
    dev: Sequence[Item]
    backends: Mapping[str, Backend]
    out: Path
    chunk: int
    study_name: str
    progress: Callable[[int], None] | None = None
    #: hears of the LM calls of each question as it finishes, so a live counter moves during a trial
    on_calls: Callable[[int], None] | None = None

    async def run(self, trial: optuna.Trial) -> list[float]:
        """Score one trial's architecture on dev (or take a twin's result); raise `TrialPruned` to stop early.

        The trial's user attrs `arch` (key, static calls) and `result` (dev score, questions, usage per
        query) are each written once, as a dict: every attribute write is a database commit.
        """
        checked = self._propose(trial)
        key = arch_key(checked)
        trial.set_user_attr("arch", {"key": key, "static_calls": checked.calls_per_query})
        twin = self._twin(trial, key)
        if twin is not None and twin.state == TrialState.COMPLETE:
            return self._repeat(trial, twin)
        # A point proposed again after it was pruned is scored in full: the sampler insisting on it says the early
        # chunks may have been noise, and a pruned point repeated as pruned could never be found again. Its early
        # chunks come from the response cache.
        prunable = not self.objective.multi and not trial.user_attrs.get("baseline") and twin is None
        if twin is not None:
            log.info(
                "trial %d proposes the architecture of pruned trial %d again; scoring it in full",
                trial.number,
                twin.number,
            )
        evaluated = await evaluate(
            checked,
            self.benchmark,
            self.dev,
            self.backends,
            chunk_size=self.chunk,
            on_chunk=self._chunk_reporter(trial, prunable),
            progress=self.progress,
            on_calls=self.on_calls,
        )
        result = self._result(trial, evaluated.summary)
        trial.set_user_attr("result", result)
        return self.objective.values(result)

    def _propose(self, trial: optuna.Trial) -> Validated:
        """The trial's architecture, built from its parameters and written to archs/ before it is scored."""
        _, checked = build_architecture(trial, trial.number, self.space, self.ctx)
        baseline = trial.user_attrs.get("baseline")
        description = f"baseline {baseline}" if baseline else f"trial {trial.number} of study {self.study_name}"
        write_arch(self.out, trial.number, checked, description, self.benchmark.task())
        return checked

    def _chunk_reporter(self, trial: optuna.Trial, prunable: bool) -> Callable[[ChunkDone], None]:
        """What hears of each scored chunk: it reports scores to Optuna and prunes."""
        reported = 0

        def on_chunk(chunk: ChunkDone) -> None:
            nonlocal reported
            if self.objective.multi:
                return
            # every trial reports each question's score at step = its index, so the paired pruner can
            # set a trial against the best one question by question; only a non-final chunk may prune. An ungraded
            # answer (NaN) reports nothing, so step k is question k of dev on every trial
            for step in range(reported, len(chunk.scores)):
                if not math.isnan(chunk.scores[step]):
                    trial.report(chunk.scores[step], step=step)
            reported = len(chunk.scores)
            graded = [x for x in chunk.scores if not math.isnan(x)]
            if prunable and graded and chunk.questions < len(self.dev) and trial.should_prune():
                why = f"behind the best trial question by question (sign test p < {PRUNE_P}) on {len(graded)} questions"
                partial = {
                    "dev_score": sum(graded) / len(graded),
                    "dev_n": chunk.questions,
                    "calls_per_query": chunk.calls / chunk.queries,
                    "pruned_because": why,
                }
                trial.set_user_attr("result", partial)
                raise optuna.TrialPruned(why)

        return on_chunk

    def _result(self, trial: optuna.Trial, s: EvalSummary) -> dict[str, Any]:
        """The trial's `result` attribute from its dev summary; a judge that graded nothing fails the trial."""
        if s.n and s.unscored == s.n:
            raise SearchError(
                f"trial {trial.number}: the judge gave no readable grade for any of the {s.n} dev questions; "
                "use a stronger --judge model (or more judge_max_tokens) and a new --out: the study keeps this failure"
            )
        result = {
            "dev_score": s.accuracy,
            "dev_n": s.n,
            "calls_per_query": s.calls_per_query,
            "tokens_per_query": s.tokens_per_query,
            "cost": s.cost,
            "backend_calls": s.backend_calls,
            # questions the API refused (a backend error stopped them) and answers the token limit cut short
            "refused": s.errors,
            "truncated": s.truncated,
        }
        if self.benchmark.kind == "judge":
            result |= {"judge_calls": s.judge_calls, "judge_cost": s.judge_cost, "unscored": s.unscored}
        return result

    def _twin(self, trial: optuna.Trial, key: str) -> FrozenTrial | None:
        """The earliest finished trial of the same architecture, a completed one before a pruned one."""
        finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        twins = [t for t in finished if arch_of(t).get("key") == key and result_of(t)]
        return min(twins, key=lambda t: (t.state != TrialState.COMPLETE, t.number)) if twins else None

    def _repeat(self, trial: optuna.Trial, twin: FrozenTrial) -> list[float]:
        result = result_of(twin) | {"same_as": twin.number}
        trial.set_user_attr("result", result)
        log.info("trial %d has the architecture of trial %d; took its result", trial.number, twin.number)
        return self.objective.values(result)
