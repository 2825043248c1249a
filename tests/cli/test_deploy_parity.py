"""Deploy parity: an architecture answers under `serve` and `Architecture.load` exactly as in the trial that scored
it, because its file's `task:` carries the benchmark's answer extractor, task kind and answer instruction.

The end-to-end test runs a search on a user benchmark file, exports the best, serves it, and asks it with the
official openai client; the upstream model says `Answer: 5` on a question's first sample and `Answer: 4` on the
others, so a voter that reads answers picks 4 and one that does not keeps the first candidate, 5.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import openai
import pandas as pd
import pytest
import yaml
from servers.openai_stub import StubOpenAIServer
from typer.testing import CliRunner

from archon_search import Architecture
from archon_search.cli import app
from archon_search.core.errors import ArchitectureError
from archon_search.core.messages import ChatRequest
from archon_search.datasets.registry import get_dataset
from archon_search.eval.benchmark import get_benchmark
from archon_search.eval.evaluate import evaluate
from archon_search.eval.task import task_of
from archon_search.lang.spec import ScriptedModel, Task
from archon_search.lang.validate import load_architecture, validate_text
from archon_search.runtime.pool import BackendPool
from archon_search.runtime.task_context import as_scored, describe, task_context, with_instruction
from archon_search.scoring.scorers import NUMBER_INSTRUCTION
from archon_search.search.export import export_run
from archon_search.search.runner import SearchConfig, run_search
from archon_search.serve import BackgroundServer

REPO_ROOT = Path(__file__).resolve().parents[2]
DESIGN = REPO_ROOT.parent / "shared" / "DESIGN.md"
MODEL = "stub-model"
QUESTIONS = [f"Tally {n}: what is {n} + {4 - n}?" for n in range(6)]
SPACE = """
models: [stub]
max_tokens: 32
generator: {units: [1, 1], samples: [1, 3], temperature: [0.7, 0.7]}
critic: false
ranker: {enabled: false}
fuser: {layers: [0, 0]}
verifier: false
unit_tests: {enabled: false}
voter: true
"""
NUMBER_TASK = {"benchmark": "tally", "kind": "answer", "answer_format": "number", "instruction": NUMBER_INSTRUCTION}
VOTER = {
    "name": "scripted-vote",
    "models": {"s": {"backend": "scripted", "responses": ["Answer: 5", "Answer: 4", "Answer: 4"]}},
    "layers": [{"generator": {"model": "s", "samples": 3}}, {"voter": {"top_k": 1}}],
}
RIGHT = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds."
WRONG = "Here it is:\n```python\ndef add(a, b):\n    return a - b\n```\nIt subtracts."
CODE = {
    "name": "scripted-code",
    "task": {"benchmark": "humaneval", "kind": "code", "answer_format": "code", "instruction": ""},
    "models": {
        "coder": {"backend": "scripted", "responses": [WRONG, RIGHT]},
        "tester": {"backend": "scripted", "responses": ["assert add(1, 2) == 3\nassert add(2, 2) == 4"]},
    },
    "layers": [
        {"generator": {"model": "coder", "samples": 2}},
        {"unit_test_generator": {"model": "tester", "num_tests": 2}},
        {"unit_test_evaluator": {"mode": "execute", "top_k": 1}},
    ],
}


def first_sample_differs(body: dict) -> str:
    """`Answer: 5` for a question's sample 0 (recognised by its seed), `Answer: 4` for every other sample."""
    first = ChatRequest.of(body["messages"], 0.0, 1, sample=0).seed
    return "Answer: 5" if body.get("seed") == first else "Answer: 4"


def user_benchmark(root: Path) -> Path:
    """A benchmark file (DESIGN §1b) scored by `number`, over six questions whose answer is 4."""
    root.mkdir(exist_ok=True)
    data = root / "tally.jsonl"
    data.write_text("".join(json.dumps({"id": f"t{i}", "q": q, "a": 4}) + "\n" for i, q in enumerate(QUESTIONS)))
    bench = root / "tally.yaml"
    bench.write_text(
        "name: tally\ndata: tally.jsonl\nprompt_field: q\nreference_field: a\nid_field: id\nscorer: number\n"
    )
    return bench


