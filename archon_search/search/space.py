"""The search space: which ops and ranges the search may use (YAML), and how a trial's parameters become
an architecture within the call budget.

Parameters are asked define-by-run under stable names (`gen0_samples`, `ranker_top_k`, ...), so the
multivariate TPE sampler can model them jointly; conditional ones are only asked when their op is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import optuna
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from archon_search.benchmarks.base import BenchKind
from archon_search.errors import ArchonError
from archon_search.validate import Validated, check_architecture

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_SPACE_FILE = Path(__file__).with_name("default_space.yaml")
SINGLE_TEMPERATURE = 0.0
SAMPLING_TEMPERATURE = 0.7


class SpaceError(ArchonError):
    """A search space file was refused, or allows no architecture for this run."""


def _ordered(pair: tuple) -> tuple:
    if pair[0] > pair[1]:
        raise ValueError(f"low {pair[0]} is above high {pair[1]}; write [low, high]")
    return pair


IntRange = Annotated[tuple[int, int], AfterValidator(_ordered)]
FloatRange = Annotated[tuple[float, float], AfterValidator(_ordered)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorSpace(_Strict):
    """Ranges of the first layer: how many units, and each unit's samples and temperature."""

    units: IntRange = (1, 3)
    samples: IntRange = (1, 32)
    temperature: FloatRange = (0.0, 1.2)
    temperature_step: float = Field(default=0.1, gt=0)


class RankerSpace(_Strict):
    """Whether a ranker may be used, and its `top_k` range."""

    enabled: bool = True
    top_k: IntRange = (1, 4)


class FuserSpace(_Strict):
    """Fuser layers in a row (0 = none); they share width (units) and samples per unit."""

    layers: IntRange = (0, 3)
    units: IntRange = (1, 3)
    samples: IntRange = (1, 3)


class UnitTestsSpace(_Strict):
    """Generated unit tests, run by the evaluator (code benchmarks only)."""

    enabled: bool = True
    num_tests: IntRange = (3, 6)


class SearchSpace(_Strict):
    """What the search may build; see `default_space.yaml` for the meaning of each field."""

    models: list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    generator: GeneratorSpace = Field(default_factory=GeneratorSpace)
    critic: bool = True
    ranker: RankerSpace = Field(default_factory=RankerSpace)
    fuser: FuserSpace = Field(default_factory=FuserSpace)
    verifier: bool = True
    unit_tests: UnitTestsSpace = Field(default_factory=UnitTestsSpace)
    voter: bool = True


