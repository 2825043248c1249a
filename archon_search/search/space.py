"""The search space: which ops and ranges the search may use (YAML), and how a trial's parameters become
an architecture within the call budget.

A point is a generator layer, 0-3 stages of [unit tests] -> [verifier] -> [critic] -> [ranker] -> fuser layer (the
critic and ranker in either order, the fuser's units may use different models), a final [critic] -> [ranker], then
[verifier], [unit tests] and [voter]: Archon's own orders (a ranker before a critic, a verifier before a fuser,
unit tests mid-pipeline) are points of the space. Parameters are
asked define-by-run under stable names (`gen0_samples`, `stage1_unit0_model`, ...), so the multivariate TPE
sampler can model them jointly; conditional ones are only asked when their op is on, and every range is cut to
what fits the budget, so each trial's parameters describe exactly the architecture it scored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import optuna
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from archon_search.core.errors import ArchonError
from archon_search.core.items import BenchKind
from archon_search.lang.validate import Validated, check_architecture

log = logging.getLogger(__name__)

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

    units: IntRange = (1, 5)
    samples: IntRange = (1, 32)
    temperature: FloatRange = (0.0, 1.2)
    temperature_step: float = Field(default=0.1, gt=0)


class RankerSpace(_Strict):
    """Whether a ranker may be used, its `top_k` range, and whether a stage may rank before it critiques."""

    enabled: bool = True
    top_k: IntRange = (1, 4)
    before_critic: bool = True


class FuserSpace(_Strict):
    """Fuser layers in a row (0 = none); they share width (units) and samples per unit."""

    layers: IntRange = (0, 3)
    units: IntRange = (1, 3)
    samples: IntRange = (1, 3)


class UnitTestsSpace(_Strict):
    """Generated unit tests, run by the evaluator (code benchmarks only); in a stage the evaluator may also have
    the model judge the tests (mode llm) and keep `top_k` candidates."""

    enabled: bool = True
    num_tests: IntRange = (3, 6)
    top_k: IntRange = (1, 4)


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
        "unit_tests.top_k": space.unit_tests.top_k[0],
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
    ctx = SpaceContext(
        models=names, model_specs=specs, budget=budget, kind=kind, max_tokens=space.max_tokens or max_tokens
    )
    least = calls_of(smallest_point(space, ctx), space, ctx)
    if least > budget:
        raise SpaceError(
            f"the space's smallest architecture makes {least} LM calls per query, above the budget of {budget}; "
            "lower the low ends of generator.units, generator.samples or fuser.layers, or raise --budget"
        )
    return ctx


@dataclass(frozen=True)
class GenUnit:
    """One generator unit of a point."""

    model: str
    samples: int
    temperature: float


@dataclass(frozen=True)
class FuseUnit:
    """One unit of a stage's fuser layer (units of one layer may use different models)."""

    model: str
    samples: int = 1


@dataclass(frozen=True)
class Stage:
    """One stage after the generator: [unit tests] -> [verifier] -> [critic] -> [ranker] -> a fuser layer (Archon's
    stacked design; `ranker_first` puts the ranker before the critic, whose critiques then reach the fuser)."""

    fuser: tuple[FuseUnit, ...]
    critic: str | None = None
    ranker: str | None = None
    ranker_top_k: int = 1
    ranker_first: bool = False
    verifier: str | None = None
    unit_tests: str | None = None
    num_tests: int = 3
    tests_mode: str = "execute"
    tests_top_k: int = 1


