"""Errors the tool raises on purpose: each renders as one line that says what to change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# everything str.splitlines() breaks on: user text (a model name, a field) must not split an issue's line
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class ArchonError(Exception):
    """Base of every error meant for the user; its message is a single actionable line."""


@dataclass(frozen=True)
class Issue:
    """One rule broken by an architecture file (or a warning about it)."""

    file: str
    message: str
    rule: str | None = None
    layer: int | None = None
    op: str | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.layer is not None:
            parts.append(f"layer {self.layer} ({self.op})" if self.op else f"layer {self.layer}")
        if self.rule:
            parts.append(self.rule)
        parts.append(self.message)
        return _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], ": ".join(parts))


class ArchitectureError(ArchonError):
    """An architecture file was refused: one line per broken rule."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class BackendError(ArchonError):
    """A model backend failed in a way retries cannot fix (missing key, unknown model, server down).

    `partial` maps the index of each request of the failed batch that did get an answer to that answer, so
    a caller can keep what was paid for (the response cache stores them). `status` is the upstream HTTP status
    when a server refused the request (so `serve` can pass a 4xx on as a 4xx, which clients do not retry).
    """

    def __init__(self, message: str, partial: dict[int, Any] | None = None, status: int | None = None):
        super().__init__(message)
        self.partial: dict[int, Any] = dict(partial or {})
        self.status = status


class BenchmarkError(ArchonError):
    """A benchmark could not be loaded or is unknown."""


class CallBudgetExceeded(ArchonError):
    """The executor was about to make more LM calls than the static count allows: a bug, never normal."""


class ServerUnavailable(BackendError):
    """A server that stayed unreachable, overloaded or rate limited through every retry: the request itself may be
    fine, so a search stops (and a resume tries again) rather than scoring the question as the architecture's fault."""
