"""What a search will do before it spends anything: models, questions, baselines, the most it can cost, where it
writes; and how long the rest will take once trials have been timed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from archon_search.lang.render import plural
from archon_search.lang.spec import ModelSpec


@dataclass(frozen=True)
class SearchPlan:
    """The facts `run` states before its first call."""

    bench: str
    budget: int
    trials: int
    dev_n: int
    test_n: int
    models: Mapping[str, ModelSpec]
    #: (name, LM calls per question) of each baseline
    baselines: Sequence[tuple[str, int]]
    max_tokens: int
    out: Path
    resumed_trials: int = 0

    @property
    def max_search_calls(self) -> int:
        """Every trial at the full budget on every dev question."""
        return self.trials * self.budget * self.dev_n

    @property
    def max_test_calls(self) -> int:
        """The best and every baseline re-scored on the test questions."""
        return (self.budget + sum(calls for _, calls in self.baselines)) * self.test_n

    def lines(self) -> list[str]:
        """The plan in a few lines."""
        models = ", ".join(f"{name} ({_describe(spec)})" for name, spec in self.models.items())
        baselines = ", ".join(f"{name} ({plural(calls, 'call')} per question)" for name, calls in self.baselines)
        calls = self.max_search_calls + self.max_test_calls
        resumed = f"; {self.resumed_trials} already in the study" if self.resumed_trials else ""
        return [
            f"plan: {self.bench}, at most {plural(self.budget, 'LM call')} per question, {self.trials} trials{resumed}",
            f"  models: {models}",
            f"  questions: {self.dev_n} dev (searched on), {self.test_n} test (held out)",
            f"  baselines: {baselines or 'none'}",
            (
                f"  at most {calls:,} LM calls ({self.max_search_calls:,} searching, {self.max_test_calls:,} on test) "
                f"and {calls * self.max_tokens:,} generated tokens; the response cache answers repeats for free"
            ),
            f"  output: {self.out}",
        ]


def _describe(spec: ModelSpec) -> str:
    """`backend: model` of a model entry (a scripted one is just `scripted`)."""
    return spec.backend if spec.model_id == spec.backend else f"{spec.backend}: {spec.model_id}"


def eta_seconds(trial_seconds: Sequence[float], remaining: int, running_for: float = 0.0) -> float | None:
    """Seconds left for `remaining` trials (the running one included, `running_for` seconds in), at the mean time of
    the trials timed so far; None before the first trial is timed."""
    if not trial_seconds:
        return None
    mean = sum(trial_seconds) / len(trial_seconds)
    return max(0.0, remaining * mean - running_for)


def eta_text(seconds: float | None) -> str:
    """`ETA 3m10s`, or what the ETA waits for."""
    if seconds is None:
        return "ETA after the first trial"
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"
