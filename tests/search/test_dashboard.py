"""Watching a run with optuna-dashboard: it reads the run folder's study.db as it is (the `dashboard` extra)."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest

from archon_search.search.runner import SearchConfig
from perf.landscape import SPACE_FILE, Landscape

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="pip install -e '.[dashboard]'")

pytestmark = pytest.mark.slow


def _get(app, path: str) -> tuple[str, dict]:
    environ = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status

    body = b"".join(app(environ, start_response))
    return seen["status"], json.loads(body)


def test_optuna_dashboard_reads_the_runs_study(tmp_path):
    landscape = Landscape(n_items=12)
    out = tmp_path / "run"
    config = SearchConfig(bench="landscape", budget=6, trials=4, space_file=SPACE_FILE, out=out)
    landscape.search(config)
    # what `optuna-dashboard sqlite:///results/<run>/study.db` serves
    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")
    status, listing = _get(app, "/api/studies")
    assert status.startswith("200")
    (study,) = [s for s in listing["study_summaries"] if s["study_name"] == "landscape-b6"]
    status, detail = _get(app, f"/api/studies/{study['study_id']}")
    assert status.startswith("200") and len(detail["trials"]) >= 4
