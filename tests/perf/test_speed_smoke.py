"""The speed suite runs end to end (tiny sizes) and prints one JSON object with every figure, typed; and the
call saving it relies on. Timings are not asserted: they depend on the machine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from archon_search.backends.scripted import ScriptedBackend
from archon_search.core.messages import ChatRequest
from archon_search.lang.spec import ScriptedModel
from archon_search.runtime.cache import CachedBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--quick",
    "--questions", "3",
    "--repeats", "1",
    "--lognormal-questions", "4",
    "--lognormal-median-ms", "20",
    "--lognormal-repeats", "1",
    "--overhead-questions", "5",
    "--dedupe-trials", "4",
    "--dedupe-seeds", "1",
    "--seeds", "2",
    "--cap", "6",
    "--embedded-questions", "1",
    "--embedded-samples", "1",
    "--embedded-tokens", "4",
    "--embedded-repeats", "1",
    "--overhead-trials", "40",
    "--client-calls", "64",
    "--client-repeats", "1",
]  # fmt: skip
HEADLINES = (
    "critical_path_ratio",
    "critical_path_ratio_lognormal",
    "sequential_speedup",
    "overhead_us_per_call",
    "cache_dedupe_ratio",
    "search_efficiency",
    "search_overhead_growth",
    "embedded_throughput_ratio",
)


def suite(*args: str) -> dict:
    """Run `python -m perf.speed` from the repository root; its stdout must be one JSON object."""
    done = subprocess.run(
        [sys.executable, "-m", "perf.speed", *TINY, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_quick_mode_prints_every_figure_typed_except_the_embedded_one():
    report = suite("--skip", "embedded,embedded_batch")
    for key in HEADLINES[:-1]:
        assert positive_number(report[key]), key
    assert 0 < report["cache_dedupe_ratio"] <= 1
    assert report["embedded_throughput_ratio"] is None and report["skipped"] == ["embedded", "embedded_batch"]
    assert report["met"]["embedded_throughput_ratio"] is None
    assert all(isinstance(report["met"][k], bool) for k in report["targets"] if not k.startswith("embedded_"))
    assert report["search_efficiency_gp"] is None or positive_number(report["search_efficiency_gp"])
    assert (report["search_efficiency_gp"] is None) == isinstance(report["search_efficiency_gp_reason"], str)
    details = report["details"]
    assert details["critical_path"]["ideal_s"] == pytest.approx(4 * 0.05)
    lognormal = details["critical_path_lognormal"]
    # every call of the 4 questions went through the HTTP server (8 + 1 + 1 + 1 each), and the ideal is a real path
    assert lognormal["calls"] == 4 * 11 and lognormal["architecture"] == "generator -> critic -> ranker -> fuser"
    assert 0 < lognormal["ideal_s"] <= lognormal["actual_s"]
    assert details["overhead"]["calls"] == 5 * 16
    assert details["search_overhead"]["trials"] == 40 and details["search_overhead"]["late_ms_per_trial"] > 0
    dedupe = details["cache_dedupe"]
    assert dedupe["backend_calls"] == dedupe["distinct_requests"] <= dedupe["logical_calls"], "a request was sent twice"
    tpe = details["search_efficiency"]["tpe"]
    assert len(tpe["trials"]) == 2 and all(n is None or 1 <= n <= 6 for n in tpe["trials"])
    assert 0 < details["search_efficiency"]["optimum"] <= 1
    assert report["parameters"]["seeds"] == 2 and report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"] == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.embedded
def test_embedded_figure_compares_the_same_outputs():
    report = suite("--only", "embedded")
    assert positive_number(report["embedded_throughput_ratio"])
    embedded = report["details"]["embedded"]
    assert embedded["same_outputs"] is True and embedded["completion_tokens"] >= 1
    assert report["critical_path_ratio"] is None and "embedded" not in report["skipped"]


def test_unknown_figure_is_refused_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "perf.speed", "--only", "nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "unknown figure(s) nope" in done.stderr


def test_samples_at_temperature_zero_cost_one_call():
    inner = ScriptedBackend(ScriptedModel(backend="scripted", responses=["a", "b", "c", "d"]))
    backend = CachedBackend(inner, None)
    greedy = [ChatRequest.of([{"role": "user", "content": "q"}], 0.0, 8, sample=i) for i in range(3)]
    sampled = [ChatRequest.of([{"role": "user", "content": "q"}], 0.7, 8, sample=i) for i in range(2)]
    out = asyncio.run(backend.complete(greedy + sampled))
    assert [c.text for c in out] == ["a", "a", "a", "b", "c"]
    assert [c.cached for c in out] == [False, True, True, False, False]
    assert inner.calls == 3
