"""The live view of a search on stderr: its plan, then trials done of N, best so far, LM calls spent (counted as
questions finish), ETA, and the questions of the running trial. When stderr is not a terminal (a log file, CI), one
plain line per finished trial instead."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typing_extensions import Self

from archon_search.search.plan import eta_seconds, eta_text


class SearchDisplay:
    """A rich Progress with one bar for trials and one for the running trial's questions."""

    def __init__(self, total: int, title: str, enabled: bool = True):
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not (enabled and console.is_terminal),
        )
        self.console = console
        self.title = title
        self.total = total
        self.plain = enabled and not console.is_terminal
        self.enabled = enabled
        self.reported = 0
        self.finished, self.best, self.calls, self.running_elsewhere = 0, "n/a", 0, 0
        # wall time of each trial this worker ran: the ETA is their mean times the trials left (rich's own ETA
        # extrapolates from the last 30 s, which for trials minutes long reads seconds with minutes to go)
        self.trial_seconds: list[float] = []
        self.trial_started: float | None = None
        self.trials = self.progress.add_task(title, total=total, status="")
        self.questions = self.progress.add_task("trial", total=1, status="", visible=False)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def announce(self, lines: list[str]) -> None:
        """Print `lines` (the plan) above the live view."""
        if self.enabled:
            for line in lines:
                self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def update(self, finished: int, best: str, running_elsewhere: int = 0) -> None:
        """Trials finished in the study, the best so far as text, and trials other workers are running."""
        self.finished, self.best, self.running_elsewhere = finished, best, running_elsewhere
        status = self._status()
        self.progress.update(self.trials, completed=finished, status=status)
        if self.plain and finished > self.reported:
            self.reported = finished
            self.console.print(f"{self.title}: {finished}/{self.total} trials, {status}", highlight=False, markup=False)

    def spend(self, calls: int) -> None:
        """`calls` more LM calls made by this worker (a question of the running trial finished)."""
        self.calls += calls
        self.progress.update(self.trials, status=self._status())

    def _status(self) -> str:
        running_for = time.monotonic() - self.trial_started if self.trial_started is not None else 0.0
        eta = eta_seconds(self.trial_seconds, max(0, self.total - self.finished), running_for)
        status = f"best {self.best} | {self.calls} LM calls | {eta_text(eta)}"
        if self.running_elsewhere:
            status += f" | {self.running_elsewhere} running"
        return status

    def start_trial(self, number: int, label: str, questions: int) -> None:
        """Show the questions bar of trial `number`."""
        self.trial_started = time.monotonic()
        self.progress.reset(self.questions, total=questions, visible=True, description=f"trial {number}", status=label)

    def advance(self, n: int) -> None:
        """`n` more questions of the running trial are scored."""
        self.progress.advance(self.questions, n)

    def end_trial(self) -> None:
        """Hide the questions bar; time the trial for the ETA."""
        if self.trial_started is not None:
            self.trial_seconds.append(time.monotonic() - self.trial_started)
            self.trial_started = None
        self.progress.update(self.questions, visible=False)
