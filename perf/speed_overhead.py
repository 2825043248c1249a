"""The search's own cost per trial as the study grows: a real `run_search` (SQLite study, run folder, records) on
the landscape with instant simulated models, so what each trial costs beyond scoring its architecture is the
search's bookkeeping (sampler, study reads and writes, records, the live view)."""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from archon_search.search import objective as objective_module
from archon_search.search.runner import SearchConfig
from perf.landscape import SPACE_FILE, Landscape

#: trials whose overhead is averaged at each end of the run
WINDOW = 16


@dataclass
class Overhead:
    """Per-trial bookkeeping (seconds): the gap between consecutive trial starts less the scoring between them."""

    trials: int
    per_trial_s: list[float] = field(default_factory=list)

    def window(self, start: int) -> float:
        """The median bookkeeping of the WINDOW trials from `start`."""
        return statistics.median(self.per_trial_s[start : start + WINDOW])

    @property
    def early_s(self) -> float:
        return self.window(8)

    @property
    def late_s(self) -> float:
        return self.window(len(self.per_trial_s) - WINDOW)

    @property
    def growth(self) -> float:
        """Late over early bookkeeping per trial: 1.0 when it does not grow with the study."""
        return self.late_s / self.early_s


@contextmanager
def _timed_scoring(spent: dict[int, float]) -> Iterator[None]:
    """Add the time of every evaluation to its trial's number in `spent` (the search's own `evaluate` and
    `TrialRunner.run`, wrapped)."""
    real_evaluate, real_run = objective_module.evaluate, objective_module.TrialRunner.run
    current = {"trial": -1}

    async def run(self: objective_module.TrialRunner, trial: optuna.Trial) -> list[float]:
        current["trial"] = trial.number
        return await real_run(self, trial)

    async def evaluate(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await real_evaluate(*args, **kwargs)
        finally:
            number = current["trial"]
            spent[number] = spent.get(number, 0.0) + time.perf_counter() - started

    objective_module.evaluate, objective_module.TrialRunner.run = evaluate, run
    try:
        yield
    finally:
        objective_module.evaluate, objective_module.TrialRunner.run = real_evaluate, real_run


def search_overhead(trials: int, items: int = 8, budget: int = 6) -> Overhead:
    """Run `trials` random-sampler trials and measure each one's bookkeeping."""
    landscape = Landscape(n_items=items)
    spent: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as out, _timed_scoring(spent):
        config = SearchConfig(
            bench="landscape",
            budget=budget,
            trials=trials,
            space_file=SPACE_FILE,
            sampler="random",
            out=Path(out),
            no_cache=True,
        )
        landscape.search(config)
        study = optuna.load_study(study_name=f"landscape-b{budget}", storage=f"sqlite:///{Path(out) / 'study.db'}")
        started = sorted((t.datetime_start, t.number) for t in study.get_trials(deepcopy=False) if t.datetime_start)
    found = Overhead(trials)
    # from one trial's start to the next one's: its scoring (a twin's result scores nothing), then bookkeeping
    for (start, number), (following, _) in itertools.pairwise(started):
        found.per_trial_s.append(max(0.0, (following - start).total_seconds() - spent.get(number, 0.0)))
    return found
