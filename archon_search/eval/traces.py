"""Traces: per question, every intermediate candidate, critique, ranking, verdict and test result, as JSONL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def trace_filename(question_id: str) -> str:
    """A file name for a question id that is safe on every filesystem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", question_id).strip("._")[:120] or "question"


def write_trace(directory: Path, question_id: str, header: dict[str, Any], events: Iterable[dict[str, Any]]) -> Path:
    """Write one question's trace: a header line (question, reference, answer, score), then one line per layer."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{trace_filename(question_id)}.jsonl"
    with path.open("w") as fh:
        fh.write(json.dumps({"kind": "question", **header}, default=str) + "\n")
        for event in events:
            fh.write(json.dumps({"kind": "layer", **event}, default=str) + "\n")
    return path


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The lines of a trace file, parsed."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
