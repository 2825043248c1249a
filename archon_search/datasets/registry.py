"""Finding a dataset by built-in benchmark name or by the path of a benchmark file (DESIGN §1b).

A built-in dataset module registers its class with `@register_dataset("name")` and is listed in
`BUILTIN_MODULES`, which are imported on the first lookup (so importing the registry stays cheap).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archon_search.core.errors import BenchmarkError
from archon_search.datasets.base import Dataset

DatasetFactory = Callable[..., Dataset]

BUILTIN_MODULES = (
    "archon_search.datasets.math500",
    "archon_search.datasets.gsm8k",
    "archon_search.datasets.humaneval",
    "archon_search.datasets.arith",
    "archon_search.datasets.mtbench",
)

_FACTORIES: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator: make a dataset class (or factory) available as `--bench NAME`."""

    def add(factory: DatasetFactory) -> DatasetFactory:
        _FACTORIES[name] = factory
        return factory

    return add


def benchmark_names() -> list[str]:
    """The built-in benchmark names, sorted."""
    _import_builtins()
    return sorted(_FACTORIES)


def get_dataset(name_or_path: str | Path, **options: Any) -> Dataset:
    """A built-in dataset (its constructor gets `options`, e.g. `size`, `seed`, `level` for arith) or a user
    benchmark file's dataset; BenchmarkError with the known names otherwise."""
    from archon_search.datasets.user import load_user_dataset

    text = str(name_or_path)
    if _is_file_reference(text):
        if options:
            raise BenchmarkError(
                f"{text}: a benchmark file takes no options ({', '.join(options)}); set them in the file"
            )
        return load_user_dataset(Path(text))
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
