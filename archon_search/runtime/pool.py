"""From model entries to backends: one backend per model spec, cached, shared by a run, closed together."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType

from typing_extensions import Self

from archon_search.backends.base import Backend
from archon_search.backends.embedded import EmbeddedBackend
from archon_search.backends.pricing import cost_usd
from archon_search.backends.scripted import ScriptedBackend
from archon_search.backends.vllm import VLLMBackend
from archon_search.core.errors import BackendError
from archon_search.lang.spec import EmbeddedModel, ModelSpec, OpenAIModel, ScriptedModel, VLLMModel
from archon_search.runtime.cache import CachedBackend, ResponseCache

DEFAULT_MODEL = "embedded"


def make_backend(spec: ModelSpec) -> Backend:
    """A fresh backend for one model entry (llama_cpp and vllm are imported only by their backends)."""
    if isinstance(spec, ScriptedModel):
        return ScriptedBackend(spec)
    if isinstance(spec, OpenAIModel):
        # `import openai` loads every type of the SDK (0.4 s): only architectures that call an API pay for it
        from archon_search.backends.openai_api import OpenAIBackend

        return OpenAIBackend(spec)
    if isinstance(spec, EmbeddedModel):
        return EmbeddedBackend(spec)
    if isinstance(spec, VLLMModel):
        return VLLMBackend(spec)
    raise BackendError(f"unknown backend {getattr(spec, 'backend', spec)!r}; use embedded, openai, vllm or scripted")


def _identity(spec: ModelSpec) -> str:
    # prices change the bill, not the answers: entries that differ only in price share one backend
    return spec.model_dump_json(exclude={"price_in", "price_out"})


class BackendPool(Mapping[str, CachedBackend]):
    """Model name -> cached backend for one run, built on first use and shared by names with the same spec.

    A read-only mapping over the model names (iterating builds nothing). Scripted models bypass the
    cache: they are free, and their cycling answers would otherwise leak from one run (or test) into
    the next. Use as `async with BackendPool(models, cache=...) as pool: pool["small"]`.
    """

    def __init__(self, models: Mapping[str, ModelSpec], cache: ResponseCache | None = None):
        self.models = dict(models)
        self.models.setdefault(DEFAULT_MODEL, EmbeddedModel())
        self.cache = cache
        self._by_name: dict[str, CachedBackend] = {}
        self._by_spec: dict[str, CachedBackend] = {}

    def spec(self, name: str) -> ModelSpec:
        """The model entry called `name`."""
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise BackendError(f"unknown model '{name}'; define it under models: (defined: {known})") from None

    def __getitem__(self, name: str) -> CachedBackend:
        if name not in self._by_name:
            if name not in self.models:
                raise KeyError(name)
            spec = self.models[name]
            identity = _identity(spec)
            if identity not in self._by_spec:
                cache = None if isinstance(spec, ScriptedModel) else self.cache
                self._by_spec[identity] = CachedBackend(make_backend(spec), cache)
            self._by_name[name] = self._by_spec[identity]
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def cost(self, name: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Dollars for usage of model `name`; None when it has no prices."""
        return cost_usd(self.spec(name), prompt_tokens, completion_tokens)

    @property
    def hits(self) -> int:
        """Answers served from the cache (or de-duplicated) across every backend built so far."""
        return sum(b.hits for b in self._by_spec.values())

    @property
    def misses(self) -> int:
        """Calls that went to a model across every backend built so far."""
        return sum(b.misses for b in self._by_spec.values())

    async def aclose(self) -> None:
        """Close every backend built so far."""
        backends = list(self._by_spec.values())
        self._by_spec.clear()
        self._by_name.clear()
        for backend in backends:
            await backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