@dataclass(frozen=True)
class Point:
    """A point of the space, as plain choices; `layers()` turns it into architecture layers.

    `critic`/`ranker` are the final pair after the stages (a critic only with a ranker, R3)."""

    generator: tuple[GenUnit, ...]
    stages: tuple[Stage, ...] = ()
    critic: str | None = None
    ranker: str | None = None
    ranker_top_k: int = 1
    verifier: str | None = None
    unit_tests: str | None = None
    num_tests: int = 3
    voter: bool = False

    def layers(self) -> list[dict]:
        """Raw layers: generator, the stages, [critic] -> [ranker], [verifier], [unit tests], [voter]."""
        layers: list[dict] = [
            {
                "generator": [
                    {"model": u.model, "samples": u.samples, "temperature": u.temperature} for u in self.generator
                ]
            }
        ]
        for stage in self.stages:
            if stage.unit_tests:
                layers += _unit_tests(stage.unit_tests, stage.num_tests, stage.tests_mode, stage.tests_top_k)
            if stage.verifier:
                layers.append({"verifier": {"model": stage.verifier}})
            layers += _judges(stage.critic, stage.ranker, stage.ranker_top_k, stage.ranker_first)
            layers.append({"fuser": [{"model": u.model, "samples": u.samples} for u in stage.fuser]})
        layers += _judges(self.critic if self.ranker else None, self.ranker, self.ranker_top_k)
        if self.verifier:
            layers.append({"verifier": {"model": self.verifier}})
        if self.unit_tests:
            layers += _unit_tests(self.unit_tests, self.num_tests, "execute", 1)
        if self.voter:
            layers.append({"voter": {"top_k": 1}})
        return layers


def _judges(critic: str | None, ranker: str | None, top_k: int, ranker_first: bool = False) -> list[dict]:
    judges: list[dict] = [{"critic": {"model": critic}}] if critic else []
    ranked = [{"ranker": {"model": ranker, "top_k": top_k}}] if ranker else []
    return ranked + judges if ranker_first else judges + ranked


def _unit_tests(model: str, num_tests: int, mode: str, top_k: int) -> list[dict]:
    evaluator: dict[str, Any] = {"mode": mode, "top_k": top_k} | ({"model": model} if mode == "llm" else {})
    return [{"unit_test_generator": {"model": model, "num_tests": num_tests}}, {"unit_test_evaluator": evaluator}]


def architecture_dict(point: Point, name: str, space: SearchSpace, ctx: SpaceContext) -> dict:
    """The point as a raw architecture; `check_architecture(raw, models=ctx.model_specs)` resolves its models,
    and the validated architecture's `to_yaml_obj()` is self-contained."""
    return {
        "name": name,
        "defaults": {"temperature": space.temperature, "max_tokens": ctx.max_tokens},
        "layers": point.layers(),
    }


def samples_high(space: SearchSpace, ctx: SpaceContext) -> int:
    """The generator's samples range top: the space's, capped by the budget."""
    return min(space.generator.samples[1], ctx.budget)


class _Asker:
    """Asks a trial for a point one choice at a time, keeping the point within the budget at every step.

    The point is always complete, with every choice not asked yet at its smallest; an op is offered only when
    it fits as it stands, and a number's range is cut to the values that fit. LM calls only grow with every
    choice, so the finished point fits the budget as asked: its parameters are exactly what is scored.
    """

    def __init__(self, trial: optuna.Trial, space: SearchSpace, ctx: SpaceContext, point: Point) -> None:
        self.trial, self.space, self.ctx, self.point = trial, space, ctx, point

    def fits(self, point: Point) -> bool:
        return calls_of(point, self.space, self.ctx) <= self.ctx.budget

    def model(self, name: str) -> str:
        if len(self.ctx.models) == 1:
            return self.ctx.models[0]
        return self.trial.suggest_categorical(name, list(self.ctx.models))

    def switch(self, name: str, on: Callable[[Point], Point]) -> bool:
        """Ask `name` (on/off) when turning it on fits; True (and the point with it on) when it is on."""
        candidate = on(self.point)
        if not self.fits(candidate) or not self.trial.suggest_categorical(name, [False, True]):
            return False
        self.point = candidate
        return True

    def number(self, name: str, low: int, high: int, at: Callable[[Point, int], Point], log: bool = False) -> int:
        """Ask `name` in [low, the highest value up to `high` that fits], and set it."""
        top = low
        while top < high and self.fits(at(self.point, top + 1)):
            top += 1
        value = self.trial.suggest_int(name, low, top, log=log)
        self.point = at(self.point, value)
        return value


