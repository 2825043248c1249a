"""The SQLite response cache and the caching backend wrapper."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.errors import BackendError
from archon_search.core.messages import ChatRequest, Completion
from archon_search.lang.spec import ScriptedModel
from archon_search.runtime.cache import CachedBackend, ResponseCache, cache_key, default_cache_path


def counting_backend() -> ScriptedBackend:
    return ScriptedBackend(ScriptedModel(backend="scripted", responses=[f"answer {i}" for i in range(100)]))


def ask(text: str, sample: int = 0, temperature: float = 0.7, max_tokens: int = 32) -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": text}], temperature, max_tokens, sample)


def run(backend: CachedBackend, requests: list[ChatRequest]) -> list[Completion]:
    return asyncio.run(backend.complete(requests))


def test_misses_then_hits_with_stored_usage(tmp_path):
    inner = counting_backend()
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"))
    first = run(backend, [ask("q1"), ask("q2")])
    second = run(backend, [ask("q2"), ask("q1"), ask("q3")])
    assert [c.text for c in first] == ["answer 0", "answer 1"]
    assert [c.text for c in second] == ["answer 1", "answer 0", "answer 2"]
    assert [c.cached for c in second] == [True, True, False]
    assert (second[0].prompt_tokens, second[0].completion_tokens, second[0].latency_s) == (1, 2, 0.0)
    assert (backend.hits, backend.misses, inner.calls) == (2, 3, 3)


def test_samples_are_distinct_entries(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = CachedBackend(counting_backend(), cache)
    out = run(backend, [ask("q", sample=i) for i in range(4)])
    assert len({c.text for c in out}) == 4 and len(cache) == 4


@pytest.mark.parametrize(
    "other",
    [ask("q", sample=1), ask("q", temperature=0.2), ask("q", max_tokens=8), ask("q2")],
    ids=["sample", "temperature", "max_tokens", "messages"],
)
def test_key_covers_every_setting(other):
    assert cache_key("openai", "m", ask("q")) != cache_key("openai", "m", other)


def test_key_covers_backend_and_model():
    keys = {cache_key(kind, model, ask("q")) for kind in ("openai", "vllm") for model in ("a", "b")}
    assert len(keys) == 4


def test_identical_requests_in_a_batch_are_sent_once(tmp_path):
    inner = counting_backend()
    backend = CachedBackend(inner, ResponseCache(tmp_path / "c.sqlite"))
    out = run(backend, [ask("q"), ask("q"), ask("q", sample=1)])
    assert [c.text for c in out] == ["answer 0", "answer 0", "answer 1"]
    assert [c.cached for c in out] == [False, True, False]
    assert (inner.calls, backend.hits, backend.misses) == (2, 1, 2)


def test_no_cache_calls_every_time():
    inner = counting_backend()
    backend = CachedBackend(inner, None)
    assert run(backend, [ask("q")])[0].text == "answer 0"
    assert run(backend, [ask("q")])[0].text == "answer 1"
    assert (backend.hits, backend.misses) == (0, 2)


def test_persists_across_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    run(CachedBackend(counting_backend(), ResponseCache(path)), [ask("q")])
    inner = counting_backend()
    again = CachedBackend(inner, ResponseCache(path))
    out = run(again, [ask("q")])
    assert out[0].text == "answer 0" and out[0].cached and inner.calls == 0


def _writer(path: str, worker: int, rounds: int, start) -> None:
    cache = ResponseCache(path)
    start.wait()
    for r in range(rounds):
        # shared keys collide on purpose: both processes insert them
        cache.put_many(
            {
                f"w{worker}-{r}": Completion(f"from {worker} round {r}", r, worker),
                f"shared-{r}": Completion(f"shared {r}", r, r),
            }
        )
        assert f"w{worker}-{r}" in cache.get_many([f"w{worker}-{r}"])


def test_two_processes_write_concurrently(tmp_path):
    path = str(tmp_path / "c.sqlite")
    cache = ResponseCache(path)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)  # both write at the same time, not one after the other
    procs = [ctx.Process(target=_writer, args=(path, w, 300, start)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(cache) == 900
    got = cache.get_many(["w1-7", "w2-299", "shared-42"])
    assert got["w1-7"].text == "from 1 round 7" and got["w2-299"].completion_tokens == 2
    assert got["shared-42"] == Completion("shared 42", 42, 42, cached=True)


def test_unusable_path_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BackendError, match="cannot open the response cache .*--no-cache"):
        ResponseCache(blocker / "c.sqlite")


def test_default_path_is_in_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == Path(tmp_path) / "archon-search" / "responses.sqlite"


class _FailsAfter(ScriptedBackend):
    """Answers the first `ok` requests of a batch, then fails for good, as a backend that lost its server would."""

    def __init__(self, ok: int):
        super().__init__(counting_backend().spec)
        self.ok = ok

    async def complete(self, requests):
        done = await super().complete(list(requests)[: self.ok])
        raise BackendError("server went away", partial=dict(enumerate(done)))


def test_the_answers_of_a_failed_batch_are_kept(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    requests = [ask("a"), ask("b"), ask("a"), ask("c")]
    with pytest.raises(BackendError, match="server went away"):
        run(CachedBackend(_FailsAfter(ok=2), cache), requests)
    again = counting_backend()  # the same model, answering again
    out = run(CachedBackend(again, cache), requests)
    # "a" and "b" were answered before the failure (the duplicate "a" was asked once): only "c" is asked again
    assert [c.cached for c in out] == [True, True, True, False] and again.calls == 1