def _check_bounds(space: SearchSpace, file: str) -> None:
    lows = {
        "generator.units": space.generator.units[0],
        "generator.samples": space.generator.samples[0],
        "ranker.top_k": space.ranker.top_k[0],
        "fuser.units": space.fuser.units[0],
        "fuser.samples": space.fuser.samples[0],
        "unit_tests.num_tests": space.unit_tests.num_tests[0],
    }
    for name, low in lows.items():
        if low < 1:
            raise SpaceError(f"{file}: {name}: the low end must be at least 1, found {low}")
    if space.fuser.layers[0] < 0:
        raise SpaceError(f"{file}: fuser.layers: the low end must be at least 0, found {space.fuser.layers[0]}")
    low_t, high_t = space.generator.temperature
    if low_t < 0 or high_t > 2:
        raise SpaceError(f"{file}: generator.temperature: keep it within [0, 2], found [{low_t}, {high_t}]")


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Read a space file (the built-in one when `path` is None); raise `SpaceError` in one line on a bad file."""
    source = Path(path) if path else DEFAULT_SPACE_FILE
    file = str(source)
    try:
        raw = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise SpaceError(f"{file}: cannot read the space file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpaceError(f"{file}: {where}YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    try:
        space = SearchSpace.model_validate(raw or {})
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "the file"
        if first["type"] == "extra_forbidden":
            raise SpaceError(f"{file}: unknown field '{loc}'; remove it or fix its spelling") from None
        raise SpaceError(f"{file}: {loc}: {first['msg']}") from None
    _check_bounds(space, file)
    return space


@dataclass(frozen=True)
class SpaceContext:
    """What a space is searched against: the allowed model names (with their specs), the budget, the task kind."""

    models: tuple[str, ...]
    model_specs: dict[str, Any]
    budget: int
    kind: BenchKind
    #: max_tokens of every unit: the space's, else the benchmark's.
    max_tokens: int = 512

    @property
    def allows_voter(self) -> bool:
        return self.kind in ("answer", "code")

    @property
    def allows_unit_tests(self) -> bool:
        return self.kind == "code"


def space_context(
    space: SearchSpace,
    model_specs: dict[str, Any] | None,
    budget: int,
    kind: BenchKind,
    judge: str | None = None,
    max_tokens: int = 512,
) -> SpaceContext:
    """Resolve the allowed models (space list, else every --models entry, else `embedded`) and check the budget.

    `max_tokens` (the benchmark's answer length) applies where the space sets none. Without a space list the
    `judge` model is left out when another model remains: an architecture that answers
    with its own judge grades itself.
    """
    specs = dict(model_specs or {})
    names = tuple(space.models) if space.models else (tuple(specs) or ("embedded",))
    if not space.models and judge in names and len(names) > 1:
        names = tuple(n for n in names if n != judge)
    unknown = [n for n in names if n not in specs and n != "embedded"]
    if unknown:
        raise SpaceError(
            f"space model(s) {', '.join(unknown)} are not defined; define them in --models FILE "
            f"(defined: {', '.join(sorted(specs)) or 'only embedded'})"
        )
    if budget < 1:
        raise SpaceError(f"--budget must be at least 1 LM call per query, found {budget}")
    if space.generator.samples[0] > budget:
        raise SpaceError(
            f"generator.samples starts at {space.generator.samples[0]}, above the budget of {budget}; lower it"
        )
    return SpaceContext(
        models=names, model_specs=specs, budget=budget, kind=kind, max_tokens=space.max_tokens or max_tokens
    )


@dataclass(frozen=True)
class GenUnit:
    """One generator unit of a point."""

    model: str
    samples: int
    temperature: float


@dataclass(frozen=True)
class Point:
    """A point of the space, as plain choices; `layers()` turns it into architecture layers."""

    generator: tuple[GenUnit, ...]
    critic: str | None = None
    ranker: str | None = None
    ranker_top_k: int = 1
    fuser_layers: int = 0
    fuser_units: int = 1
    fuser_samples: int = 1
    fuser_model: str | None = None
    verifier: str | None = None
    unit_tests: str | None = None
    num_tests: int = 3
    voter: bool = False

    def layers(self) -> list[dict]:
        """Raw layers in the space's fixed order; a critic is placed only where R3 allows one."""
        layers: list[dict] = [
            {
                "generator": [
                    {"model": u.model, "samples": u.samples, "temperature": u.temperature} for u in self.generator
                ]
            }
        ]
        has_fuser = self.fuser_layers > 0 and self.fuser_model is not None
        if self.critic and (self.ranker or has_fuser):
            layers.append({"critic": {"model": self.critic}})
        if self.ranker:
            layers.append({"ranker": {"model": self.ranker, "top_k": self.ranker_top_k}})
        if has_fuser:
            fuser = [{"model": self.fuser_model, "samples": self.fuser_samples}] * self.fuser_units
            layers += [{"fuser": list(fuser)} for _ in range(self.fuser_layers)]
        if self.verifier:
            layers.append({"verifier": {"model": self.verifier}})
        if self.unit_tests:
            layers.append({"unit_test_generator": {"model": self.unit_tests, "num_tests": self.num_tests}})
            layers.append({"unit_test_evaluator": {"mode": "execute", "top_k": 1}})
        if self.voter:
            layers.append({"voter": {"top_k": 1}})
        return layers


def architecture_dict(point: Point, name: str, space: SearchSpace, ctx: SpaceContext) -> dict:
    """The point as a raw architecture; `check_architecture(raw, models=ctx.model_specs)` resolves its models,
    and the validated architecture's `to_yaml_obj()` is self-contained."""
    return {
        "name": name,
        "defaults": {"temperature": space.temperature, "max_tokens": ctx.max_tokens},
        "layers": point.layers(),
    }


def _model(trial: optuna.Trial, name: str, ctx: SpaceContext) -> str:
    if len(ctx.models) == 1:
        return ctx.models[0]
    return trial.suggest_categorical(name, list(ctx.models))


def samples_high(space: SearchSpace, ctx: SpaceContext) -> int:
    """The generator's samples range top: the space's, capped by the budget."""
    return min(space.generator.samples[1], ctx.budget)


def _switch(trial: optuna.Trial, name: str, every: bool, ask: Callable[[], _T]) -> _T | None:
    """An on/off op: `name` is asked, then its settings (`ask()`) when it is on, or always when `every`
    parameter must be asked; the settings only when it is on, else None."""
    on = trial.suggest_categorical(name, [False, True])
    settings = ask() if on or every else None
    return settings if on else None


def suggest_point(trial: optuna.Trial, space: SearchSpace, ctx: SpaceContext) -> Point:
    """Ask the trial for a point, define-by-run, under stable parameter names.

    For a GP sampler every parameter is asked on every trial, used or not: GPSampler models only the parameters
    all trials share and samples the rest at random, which on this conditional space left it behind random search.
    """
    every = isinstance(trial, optuna.Trial) and isinstance(trial.study.sampler, optuna.samplers.GPSampler)
    gen = space.generator
    n_units = trial.suggest_int("gen_units", *gen.units)
    units = []
    for i in range(gen.units[1] if every else n_units):
        unit = GenUnit(
            model=_model(trial, f"gen{i}_model", ctx),
            samples=trial.suggest_int(f"gen{i}_samples", gen.samples[0], samples_high(space, ctx), log=True),
            temperature=round(
                trial.suggest_float(f"gen{i}_temperature", *gen.temperature, step=gen.temperature_step), 4
            ),
        )
        if i < n_units:
            units.append(unit)
    point = Point(generator=tuple(units))
    if space.ranker.enabled:
        ranker = _switch(
            trial,
            "ranker",
            every,
            lambda: (_model(trial, "ranker_model", ctx), trial.suggest_int("ranker_top_k", *space.ranker.top_k)),
        )
        if ranker:
            point = replace(point, ranker=ranker[0], ranker_top_k=ranker[1])
    layers = trial.suggest_int("fuser_layers", *space.fuser.layers) if space.fuser.layers[1] > 0 else 0
    if layers or (every and space.fuser.layers[1] > 0):
        fuser = {
            "fuser_units": trial.suggest_int("fuser_units", *space.fuser.units),
            "fuser_samples": trial.suggest_int("fuser_samples", *space.fuser.samples),
            "fuser_model": _model(trial, "fuser_model", ctx),
        }
        if layers:
            point = replace(point, fuser_layers=layers, **fuser)
    if space.critic and (point.ranker or layers or every):
        critic = _switch(trial, "critic", every, lambda: _model(trial, "critic_model", ctx))
        if critic and (point.ranker or layers):
            point = replace(point, critic=critic)
    if space.verifier:
        point = replace(point, verifier=_switch(trial, "verifier", every, lambda: _model(trial, "verifier_model", ctx)))
    if ctx.allows_unit_tests and space.unit_tests.enabled:
        tests = _switch(
            trial,
            "unit_tests",
            every,
            lambda: (
                _model(trial, "unit_tests_model", ctx),
                trial.suggest_int("unit_tests_num_tests", *space.unit_tests.num_tests),
            ),
        )
        if tests:
            point = replace(point, unit_tests=tests[0], num_tests=tests[1])
    if ctx.allows_voter and space.voter and (not point.unit_tests or every):
        on = trial.suggest_categorical("voter", [False, True])
        if not point.unit_tests:
            point = replace(point, voter=on)
    return point


# When calls tie, the most optional op gives way first.
_GIVE_WAY = ("verifier", "critic", "unit_test_generator", "ranker", "fuser", "generator")


def _shrink(point: Point, op: str) -> tuple[Point, str]:
    """One step down in calls on the layer of `op`, with a note of what changed."""
    if op == "generator":
        units = list(point.generator)
        widest = max(range(len(units)), key=lambda i: (units[i].samples, i))
        if units[widest].samples > 1:
            units[widest] = replace(units[widest], samples=units[widest].samples - 1)
            return replace(point, generator=tuple(units)), f"gen{widest}_samples -1"
        return replace(point, generator=tuple(units[:-1])), "dropped a generator unit"
    if op == "fuser":
        if point.fuser_samples > 1:
            return replace(point, fuser_samples=point.fuser_samples - 1), "fuser_samples -1"
        if point.fuser_units > 1:
            return replace(point, fuser_units=point.fuser_units - 1), "fuser_units -1"
        return replace(point, fuser_layers=point.fuser_layers - 1), "fuser_layers -1"
    if op == "unit_test_generator":
        return replace(point, unit_tests=None), "dropped unit tests"
    return replace(point, **{op: None}), f"dropped the {op}"


def fit_to_budget(point: Point, space: SearchSpace, ctx: SpaceContext, name: str) -> tuple[Point, Validated, list[str]]:
    """The point, repaired until its static LM calls per query fit the budget, validated; with notes on repairs.

    Repair shrinks the layer with the most calls (ties: verifier, critic, unit tests, ranker, fuser, then the
    generator), one step at a time: samples first, then width, then the layer itself.
    """
    notes: list[str] = []
    while True:
        checked = check_architecture(architecture_dict(point, name, space, ctx), name, ctx.model_specs)
        if checked.calls_per_query <= ctx.budget:
            return point, checked, notes
        most = max(c.calls for c in checked.layers)
        ops = {c.op for c in checked.layers if c.calls == most}
        op = next(o for o in _GIVE_WAY if o in ops)
        point, note = _shrink(point, op)
        notes.append(note)


@dataclass(frozen=True)
class Baseline:
    """A reference architecture run before the search, as fixed trial parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _on_grid(value: float, gen: GeneratorSpace) -> float:
    """`value` clipped to the temperature range and snapped to its step, so a fixed trial parameter is valid."""
    low, high = gen.temperature
    steps = round((min(max(value, low), high) - low) / gen.temperature_step)
    return round(min(low + steps * gen.temperature_step, high), 4)


def _off(space: SearchSpace) -> dict[str, Any]:
    """Every on/off parameter of the space set to off (fuser layers to 0)."""
    off: dict[str, Any] = {"ranker": False, "critic": False, "verifier": False, "unit_tests": False, "voter": False}
    if space.fuser.layers[1] > 0:
        off["fuser_layers"] = 0
    return off


def baselines(space: SearchSpace, ctx: SpaceContext) -> list[Baseline]:
    """One call of each allowed model, and self-consistency at the budget (generator samples + voter) where the
    benchmark has an answer extractor, else best-of-(B-1) with a ranker where that fits. Baselines the space
    cannot express (e.g. generator.units starting above 1) are left out."""
    gen = space.generator
    if gen.units[0] > 1 or space.fuser.layers[0] > 0:
        log.warning("the space has no single-generator points, so no baseline is run")
        return []
    first = ctx.models[0]
    single_t = _on_grid(SINGLE_TEMPERATURE, gen)
    out = []
    for model in ctx.models:
        params = _off(space) | {"gen_units": 1, "gen0_samples": 1, "gen0_temperature": single_t}
        if len(ctx.models) > 1:
            params["gen0_model"] = model
        out.append(Baseline(f"single-{model}", params))
    many = samples_high(space, ctx)
    sampled = {"gen_units": 1, "gen0_temperature": _on_grid(SAMPLING_TEMPERATURE, gen)}
    if len(ctx.models) > 1:
        sampled["gen0_model"] = first
    if ctx.allows_voter and space.voter and many > 1:
        out.append(Baseline(f"self-consistency-{many}", _off(space) | sampled | {"gen0_samples": many, "voter": True}))
    elif space.ranker.enabled and space.ranker.top_k[0] == 1 and min(many, ctx.budget - 1) > 1:
        k = min(many, ctx.budget - 1)
        ranker = {"ranker": True, "ranker_top_k": 1} | ({"ranker_model": first} if len(ctx.models) > 1 else {})
        out.append(Baseline(f"best-of-{k}", _off(space) | sampled | {"gen0_samples": k} | ranker))
    return out
