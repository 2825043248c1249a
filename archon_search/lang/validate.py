"""Reading architecture files and checking them against the composition rules R1-R8 (DESIGN §2).

Every problem becomes an `Issue` line naming the file, the layer, the rule and what to change; the
validator raises only `ArchitectureError`, whatever the input.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from archon_search.core.errors import ArchitectureError, Issue
from archon_search.lang.graph import LayerCount, layer_counts
from archon_search.lang.spec import (
    BACKENDS,
    SINGLE_UNIT_OPS,
    UNIT_TYPES,
    Architecture,
    Defaults,
    EmbeddedModel,
    Layer,
    ModelSpec,
    Task,
)

TOP_LEVEL_FIELDS = ("name", "description", "task", "models", "defaults", "layers")
_MODEL_ADAPTER: TypeAdapter = TypeAdapter(ModelSpec)


@dataclass
class Validated:
    """An architecture that passed every rule, with its static call counts and any warnings."""

    arch: Architecture
    source: str
    layers: list[LayerCount]
    warnings: list[Issue] = field(default_factory=list)

    @property
    def calls_per_query(self) -> int:
        return sum(c.calls for c in self.layers)


def _pydantic_issues(
    err: PydanticValidationError, file: str, where: str, layer: int | None = None, op: str | None = None
) -> list[Issue]:
    issues = []
    for e in err.errors():
        parts = list(e["loc"])
        if parts and parts[0] in BACKENDS:  # a discriminated union puts the backend tag first
            parts = parts[1:]
        loc = ".".join(str(p) for p in parts)
        if e["type"] == "extra_forbidden":
            msg = f"{where}unknown field '{loc.split('.')[-1]}'; remove it or fix its spelling"
        elif e["type"] == "missing":
            msg = f"{where}missing required field '{loc}'"
        elif not loc:  # the section as a whole, e.g. a model validator's check across its fields
            msg = f"{where}{e['msg'].removeprefix('Value error, ')}"
        else:
            value = e.get("input")
            shown = f" = {value!r}" if not isinstance(value, (dict, list)) else ""
            msg = f"{where}field '{loc}'{shown}: {e['msg']}"
        rule = "R6" if e["type"] == "union_tag_invalid" else "R7"
        issues.append(Issue(file, msg, rule, layer, op))
    return issues


def parse_yaml(text: str, file: str) -> Any:
    """`yaml.safe_load` with syntax errors turned into one line with line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if "'\\t'" in problem:
            problem += "; indent with spaces, not tabs"
        raise ArchitectureError([Issue(file, f"{where}YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ArchitectureError([Issue(file, f"YAML error: {exc}".splitlines()[0])]) from None
    except RecursionError:
        raise ArchitectureError([Issue(file, "YAML nested too deeply; flatten the structure")]) from None
    except Exception as exc:  # noqa: BLE001
        # PyYAML's scalar constructors raise bare ValueError, IndexError, KeyError, AttributeError... on explicit
        # tags or odd scalars (`!!float `, `!!bool x`, `2020-13-45`); the validator must still answer in one line
        reason = f"{type(exc).__name__}: {exc}"
        raise ArchitectureError(
            [Issue(file, f"YAML value cannot be built ({reason}); quote the value to keep it a string")]
        ) from None


def parse_models(raw: Any, file: str, issues: list[Issue]) -> dict[str, Any]:
    """Model entries from a `models:` mapping; problems are appended to `issues`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append(Issue(file, "'models' must be a mapping of name -> {backend: ...}", "R7"))
        return {}
    models = {}
    for name, entry in raw.items():
        where = f"model '{name}': "
        if not isinstance(entry, dict):
            issues.append(Issue(file, f"{where}must be a mapping like {{backend: embedded}}", "R7"))
            continue
        backend = entry.get("backend")
        if backend not in BACKENDS:
            issues.append(Issue(file, f"{where}unknown backend {backend!r}; use one of {', '.join(BACKENDS)}", "R6"))
            continue
        try:
            models[str(name)] = _MODEL_ADAPTER.validate_python(entry)
        except PydanticValidationError as exc:
            issues.extend(_pydantic_issues(exc, file, where))
    return models


def load_models_file(path: str | Path) -> dict[str, Any]:
    """Read a `--models FILE` (just the mapping of model entries)."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ArchitectureError([Issue(file, f"cannot read models file: {exc.strerror}")]) from None
    raw = parse_yaml(text, file)
    if isinstance(raw, dict) and set(raw) == {"models"}:
        raw = raw["models"]
    issues: list[Issue] = []
    models = parse_models(raw, file, issues)
    if issues:
        raise ArchitectureError(issues)
    return models


def _parse_layer(index: int, raw: Any, file: str, issues: list[Issue]) -> Layer | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        found = list(raw) if isinstance(raw, dict) else type(raw).__name__
        issues.append(Issue(file, f"a layer is a mapping with exactly one op as its key, found {found}", "R2", index))
        return None
    op, body = next(iter(raw.items()))
    if op not in UNIT_TYPES:
        close = difflib.get_close_matches(str(op), UNIT_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        issues.append(Issue(file, f"unknown op {op!r}; {hint}use one of {', '.join(UNIT_TYPES)}", "R2", index))
        return None
    bodies = [body] if isinstance(body, dict) else body
    if not isinstance(bodies, list) or not bodies:
        issues.append(Issue(file, "a layer needs at least one unit (a mapping or a non-empty list)", "R2", index, op))
        return None
    units = []
    for ui, unit in enumerate(bodies):
        where = f"unit {ui}: " if len(bodies) > 1 else ""
        if not isinstance(unit, dict):
            issues.append(Issue(file, f"{where}a unit must be a mapping like {{model: NAME}}", "R2", index, op))
            continue
        try:
            units.append(UNIT_TYPES[op].model_validate(unit))
        except PydanticValidationError as exc:
            issues.extend(_pydantic_issues(exc, file, where, index, op))
    if len(units) != len(bodies):
        return None
    return Layer(op=op, units=tuple(units))


def _composition_issues(layers: list[Layer | None], models: dict[str, Any], file: str) -> list[Issue]:
    """Cross-layer rules R1, R3-R6; layers that failed to parse (None) are skipped, their neighbours still checked."""
    issues = []
    ops = [layer.op if layer else None for layer in layers]
    if ops[0] not in ("generator", None):
        issues.append(Issue(file, f"the first layer must be a generator, found {ops[0]}", "R1", 0, ops[0]))
    for i, layer in enumerate(layers):
        if layer is None:
            continue
        op = layer.op
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        prev = ops[i - 1] if i > 0 else None
        # a neighbour that failed to parse was already reported; don't guess what it would have been
        nxt_known = i + 1 == len(ops) or nxt is not None
        prev_known = i == 0 or prev is not None
        if op == "generator" and i > 0:
            issues.append(
                Issue(file, "generator may only be the first layer; use a fuser to build on candidates", "R1", i, op)
            )
        if op == "critic" and nxt_known and nxt not in ("ranker", "fuser"):
            issues.append(
                Issue(file, f"a critic must be followed by a ranker or fuser, found {nxt or 'the end'}", "R3", i, op)
            )
        if op == "unit_test_generator" and nxt_known and nxt != "unit_test_evaluator":
            issues.append(
                Issue(
                    file,
                    f"a unit_test_generator must be followed by a unit_test_evaluator, found {nxt or 'the end'}",
                    "R4",
                    i,
                    op,
                )
            )
        if op == "unit_test_evaluator" and prev_known and prev != "unit_test_generator":
            issues.append(
                Issue(
                    file,
                    f"a unit_test_evaluator must directly follow a unit_test_generator, found {prev or 'nothing'}",
                    "R4",
                    i,
                    op,
                )
            )
        if op in SINGLE_UNIT_OPS and len(layer.units) != 1:
            issues.append(
                Issue(file, f"a {op} layer has exactly one unit, found {len(layer.units)}; keep one", "R5", i, op)
            )
        for ui, unit in enumerate(layer.units):
            name = getattr(unit, "model", None)
            where = f"unit {ui}: " if len(layer.units) > 1 else ""
            if op == "unit_test_evaluator" and unit.mode == "llm" and name is None:
                issues.append(Issue(file, f"{where}mode llm needs a model", "R6", i, op))
            elif name is not None and name not in models:
                known = ", ".join(sorted(models)) or "none"
                issues.append(
                    Issue(
                        file,
                        f"{where}model '{name}' is not defined; define it under models (or --models FILE); "
                        f"defined: {known}",
                        "R6",
                        i,
                        op,
                    )
                )
    return issues


def _top_k_warnings(arch: Architecture, counts: list[LayerCount], file: str) -> list[Issue]:
    warnings = []
    for layer, count in zip(arch.layers, counts):
        top_k = getattr(layer.units[0], "top_k", None)
        if top_k is not None and top_k > count.candidates_in:
            warnings.append(
                Issue(
                    file,
                    f"top_k {top_k} exceeds the {count.candidates_in} candidate(s) it can receive",
                    "warning",
                    count.index,
                    layer.op,
                )
            )
    return warnings


def check_architecture(
    raw: Any,
    file: str = "<architecture>",
    models: dict[str, Any] | None = None,
    budget: int | None = None,
) -> Validated:
    """Check already-parsed data against R1-R8; raise `ArchitectureError` listing every broken rule."""
    if not isinstance(raw, dict):
        raise ArchitectureError(
            [Issue(file, f"the file must be a mapping with name and layers, found {type(raw).__name__}")]
        )
    issues: list[Issue] = []
    for key in raw:
        if key not in TOP_LEVEL_FIELDS:
            issues.append(Issue(file, f"unknown field {key!r}; allowed: {', '.join(TOP_LEVEL_FIELDS)}", "R7"))
    all_models: dict[str, Any] = {"embedded": EmbeddedModel()}
    all_models.update(parse_models(raw.get("models"), file, issues))
    all_models.update(models or {})
    defaults = Defaults()
    if raw.get("defaults") is not None:
        try:
            defaults = Defaults.model_validate(raw["defaults"])
        except PydanticValidationError as exc:
            issues.extend(_pydantic_issues(exc, file, "defaults: "))
    task = None
    if raw.get("task") is not None:
        try:
            task = Task.model_validate(raw["task"])
        except PydanticValidationError as exc:
            issues.extend(_pydantic_issues(exc, file, "task: "))
    raw_layers = raw.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        issues.append(Issue(file, "'layers' must be a non-empty list, starting with a generator layer", "R2"))
        raise ArchitectureError(issues)
    layers = [_parse_layer(i, layer, file, issues) for i, layer in enumerate(raw_layers)]
    # a model entry that was refused above is reported once, not again as undefined at each use
    raw_models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    known = dict.fromkeys(map(str, raw_models)) | all_models
    issues.extend(_composition_issues(layers, known, file))
    if issues:
        raise ArchitectureError(issues)
    used = {getattr(u, "model", None) for layer in layers for u in layer.units}
    try:
        arch = Architecture(
            name=raw.get("name"),
            description=raw.get("description"),
            task=task,
            models={k: v for k, v in all_models.items() if k in used},
            defaults=defaults,
            layers=tuple(layers),
        )
    except PydanticValidationError as exc:
        raise ArchitectureError(_pydantic_issues(exc, file, "")) from None
    counts = layer_counts(arch)
    total = sum(c.calls for c in counts)
    if budget is not None and total > budget:
        per_layer = ", ".join(f"{c.op} {c.calls}" for c in counts if c.calls)
        raise ArchitectureError(
            [
                Issue(
                    file,
                    f"{total} LM calls per query exceed the budget of {budget} ({per_layer}); "
                    "lower samples or remove layers",
                    "R8",
                )
            ]
        )
    return Validated(arch=arch, source=file, layers=counts, warnings=_top_k_warnings(arch, counts, file))


def load_architecture(
    path: str | Path,
    models: dict[str, Any] | None = None,
    budget: int | None = None,
) -> Validated:
    """Read, parse and validate one architecture file."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ArchitectureError([Issue(file, f"cannot read file: {reason}")]) from None
    return check_architecture(parse_yaml(text, file), file, models, budget)


def validate_text(
    text: str, file: str = "<text>", models: dict[str, Any] | None = None, budget: int | None = None
) -> Validated:
    """Validate YAML text (used by tests, the search space and import-archon)."""
    return check_architecture(parse_yaml(text, file), file, models, budget)
