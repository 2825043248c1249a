"""Counting LM calls, tokens, cost and latency."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Usage:
    """LM calls and what they cost. `backend_calls` excludes cache hits; `cost` counts only those."""

    calls: int = 0
    backend_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        """Accumulate another usage into this one."""
        for name in ("calls", "backend_calls", "prompt_tokens", "completion_tokens", "cost", "latency_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
