"""`archon-search run --budget 32 --bench math --data ../shared/data/math500.jsonl --models M.yaml` end to end
against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/servers/openai_stub.py): the run folder, the
budget, the server's requests, resuming from the response cache, and a failing server's one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pytest
import yaml
from servers.openai_stub import Reply, StubOpenAIServer
from typer.testing import CliRunner

from archon_search.cli import app
from archon_search.core.items import Item
from archon_search.datasets.math500 import Math500
from archon_search.eval.benchmark import split_items
from archon_search.lang.validate import load_architecture

REPO_ROOT = Path(__file__).resolve().parents[2]
MATH500 = REPO_ROOT.parent / "shared" / "data" / "math500.jsonl"
BUDGET = 32
TRIALS = 3
LIMIT = 3
MODEL = "stub-model"
KEY_ENV = "ARCHON_SEARCH_OPENAI_TEST_KEY"
FINISHED = ("COMPLETE", "PRUNED")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 data not present at {MATH500}"),
]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    # a loopback server needs no key: the client sends a placeholder, never a real key from the environment
    monkeypatch.delenv(KEY_ENV, raising=False)


def searched_items() -> list[Item]:
    """The questions the run sees: the first LIMIT dev and LIMIT test items of the seeded split."""
    dev, test = split_items(Math500().load(MATH500), 0)
    return dev[:LIMIT] + test[:LIMIT]


def noisy_math_model(items: Sequence[Item]) -> Callable[[dict], str]:
    """A model that is wrong when greedy and right on about 3 samples in 4 at temperature >= 0.5.

    It finds the MATH problem in the request, and answers with a `\\boxed{}` answer: the reference when sampled
    warmly and the seed is not a multiple of 4, else a wrong number that depends on the seed (so wrong answers
    split the vote). So one greedy call scores 0, and self-consistency with a voter scores 1.
    """
    references = {item.prompt.strip(): item.reference for item in items}

    def answer(body: dict) -> str:
        text = "\n".join(m["content"] for m in body["messages"])
        reference = next((ref for problem, ref in references.items() if problem in text), None)
        if reference is None:
            return "I cannot tell which problem this is."
        seed = int(body.get("seed") or 0)
        right = float(body.get("temperature") or 0.0) >= 0.5 and seed % 4 != 0
        final = reference if right else str(1000 + seed % 997)
        return f"Let me work through it step by step.\n\nThe final answer is $\\boxed{{{final}}}$."

    return answer


def write_models(path: Path, base_url: str) -> Path:
    """The --models file: one OpenAI-compatible model at `base_url`."""
    models = {"models": {"stub": {"backend": "openai", "model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV}}}
    path.write_text(yaml.safe_dump(models))
    return path


def run_args(tmp_path: Path, models: Path) -> list[str]:
    """The issue's command, small: 3 trials on 3 dev questions, a run folder and a response cache in tmp_path."""
    return [
        "run",
        "--budget",
        str(BUDGET),
        "--bench",
        "math",
        "--data",
        str(MATH500),
        "--models",
        str(models),
        "--trials",
        str(TRIALS),
        "--limit",
        str(LIMIT),
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(tmp_path / "c.sqlite"),
    ]


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def request_key(body: dict) -> str:
    """What makes two HTTP requests the same generation (the response cache keys on the same things)."""
    return json.dumps(
        [body["model"], body["messages"], body.get("temperature"), body.get("max_tokens"), body.get("seed")]
    )


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["state"].isin(FINISHED)]


def test_run_searches_against_an_openai_compatible_server_and_resumes_from_the_cache(tmp_path):
    out = tmp_path / "run"
    with StubOpenAIServer(models=(MODEL,), answer=noisy_math_model(searched_items())) as stub:
        args = run_args(tmp_path, write_models(tmp_path / "M.yaml", stub.url))
        first = invoke(args)
        assert first.exit_code == 0, first.output
        requests_first = len(stub.bodies)

        for name in ("trials.csv", "best.yaml", "report.md", "study.db", "run.json", "questions.csv"):
            assert (out / name).is_file(), name
        assert "done 3 trials" in first.output

        # the run went through the server: one HTTP request per sample, each for the benchmark's answer length
        trials = pd.read_csv(out / "trials.csv")
        assert requests_first > 0
        assert requests_first >= trials["backend_calls"].sum() >= BUDGET * LIMIT
        assert all(body["model"] == MODEL and body.get("n", 1) == 1 for body in stub.bodies)
        assert {body["max_tokens"] for body in stub.bodies} == {Math500.max_tokens}
        assert stub.headers[0]["authorization"] == "Bearer no-key-needed"

        # the budget: every trial, every architecture file, and the best
        assert len(trials) == TRIALS and len(finished(trials)) == TRIALS
        assert (trials["calls_per_query"] <= BUDGET).all() and (trials["static_calls"] <= BUDGET).all()
        for number in trials["number"]:
            arch = load_architecture(out / "archs" / f"trial-{number}.yaml", budget=BUDGET)
            assert {spec.backend for spec in arch.arch.models.values()} == {"openai"}
            assert {spec.base_url for spec in arch.arch.models.values()} == {stub.url}
        best = load_architecture(out / "best.yaml", budget=BUDGET)
        assert best.calls_per_query <= BUDGET

        # the scores are the server's answers scored by math-verify: a greedy call is always wrong, a vote over
        # 32 warm samples always right, and the search keeps an architecture as good as the vote
        baselines = trials.set_index("baseline")
        assert baselines.loc["single-stub", "dev_score"] == 0.0
        assert baselines.loc["self-consistency-32", "dev_score"] == 1.0
        assert baselines.loc["self-consistency-32", "calls_per_query"] == BUDGET
        run = json.loads((out / "run.json").read_text())
        best_row = trials.set_index("number").loc[run["best_trial"]]
        assert best_row["dev_score"] == 1.0
        report = (out / "report.md").read_text()
        assert f"budget {BUDGET} LM calls per query" in report and "baseline single-stub" in report

        # the same command again: the study already holds 3 trials, and every call comes from the cache
        again = invoke(args)
        assert again.exit_code == 0, again.output
        assert len(stub.bodies) == requests_first, "a resumed run must not call the server for work already done"
        resumed = pd.read_csv(out / "trials.csv")
        columns = ["number", "state", "baseline", "dev_score", "calls_per_query"]
        pd.testing.assert_frame_equal(resumed[columns], trials[columns])


