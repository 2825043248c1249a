"""archon-search: search LLM inference architectures under a call budget, then export and serve the best."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archon_search.runtime.api import Architecture

__all__ = ["Architecture"]


def __getattr__(name: str) -> Any:
    # the API pulls in the executor, backends and cache; loading it on first use keeps `import archon_search` cheap
    if name == "Architecture":
        from archon_search.runtime.api import Architecture

        return Architecture
    raise AttributeError(f"module 'archon_search' has no attribute {name!r}")
