"""Per-question pipelining and error isolation: a question's next layer does not wait for other questions,
reports come in item order whatever order questions finish in, and a failed request costs its question only."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from archon_search.backends.base import Backend
from archon_search.backends.scripted import last_user_message
from archon_search.core.errors import BackendError, ServerUnavailable
from archon_search.core.messages import ChatRequest, Completion
from archon_search.datasets.arith import Arith
from archon_search.eval.benchmark import make_benchmark
from archon_search.eval.evaluate import ChunkDone, TooManyErrors, evaluate
from archon_search.lang.spec import ScriptedModel
from archon_search.lang.validate import validate_text
from archon_search.runtime.cache import CachedBackend
from archon_search.search.study import ERRORED, errored, requeue, tally

ITEMS = Arith(size=8, seed=3).load()
REFERENCE = {item.prompt.strip(): item.reference for item in ITEMS}
# a generator and a fuser: two layers, so a question's second layer can start before another's first is done
TWO_LAYERS = "name: a\nlayers: [{generator: {model: m, samples: 2}}, {fuser: {model: m}}]"


def item_of(request: ChatRequest) -> str:
    """The item a request belongs to (its prompt appears in every layer's user message)."""
    text = last_user_message(request)
    return next(item.id for item in ITEMS if item.prompt.strip() in text)


class Keyed(Backend):
    """Answers every request with the right answer to its item, after `delay(item id)` seconds, or raises
    `fail(item id)` when that gives an error; records when each request started and ended."""

    kind = "keyed"

    def __init__(
        self,
        delay: Callable[[str], float] = lambda _: 0.0,
        fail: Callable[[str], BackendError | None] = lambda _: None,
    ):
        self.delay, self.fail = delay, fail
        self.spans: list[tuple[str, float, float]] = []
        self.sent: list[ChatRequest] = []

    @property
    def model_id(self) -> str:
        return "keyed"

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        started = time.perf_counter()
        item = item_of(requests[0])
        self.sent += requests
        await asyncio.sleep(self.delay(item))
        error = self.fail(item)
        if error is not None:
            raise error
        self.spans.append((item, started, time.perf_counter()))
        reference = next(i.reference for i in ITEMS if i.id == item)
        return [Completion(f"The answer is {reference}.", 3, 4) for _ in requests]


def checked_arch(text: str = TWO_LAYERS):
    return validate_text(text, models={"m": ScriptedModel(backend="scripted", responses=["x"])})


def run_eval(backend: Backend, **options):
    return asyncio.run(
        evaluate(checked_arch(), make_benchmark(Arith(size=8, seed=3)), ITEMS, {"m": backend}, **options)
    )


def test_a_fast_question_finishes_its_layers_while_a_slow_one_is_still_in_its_first():
    slow = ITEMS[0].id
    backend = Keyed(delay=lambda item: 0.6 if item == slow else 0.0)
    result = run_eval(backend)
    assert (result.rows["correct"] == 1.0).all()
    slow_first_end = min(end for item, _, end in backend.spans if item == slow)
    others_last_end = max(end for item, _, end in backend.spans if item != slow)
    # every other question went through both layers (and was scored) before the slow one's first layer came back
    assert others_last_end < slow_first_end
    assert {item for item, *_ in backend.spans} == {i.id for i in ITEMS}


def test_reports_cover_the_first_k_items_in_order_whatever_finishes_first():
    # items finish in reverse order: the last one first
    order = {item.id: (len(ITEMS) - i) * 0.03 for i, item in enumerate(ITEMS)}
    wrong = {ITEMS[1].id, ITEMS[6].id}

    def fail(item: str) -> BackendError | None:
        return BackendError(f"refused {item}") if item in wrong else None

    seen: list[ChunkDone] = []
    finished: list[int] = []
    result = run_eval(
        Keyed(delay=order.get, fail=fail),
        chunk_size=3,
        on_chunk=seen.append,
        progress=finished.append,
        max_error_rate=0.5,
    )
    assert [c.questions for c in seen] == [3, 6, 8]
    assert [c.scores for c in seen] == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0, 1.0, 1.0], [1, 0, 1, 1, 1, 1, 0, 1]]
    assert [c.queries for c in seen] == [3, 6, 8]
    assert sum(finished) == len(ITEMS)
    assert list(result.rows["id"]) == [i.id for i in ITEMS]


def test_pruning_from_on_chunk_stops_the_evaluation_and_is_raised():
    class Pruned(Exception):
        pass

    def prune(done: ChunkDone) -> None:
        raise Pruned(done.questions)

    backend = Keyed()
    with pytest.raises(Pruned):
        run_eval(backend, chunk_size=2, on_chunk=prune, max_in_flight=2)
    # two at a time: the pruner heard of the first 2, and the evaluation did not go through all 8 questions
    assert len({item_of(r) for r in backend.sent}) < len(ITEMS)


