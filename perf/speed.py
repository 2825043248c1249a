"""The speed suite: proof, in numbers, that running and searching architectures wastes neither LM calls nor
wall-clock time. Run from the repository root:

    python -m perf.speed [--quick] [--only NAMES | --skip NAMES] [--PARAMETER VALUE ...]

It prints ONE JSON object on stdout (logs go to stderr): the headline figures, their targets and whether
each is met, the details behind them, the parameters used and the machine. `--quick` uses fewer questions,
repeats and seeds (a few minutes on 2 cores); every parameter can also be set on its own (see --help).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from perf.speed_client import client_cpu
from perf.speed_embedded import embedded_batch_speed, embedded_parallel_throughput, embedded_throughput
from perf.speed_executor import cache_overhead, critical_path, overhead, sequential_wall
from perf.speed_lognormal import LOGNORMAL_ARCHITECTURE, MAX_CONCURRENCY, lognormal_path
from perf.speed_overhead import search_overhead
from perf.speed_search import REACH, Reach, cache_dedupe, landscape_setup, search_efficiency

log = logging.getLogger("perf.speed")

TARGETS: dict[str, tuple[str, float]] = {
    "critical_path_ratio": (">=", 0.85),
    "critical_path_ratio_lognormal": (">=", 0.85),
    "overhead_us_per_call": ("<", 200.0),
    "cache_dedupe_ratio": ("<=", 0.5),
    "search_efficiency": ("<=", 0.6),
    "embedded_throughput_ratio": (">=", 0.9),
    "embedded_batch_speedup": (">=", 1.3),
    "embedded_contended_ratio": (">=", 0.4),
    "search_overhead_growth": ("<=", 1.5),
    "client_cpu_us_per_call": ("<=", 300.0),
}


@dataclass(frozen=True)
class Params:
    """Everything the suite's figures depend on; each field is also a command-line option."""

    questions: int = 50
    latency_ms: float = 50.0
    repeats: int = 9
    lognormal_questions: int = 48
    lognormal_median_ms: float = 300.0
    lognormal_sigma: float = 1.0
    lognormal_repeats: int = 3
    overhead_questions: int = 400
    landscape_items: int = 80
    budget: int = 6
    dedupe_trials: int = 30
    dedupe_seeds: int = 5
    seeds: int = 60
    cap: int = 200
    embedded_questions: int = 8
    embedded_samples: int = 2
    embedded_tokens: int = 64
    embedded_threads: int = 1
    embedded_repeats: int = 5
    embedded_batch_repeats: int = 2
    overhead_trials: int = 256
    client_calls: int = 2048
    client_concurrency: int = 1024
    client_repeats: int = 5


FULL = Params()
QUICK = Params(
    repeats=5,
    lognormal_repeats=2,
    overhead_questions=200,
    dedupe_seeds=3,
    seeds=30,
    embedded_questions=4,
    embedded_tokens=48,
    embedded_repeats=3,
    client_calls=1024,
    client_repeats=3,
)


def _critical_path(p: Params) -> dict[str, Any]:
    found = critical_path(p.questions, p.latency_ms / 1000, p.repeats)
    ours = found.actual_s
    sequential = sequential_wall(p.questions, p.latency_ms / 1000)
    return {
        "critical_path_ratio": found.ratio,
        "sequential_speedup": sequential / ours,
        "details": {
            "critical_path": {"ideal_s": found.ideal_s, "actual_s": ours},
            "sequential": {"sequential_s": sequential, "ours_s": ours},
        },
    }


def _lognormal(p: Params) -> dict[str, Any]:
    found = lognormal_path(p.lognormal_questions, p.lognormal_median_ms / 1000, p.lognormal_sigma, p.lognormal_repeats)
    return {
        "critical_path_ratio_lognormal": found.ratio,
        "details": {
            "critical_path_lognormal": {
                "ideal_s": found.ideal_s,
                "actual_s": found.actual_s,
                "questions": found.questions,
                "calls": found.calls,
                "architecture": " -> ".join(
                    f"{next(iter(layer))}" for layer in yaml.safe_load(LOGNORMAL_ARCHITECTURE)["layers"]
                ),
                "max_concurrency": MAX_CONCURRENCY,
            }
        },
    }


