"""Every example in architectures/ validates, documents itself, and states its true LM calls per query."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archon_search.lang.validate import load_architecture

ARCHITECTURES = Path(__file__).resolve().parents[2] / "architectures"
FILES = sorted(ARCHITECTURES.glob("*.yaml"))
REQUIRED = [
    "single",
    "self-consistency",
    "best-of-n",
    "moa-3-layer",
    "critic-rank-fuse",
    "verify-rank",
    "unit-tests-execute",
    "unit-tests-llm",
    "deep",
    "quickstart-embedded",
]


def test_the_required_examples_exist_and_are_listed():
    names = {f.stem for f in FILES}
    assert set(REQUIRED) <= names
    readme = (ARCHITECTURES / "README.md").read_text()
    assert all(f"`{name}.yaml`" in readme for name in names)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_example_validates_and_its_header_is_true(path):
    checked = load_architecture(path)
    assert checked.arch.name == path.stem
    assert checked.warnings == []
    header = path.read_text().split("\nname:")[0]
    assert header.startswith(f"# {path.stem}: ")
    stated = re.search(r"^# LM calls per query: (\d+)$", header, re.MULTILINE)
    assert stated and int(stated.group(1)) == checked.calls_per_query


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_examples_name_key_variables_never_keys(path):
    for spec in load_architecture(path).arch.models.values():
        env = getattr(spec, "api_key_env", None)
        assert env is None or re.fullmatch(r"[A-Z][A-Z0-9_]*", env)
    assert not re.search(r"sk-[A-Za-z0-9]{8,}", path.read_text())


def test_quickstart_uses_only_the_embedded_model():
    checked = load_architecture(ARCHITECTURES / "quickstart-embedded.yaml")
    assert set(checked.arch.models) == {"embedded"}
    assert checked.arch.models["embedded"].backend == "embedded"
    generator, voter = checked.arch.layers
    (unit,) = generator.units
    assert (unit.samples, checked.arch.temperature(unit), checked.arch.max_tokens(unit)) == (3, 0.7, 256)
    assert voter.op == "voter"
    assert "models:" not in (ARCHITECTURES / "quickstart-embedded.yaml").read_text()


def test_deep_has_at_least_five_layers():
    assert len(load_architecture(ARCHITECTURES / "deep.yaml").arch.layers) >= 5
