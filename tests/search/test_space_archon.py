"""The default space expresses Archon's own orders: every Archon config of the repository that `import-archon`
accepts is a point the default space can propose, at the config's own LM calls per query.

A point is checked by asking the space for it with fixed parameters (`optuna.trial.FixedTrial`): a parameter the
space does not ask, or a value outside the range it offers at that budget, fails the test. Temperatures and
max_tokens of the units after the generator are the space's own settings, not searched, so only the structure is
compared: ops in order, their units, models, samples, top_k, num_tests and the evaluator's mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from archon_search.core.errors import ArchitectureError
from archon_search.lang.archon_import import import_archon
from archon_search.lang.spec import Architecture
from archon_search.lang.validate import Validated, validate_text
from archon_search.search.objective import build_architecture
from archon_search.search.space import load_space, space_context

ARCHON = Path(__file__).resolve().parents[1] / "fixtures" / "archon"
JUDGES = ("critic", "ranker", "verifier", "unit_test_generator", "unit_test_evaluator")


def _accepted() -> list[Path]:
    accepted = []
    for path in sorted(ARCHON.glob("*.json")):
        try:
            import_archon(path)
        except ArchitectureError:
            continue
        accepted.append(path)
    return accepted


def _imported(path: Path) -> Validated:
    return validate_text(import_archon(path).yaml_text, file=str(path))


def _structure(arch: Architecture) -> list[tuple]:
    """Each layer's op and, per unit, what the search chooses (not the per-unit temperature or max_tokens)."""
    out = []
    for layer in arch.layers:
        units = []
        for unit in layer.units:
            fields = unit.model_dump(exclude_none=True)
            keep = {k: fields[k] for k in ("model", "samples", "top_k", "num_tests", "mode") if k in fields}
            if layer.op == "generator":
                keep["temperature"] = arch.temperature(unit)
            units.append(tuple(sorted(keep.items())))
        out.append((layer.op, tuple(units)))
    return out


def _stage_params(s: int, layers: list[Any]) -> dict[str, Any]:
    """The stage-`s` parameters that make the space propose `layers` (a stage's judges, then its fuser)."""
    ops = [layer.op for layer in layers]
    params: dict[str, Any] = {f"stage{s}_{op}": op in ops for op in ("critic", "ranker", "verifier")}
    params[f"stage{s}_unit_tests"] = "unit_test_generator" in ops
    for layer in layers:
        unit = layer.units[0]
        if layer.op == "critic":
            params[f"stage{s}_critic_model"] = unit.model
        elif layer.op == "ranker":
            params |= {f"stage{s}_ranker_model": unit.model, f"stage{s}_ranker_top_k": unit.top_k}
        elif layer.op == "verifier":
            params[f"stage{s}_verifier_model"] = unit.model
        elif layer.op == "unit_test_generator":
            params |= {f"stage{s}_tests_model": unit.model, f"stage{s}_num_tests": unit.num_tests}
        elif layer.op == "unit_test_evaluator":
            params |= {f"stage{s}_tests_mode": unit.mode, f"stage{s}_tests_top_k": unit.top_k}
        elif layer.op == "fuser":
            params[f"stage{s}_units"] = len(layer.units)
            for j, fuse in enumerate(layer.units):
                params |= {f"stage{s}_unit{j}_model": fuse.model, f"stage{s}_unit{j}_samples": fuse.samples}
    if "critic" in ops and "ranker" in ops:
        params[f"stage{s}_ranker_first"] = ops.index("ranker") < ops.index("critic")
    return params


def _params(arch: Architecture) -> dict[str, Any]:
    """Trial parameters for an architecture of generator -> stages ending in fusers (what these configs are)."""
    generator, rest = arch.layers[0], arch.layers[1:]
    params: dict[str, Any] = {"gen_units": len(generator.units)}
    for i, unit in enumerate(generator.units):
        params |= {
            f"gen{i}_samples": unit.samples,
            f"gen{i}_temperature": arch.temperature(unit),
            f"gen{i}_model": unit.model,
        }
    stages, current = [], []
    for layer in rest:
        current.append(layer)
        if layer.op == "fuser":
            stages.append(current)
            current = []
    assert not current, "these configs end in a fuser"
    params["stages"] = len(stages)
    for s, layers in enumerate(stages):
        params |= _stage_params(s, layers)
    return params | {"ranker": False, "verifier": False, "unit_tests": False, "voter": False}


@pytest.mark.parametrize("path", _accepted(), ids=lambda p: p.stem)
def test_every_accepted_archon_config_is_a_point_of_the_default_space(path: Path):
    imported = _imported(path)
    arch = imported.arch
    # its models are the run's models; a code task, where unit tests are on offer
    space = load_space()
    ctx = space_context(space, dict(arch.models), imported.calls_per_query, "code", max_tokens=512)
    _, proposed = build_architecture(optuna.trial.FixedTrial(_params(arch)), 0, space, ctx)
    assert _structure(proposed.arch) == _structure(arch)
    assert proposed.calls_per_query == imported.calls_per_query


def test_the_repository_holds_archon_configs_with_archon_orders():
    ops = {path.stem: [layer.op for layer in _imported(path).arch.layers] for path in _accepted()}
    assert len(ops) >= 2
    # a critic then a ranker before a fuser, and unit tests then a verifier before a fuser (mid-pipeline)
    assert ["critic", "ranker", "fuser"] in [o[1:] for o in ops.values()]
    assert any(o[1:] == ["unit_test_generator", "unit_test_evaluator", "verifier", "fuser"] for o in ops.values())