def calls_of(point: Point, space: SearchSpace, ctx: SpaceContext) -> int:
    """The point's static LM calls per query (DESIGN §1's upper bound)."""
    return check_architecture(architecture_dict(point, "p", space, ctx), "p", ctx.model_specs).calls_per_query


def smallest_point(space: SearchSpace, ctx: SpaceContext) -> Point:
    """The space's point with the fewest calls: every number at its low end, every op off."""
    gen = space.generator
    unit = GenUnit(ctx.models[0], gen.samples[0], gen.temperature[0])
    fuse = FuseUnit(ctx.models[0], space.fuser.samples[0])
    stages = tuple(Stage((fuse,) * space.fuser.units[0]) for _ in range(space.fuser.layers[0]))
    return Point(generator=(unit,) * gen.units[0], stages=stages)


def _set_unit(units: tuple, i: int, **change: Any) -> tuple:
    return units[:i] + (replace(units[i], **change),) + units[i + 1 :]


def _set_stage(point: Point, s: int, **change: Any) -> Point:
    return replace(point, stages=_set_unit(point.stages, s, **change))


def suggest_point(trial: optuna.Trial, space: SearchSpace, ctx: SpaceContext) -> Point:
    """Ask the trial for a point within the budget, define-by-run, under stable parameter names.

    The generator comes first (its samples range is then the same on every trial, so the sampler can learn it),
    then the shape (stages, which ops are on), each op offered only where it still fits, then the other sizes,
    each range cut to what fits. Rebuilding from the stored parameters gives the same point.
    """
    gen, fuser = space.generator, space.fuser
    ask = _Asker(trial, space, ctx, smallest_point(space, ctx))
    base = ask.point.generator[0]
    n_units = ask.number("gen_units", *gen.units, lambda p, v: replace(p, generator=(base,) * v))
    for i in range(n_units):
        ask.number(
            f"gen{i}_samples",
            gen.samples[0],
            samples_high(space, ctx),
            lambda p, v, i=i: replace(p, generator=_set_unit(p.generator, i, samples=v)),
            log=True,
        )
        temperature = round(trial.suggest_float(f"gen{i}_temperature", *gen.temperature, step=gen.temperature_step), 4)
        model = ask.model(f"gen{i}_model")
        ask.point = replace(
            ask.point, generator=_set_unit(ask.point.generator, i, temperature=temperature, model=model)
        )
    if fuser.layers[1] > 0:
        stage = Stage((FuseUnit(ctx.models[0], fuser.samples[0]),) * fuser.units[0])
        ask.number("stages", *fuser.layers, lambda p, v: replace(p, stages=(stage,) * v))
    for s, stage in enumerate(ask.point.stages):
        if space.critic:
            ask.switch(f"stage{s}_critic", lambda p, s=s: _set_stage(p, s, critic=ctx.models[0]))
        if space.ranker.enabled:
            ask.switch(f"stage{s}_ranker", lambda p, s=s: _set_stage(p, s, ranker=ctx.models[0]))
        if space.verifier:
            ask.switch(f"stage{s}_verifier", lambda p, s=s: _set_stage(p, s, verifier=ctx.models[0]))
        if ctx.allows_unit_tests and space.unit_tests.enabled:
            tests = space.unit_tests.num_tests[0]
            ask.switch(
                f"stage{s}_unit_tests", lambda p, s=s, n=tests: _set_stage(p, s, unit_tests=ctx.models[0], num_tests=n)
            )
        unit = stage.fuser[0]
        ask.number(f"stage{s}_units", *fuser.units, lambda p, v, s=s, u=unit: _set_stage(p, s, fuser=(u,) * v))
    if space.ranker.enabled and ask.switch("ranker", lambda p: replace(p, ranker=ctx.models[0])) and space.critic:
        ask.switch("critic", lambda p: replace(p, critic=ctx.models[0]))
    if space.verifier:
        ask.switch("verifier", lambda p: replace(p, verifier=ctx.models[0]))
    if ctx.allows_unit_tests and space.unit_tests.enabled:
        ask.switch(
            "unit_tests", lambda p: replace(p, unit_tests=ctx.models[0], num_tests=space.unit_tests.num_tests[0])
        )
    if ctx.allows_voter and space.voter and not ask.point.unit_tests:
        ask.switch("voter", lambda p: replace(p, voter=True))
    for s, stage in enumerate(ask.point.stages):
        _stage_sizes(ask, s, stage)
        for j in range(len(stage.fuser)):
            model = ask.model(f"stage{s}_unit{j}_model")
            ask.point = _set_stage(ask.point, s, fuser=_set_unit(ask.point.stages[s].fuser, j, model=model))
            ask.number(
                f"stage{s}_unit{j}_samples",
                *fuser.samples,
                lambda p, v, s=s, j=j: _set_stage(p, s, fuser=_set_unit(p.stages[s].fuser, j, samples=v)),
            )
    if ask.point.ranker:
        ask.point = replace(ask.point, ranker=ask.model("ranker_model"))
        ask.number("ranker_top_k", *space.ranker.top_k, lambda p, v: replace(p, ranker_top_k=v))
        if ask.point.critic:
            ask.point = replace(ask.point, critic=ask.model("critic_model"))
    if ask.point.verifier:
        ask.point = replace(ask.point, verifier=ask.model("verifier_model"))
    if ask.point.unit_tests:
        ask.point = replace(ask.point, unit_tests=ask.model("unit_tests_model"))
        ask.number("unit_tests_num_tests", *space.unit_tests.num_tests, lambda p, v: replace(p, num_tests=v))
    return ask.point


