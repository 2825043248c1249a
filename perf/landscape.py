"""A constructed landscape with a computable ground truth: simulated models, a matching benchmark, and the
exact expected score of any architecture made of generator, critic, ranker, fuser, verifier and voter layers.

For tests of the search and for its speed benchmark only; never something a user runs by default.

The world. Each question has a hidden integer answer and a difficulty level; a level sets how hard the
question is and how often a wrong answer is the question's one *popular* mistake (answer + 1) rather than
a *unique* one (a fresh random number). Every answer is thus one of three labels: C (correct), P (popular
wrong) or U (unique wrong). A model has a generator skill and a selection accuracy for each judging op:

- generator: the model's greedy answer to a question is C with probability p = sigmoid(skill - difficulty),
  else P. A sample at temperature t repeats the greedy answer with probability max(0, 1 - t); otherwise it is
  a fresh draw, C with probability p * (1 - HEAT * t), else P or U by the level's popular share. Low
  temperature is accurate but correlated (votes add little), high temperature diverse but noisier.
- ranker: puts a correct candidate first with probability `rank` (+ CRITIQUE_BONUS after a critic) when
  there is one, else a candidate picked uniformly; the rest follow in random order.
- every judging reply (ranker, critic, verifier) is, with probability `garble`, text that states no ranking,
  critique or verdict: the op falls back (a ranker keeps the incoming order, a verifier keeps the candidate,
  a critic of several candidates attaches none), and the ground truth counts that fallback.
- fuser: each output is correct with probability fuse * [some input is correct] + (1 - fuse) * (share of
  correct inputs), fuse = `fuse` (+ CRITIQUE_BONUS after a critic); a wrong output is P or U as above.
- critic: writes a critique for every candidate; its only effect is the bonus of the next ranker or fuser.
  (A critique is read only when the critic's reply parses: an unreadable one gives no bonus.)
- verifier: says "correct" with probability `verify` for a correct candidate, 1 - `verify` for a wrong one.
- voter: the real op, on the extracted answers (unique wrong answers never agree).

`SimBackend` plays one model: it recognises the op of each request by the prompt templates of
`archon_search.ops`, reads the candidates' answers with the benchmark's real extractor, and draws what it
says from a hash of (seed, model, request), so a request always gets the same answer, as through a response
cache. What it says is written as realistic text in the model's own styles (perf/landscape_text.py:
markdown with a bold final answer, think blocks, explain-then-rank, JSON, bold verdicts, numbered lists in
critiques), never in the format the op's prompt asks for; the ops' real parsers turn it into rankings,
verdicts and critiques, and the benchmark's real number scorer (`NumberScorer`, as GSM8K's) scores the
architecture's final answer. `parse_audit` checks that every style reads back as meant. `Landscape.expected_score(arch)` computes the exact expected
accuracy over those draws by enumerating candidate label sequences (cost grows as 3^candidates; fine up to
about 8 candidates per layer), and `best_in_space` finds the true optimum of a small search space by brute
force over that function.

As the search's speed benchmark (one JSON line: wall and CPU time, trials per second, the true score of the
best found and, with --optimum, of the space's optimum):

    python -m perf.landscape --trials 30 --budget 6 --items 80 --sampler tpe --optimum

`--storage URL` and `--out DIR` make it one worker of a shared study (the tests run two on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import product
from pathlib import Path

from archon_search.backends.base import Backend
from archon_search.core.items import Item
from archon_search.core.messages import ChatRequest, Completion
from archon_search.datasets.base import Dataset
from archon_search.eval.benchmark import Benchmark, make_benchmark
from archon_search.lang.spec import Architecture, ScriptedModel
from archon_search.lang.validate import Validated
from archon_search.ops.critic import CRITIC_PROMPT, parse_critiques
from archon_search.ops.fuser import FUSER_PROMPT
from archon_search.ops.generator import GENERATOR_SYSTEM
from archon_search.ops.ranker import RANKER_PROMPT, parse_ranking
from archon_search.ops.verifier import VERIFIER_PROMPT, parse_verdict
from archon_search.scoring.answers import extract_number, numbers_match
from archon_search.search.runner import SearchConfig, SearchResult, run_search
from archon_search.search.space import (
    SearchSpace,
    SpaceContext,
    load_space,
    point_architecture,
    space_context,
    suggest_point,
)
from perf import landscape_text as text
from perf.speed_timing import stopwatch

HEAT = 0.25
CRITIQUE_BONUS = 0.15
QUESTION = "Landscape question {qid}: what is the hidden number?"
_QID = re.compile(r"Landscape question (q\d+)")
_BLOCK = re.compile(r"^\[(\d+)\]\n", re.MULTILINE)
_CRITIQUE = re.compile(r"\nCritique of \[\d+\]: ")


@dataclass(frozen=True)
class Level:
    """A kind of question: its difficulty and how often a wrong answer is the popular mistake."""

    difficulty: float
    popular: float


@dataclass(frozen=True)
class SimModel:
    """A simulated model: generator skill, its accuracy as ranker, fuser and verifier, how often a judging
    reply of it is unreadable (`garble`), and whose writing styles it uses (`voice`, a key of the
    landscape_text style tables)."""

    skill: float
    rank: float
    fuse: float
    verify: float
    garble: float = 0.0
    voice: str = "alpha"


SPACE_FILE = Path(__file__).with_name("landscape-space.yaml")
DEFAULT_LEVELS = (Level(-1.5, 0.2), Level(0.0, 0.4), Level(1.0, 0.6), Level(2.0, 0.75))
# `alpha` writes well but judges poorly; `beta` writes poorly but judges well: the best architectures mix them.
DEFAULT_MODELS = {
    "alpha": SimModel(skill=1.0, rank=0.35, fuse=0.3, verify=0.6, garble=0.1, voice="alpha"),
    "beta": SimModel(skill=-0.5, rank=0.85, fuse=0.6, verify=0.85, garble=0.05, voice="beta"),
}


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _unit(*parts: object) -> float:
    """A uniform draw in [0, 1) determined by `parts`."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _template_regex(template: str) -> re.Pattern:
    """A regex matching any prompt made from `template`; each placeholder's first use is a named group."""
    out, seen = [], set()
    for piece in re.split(r"(\{[a-z_]+\})", template):
        name = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
        if name is None:
            out.append(re.escape(piece))
        else:
            out.append(f"(?P<{name}>.*)" if name not in seen else "(?:.*)")
            seen.add(name)
    return re.compile("(?s)" + "".join(out))


