"""What an architecture file carries of the task it was scored on (runtime/task_context.py rebuilds it).

A search scores an architecture with the benchmark's answer extractor (the voter groups on it, the
unit-test evaluator takes code with it) and with the benchmark's answer instruction appended to the
question. The file's `task:` field records both, by name (a benchmark file's scorer, never a path that
may vanish), so `serve`, `Architecture.load` and `eval` answer exactly as the trial that scored it.
"""

from __future__ import annotations

import functools
import logging

from archon_search.datasets.base import Dataset
from archon_search.lang.spec import Task
from archon_search.scoring.base import SCORERS, Scorer, scorer_class

log = logging.getLogger(__name__)


def _format_name(scorer: type[Scorer]) -> str | None:
    """The registered name of a scorer that reads short answers (what a benchmark file writes as `scorer:`)."""
    return next((name for name, cls in SCORERS.items() if scorer is cls and scorer.kind != "judge"), None)


@functools.cache
def _warn_unnamed(benchmark: str) -> None:
    # once per benchmark: a search asks for the task of every trial
    log.warning(
        "benchmark %s reads answers with its own extractor, which an architecture file cannot name: deployed, "
        "its voter will find no answers; give the benchmark a registered scorer",
        benchmark,
    )


def task_of(dataset: Dataset, scorer: type[Scorer] | None = None) -> Task:
    """The `task:` field for architectures scored on `dataset` with a scorer of class `scorer` (by default the one
    the dataset names)."""
    scorer = scorer or scorer_class(dataset.scorer)
    answer_format = _format_name(scorer)
    if answer_format is None and scorer.kind == "code":
        # a code task always reads code out of fenced blocks; the evaluator's sandbox runs what it reads
        answer_format = "code"
    elif answer_format is None and scorer.kind != "judge":
        _warn_unnamed(dataset.name)
    return Task(benchmark=dataset.name, kind=scorer.kind, answer_format=answer_format, instruction=scorer.instruction)