def _overhead(p: Params) -> dict[str, Any]:
    bare = overhead(p.overhead_questions, p.repeats)
    cached = cache_overhead(p.overhead_questions, p.repeats)
    return {
        "overhead_us_per_call": bare.cpu_us,
        "details": {
            "overhead": {
                "calls": bare.calls,
                "cpu_us_per_call": bare.cpu_us,
                "wall_us_per_call": bare.wall_us,
                "with_cache_miss_cpu_us_per_call": cached["miss"].cpu_us,
                "with_cache_hit_cpu_us_per_call": cached["hit"].cpu_us,
            }
        },
    }


def _search(p: Params) -> dict[str, Any]:
    setup = landscape_setup(p.landscape_items, p.budget)
    dedupes = [cache_dedupe(setup, p.dedupe_trials, seed) for seed in range(p.dedupe_seeds)]
    logical = sum(d.logical for d in dedupes)
    backend = sum(d.backend for d in dedupes)
    distinct = sum(len(d.distinct) for d in dedupes)
    parts: dict[str, dict[str, int]] = {}
    for d in dedupes:
        for name, counts in d.parts.items():
            total = parts.setdefault(name, {"logical": 0, "backend": 0})
            total["logical"] += counts["logical"]
            total["backend"] += counts["backend"]
    reaches, unavailable = search_efficiency(setup, ["tpe", "random", "gp"], p.seeds, p.cap)

    def ratio(name: str) -> float | None:
        return reaches[name].median / reaches["random"].median if name in reaches else None

    return {
        "cache_dedupe_ratio": backend / logical,
        "search_efficiency": ratio("tpe"),
        "search_efficiency_gp": ratio("gp"),
        "search_efficiency_gp_reason": unavailable.get("gp"),
        "details": {
            "cache_dedupe": {
                "logical_calls": logical,
                "backend_calls": backend,
                "distinct_requests": distinct,
                "per_search": [round(d.ratio, 4) for d in dedupes],
                "parts": parts,
            },
            "search_efficiency": {
                "optimum": setup.optimum,
                "reach": REACH,
                "cap": p.cap,
                # how the landscape's replies read back through the ops' real parsers (misread must stay 0)
                "parsing": setup.parsing,
                **{name: _reach(found) for name, found in reaches.items()},
            },
        },
    }


def _reach(found: Reach) -> dict[str, Any]:
    return {
        "median_trials": found.median,
        "median_is_lower_bound": found.censored,
        "reached": sum(n is not None for n in found.trials),
        "trials": found.trials,
    }


def _embedded(p: Params) -> dict[str, Any]:
    found = embedded_throughput(
        p.embedded_questions, p.embedded_samples, p.embedded_tokens, p.embedded_threads, p.embedded_repeats
    )
    # reported, not targeted: whether decoding on one model per core beats the backend's one call at a time
    parallel = embedded_parallel_throughput(
        p.embedded_questions, p.embedded_samples, p.embedded_tokens, p.embedded_repeats
    )
    return {
        "embedded_throughput_ratio": found.ratio,
        "embedded_parallel_ratio": parallel.ratio,
        "details": {"embedded": dataclasses.asdict(found), "embedded_parallel": dataclasses.asdict(parallel)},
    }


def _embedded_batch(p: Params) -> dict[str, Any]:
    found = embedded_batch_speed(p.embedded_tokens, p.embedded_batch_repeats)
    return {
        "embedded_batch_speedup": found.speedup,
        "embedded_contended_ratio": found.contended_ratio,
        "details": {"embedded_batch": dataclasses.asdict(found)},
    }


def _search_overhead(p: Params) -> dict[str, Any]:
    found = search_overhead(p.overhead_trials)
    return {
        "search_overhead_growth": round(found.growth, 3),
        "details": {
            "search_overhead": {
                "trials": found.trials,
                "early_ms_per_trial": round(found.early_s * 1000, 2),
                "late_ms_per_trial": round(found.late_s * 1000, 2),
            }
        },
    }


