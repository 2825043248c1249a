"""Where benchmark records come from: a local JSON-lines file first, else the Hugging Face hub, else an error."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archon_search.core.errors import BenchmarkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub, read with the `datasets` package when it is installed."""

    repo: str
    split: str
    config: str | None = None
    #: the usual name of a local copy in JSON lines (what `--data` should point to offline)
    file_name: str = "data.jsonl"


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file (blank lines skipped); BenchmarkError on a missing file, a bad line,
    or a record lacking one of `required`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BenchmarkError(f"data file {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"cannot read data file {path}: {exc}; pass a UTF-8 JSON-lines file") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{path}:{number}: not valid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(record, dict):
            raise BenchmarkError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        missing = [f for f in required if f not in record]
        if missing:
            raise BenchmarkError(f"{path}:{number}: no field {missing[0]!r}; each record needs {', '.join(required)}")
        records.append(record)
    return records


def load_records(
    bench: str, data: str | Path | None, hub: HubSource, required: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Records from `data` when given, else from the hub when `datasets` is installed and the hub answers."""
    if data is not None:
        return read_jsonl(data, required)
    records = _from_hub(hub)
    if records is None:
        raise BenchmarkError(
            f"{bench}: no data offline; pass --data PATH/{hub.file_name} (JSON lines with fields {', '.join(required)},"
            f" a copy of the hub dataset {hub.repo}), or install `datasets` with access to the hub"
        )
    missing = [f for f in required if records and f not in records[0]]
    if missing:
        raise BenchmarkError(f"{bench}: hub dataset {hub.repo} has no field {missing[0]!r}; pass --data PATH instead")
    return records


def _from_hub(hub: HubSource) -> list[dict[str, Any]] | None:
    try:
        import datasets
    except ImportError:
        return None
    try:
        rows = datasets.load_dataset(hub.repo, hub.config, split=hub.split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all mean "not from the hub"
        log.warning("could not load %s from the Hugging Face hub: %s", hub.repo, exc)
        return None
    return [dict(row) for row in rows]
