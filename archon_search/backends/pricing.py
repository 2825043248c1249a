"""What a model entry's calls cost in dollars."""

from __future__ import annotations

from archon_search.lang.spec import ModelSpec


def cost_usd(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for this usage at the entry's `price_in`/`price_out` (per million tokens); None when unpriced."""
    if spec.price_in is None and spec.price_out is None:
        return None
    return (prompt_tokens * (spec.price_in or 0.0) + completion_tokens * (spec.price_out or 0.0)) / 1_000_000
