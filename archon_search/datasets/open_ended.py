"""Open-ended benchmarks a judge model scores, defined by a user's YAML file over a jsonl of prompts.

A user's benchmark file (DESIGN §1b with `scorer: judge`):

    name: my-chat
    data: prompts.jsonl          # relative to this file
    prompt_field: prompt         # a string, or a list of strings for a multi-turn item
    reference_field: reference   # optional: shown to the judge (a string, or one per turn)
    baseline_field: baseline     # optional; needed by pairwise (a string, or one per turn)
    id_field: id                 # optional; default: line number
    category_field: category     # optional; eval then prints per-category scores
    scorer: judge
    judge: embedded              # optional judge model name; `--judge NAME` overrides it
    judge_mode: single           # single (1-10 grade per turn) | pairwise (vs the baseline, swapped)
    judge_max_tokens: 512        # optional
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset, JudgeSettings
from archon_search.datasets.sources import read_jsonl
from archon_search.lang.spec import DEFAULT_JUDGE_MAX_TOKENS, NAME_PATTERN
from archon_search.scoring.judge import JudgeMode


class OpenEndedFile(BaseModel):
    """A user's judged benchmark file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    data: str
    prompt_field: str = "prompt"
    reference_field: str | None = None
    baseline_field: str | None = None
    id_field: str | None = None
    category_field: str | None = None
    scorer: Literal["judge"] = "judge"
    judge: str | None = None
    judge_mode: JudgeMode = "single"
    judge_max_tokens: int = Field(default=DEFAULT_JUDGE_MAX_TOKENS, ge=1)


def _turns(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str) and value.strip():
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    return None


def _optional(value: Any) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, list) and all(v is None or isinstance(v, str) for v in value):
        return tuple(v or "" for v in value)
    return str(value)


class OpenEndedDataset(Dataset):
    """A user-defined open-ended benchmark: prompts (one or more turns each) from a jsonl file, judged."""

    scorer = "judge"

    def __init__(self, config: OpenEndedFile, base_dir: Path):
        self.config = config
        self.name = config.name
        self.judge = JudgeSettings(config.judge_mode, config.judge, config.judge_max_tokens)
        self.data_path = base_dir / config.data

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The items of the file's `data` (or of `data` when given)."""
        path = Path(data) if data else self.data_path
        c = self.config
        required = (c.prompt_field,) + ((c.id_field,) if c.id_field else ())
        items = [self._item(path, number, record) for number, record in enumerate(read_jsonl(path, required), 1)]
        if not items:
            raise BenchmarkError(f"{path} holds no items; add one JSON object per line")
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise BenchmarkError(f"{path}: ids are not unique; make field {c.id_field!r} unique or drop id_field")
        return items

    def _item(self, path: Path, number: int, record: dict[str, Any]) -> Item:
        c = self.config
        turns = _turns(record[c.prompt_field])
        if turns is None:
            raise BenchmarkError(
                f"{path}: record {number}: field {c.prompt_field!r} must be a non-empty string or list of strings"
            )
        baseline = _optional(record.get(c.baseline_field)) if c.baseline_field else None
        if c.judge_mode == "pairwise" and baseline is None:
            raise BenchmarkError(
                f"{path}: record {number}: pairwise judging needs a baseline answer (set baseline_field and fill it "
                "in every record, or use judge_mode: single)"
            )
        meta: dict[str, Any] = {"baseline": baseline}
        if c.category_field and record.get(c.category_field) is not None:
            meta["category"] = str(record[c.category_field])
        reference = _optional(record.get(c.reference_field)) if c.reference_field else None
        item_id = str(record[c.id_field]) if c.id_field else str(number)
        return Item(item_id, turns[0], reference, turns if len(turns) > 1 else (), meta)


def load_open_ended(path: Path) -> OpenEndedDataset:
    """The judged benchmark a YAML file defines; any mistake is a one-line error naming the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchmarkError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BenchmarkError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a mapping of benchmark fields (name, data, prompt_field, ...)")
    try:
        config = OpenEndedFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "file"
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(OpenEndedFile.model_fields)
            raise BenchmarkError(f"{path}: unknown field {where!r} (allowed: {allowed})") from None
        raise BenchmarkError(f"{path}: {where}: {error['msg']}") from None
    return OpenEndedDataset(config, path.parent)
