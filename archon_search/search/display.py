"""The live view of a search on stderr: trials done of N, best so far, LM calls spent, ETA, and the
questions of the running trial. When stderr is not a terminal (a log file, CI), one plain line per finished
trial instead."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typing_extensions import Self


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
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not (enabled and console.is_terminal),
        )
        self.console = console
        self.title = title
        self.total = total
        self.plain = enabled and not console.is_terminal
        self.reported = 0
        self.trials = self.progress.add_task(title, total=total, status="")
        self.questions = self.progress.add_task("trial", total=1, status="", visible=False)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, finished: int, best: str, calls: int, running_elsewhere: int = 0) -> None:
        """Trials finished in the study, the best so far as text, and the LM calls this worker made."""
        status = f"best {best} | {calls} LM calls"
        if running_elsewhere:
            status += f" | {running_elsewhere} running"
        self.progress.update(self.trials, completed=finished, status=status)
        if self.plain and finished > self.reported:
            self.reported = finished
            self.console.print(f"{self.title}: {finished}/{self.total} trials, {status}", highlight=False, markup=False)

    def start_trial(self, number: int, label: str, questions: int) -> None:
        """Show the questions bar of trial `number`."""
        self.progress.reset(self.questions, total=questions, visible=True, description=f"trial {number}", status=label)

    def advance(self, n: int) -> None:
        """`n` more questions of the running trial are scored."""
        self.progress.advance(self.questions, n)

    def end_trial(self) -> None:
        """Hide the questions bar."""
        self.progress.update(self.questions, visible=False)