class Outage(StubOpenAIServer):
    """The stub, answering normally for its first `healthy` requests, then HTTP 500 (`Retry-After: 0`, so the
    client's retries take no time) to everything until `restore()`."""

    def __init__(self, healthy: int, **options):
        super().__init__(**options)
        self.healthy = healthy
        self.down = True

    def record(self, path: str, body: dict, headers: dict[str, str], peer: tuple = ()) -> Reply | None:
        reply = super().record(path, body, headers, peer)
        with self._lock:
            seen = len(self.bodies)
        if self.down and seen > self.healthy:
            return Reply(500, {"Retry-After": "0"})
        return reply

    def restore(self) -> None:
        self.down = False


@pytest.mark.parametrize(
    "answered_in_the_failing_trial",
    [
        pytest.param(0, id="outage-between-trials"),
        pytest.param(1, id="outage-inside-a-batch"),
    ],
)
def test_a_server_that_fails_mid_search_loses_nothing_and_the_rerun_resumes(tmp_path, answered_in_the_failing_trial):
    out = tmp_path / "run"
    # the two baselines' dev questions (one call, then BUDGET calls, for each of LIMIT questions) are answered,
    # then `answered_in_the_failing_trial` requests of the third trial; then the server fails
    healthy = (1 + BUDGET) * LIMIT + answered_in_the_failing_trial
    with Outage(healthy, models=(MODEL,), answer=noisy_math_model(searched_items())) as stub:
        args = run_args(tmp_path, write_models(tmp_path / "M.yaml", stub.url))
        broken = invoke(args)
        assert broken.exit_code == 1, broken.output
        errors = [line for line in broken.output.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "HTTP 500" in errors[0] and stub.url in errors[0], broken.output
        assert isinstance(broken.exception, SystemExit), "the error must end the command, not escape it"
        # the run folder shows the study as the outage left it: the trial it stopped is failed, not running
        before = pd.read_csv(out / "trials.csv")
        assert list(before["state"]) == ["COMPLETE", "COMPLETE", "FAIL"]
        answered = {request_key(body) for body in stub.bodies[:healthy]}
        seen = len(stub.bodies)

        stub.restore()
        resumed = invoke(args)
        assert resumed.exit_code == 0, resumed.output
        trials = pd.read_csv(out / "trials.csv")
        assert len(finished(trials)) == TRIALS
        # the baselines finished before the outage are kept as they were, not scored again
        kept = trials.set_index("number").loc[[0, 1], ["state", "dev_score"]]
        pd.testing.assert_frame_equal(kept, before.set_index("number").loc[[0, 1], ["state", "dev_score"]])
        # the trial the outage stopped is rerun with its parameters
        assert set(trials.loc[trials["state"] == "FAIL", "number"]) == {2}
        rerun = trials[trials["retry_of"] == 2]
        assert len(rerun) == 1 and rerun["state"].isin(FINISHED).all()
        params = [c for c in trials.columns if c.startswith("param_")]
        pd.testing.assert_frame_equal(
            rerun[params].reset_index(drop=True), trials.loc[trials["number"] == 2, params].reset_index(drop=True)
        )
        assert load_architecture(out / "best.yaml", budget=BUDGET).calls_per_query <= BUDGET
        # no request answered before the outage is sent again: what the failed trial got comes from the cache
        new = stub.bodies[seen:]
        assert new, "the rerun trial and the test questions need the server"
        assert not answered & {request_key(body) for body in new}
        assert (
            rerun["backend_calls"].iloc[0] == rerun["calls_per_query"].iloc[0] * LIMIT - answered_in_the_failing_trial
        )


@pytest.mark.parametrize(
    ("status", "says"),
    [(500, "server error (HTTP 500) after 5 attempts"), (429, "still rate limited (HTTP 429) after 5 attempts")],
)
def test_a_failing_server_is_one_error_line_and_exit_1_not_a_traceback(tmp_path, status, says):
    with StubOpenAIServer(models=(MODEL,)) as stub:
        # Retry-After: 0 keeps the default retry policy (5 attempts) but not its backoff
        stub.fail_next(*[Reply(status, {"Retry-After": "0"})] * 1000)
        args = run_args(tmp_path, write_models(tmp_path / "M.yaml", stub.url))
        done = subprocess.run(
            [sys.executable, "-m", "archon_search", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "Task exception was never retrieved" not in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, done.stderr
    assert says in errors[0] and f"model '{MODEL}' at {stub.url}" in errors[0]
    # each question was tried 5 times (the default policy), then the run stopped
    attempts = Counter(request_key(body) for body in stub.bodies)
    assert attempts and max(attempts.values()) == 5 and set(attempts.values()) <= {1, 2, 3, 4, 5}
    assert len(attempts) <= LIMIT
