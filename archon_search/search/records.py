"""The run folder's records: `trials.csv` and `run.json` (read back by `archon-search export`), written
atomically so an interrupted run never leaves half a file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from archon_search.search.export import RUN_FILE

TRIALS_FILE = "trials.csv"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def public_url(url: str) -> str:
    """The storage URL without its password (safe to write down and log)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url.split("@")[-1]
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query)
    return bare.render_as_string(hide_password=False)


def result_of(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's dev result (score, questions scored, usage per query; `same_as` when it took a twin's), or {}."""
    return trial.user_attrs.get("result") or {}


def arch_of(trial: FrozenTrial) -> dict[str, Any]:
    """What a trial recorded of its architecture: `key` and `static_calls`."""
    return trial.user_attrs.get("arch") or {}


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that belong to the search: all but those a worker discarded (duplicates, surplus)."""
    return [t for t in trials if "discarded" not in t.user_attrs]


def _param(value: Any) -> Any:
    # float steps leave values like 0.30000000000000004
    return round(value, 6) if isinstance(value, float) else value


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def trials_frame(trials: Sequence[FrozenTrial], test_scores: dict[int, float] | None = None) -> pd.DataFrame:
    """One row per trial: state, baseline, dev (and test) score, usage per query, pruning, then `param_*` columns."""
    test_scores = test_scores or {}
    rows = []
    # a WAITING trial (an enqueued rerun or baseline that no worker started) has no result to show
    for t in (t for t in counted(trials) if t.state != TrialState.WAITING):
        r, arch = result_of(t), arch_of(t)
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "baseline": t.user_attrs.get("baseline"),
                "dev_score": r.get("dev_score"),
                "test_score": test_scores.get(t.number),
                "calls_per_query": r.get("calls_per_query"),
                "static_calls": arch.get("static_calls"),
                "tokens_per_query": r.get("tokens_per_query"),
                "cost": r.get("cost"),
                "backend_calls": r.get("backend_calls"),
                "dev_n": r.get("dev_n"),
                # judged benchmarks: the judge's calls, apart from the architecture's, and ungraded answers
                "judge_calls": r.get("judge_calls"),
                "judge_cost": r.get("judge_cost"),
                "unscored": r.get("unscored"),
                "refused": r.get("refused"),
                "truncated": r.get("truncated"),
                "pruned": t.state == TrialState.PRUNED,
                "pruned_because": r.get("pruned_because"),
                # a trial failed for good by its own requests' errors (too many questions stopped): why
                "errored": t.user_attrs.get("errored"),
                "same_as": r.get("same_as"),
                "retry_of": t.user_attrs.get("retry_of"),
                "duration_s": duration,
            }
            | {f"param_{name}": _param(value) for name, value in sorted(t.params.items())}
        )
    return pd.DataFrame(rows)


@dataclass
class RunInfo:
    """The head of `run.json`: what was searched, how, and which trial won."""

    bench: str
    budget: int
    study: str
    storage: str
    objective: str
    sampler: str
    seed: int
    #: the dev/test split's seed (`eval --split test` in this folder reads it)
    split_seed: int
    target_trials: int
    space: str
    models: list[str]
    dev_n: int
    test_n: int
    #: how trials are pruned, in words
    pruning: str = ""
    best_trial: int | None = None
    pareto_front: list[int] = field(default_factory=list)


def run_json(info: RunInfo, trials: Sequence[FrozenTrial], test_scores: dict[int, float] | None = None) -> dict:
    """`run.json`'s content: the run's head and, per trial, state, scores and usage per query."""
    test_scores = test_scores or {}
    per_trial = []
    for t in counted(trials):
        r = result_of(t)
        per_trial.append(
            {
                "number": t.number,
                "state": t.state.name,
                "baseline": t.user_attrs.get("baseline"),
                "dev_score": _number(r.get("dev_score")),
                "test_score": _number(test_scores.get(t.number)),
                "calls_per_query": _number(r.get("calls_per_query")),
                "tokens_per_query": _number(r.get("tokens_per_query")),
                "params": t.params,
            }
        )
    return asdict(info) | {"trials": per_trial}


def write_records(
    out: Path, info: RunInfo, trials: Sequence[FrozenTrial], test_scores: dict[int, float] | None = None
) -> None:
    """Rewrite `trials.csv` and `run.json` from the study's trials."""
    atomic_write(out / TRIALS_FILE, trials_frame(trials, test_scores).to_csv(index=False))
    atomic_write(out / RUN_FILE, json.dumps(run_json(info, trials, test_scores), indent=2, default=str) + "\n")
