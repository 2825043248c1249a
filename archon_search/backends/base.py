"""The one async interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from archon_search.core.messages import ChatRequest, Completion


class Backend(ABC):
    """A model behind one async call that takes a batch of requests and returns one completion each.

    Taking a whole batch lets a backend pick its own parallelism: HTTP backends fan out under a
    semaphore, vLLM sends one `generate`, the embedded model decodes them together in one batched context.
    """

    kind: str = "abstract"

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identifies the model for the cache (backend kind + model_id form the key prefix)."""

    @abstractmethod
    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer every request; the result is in request order, one `Completion` per request."""

    async def aclose(self) -> None:
        """Release connections or engines; the default has nothing to release."""