def write_arch(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def asked(body: dict) -> str:
    """A request to the upstream model as sent: messages, sampling settings and seed."""
    return json.dumps(body, sort_keys=True)


@pytest.mark.slow
def test_run_export_serve_gives_the_trials_answers_to_the_openai_client(tmp_path):
    bench = user_benchmark(tmp_path / "bench")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "run"
    with StubOpenAIServer(models=(MODEL,), answer=first_sample_differs) as upstream:
        models = {"stub": {"backend": "openai", "model": MODEL, "base_url": upstream.url, "api_key_env": "NO_KEY_SET"}}
        models_file = tmp_path / "models.yaml"
        models_file.write_text(yaml.safe_dump({"models": models}))
        config = SearchConfig(
            bench=str(bench),
            budget=3,
            trials=3,
            space_file=space,
            models_file=models_file,
            out=out,
            cache=tmp_path / "run-cache.sqlite",
        )
        run_search(config, show_progress=False)
        for path in sorted(bench.parent.iterdir()):
            path.unlink()  # a deployment must not need the benchmark file
        result = CliRunner().invoke(app, ["export", str(out), "--out", str(tmp_path / "best.yaml")])
        assert result.exit_code == 0, result.output
        exported = load_architecture(tmp_path / "best.yaml")
        trial = pd.read_csv(out / "questions.csv", dtype={"id": str})
        searched = {asked(b) for b in upstream.bodies}
        upstream.bodies.clear()
        with BackgroundServer(Architecture.load(tmp_path / "best.yaml", cache=False)) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="anything", max_retries=0)
            served = {}
            for row in trial.itertuples():
                question = QUESTIONS[int(row.id.removeprefix("t"))]
                reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": question}])
                served[row.id] = reply.choices[0].message.content
    task = Task(**NUMBER_TASK)
    assert exported.arch.task == task and load_architecture(out / "best.yaml").arch.task == task
    assert all(load_architecture(path).arch.task == task for path in (out / "archs").glob("trial-*.yaml"))
    assert [layer.op for layer in exported.arch.layers] == ["generator", "voter"]
    assert len(trial) == 3 and set(trial["answer"]) == {"Answer: 4"}
    assert served == dict(zip(trial["id"], trial["answer"]))
    assert len(upstream.bodies) == 3 * len(served)
    assert {asked(b) for b in upstream.bodies} <= searched, "serve asked the upstream model what no trial asked"


def test_a_loaded_voter_reads_answers_as_the_trial_did(tmp_path):
    bench = get_benchmark(user_benchmark(tmp_path))
    item = bench.load()[0]
    path = write_arch(tmp_path / "vote.yaml", VOTER | {"task": NUMBER_TASK})
    checked = load_architecture(path)

    async def trial_answer() -> str:
        async with BackendPool(checked.arch.models) as pool:
            return (await evaluate(checked, bench, [item], pool)).rows["answer"].iloc[0]

    with Architecture.load(path, cache=False) as arch:
        served = arch.run(item.prompt)
    assert served == asyncio.run(trial_answer()) == "Answer: 4"


def test_a_file_without_a_task_keeps_todays_behaviour(tmp_path):
    path = write_arch(tmp_path / "vote.yaml", VOTER)
    with Architecture.load(path, cache=False) as arch:
        assert arch.run("What is 2 + 2?") == "Answer: 5"


def test_a_loaded_unit_test_evaluator_runs_the_code_inside_the_markdown(tmp_path):
    path = write_arch(tmp_path / "code.yaml", CODE)
    with Architecture.load(path, cache=False) as arch:
        assert arch.run("Write add(a, b) returning the sum.") == RIGHT


