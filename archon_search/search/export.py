"""Exporting one architecture of a search run as a self-contained YAML file, ready to validate and serve.

The file names every model it uses in full (backend, model, base_url, the NAME of the key's environment
variable, never a key), carries the `task:` it was scored on (so `serve` reads answers and asks for them as
the trial did), and a header comment records where it came from and how it scored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from archon_search.core.errors import ArchonError, BenchmarkError
from archon_search.datasets.registry import get_dataset
from archon_search.eval.task import task_of
from archon_search.lang.spec import ModelSpec
from archon_search.lang.validate import Validated, load_architecture, validate_text

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
ARCHS_DIR = "archs"


class ExportError(ArchonError):
    """A run folder or trial that cannot be exported."""


@dataclass(frozen=True)
class TrialRecord:
    """What a run recorded about one trial."""

    number: int
    state: str | None = None
    baseline: str | None = None
    dev_score: float | None = None
    test_score: float | None = None
    calls_per_query: float | None = None
    tokens_per_query: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """The parts of a run folder's `run.json` an export needs."""

    path: Path
    bench: str | None
    budget: int | None
    study: str | None
    best_trial: int | None
    trials: dict[int, TrialRecord]

    def arch_file(self, number: int) -> Path:
        """Where the run wrote trial `number`'s architecture."""
        return self.path / ARCHS_DIR / f"trial-{number}.yaml"

    def exported_trials(self) -> list[int]:
        """Numbers of the trials whose architecture the run wrote, in order."""
        stems = (p.stem.removeprefix("trial-") for p in (self.path / ARCHS_DIR).glob("trial-*.yaml"))
        return sorted(int(s) for s in stems if s.isdigit())


@dataclass(frozen=True)
class Exported:
    """An exported architecture: the file written, the trial it came from, and the file validated."""

    path: Path
    trial: TrialRecord
    checked: Validated


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(run_dir: str | Path) -> RunRecord:
    """Read a run folder's `run.json`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ExportError(f"{path}: no such run folder; give the --out folder of an `archon-search run`")
    try:
        data = json.loads((path / RUN_FILE).read_text())
    except FileNotFoundError:
        raise ExportError(
            f"{path}: not a run folder (no {RUN_FILE}); give the --out folder of an `archon-search run`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path / RUN_FILE}: unreadable ({exc}); re-run the search to rewrite it") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path / RUN_FILE}: expected a JSON object; re-run the search to rewrite it")
    trials = {}
    for entry in data.get("trials") or []:
        if isinstance(entry, dict) and isinstance(entry.get("number"), int):
            trials[entry["number"]] = TrialRecord(
                number=entry["number"],
                state=entry.get("state"),
                baseline=entry.get("baseline") if isinstance(entry.get("baseline"), str) else None,
                dev_score=_number(entry.get("dev_score")),
                test_score=_number(entry.get("test_score")),
                calls_per_query=_number(entry.get("calls_per_query")),
                tokens_per_query=_number(entry.get("tokens_per_query")),
            )
    best = data.get("best_trial")
    budget = data.get("budget")
    return RunRecord(
        path=path,
        bench=data.get("bench"),
        budget=budget if isinstance(budget, int) else None,
        study=data.get("study"),
        best_trial=best if isinstance(best, int) else None,
        trials=trials,
    )


def _model_entry(spec: ModelSpec) -> dict[str, Any]:
    # every field written out, defaults included, so the file reads the same whatever later defaults become
    return {"backend": spec.backend} | spec.model_dump(exclude_none=True, exclude={"backend"})


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _per_query(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def render(run: RunRecord, trial: TrialRecord, checked: Validated) -> str:
    """The exported file's text: a header comment, then the architecture with its models in full."""
    header = [
        f"archon-search export of trial {trial.number}"
        + (f" (baseline {trial.baseline})" if trial.baseline else "")
        + f" of run {run.path}"
        + (f" (study {run.study})" if run.study else ""),
        f"benchmark: {run.bench or 'n/a'}; dev score: {_score(trial.dev_score)}; test score: {_score(trial.test_score)}",
        (
            f"LM calls per query: {checked.calls_per_query} at most, {_per_query(trial.calls_per_query)} measured "
            f"on dev; tokens per query: {_per_query(trial.tokens_per_query)}"
        ),
        f"budget: {run.budget if run.budget is not None else 'none'} LM calls per query",
        "model entries name the environment variable that holds a key, never the key itself",
    ]
    task = checked.arch.task
    if task is not None and task.instruction.strip():
        header.append("serving appends task.instruction to the first user message, as the search did")
    body = checked.arch.to_yaml_obj()
    body["models"] = {name: _model_entry(spec) for name, spec in checked.arch.models.items()}
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    return "".join(f"# {line}\n" for line in header) + text


def _with_run_task(run: RunRecord, checked: Validated) -> Validated:
    """`checked` with its run's task, for trial files written before `task:` existed: the task of the run's
    benchmark when that is a built-in name (a benchmark file is not findable from its name)."""
    try:
        dataset = get_dataset(run.bench) if run.bench else None
        task = task_of(dataset) if dataset is not None else None
    except BenchmarkError:
        task = None
    if task is None:
        log.warning(
            "%s: the trial's file names no task and benchmark %s is not built in, so the exported architecture "
            "reads no answers (its voter keeps the first candidate); add a task: field (see the README)",
            run.path,
            run.bench or "n/a",
        )
        return checked
    return replace(checked, arch=checked.arch.model_copy(update={"task": task}))


def export_run(
    run_dir: str | Path,
    out: str | Path,
    trial: int | None = None,
    models: dict[str, Any] | None = None,
) -> Exported:
    """Write trial `trial` of a run (its best trial by default) to `out` and check that the file validates.

    `models` (parsed model entries, e.g. from `--models FILE`) replace the run's entries of the same
    name, to point a deployment at other servers.
    """
    run = read_run(run_dir)
    number = run.best_trial if trial is None else trial
    if number is None:
        raise ExportError(f"{run.path}: the run has no best trial yet; pass --trial N or let the search finish a trial")
    source = run.arch_file(number)
    if not source.is_file():
        known = ", ".join(map(str, run.exported_trials())) or "none"
        raise ExportError(f"{run.path}: no architecture for trial {number}; trials with one: {known}")
    checked = load_architecture(source, models, run.budget)
    if checked.arch.task is None:
        checked = _with_run_task(run, checked)
    record = run.trials.get(number, TrialRecord(number))
    text = render(run, record, checked)
    out_path = Path(out)
    exported = validate_text(text, str(out_path), budget=run.budget)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text)
    except OSError as exc:
        raise ExportError(f"{out_path}: cannot write ({exc.strerror}); choose another --out") from None
    return Exported(out_path, record, exported)
