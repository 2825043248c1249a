"""MT-Bench: 80 two-turn open-ended questions in 8 categories, each turn graded 1-10 by a judge model.

The questions file (FastChat's `question.jsonl`: question_id, category, turns, optional reference) is passed
with `--data`; there is no default. For the math, reasoning and coding questions the judge is shown a
reference answer for each turn, as in MT-Bench: the GPT-4 answers of `mt_bench_reference_gpt4.jsonl` (or
FastChat's `reference_answer/gpt-4.jsonl`) found beside the questions file, else the question's own
`reference` field. The search sees (grade - 1) / 9; the raw grades stay in questions.csv.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset, JudgeSettings
from archon_search.datasets.registry import register_dataset
from archon_search.datasets.sources import read_jsonl

log = logging.getLogger(__name__)

#: Categories whose questions have one right answer, so the judge compares with a reference (as MT-Bench does).
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})
#: Where the GPT-4 references are looked for, relative to the questions file's folder.
REFERENCE_FILES = ("mt_bench_reference_gpt4.jsonl", "reference_answer/gpt-4.jsonl")


def find_references(questions: Path) -> Path | None:
    """The GPT-4 reference answers file beside `questions`, if there is one."""
    for name in REFERENCE_FILES:
        candidate = questions.parent / name
        if candidate.is_file():
            return candidate
    return None


def load_references(path: Path) -> dict[str, tuple[str, ...]]:
    """question_id -> the reference answer of each turn, from a FastChat answers file (`choices[0].turns`)."""
    references = {}
    for number, record in enumerate(read_jsonl(path, ("question_id", "choices")), 1):
        try:
            references[str(record["question_id"])] = tuple(record["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise BenchmarkError(
                f"{path}: record {number}: expected choices[0].turns (FastChat's reference answer format)"
            ) from None
    return references


@register_dataset("mt-bench")
class MtBench(Dataset):
    """MT-Bench, judged in `single` mode turn by turn; `references` overrides the file found beside the questions."""

    name = "mt-bench"
    scorer = "judge"
    judge = JudgeSettings()

    def __init__(self, references: Path | None = None):
        self.references = references

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The questions of `data` (required), with references for the math, reasoning and coding ones."""
        if data is None:
            raise BenchmarkError("mt-bench has no default data: pass --data PATH/mt_bench_questions.jsonl")
        path = Path(data)
        if not path.is_file():
            raise BenchmarkError(f"mt-bench questions file {path} not found: pass --data PATH/mt_bench_questions.jsonl")
        reference_file = self.references or find_references(path)
        references = load_references(reference_file) if reference_file else {}
        log.info(
            "mt-bench: %s", f"GPT-4 references from {reference_file}" if reference_file else "no reference file found"
        )
        records = read_jsonl(path, ("question_id", "category", "turns"))
        return [self._item(path, number, record, references) for number, record in enumerate(records, 1)]

    def _item(self, path: Path, number: int, record: dict[str, Any], references: dict[str, tuple[str, ...]]) -> Item:
        try:
            qid, category, turns = str(record["question_id"]), str(record["category"]), tuple(record["turns"])
        except (KeyError, TypeError):
            raise BenchmarkError(
                f"{path}:{number}: expected question_id, category and turns (MT-Bench's format)"
            ) from None
        if not turns or not all(isinstance(t, str) for t in turns):
            raise BenchmarkError(f"{path}:{number}: turns must be a non-empty list of strings")
        reference = None
        if category in REFERENCE_CATEGORIES:
            found = references.get(qid) or record.get("reference")
            reference = tuple(found) if found else None
        return Item(qid, turns[0], reference, turns, {"category": category})