def test_the_first_user_message_gets_the_instruction_once():
    task = Task(**NUMBER_TASK)
    assert as_scored(task, "What is 2 + 2?", []) == (with_instruction("What is 2 + 2?", NUMBER_INSTRUCTION), [])
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "Answer: 4"},
    ]
    question, asked = as_scored(task, "And times 3?", history)
    assert question == "And times 3?"
    assert (
        asked[1]["content"] == f"What is 2 + 2?\n\n{NUMBER_INSTRUCTION}" and history[1]["content"] == "What is 2 + 2?"
    )
    assert with_instruction(asked[1]["content"], NUMBER_INSTRUCTION) == asked[1]["content"]
    assert as_scored(Task(benchmark="x", instruction=""), "  hi ", history) == ("  hi ", history)


@pytest.mark.parametrize(
    ("bench", "kind", "answer_format"),
    [
        ("math", "answer", "math"),
        ("gsm8k", "answer", "number"),
        ("humaneval", "code", "code"),
        ("mt-bench", "judge", None),
    ],
)
def test_the_task_of_each_builtin_benchmark_rebuilds_its_context(bench, kind, answer_format):
    benchmark = get_benchmark(bench, BackendPool({"j": ScriptedModel(backend="scripted")}), judge="j")
    task = benchmark.task()
    assert (task.benchmark, task.kind, task.answer_format) == (benchmark.name, kind, answer_format)
    assert task.instruction == benchmark.answer_instruction
    ctx = task_context(task)
    sample = "Step one. \\boxed{7}\nAnswer: 7\n```python\ndef f():\n    return 7\n```"
    assert (ctx.extract(sample), ctx.task_kind) == (benchmark.extract(sample), benchmark.kind)


def test_the_task_round_trips_through_the_file_and_bad_ones_are_one_line_errors(tmp_path):
    text = yaml.safe_dump(VOTER | {"task": NUMBER_TASK}, sort_keys=False)
    checked = validate_text(text)
    assert validate_text(yaml.safe_dump(checked.arch.to_yaml_obj())).arch == checked.arch
    for task, says in (
        ({"benchmark": "x", "answer_format": "roman"}, "answer_format"),
        (
            {"benchmark": "x", "kind": "code", "answer_format": "number"},
            "kind: code and answer_format: code go together",
        ),
        ({"benchmark": "x", "kind": "judge", "answer_format": "exact"}, "no answer_format"),
        ({"kind": "answer"}, "benchmark"),
        ({"benchmark": "x", "scorer": "number"}, "scorer"),
    ):
        with pytest.raises(ArchitectureError, match=says) as err:
            validate_text(yaml.safe_dump(VOTER | {"task": task}))
        assert len(str(err.value).splitlines()) == 1, str(err.value)


@pytest.mark.skipif(not DESIGN.is_file(), reason="DESIGN.md not present")
def test_designs_example_architecture_still_loads():
    design = DESIGN.read_text()
    block = design.split("```yaml", 1)[1].split("```", 1)[0]
    assert validate_text(block).arch.task is None


def test_exporting_an_older_run_adds_its_builtin_benchmarks_task(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "archs").mkdir(parents=True)
    write_arch(run / "archs" / "trial-0.yaml", VOTER)
    for bench, expected in (("gsm8k", get_benchmark("gsm8k").task()), ("tally", None)):
        (run / "run.json").write_text(json.dumps({"bench": bench, "best_trial": 0, "trials": [{"number": 0}]}))
        with caplog.at_level(logging.WARNING, logger="archon_search.search.export"):
            exported = export_run(run, tmp_path / f"{bench}.yaml")
        assert exported.checked.arch.task == expected
        assert load_architecture(exported.path).arch.task == expected
    assert "names no task" in caplog.text and "tally" in caplog.text


def test_serve_says_how_it_reads_and_asks_for_answers():
    assert describe(Task(**NUMBER_TASK)) == (
        "task tally (answer): answers read as number; its answer instruction goes on the first user message"
    )
    assert describe(task_of(get_dataset("mt-bench"))) == "task mt-bench (judge): no short answers"
    assert "names no task" in describe(None)
