"""Shared fixtures: where the example architectures and test fixtures live, and a writer of temporary files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def architectures_dir() -> Path:
    """The hand-written example architectures (architectures/)."""
    return REPO_ROOT / "architectures"


@pytest.fixture
def fixtures_dir() -> Path:
    """Test input files (tests/fixtures/)."""
    return REPO_ROOT / "tests" / "fixtures"


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented text to tmp_path/NAME (default arch.yaml) and return the path."""

    def write(text: str, name: str = "arch.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that loads the embedded model or starts PostgreSQL is slow too (`-m "not slow"` skips them all)."""
    for item in items:
        if item.get_closest_marker("embedded") or item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.slow)
