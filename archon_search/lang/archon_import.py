"""Turn an Archon JSON config (`{"name", "layers": [[unit, ...], ...]}`) into an architecture file of ours.

Each inner list is one layer; its dicts are units whose `type` is the op. Models become entries under `models`
named by a slug of their id. Anything our language cannot say is reported as a warning, never dropped
silently, and the result goes through the validator, so a config that breaks a rule is refused by rule id.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from archon_search.core.errors import ArchitectureError, ArchonError, Issue
from archon_search.lang.spec import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, UNIT_TYPES, Defaults
from archon_search.lang.validate import validate_text

log = logging.getLogger(__name__)

DEFAULT_MODEL_TYPE = "OpenAI_API"
PLACEHOLDER_BASE_URL = "https://FILL-IN-THE-ENDPOINT.invalid/v1"
# Archon field name -> ours, where only the name differs
RENAMED_FIELDS = {"unit_test_cap": "num_tests"}
# fields every Archon unit carries that the conversion itself consumes
CONSUMED_FIELDS = frozenset({"type", "model", "model_type"})
# Archon's unit test evaluator asks a model, so its faithful translation is mode llm
EVALUATOR_MODE = "llm"


@dataclass
class ArchonImport:
    """The converted architecture as YAML text, and what the conversion could not carry over."""

    yaml_text: str
    warnings: list[str] = field(default_factory=list)


def slugify(text: str) -> str:
    """Lowercase, with every run of characters outside [a-z0-9_-] replaced by one `-`."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


def _api_key_env(model_type: str) -> str:
    stem = re.sub(r"[^A-Z0-9]+", "_", model_type.upper()).strip("_")
    return f"{stem}_KEY" if stem.endswith("_API") else f"{stem}_API_KEY"


def _model_entry(model: str, model_type: str) -> tuple[dict[str, Any], str | None]:
    """(our model entry, a warning or None) for one Archon model id and model_type."""
    kind = model_type.lower()
    if kind == "openai_api":
        return {"backend": "openai", "model": model}, None
    if kind == "vllm":
        return {"backend": "vllm", "model": model}, None
    entry = {
        "backend": "openai",
        "model": model,
        "base_url": PLACEHOLDER_BASE_URL,
        "api_key_env": _api_key_env(model_type),
    }
    return entry, f"{model} is served by {model_type}: set base_url to its OpenAI-compatible endpoint"