def test_one_refused_request_costs_its_question_only(tmp_path):
    bad = ITEMS[2].id
    backend = Keyed(fail=lambda item: BackendError("HTTP 400: prompt too long") if item == bad else None)
    result = run_eval(backend, out_dir=tmp_path)
    rows = result.rows.set_index("id")
    assert rows.loc[bad, "correct"] == 0.0 and rows.loc[bad, "errors"] == 1
    assert "prompt too long" in rows.loc[bad, "error"]
    assert (rows.drop(index=bad)["correct"] == 1.0).all() and (rows.drop(index=bad)["errors"] == 0).all()
    assert result.summary.errors == 1 and result.summary.n == len(ITEMS)
    assert result.summary.accuracy == pytest.approx(7 / 8)
    written = pd.read_csv(tmp_path / "questions.csv").set_index("id")
    assert written.loc[bad, "errors"] == 1 and written["errors"].sum() == 1
    trace = [json.loads(line) for line in (tmp_path / "traces" / f"{bad}.jsonl").read_text().splitlines()]
    assert any("prompt too long" in str(e.get("error")) for e in trace)


def test_more_errors_than_the_threshold_fail_the_evaluation_and_say_so():
    refused = {item.id for item in ITEMS[:3]}
    backend = Keyed(fail=lambda item: BackendError("HTTP 400: refused") if item in refused else None)
    with pytest.raises(TooManyErrors, match=r"3 of 8 questions failed \(more than 25%\).*refused"):
        run_eval(backend)


def test_a_server_down_through_its_retries_ends_the_evaluation_with_its_own_error():
    down = ServerUnavailable("model 'm' at http://127.0.0.1:1/v1: server error (HTTP 500) after 5 attempts")
    with pytest.raises(ServerUnavailable, match="HTTP 500"):
        run_eval(Keyed(fail=lambda item: down))


def test_identical_requests_of_questions_in_flight_together_are_sent_once():
    inner = Keyed(delay=lambda _: 0.05)
    backend = CachedBackend(inner, None)
    request = ChatRequest.of([{"role": "user", "content": ITEMS[0].prompt}], 0.7, 16)

    async def two_questions():
        return await asyncio.gather(backend.complete([request]), backend.complete([request]))

    first, second = asyncio.run(two_questions())
    assert len(inner.sent) == 1 and backend.misses == 1 and backend.hits == 1
    assert first[0].text == second[0].text and [first[0].cached, second[0].cached] == [False, True]


def _study_with(attrs: dict, state: TrialState) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.IntDistribution(0, 9)}
    study.add_trial(
        optuna.trial.create_trial(state=state, params={"x": 3}, distributions=dist, user_attrs=attrs, value=None)
    )
    return study


def test_a_trial_failed_on_its_errors_counts_and_a_resume_never_reruns_it():
    failed = _study_with({"arch": {"key": "k"}, ERRORED: "3 of 8 questions failed"}, TrialState.FAIL)
    trials = failed.get_trials(deepcopy=False)
    assert errored(trials[0]) and tally(trials) == (1, 0)
    # resuming again and again enqueues nothing for it
    for _ in range(3):
        assert requeue(failed, failed.get_trials(deepcopy=False), {}) == 0
    assert [t.state for t in failed.get_trials(deepcopy=False)] == [TrialState.FAIL]
    # a trial stopped by an outage (no `errored` mark) is still rerun once
    outage = _study_with({"arch": {"key": "k"}}, TrialState.FAIL)
    assert requeue(outage, outage.get_trials(deepcopy=False), {}) == 1
    assert requeue(outage, outage.get_trials(deepcopy=False), {}) == 0


class GeneratorsOnly(Keyed):
    """Answers generator requests (the bare question) and refuses every other prompt (critic, ranker, fuser,
    verifier) as a server whose context window they overflow would."""

    def __init__(self, questions: set[str]):
        super().__init__()
        self.questions = questions

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if any(last_user_message(r) not in self.questions for r in requests):
            raise BackendError("HTTP 400: the prompt is over the context window")
        return await super().complete(requests)


@pytest.mark.slow
def test_a_search_records_an_erroring_trial_as_failed_goes_on_and_a_resume_does_not_retry_it(tmp_path):
    from archon_search.eval.evaluate import question_text
    from archon_search.search.runner import SearchConfig, run_search

    bench = make_benchmark(Arith(size=8, seed=3))
    items = bench.load()
    backend = GeneratorsOnly({question_text(bench, i.prompt) for i in items})
    spec = ScriptedModel(backend="scripted", responses=["unused"])
    config = SearchConfig(bench="arith", budget=4, trials=6, sampler="random", out=tmp_path / "run", limit=4)

    def search():
        return run_search(config, benchmark=bench, models={"m": spec}, backends={"m": backend}, show_progress=False)

    search()
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    trials = optuna.load_study(study_name="arith-b4", storage=storage).get_trials()
    failed = [t for t in trials if errored(t)]
    assert failed, "some sampled architecture has a layer after the generators, and its requests are refused"
    assert all(
        "questions failed" in t.user_attrs[ERRORED] and "context window" in t.user_attrs[ERRORED] for t in failed
    )
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) + len(failed) == 6
    table = pd.read_csv(tmp_path / "run" / "trials.csv")
    said = table.set_index("number")["errored"]
    assert all("context window" in said[t.number] for t in failed)
    # the same command again: the study is done, nothing is rerun
    search()
    again = optuna.load_study(study_name="arith-b4", storage=storage).get_trials()
    assert len(again) == len(trials) and not [t for t in again if "retry_of" in t.user_attrs]
