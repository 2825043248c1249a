"""Reading a running search's study from outside, as a test watching a worker process does."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def trial_states(out: Path) -> list[str]:
    """The trials' states in a worker's study.db, SCORING for a running one whose architecture is built; read
    without touching the schema ([] before it exists)."""
    if not (out / "study.db").exists():
        return []
    query = (
        "SELECT CASE WHEN t.state = 'RUNNING' AND EXISTS (SELECT 1 FROM trial_user_attributes a "
        "WHERE a.trial_id = t.trial_id AND a.key = 'arch') THEN 'SCORING' ELSE t.state END FROM trials t"
    )
    try:
        with closing(sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True, timeout=5)) as db:
            return [row[0] for row in db.execute(query)]
    except sqlite3.OperationalError:
        return []