class _Models:
    """Collects distinct (model_type, model) pairs under unique slug names."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.entries: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []
        self._names: dict[tuple[str, str], str] = {}

    def name_for(self, model: str, model_type: str) -> str:
        key = (model_type, model)
        if key not in self._names:
            base = slugify(model) or "model"
            name, n = base, 1
            # `embedded` is the built-in model; an imported entry must not shadow it
            while name in self.entries or name == "embedded":
                n += 1
                name = f"{base}-{n}"
            entry, warning = _model_entry(model, model_type)
            self.entries[name] = entry
            self._names[key] = name
            if warning:
                self.warnings.append(f"{self.file}: models.{name}: {warning}")
        return self._names[key]


def _convert_unit(raw: dict[str, Any], op: str, where: str, models: _Models, warnings: list[str]) -> dict[str, Any]:
    allowed = set(UNIT_TYPES[op].model_fields) if op in UNIT_TYPES else set()
    unit: dict[str, Any] = {}
    if isinstance(raw.get("model"), str):
        if "model_type" not in raw:
            warnings.append(f"{where}: no model_type; assumed {DEFAULT_MODEL_TYPE}")
        unit["model"] = models.name_for(raw["model"], str(raw.get("model_type", DEFAULT_MODEL_TYPE)))
    elif "model" in raw:
        unit["model"] = raw["model"]  # not a model id: left for the validator to refuse by rule
    for key, value in raw.items():
        ours = RENAMED_FIELDS.get(key, key)
        if key in CONSUMED_FIELDS:
            continue
        if ours in allowed:
            unit[ours] = value
        elif key == "samples" and value == 1:
            continue  # one sample is what our single-call ops do anyway
        else:
            warnings.append(f"{where}: field {key!r} = {value!r} is not supported; dropped")
    if op == "unit_test_evaluator":
        unit["mode"] = EVALUATOR_MODE
    return unit


def _valid_default(key: str, value: Any) -> bool:
    try:
        Defaults.model_validate({key: value})
    except PydanticValidationError:
        return False
    return True


def _factor_defaults(layers: list[dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Move the most common valid temperature and max_tokens into `defaults`, removing them where units agree."""
    defaults: dict[str, Any] = {}
    units = [u for layer in layers for body in layer.values() for u in body]
    for key, value in (("temperature", DEFAULT_TEMPERATURE), ("max_tokens", DEFAULT_MAX_TOKENS)):
        # out-of-range values stay on their unit, so the validator's refusal names that layer
        values = Counter(repr(u[key]) for u in units if key in u and _valid_default(key, u[key]))
        if values:
            common = values.most_common(1)[0][0]
            value = next(u[key] for u in units if key in u and repr(u[key]) == common)
        defaults[key] = value
        for u in units:
            if key in u and repr(u[key]) == repr(value):
                del u[key]
    return defaults


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ArchonError(f"{path}: cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ArchonError(f"{path}: not a text file; pass an Archon JSON config") from None
    except json.JSONDecodeError as exc:
        raise ArchonError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ArchonError(f"{path}: JSON nested too deeply to be an Archon config") from None
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list) or not all(
        isinstance(layer, list) and all(isinstance(u, dict) for u in layer) for layer in layers
    ):
        raise ArchonError(
            f"{path}: not an Archon config: 'layers' must be a list of layers, each a list of unit objects"
        )
    return data


def _layer_op(units: list[dict[str, Any]], index: int, file: str) -> str:
    types = list(dict.fromkeys(str(u.get("type")) for u in units))
    if not types:
        raise ArchitectureError([Issue(file, "an empty layer; give it a unit or remove it", "R2", index)])
    if len(types) > 1:
        raise ArchitectureError(
            [Issue(file, f"units of types {', '.join(types)} in one layer; a layer has one op, split it", "R2", index)]
        )
    return types[0]


def import_archon(path: str | Path) -> ArchonImport:
    """Convert the Archon JSON config at `path`; raise ArchitectureError if the result breaks a rule."""
    path = Path(path)
    file = str(path)
    config = _read_config(path)
    models = _Models(file)
    warnings: list[str] = []
    for key in config:
        if key not in ("name", "layers"):
            warnings.append(f"{file}: top-level field {key!r} is not supported; dropped")
    layers = []
    for li, raw_layer in enumerate(config["layers"]):
        op = _layer_op(raw_layer, li, file)
        units = [
            _convert_unit(u, op, str(Issue(file, f"unit {ui}", None, li, op)), models, warnings)
            for ui, u in enumerate(raw_layer)
        ]
        layers.append({op: units})
    defaults = _factor_defaults(layers)
    original = str(config.get("name") or "")
    name = slugify(original) or slugify(path.stem) or "imported"
    head = {"name": name, "description": f"imported from Archon config {original or path.name}"}
    head["models"] = models.entries
    flow = {
        "defaults": defaults,
        "layers": [{op: units[0] if len(units) == 1 else units} for layer in layers for op, units in layer.items()],
    }
    # model entries read best as blocks, units as one flow mapping per line
    yaml_text = (
        f"# imported from {path.name} by archon-search import-archon\n"
        + yaml.safe_dump(head, sort_keys=False, default_flow_style=False, width=120)
        + yaml.safe_dump(flow, sort_keys=False, default_flow_style=None, width=120)
    )
    validate_text(yaml_text, file)
    warnings = models.warnings + warnings
    for warning in warnings:
        log.info("import %s: %s", file, warning)
    return ArchonImport(yaml_text=yaml_text, warnings=warnings)
