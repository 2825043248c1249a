"""Finding a benchmark by built-in name or by the path of a benchmark file (DESIGN §1b).

A built-in benchmark module registers its class with `@register_benchmark("name")` and is listed in
`BUILTIN_MODULES`, which are imported on the first lookup (so importing the registry stays cheap).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.base import Benchmark

BenchmarkFactory = Callable[..., Benchmark]

BUILTIN_MODULES = (
    "archon_search.datasets.math500",
    "archon_search.datasets.gsm8k",
    "archon_search.datasets.humaneval",
    "archon_search.datasets.arith",
    "archon_search.datasets.mtbench",
)

_FACTORIES: dict[str, BenchmarkFactory] = {}


def register_benchmark(name: str) -> Callable[[BenchmarkFactory], BenchmarkFactory]:
    """Decorator: make a benchmark class (or factory) available as `--bench NAME`."""

    def add(factory: BenchmarkFactory) -> BenchmarkFactory:
        _FACTORIES[name] = factory
        return factory

    return add


def benchmark_names() -> list[str]:
    """The built-in benchmark names, sorted."""
    _import_builtins()
    return sorted(_FACTORIES)


def get_benchmark(name_or_path: str | Path, **options: Any) -> Benchmark:
    """A built-in benchmark (its constructor gets `options`, e.g. `size`, `seed`, `level` for arith) or a user
    benchmark from a YAML file; BenchmarkError with the known names otherwise."""
    from archon_search.datasets.user import load_user_benchmark

    text = str(name_or_path)
    if _is_file_reference(text):
        if options:
            raise BenchmarkError(
                f"{text}: a benchmark file takes no options ({', '.join(options)}); set them in the file"
            )
        return load_user_benchmark(Path(text))
    names = benchmark_names()
    if text not in _FACTORIES:
        raise BenchmarkError(
            f"unknown benchmark {text!r}; use one of {', '.join(names)} or the path of a benchmark .yaml file"
        )
    try:
        return _FACTORIES[text](**options)
    except TypeError as exc:
        raise BenchmarkError(f"benchmark {text}: bad option(s) {', '.join(options)} ({exc})") from None


def _is_file_reference(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text


def _import_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
