"""Backends from model entries, the per-run pool that shares and closes them, and cost from prices."""

from __future__ import annotations

import asyncio

import pytest

from archon_search.backends.embedded import EmbeddedBackend
from archon_search.backends.openai_api import OpenAIBackend
from archon_search.backends.pricing import cost_usd
from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import EmbeddedModel, OpenAIModel, ScriptedModel
from archon_search.runtime.cache import ResponseCache
from archon_search.runtime.pool import BackendPool, make_backend

LOCAL_API = OpenAIModel(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", price_in=2.0, price_out=8.0)
SCRIPT = ScriptedModel(backend="scripted", responses=["yes", "no"])


def ask(text: str) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], 0.7, 16)


@pytest.mark.parametrize(
    "spec,cls",
    [(SCRIPT, ScriptedBackend), (LOCAL_API, OpenAIBackend), (EmbeddedModel(), EmbeddedBackend)],
    ids=["scripted", "openai", "embedded"],
)
def test_make_backend_picks_the_class(spec, cls):
    assert isinstance(make_backend(spec), cls)


def test_cost_from_prices_per_million_tokens():
    assert cost_usd(LOCAL_API, 1_000_000, 500_000) == pytest.approx(6.0)
    assert cost_usd(OpenAIModel(backend="openai", model="m", price_out=1.0), 10, 1_000_000) == pytest.approx(1.0)
    assert cost_usd(SCRIPT, 100, 100) is None


def test_pool_shares_backends_builds_lazily_and_closes(tmp_path):
    cheap = LOCAL_API.model_copy(update={"price_in": 0.0})
    pool = BackendPool({"api": LOCAL_API, "same-api": cheap, "yes": SCRIPT}, cache=ResponseCache(tmp_path / "c.sqlite"))
    assert set(pool) == {"api", "same-api", "yes", "embedded"} and len(pool) == 4
    assert "api" in pool and "nope" not in pool
    with pytest.raises(KeyError):
        pool["nope"]

    async def go():
        async with pool:
            api = pool["api"]
            assert pool["same-api"] is api and pool["api"] is api
            assert api.cache is pool.cache and pool["yes"].cache is None
            assert [c.text for c in await pool["yes"].complete([ask("a"), ask("a")])] == ["yes", "yes"]
            assert (pool.hits, pool.misses) == (1, 1)
        return api

    api = asyncio.run(go())
    assert api.inner._client.is_closed()
    assert pool.cost("api", 1_000_000, 0) == pytest.approx(2.0) and pool.cost("same-api", 1_000_000, 0) == 0.0


def test_pool_defines_the_embedded_model_unless_redefined():
    assert BackendPool({}).spec("embedded") == EmbeddedModel()
    assert BackendPool({"embedded": EmbeddedModel(n_ctx=512)}).spec("embedded").n_ctx == 512


def test_unknown_model_spec_is_a_one_line_error():
    with pytest.raises(BackendError, match="unknown model 'big'; define it under models: \\(defined: embedded, yes\\)"):
        BackendPool({"yes": SCRIPT}).spec("big")
