"""A corpus of realistic model outputs (tests/corpus/*.yaml), each with the parse it must give.

The outputs are written the way different real models answer (GPT-4o's markdown, Llama 3's numbered lists,
Qwen's terse formats, DeepSeek-R1's think blocks, SmolLM's rambling, Mistral's prose, JSON, refusals).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from corpus_checks import check_critiques, check_ranking

from archon_search.ops.verifier import parse_verdict
from archon_search.scoring.answers import extract_code, extract_number, extract_text_answer, last_boxed

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXTRACTORS = {"number": extract_number, "text": extract_text_answer, "math": last_boxed, "code": extract_code}
MIN_PER_KIND = 12


def load(name: str) -> list[dict]:
    return yaml.safe_load((CORPUS / name).read_text())


def cases(name: str) -> list:
    entries = load(name)
    return [pytest.param(e, id=f"{i}-{e['model']}") for i, e in enumerate(entries)]


def answer_cases() -> list:
    return [
        pytest.param(kind, e, id=f"{kind}-{i}-{e['model']}")
        for kind, entries in load("answers.yaml").items()
        for i, e in enumerate(entries)
    ]


def test_the_corpus_is_big_and_varied():
    answers = load("answers.yaml")
    sizes = {"ranker": len(load("ranker.yaml")), "critic": len(load("critic.yaml"))}
    sizes |= {"verifier": len(load("verifier.yaml"))} | {kind: len(answers[kind]) for kind in EXTRACTORS}
    assert all(size >= MIN_PER_KIND for size in sizes.values()), sizes
    assert sum(sizes.values()) >= 60
    every = [e for name in ("ranker.yaml", "critic.yaml", "verifier.yaml") for e in load(name)]
    every += [e for entries in answers.values() for e in entries]
    texts = [e["text"] for e in every]
    assert sum("<think>" in t for t in texts) >= 10 and sum("{" in t and '":' in t for t in texts) >= 5
    families = {e["model"].split("-")[0] for e in every}
    assert {"gpt", "llama", "qwen2.5", "deepseek", "smollm2", "mistral"} <= families


@pytest.mark.parametrize("case", cases("ranker.yaml"))
def test_ranker_corpus(case):
    check_ranking(case)


@pytest.mark.parametrize("case", cases("critic.yaml"))
def test_critic_corpus(case):
    check_critiques(case)


@pytest.mark.parametrize("case", cases("verifier.yaml"))
def test_verifier_corpus(case):
    parsed = parse_verdict(case["text"])
    assert (parsed.value if parsed else None) is case["correct"]


@pytest.mark.parametrize(("kind", "case"), answer_cases())
def test_answer_corpus(kind, case):
    assert EXTRACTORS[kind](case["text"]) == case["expected"]
