"""A user's own benchmark, described by a small YAML file (DESIGN §1b) over a JSON-lines data file.

Files with `scorer: judge` take more fields (the judge model, its mode) and are read by `open_ended.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.sources import read_jsonl


class BenchmarkFile(BaseModel):
    """The fields of a benchmark file; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    data: str
    prompt_field: str
    reference_field: str
    id_field: str | None = None
    scorer: Literal["math", "number", "exact", "code", "judge"]  # judge files are read by open_ended.py


class UserDataset(Dataset):
    """Items read from the file's `data` (or a `--data` override), scored by the file's `scorer`."""

    def __init__(self, spec: BenchmarkFile, path: Path):
        self.scorer = spec.scorer
        self.spec = spec
        self.path = path
        self.name = spec.name

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The items of `data`, else of the file's own `data` (relative to the benchmark file)."""
        source = Path(data) if data is not None else self.path.parent / self.spec.data
        required = (self.spec.prompt_field, self.spec.reference_field) + (
            (self.spec.id_field,) if self.spec.id_field else ()
        )
        items = []
        for line, record in enumerate(read_jsonl(source, required), 1):
            item_id = record[self.spec.id_field] if self.spec.id_field else line
            items.append(
                Item(
                    id=str(item_id),
                    prompt=str(record[self.spec.prompt_field]),
                    reference=record[self.spec.reference_field],
                    meta={k: v for k, v in record.items() if k not in required},
                )
            )
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise BenchmarkError(
                f"{source}: id {dup!r} appears more than once; ids in {self.spec.id_field} must be unique"
            )
        return items


def load_user_dataset(path: Path) -> Dataset:
    """Read and check a benchmark file; BenchmarkError (one line) on any problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkError(
            f"benchmark file {path} not found; pass a built-in name or the path of a .yaml file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise BenchmarkError(f"{path}: {where}YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a mapping with name, data, prompt_field, reference_field and scorer")
    if raw.get("scorer") == "judge":
        from archon_search.datasets.open_ended import load_open_ended

        return load_open_ended(path)
    try:
        spec = BenchmarkFile.model_validate(raw)
    except ValidationError as exc:
        raise BenchmarkError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    return UserDataset(spec, path)


def _describe(error: dict) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "file"
    allowed = ", ".join(BenchmarkFile.model_fields)
    if error["type"] == "extra_forbidden":
        return f"unknown field {field!r} (allowed: {allowed})"
    if error["type"] == "missing":
        return f"missing field {field!r}"
    if field == "name" and error["type"] == "string_pattern_mismatch":
        return "name must use only a-z, 0-9, '-' and '_'"
    return f"{field}: {error['msg']}"