def _stage_sizes(ask: _Asker, s: int, stage: Stage) -> None:
    """The models and sizes of stage `s`'s judges, and the order of its critic and ranker."""
    space = ask.space
    if stage.critic:
        ask.point = _set_stage(ask.point, s, critic=ask.model(f"stage{s}_critic_model"))
    if stage.ranker:
        ask.point = _set_stage(ask.point, s, ranker=ask.model(f"stage{s}_ranker_model"))
        ask.number(f"stage{s}_ranker_top_k", *space.ranker.top_k, lambda p, v, s=s: _set_stage(p, s, ranker_top_k=v))
    if stage.critic and stage.ranker and space.ranker.before_critic:
        first = ask.trial.suggest_categorical(f"stage{s}_ranker_first", [False, True])
        ask.point = _set_stage(ask.point, s, ranker_first=first)
    if stage.verifier:
        ask.point = _set_stage(ask.point, s, verifier=ask.model(f"stage{s}_verifier_model"))
    if stage.unit_tests:
        # judging the tests with the model (llm) costs calls that running them (execute) does not: offered if it fits
        if ask.fits(_set_stage(ask.point, s, tests_mode="llm")):
            ask.point = _set_stage(
                ask.point, s, tests_mode=ask.trial.suggest_categorical(f"stage{s}_tests_mode", ["execute", "llm"])
            )
        ask.point = _set_stage(ask.point, s, unit_tests=ask.model(f"stage{s}_tests_model"))
        tests = space.unit_tests
        ask.number(f"stage{s}_num_tests", *tests.num_tests, lambda p, v, s=s: _set_stage(p, s, num_tests=v))
        ask.number(f"stage{s}_tests_top_k", *tests.top_k, lambda p, v, s=s: _set_stage(p, s, tests_top_k=v))


def point_architecture(point: Point, space: SearchSpace, ctx: SpaceContext, name: str) -> Validated:
    """The point as a validated architecture; a `SpaceError` if it is over the budget (the space never asks such
    a point: this guards the contract that a trial's parameters are what it scored)."""
    checked = check_architecture(architecture_dict(point, name, space, ctx), name, ctx.model_specs)
    if checked.calls_per_query > ctx.budget:
        raise SpaceError(f"{name}: {checked.calls_per_query} LM calls per query, above the budget of {ctx.budget}")
    return checked


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
        off["stages"] = 0
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