def _client_cpu(p: Params) -> dict[str, Any]:
    found = client_cpu(p.client_calls, p.client_concurrency, p.client_repeats)
    return {
        "client_cpu_us_per_call": round(found.cpu_us, 1),
        "details": {
            "client_cpu": {
                "calls": found.calls,
                "max_concurrency": found.max_concurrency,
                "cpu_us_per_call": round(found.cpu_us, 1),
                "wall_us_per_call": round(found.wall_us, 1),
                "sdk_floor_cpu_us_per_call": round(found.sdk_floor_cpu_us, 1),
            }
        },
    }


FIGURES: dict[str, tuple[Callable[[Params], dict[str, Any]], tuple[str, ...]]] = {
    "critical_path": (_critical_path, ("critical_path_ratio", "sequential_speedup")),
    "critical_path_lognormal": (_lognormal, ("critical_path_ratio_lognormal",)),
    "overhead": (_overhead, ("overhead_us_per_call",)),
    "search": (
        _search,
        ("cache_dedupe_ratio", "search_efficiency", "search_efficiency_gp", "search_efficiency_gp_reason"),
    ),
    "embedded": (_embedded, ("embedded_throughput_ratio", "embedded_parallel_ratio")),
    "embedded_batch": (_embedded_batch, ("embedded_batch_speedup", "embedded_contended_ratio")),
    "search_overhead": (_search_overhead, ("search_overhead_growth",)),
    "client_cpu": (_client_cpu, ("client_cpu_us_per_call",)),
}


def machine() -> dict[str, Any]:
    """Where the figures were taken: cores, Python, platform, and how busy the machine was."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _met(name: str, value: Any) -> bool | None:
    if value is None:
        return None
    op, bound = TARGETS[name]
    return {">=": value >= bound, "<": value < bound, "<=": value <= bound}[op]


def run_suite(params: Params, names: Sequence[str], mode: str) -> dict[str, Any]:
    """Take the figures of `names` (keys of FIGURES); figures not taken are null, listed under `skipped`."""
    started = time.perf_counter()
    report: dict[str, Any] = {"suite": "speed", "mode": mode}
    details: dict[str, Any] = {}
    for name, (measure, keys) in FIGURES.items():
        if name not in names:
            report.update(dict.fromkeys(keys))
            continue
        log.info("measuring %s", name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            found = measure(params)
        details.update(found.pop("details"))
        report.update(found)
    report["targets"] = {name: f"{op} {bound}" for name, (op, bound) in TARGETS.items()}
    report["met"] = {name: _met(name, report[name]) for name in TARGETS}
    report["skipped"] = [name for name in FIGURES if name not in names]
    report["details"] = details
    report["parameters"] = dataclasses.asdict(params)
    report["machine"] = machine()
    report["wall_s"] = time.perf_counter() - started
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perf.speed", description="The speed suite: one JSON object on stdout."
    )
    parser.add_argument("--quick", action="store_true", help="fewer questions, repeats and seeds (a few minutes)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--only", help=f"comma-separated figures to take, of: {', '.join(FIGURES)}")
    chosen.add_argument("--skip", help="comma-separated figures to leave out")
    for f in dataclasses.fields(Params):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=type(getattr(FULL, f.name)),
            default=None,
            help=f"(full {getattr(FULL, f.name)}, quick {getattr(QUICK, f.name)})",
        )
    return parser


def _names(parser: argparse.ArgumentParser, text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    return names


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the options, take the figures, print the JSON object, and return it."""
    parser = _parser()
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    params = dataclasses.replace(
        base, **{f.name: getattr(args, f.name) for f in dataclasses.fields(Params) if getattr(args, f.name) is not None}
    )
    only, skip = _names(parser, args.only), _names(parser, args.skip)
    names = only or [n for n in FIGURES if n not in skip]
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # the search logs every trial; the suite's own progress lines are enough here
    for noisy in ("archon_search", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run_suite(params, names, "quick" if args.quick else "full")
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    # the headline figures as `name=value` lines too, for a reader of the terminal (stdout stays one JSON object)
    for name in names:
        for key in FIGURES[name][1]:
            sys.stderr.write(f"{key}={report[key]}\n")
    return report


if __name__ == "__main__":
    main()