_OPS = {
    "critic": _template_regex(CRITIC_PROMPT),
    "ranker": _template_regex(RANKER_PROMPT),
    "fuser": _template_regex(FUSER_PROMPT),
    "verifier": _template_regex(VERIFIER_PROMPT),
}


class LandscapeDataset(Dataset):
    """The landscape's questions: integer answers, read and scored by the real number scorer (as GSM8K's)."""

    name = "landscape"
    scorer = "number"

    def __init__(self, items: Sequence[Item]):
        self.items = list(items)

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The landscape's items (`data` is ignored: the landscape makes its own)."""
        return list(self.items)


@dataclass
class Landscape:
    """Questions, simulated models and the ground truth; `seed` fixes the questions and every draw."""

    n_items: int = 40
    seed: int = 0
    models: dict[str, SimModel] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    levels: tuple[Level, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        self.items = [
            Item(id=f"q{i}", prompt=QUESTION.format(qid=f"q{i}"), reference=100 + 7 * i, meta={"level": self._level(i)})
            for i in range(self.n_items)
        ]
        self._by_id = {item.id: item for item in self.items}
        self._memo: dict[tuple, dict] = {}

    def _level(self, i: int) -> int:
        return int(_unit("level", self.seed, i) * len(self.levels))

    def benchmark(self) -> Benchmark:
        """The benchmark over this landscape's questions."""
        return make_benchmark(LandscapeDataset(self.items))

    def model_specs(self) -> dict[str, ScriptedModel]:
        """Model entries for validation (R6); the search gets `backends()` in their place."""
        return {name: ScriptedModel(backend="scripted") for name in self.models}

    def backends(self, latency_ms: float = 0.0) -> dict[str, SimBackend]:
        """One simulated backend per model name."""
        return {name: SimBackend(self, name, latency_ms) for name in self.models}

    def search(self, config: SearchConfig, latency_ms: float = 0.0) -> SearchResult:
        """`archon-search run` with `config` on this landscape: its questions, its simulated models."""
        return run_search(
            config,
            benchmark=self.benchmark(),
            models=self.model_specs(),
            backends=self.backends(latency_ms),
            show_progress=False,
        )

    # -- the world's probabilities, shared by the simulation and the ground truth --

    def p_greedy(self, model: str, level: int) -> float:
        """Probability that the model's greedy answer on a question of this level is correct."""
        return _sigmoid(self.models[model].skill - self.levels[level].difficulty)

    def fresh_law(self, model: str, level: int, temperature: float) -> dict[str, float]:
        """Label probabilities of a generator sample that does not repeat the greedy answer."""
        right = self.p_greedy(model, level) * (1 - HEAT * temperature)
        return {"C": right, **self.wrong_law(level, 1 - right)}

    def sample_law(self, model: str, level: int, temperature: float, greedy: str) -> dict[str, float]:
        """Label probabilities of one generator sample, given the model's greedy label."""
        copy = copy_probability(temperature)
        law = {k: (1 - copy) * v for k, v in self.fresh_law(model, level, temperature).items()}
        law[greedy] += copy
        return law

    def wrong_law(self, level: int, mass: float) -> dict[str, float]:
        """How probability `mass` of a wrong answer splits between the popular mistake and unique ones."""
        popular = self.levels[level].popular
        return {"P": mass * popular, "U": mass * (1 - popular)}

    def fuse_law(self, model: str, level: int, labels: Sequence[str], critiqued: bool) -> dict[str, float]:
        """Label probabilities of one fuser output given its input labels."""
        skill = min(1.0, self.models[model].fuse + (CRITIQUE_BONUS if critiqued else 0.0))
        right = list(labels).count("C")
        p = skill * (right > 0) + (1 - skill) * right / len(labels)
        return {"C": p, **self.wrong_law(level, 1 - p)}

    def garble(self, model: str) -> float:
        """Probability that one judging reply of the model states nothing its op can read."""
        return self.models[model].garble

    def rank_skill(self, model: str, critiqued: bool) -> float:
        """Probability that the ranker puts a correct candidate first when one exists."""
        return min(1.0, self.models[model].rank + (CRITIQUE_BONUS if critiqued else 0.0))

    # -- the ground truth --

    def expected_score(self, arch: Architecture | Validated, items: Sequence[Item] | None = None) -> float:
        """Exact expected accuracy of `arch` on `items` (default: all) over the simulation's draws."""
        arch = arch.arch if isinstance(arch, Validated) else arch
        items = list(items) if items is not None else self.items
        by_level = Counter(item.meta["level"] for item in items)
        total = sum(n * self._level_score(arch, level) for level, n in by_level.items())
        return total / len(items)

    def _level_score(self, arch: Architecture, level: int) -> float:
        dist = self._distribution(arch, level, len(arch.layers))
        return sum(p for (labels, _), p in dist.items() if labels and labels[0] == "C")

    def _layer_key(self, arch: Architecture, index: int) -> tuple:
        layer = arch.layers[index]
        return (layer.op,) + tuple(
            (getattr(u, "model", None), getattr(u, "samples", 1), getattr(u, "top_k", 1), arch.temperature(u))
            for u in layer.units
        )

    def _distribution(self, arch: Architecture, level: int, depth: int) -> dict:
        """(labels, critiqued) -> probability after the first `depth` layers, memoised on the layers' content."""
        key = (level,) + tuple(self._layer_key(arch, i) for i in range(depth))
        if key in self._memo:
            return self._memo[key]
        if depth == 1:
            dist = self._generate(arch, level)
        else:
            dist = self._apply(arch, depth - 1, level, self._distribution(arch, level, depth - 1))
        self._memo[key] = dist
        return dist

    def _generate(self, arch: Architecture, level: int) -> dict:
        units = arch.layers[0].units
        models = sorted({u.model for u in units})
        dist: dict = {}
        for greedy in product("CP", repeat=len(models)):
            weight = math.prod(
                self.p_greedy(m, level) if g == "C" else 1 - self.p_greedy(m, level) for m, g in zip(models, greedy)
            )
            seqs = {(): weight}
            for unit in units:
                law = self.sample_law(unit.model, level, arch.temperature(unit), greedy[models.index(unit.model)])
                for _ in range(unit.samples):
                    seqs = _extend(seqs, law)
            for labels, p in seqs.items():
                dist[(labels, False)] = dist.get((labels, False), 0.0) + p
        return dist

    def _apply(self, arch: Architecture, index: int, level: int, before: dict) -> dict:
        layer = arch.layers[index]
        unit = layer.units[0]
        after: dict = {}
        for (labels, critiqued), p in before.items():
            garble = self.garble(unit.model) if layer.op in ("critic", "ranker", "verifier") else 0.0
            if layer.op == "critic":
                # an unreadable reply attaches no critique, except to a lone candidate (it gets the whole text)
                lost = garble if len(labels) > 1 else 0.0
                outcomes = {(labels, True): 1 - lost, (labels, False): lost}
            elif layer.op == "ranker":
                skill = self.rank_skill(unit.model, critiqued)
                ranked = _ranked(tuple(sorted(labels)), skill, unit.top_k)
                outcomes = {(top, critiqued): (1 - garble) * q for top, q in ranked.items()}
                # an unreadable ranking keeps the incoming order
                kept = (labels[: unit.top_k], critiqued)
                outcomes[kept] = outcomes.get(kept, 0.0) + garble
            elif layer.op == "fuser":
                seqs = {(): 1.0}
                for u in layer.units:
                    law = self.fuse_law(u.model, level, labels, critiqued)
                    for _ in range(u.samples):
                        seqs = _extend(seqs, law)
                outcomes = {(out, False): q for out, q in seqs.items()}
            elif layer.op == "verifier":
                outcomes = {
                    (kept, critiqued): q
                    for kept, q in _verified(labels, self.models[unit.model].verify, garble).items()
                }
            elif layer.op == "voter":
                outcomes = {(_voted(labels, unit.top_k), critiqued): 1.0}
            else:
                raise ValueError(f"the landscape has no model of {layer.op} layers")
            for state, q in outcomes.items():
                after[state] = after.get(state, 0.0) + p * q
        return after


def copy_probability(temperature: float) -> float:
    """Probability that a generator sample repeats the model's greedy answer."""
    return max(0.0, 1.0 - temperature)


def _extend(seqs: dict, law: dict[str, float]) -> dict:
    out: dict = {}
    for labels, p in seqs.items():
        for label, q in law.items():
            if q > 0:
                key = labels + (label,)
                out[key] = out.get(key, 0.0) + p * q
    return out


@cache
def _ranked(counts_key: tuple[str, ...], skill: float, top_k: int) -> dict[tuple[str, ...], float]:
    """Distribution of the labels of the ranker's top_k (inputs given as a sorted label tuple: order is irrelevant)."""
    n = len(counts_key)
    counts = Counter(counts_key)
    if counts["C"]:
        first = {lab: (1 - skill) * c / n for lab, c in counts.items()}
        first["C"] += skill
    else:
        first = {lab: c / n for lab, c in counts.items()}
    out: dict = {}
    for lab, p in first.items():
        rest = counts.copy()
        rest[lab] -= 1
        for tail, q in _draws(tuple(sorted(rest.elements())), min(top_k, n) - 1).items():
            out[(lab,) + tail] = out.get((lab,) + tail, 0.0) + p * q
    return out


@cache
def _draws(pool: tuple[str, ...], k: int) -> dict[tuple[str, ...], float]:
    """Distribution of the labels of k uniform draws without replacement from `pool`."""
    if k == 0:
        return {(): 1.0}
    counts = Counter(pool)
    out: dict = {}
    for lab, c in counts.items():
        rest = counts.copy()
        rest[lab] -= 1
        for tail, q in _draws(tuple(sorted(rest.elements())), k - 1).items():
            out[(lab,) + tail] = out.get((lab,) + tail, 0.0) + c / len(pool) * q
    return out


def _verified(labels: tuple[str, ...], skill: float, garble: float) -> dict[tuple[str, ...], float]:
    """Distribution of the kept labels; an unreadable verdict (probability `garble`) keeps its candidate."""
    kept_if_right, kept_if_wrong = garble + (1 - garble) * skill, garble + (1 - garble) * (1 - skill)
    out: dict = {}
    for mask in product((True, False), repeat=len(labels)):
        keeps = (kept_if_right if lab == "C" else kept_if_wrong for lab in labels)
        p = math.prod(q if keep else 1 - q for q, keep in zip(keeps, mask))
        kept = tuple(lab for lab, keep in zip(labels, mask) if keep) or labels
        out[kept] = out.get(kept, 0.0) + p
    return out


def _voted(labels: tuple[str, ...], top_k: int) -> tuple[str, ...]:
    """The voter's kept labels: most common answer first, ties to the earliest; unique wrongs never agree."""
    answers = [lab if lab != "U" else f"U{i}" for i, lab in enumerate(labels)]
    counts = Counter(answers)
    first_seen = {a: answers.index(a) for a in counts}
    order = sorted(range(len(answers)), key=lambda k: (-counts[answers[k]], first_seen[answers[k]], k))
    return tuple(labels[k] for k in order[:top_k])


class SimBackend(Backend):
    """One simulated model of a `Landscape`; `calls` counts the requests it answered."""

    kind = "landscape"

    def __init__(self, landscape: Landscape, model: str, latency_ms: float = 0.0):
        self.landscape = landscape
        self.model = model
        self.latency_ms = latency_ms
        self.calls = 0

    @property
    def model_id(self) -> str:
        return f"landscape:{self.landscape.seed}:{self.model}"

    async def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer each request by the landscape's laws."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        self.calls += len(requests)
        out = []
        for request in requests:
            reply = self._answer(request)
            prompt_words = sum(len(content.split()) for _, content in request.messages)
            out.append(Completion(text=reply, prompt_tokens=prompt_words, completion_tokens=len(reply.split())))
        return out

    def _answer(self, request: ChatRequest) -> str:
        land = self.landscape
        prompt = next(content for role, content in reversed(request.messages) if role == "user")
        item = land._by_id[_QID.search(prompt).group(1)]
        level = item.meta["level"]
        voice = land.models[self.model].voice
        draw = (land.seed, self.model, prompt, request.sample, request.temperature)
        if any(role == "system" and content == GENERATOR_SYSTEM for role, content in request.messages):
            return self._generate(item, level, request)
        op, match = next(
            ((name, m) for name, pattern in _OPS.items() if (m := pattern.fullmatch(prompt))), (None, None)
        )
        if op is None:
            raise ValueError(f"the landscape cannot answer this prompt: {prompt[:80]!r}")
        style = _unit("style", *draw)
        unreadable = _unit("garble", *draw) < land.garble(self.model)
        if op == "verifier":
            if unreadable:
                return text.UNREADABLE_VERDICT
            skill = land.models[self.model].verify
            says_correct = _unit("verify", *draw) < (skill if _label(match["candidate"], item) == "C" else 1 - skill)
            return text.verdict(voice, says_correct, style)
        labels = [_label(block, item) for block in _candidates(match["candidates"])]
        if op == "critic":
            return text.UNREADABLE_CRITIQUE if unreadable else text.critiques(voice, len(labels), style)
        critiqued = "\nCritique of [" in match["candidates"]
        if op == "ranker":
            if unreadable:
                return text.UNREADABLE_RANKING
            return text.ranking(voice, _ranking(labels, land.rank_skill(self.model, critiqued), draw), style)
        law = land.fuse_law(self.model, level, labels, critiqued)
        return _render(item, voice, _pick(law, _unit("fuse", *draw)), draw)

    def _generate(self, item: Item, level: int, request: ChatRequest) -> str:
        land = self.landscape
        voice = land.models[self.model].voice
        t = request.temperature
        if _unit("copy", land.seed, self.model, item.id, request.sample, t) < copy_probability(t):
            greedy = "C" if _unit("greedy", land.seed, self.model, item.id) < land.p_greedy(self.model, level) else "P"
            return _render(item, voice, greedy, ())
        draw = (land.seed, self.model, item.id, request.sample, t)
        return _render(item, voice, _pick(land.fresh_law(self.model, level, t), _unit("fresh", *draw)), draw)


def _pick(law: dict[str, float], u: float) -> str:
    acc = 0.0
    for label, p in law.items():
        acc += p
        if u < acc:
            return label
    return label


def _render(item: Item, voice: str, label: str, draw: tuple) -> str:
    """A worked answer in the model's voice whose final answer has `label` (a greedy answer, `draw` empty,
    always reads the same)."""
    if label == "C":
        value = item.reference
    elif label == "P":
        value = item.reference + 1
    else:
        value = item.reference + 1000 + int(_unit("unique", *draw) * 1e9)
    return text.answer(voice, item.id, value, _unit("style", item.id, label, *draw))


def _candidates(section: str) -> list[str]:
    """The candidate texts of an op prompt's `[k]` blocks, in order, without the critiques attached to them."""
    parts = _BLOCK.split(section)
    return [_CRITIQUE.split(parts[i + 1])[0] for i in range(1, len(parts) - 1, 2)]


def _label(candidate: str, item: Item) -> str:
    """C, P or U: the candidate's answer as the benchmark's own extractor reads it."""
    found = extract_number(candidate)
    if numbers_match(found, str(item.reference)):
        return "C"
    if numbers_match(found, str(item.reference + 1)):
        return "P"
    return "U"


def _ranking(labels: list[str], skill: float, draw: tuple) -> list[int]:
    n = len(labels)
    right = [k for k, lab in enumerate(labels) if lab == "C"]
    if right and _unit("rank-skill", *draw) < skill:
        first = right[int(_unit("rank-right", *draw) * len(right))]
    else:
        first = int(_unit("rank-any", *draw) * n)
    rest = sorted((k for k in range(n) if k != first), key=lambda k: _unit("rank-order", *draw, k))
    return [first] + rest


def parse_audit(landscape: Landscape, draws: int = 200, seed: int = 0) -> dict[str, Counter]:
    """How the real parsers read `draws` replies of every kind, per model voice and style: per reply kind
    (`answer`, `ranking`, `verdict`, `critiques`), how many read as `meant`, how many unreadable replies gave
    nothing (`unreadable`, the op's fallback), and how many were read as something else (`misread`)."""
    bench = landscape.benchmark()
    counts: dict[str, Counter] = {kind: Counter() for kind in ("answer", "ranking", "verdict", "critiques")}

    def tally(kind: str, ok: bool, label: str = "meant") -> None:
        counts[kind][label if ok else "misread"] += 1

    for voice in sorted({m.voice for m in landscape.models.values()}):
        for i in range(draws):
            u = _unit("audit", seed, voice, i)
            n = 2 + int(_unit("audit-n", seed, voice, i) * 5)
            order = sorted(range(n), key=lambda k: _unit("audit-order", seed, voice, i, k))
            value = 100 + int(_unit("audit-value", seed, voice, i) * 2e9)
            tally("answer", bench.extract(text.answer(voice, f"q{i}", value, u)) == str(value))
            read = parse_ranking(text.ranking(voice, order, u), n)
            tally("ranking", read is not None and read.value == order and read.guess is None)
            correct = _unit("audit-verdict", seed, voice, i) < 0.5
            verdict = parse_verdict(text.verdict(voice, correct, u))
            tally("verdict", verdict is not None and verdict.value is correct and verdict.guess is None)
            critiques = parse_critiques(text.critiques(voice, n, u), n)
            tally(
                "critiques", critiques is not None and sorted(critiques.value) == list(range(n)) and not critiques.guess
            )
        tally("ranking", parse_ranking(text.UNREADABLE_RANKING, 3) is None, "unreadable")
        tally("verdict", parse_verdict(text.UNREADABLE_VERDICT) is None, "unreadable")
        tally("critiques", parse_critiques(text.UNREADABLE_CRITIQUE, 3) is None, "unreadable")
    return counts


class _Odometer:
    """Stands in for an Optuna trial and walks every combination of the choices it is asked, depth first, so
    conditional parameters are enumerated only where they are asked."""

    def __init__(self) -> None:
        self.path: list[list[int]] = []
        self.pos = 0

    def _choose(self, choices: Sequence) -> object:
        if self.pos == len(self.path):
            self.path.append([0, len(choices)])
        index = self.path[self.pos][0]
        self.pos += 1
        return choices[index]

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._choose(range(low, high + 1, step))

    def suggest_float(self, name: str, low: float, high: float, *, step: float, log: bool = False) -> float:
        return self._choose([low + k * step for k in range(math.floor((high - low) / step + 1e-9) + 1)])

    def suggest_categorical(self, name: str, choices: Sequence) -> object:
        return self._choose(list(choices))

    def advance(self) -> bool:
        """Move to the next combination; False once every one was visited."""
        del self.path[self.pos :]
        self.pos = 0
        while self.path:
            self.path[-1][0] += 1
            if self.path[-1][0] < self.path[-1][1]:
                return True
            self.path.pop()
        return False


def space_points(space: SearchSpace, ctx: SpaceContext) -> Iterator[Validated]:
    """Every point of a (small, discrete) search space as the architecture the search would score for it."""
    walker = _Odometer()
    while True:
        yield point_architecture(suggest_point(walker, space, ctx), space, ctx, "point")
        if not walker.advance():
            return


def best_in_space(
    landscape: Landscape, space: SearchSpace, ctx: SpaceContext, items: Sequence[Item] | None = None
) -> tuple[Validated, float]:
    """The true optimum of a small search space on this landscape: every point, fitted to the budget, scored
    by `expected_score` (brute force)."""
    best: tuple[Validated, float] | None = None
    seen: set[str] = set()
    for checked in space_points(space, ctx):
        key = repr(checked.arch.layers)
        if key in seen:
            continue
        seen.add(key)
        score = landscape.expected_score(checked, items)
        if best is None or score > best[1]:
            best = (checked, score)
    assert best is not None
    return best


def main(argv: Sequence[str] | None = None) -> dict:
    """Run one search on the landscape (see the module docstring) and print its figures as a JSON line."""
    parser = argparse.ArgumentParser(description="Search speed on the constructed landscape.")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--budget", type=int, default=6)
    parser.add_argument("--items", type=int, default=80, help="questions, split half dev, half test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search (the landscape keeps seed 0)")
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--objective", default="accuracy")
    parser.add_argument("--space", type=Path, default=SPACE_FILE)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--study", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="per batch of calls, per model")
    parser.add_argument("--optimum", action="store_true", help="also find the space's true optimum (brute force)")
    args = parser.parse_args(argv)
    landscape = Landscape(n_items=args.items)
    out = args.out or Path(tempfile.mkdtemp(prefix="landscape-"))
    config = SearchConfig(
        bench="landscape",
        budget=args.budget,
        trials=args.trials,
        space_file=args.space,
        storage=args.storage,
        study=args.study,
        sampler=args.sampler,
        objective=args.objective,
        seed=args.seed,
        out=out,
    )
    with stopwatch() as timing:
        result = landscape.search(config, args.latency_ms)
    figures = {
        "trials": result.trials,
        "wall_s": round(timing.wall_s, 3),
        "cpu_s": round(timing.cpu_s, 3),
        "trials_per_s": round(args.trials / timing.wall_s, 3),
        "best_trial": result.best_trial,
        "best_expected": round(landscape.expected_score(result.best), 4),
        "out": str(out),
    }
    if args.optimum:
        space = load_space(args.space)
        ctx = space_context(space, landscape.model_specs(), args.budget, "answer")
        figures["optimum_expected"] = round(best_in_space(landscape, space, ctx)[1], 4)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
