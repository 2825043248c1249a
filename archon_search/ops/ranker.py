"""The ranker op: one call that orders the candidates; the best `top_k` go on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState, numbered
from archon_search.ops.replies import Parsed, index_of, read_reply

RANKER_PROMPT = """Below are a question and {n} candidate responses, numbered [1] to [{n}].
Rank ALL candidates from best to worst by correctness and quality.
{answer_format}

Question:
{question}

Candidates:
{candidates}

Ranking:"""
TEXT_FORMAT = "Answer with the ranking only, in this format: [2] > [1] > [3]"
JSON_FORMAT = (
    'Reply with a JSON object: {"analysis": "<a few sentences>", "ranking": [2, 1, 3]}, '
    "every candidate number once, best first."
)


def ranking_schema(n: int) -> dict:
    """JSON Schema of a ranking of n candidates; `analysis` comes first (keys are generated in sorted order)."""
    return {
        "title": "ranking",
        "type": "object",
        "properties": {
            "analysis": {"type": "string"},
            "ranking": {
                "type": "array",
                "items": {"type": "integer", "enum": list(range(1, n + 1))},
                "minItems": n,
                "maxItems": n,
            },
        },
        "required": ["analysis", "ranking"],
        "additionalProperties": False,
    }


_MARKDOWN = re.compile(r"\*\*|__|`")


def _plain(text: str) -> str:
    return _MARKDOWN.sub("", text)


# a candidate cited as `[2]`, `Candidate 2`, `Response #2`, `Candidate [2]`
_CITE = r"(?:\[\s*\d+\s*\]|\b(?:candidate|response|answer)\s*#?\s*\[?\s*\d+\s*\]?)"
_CITE_RE = re.compile(_CITE, re.IGNORECASE)
# a short aside after a cited candidate in a chain: `[2] (18) > [3] (correct, verbose)`
_ASIDE = r"[ \t]*\((?:[^()\n]|\([^()\n]*\)){0,60}\)"
_ASIDE_RE = re.compile(_ASIDE)
# `>` ranks best first, `<` worst first; arrows only order (the words around say which way); `=` ties
_BETTER, _WORSE, _THEN, _TIE = r">{1,2}|≻", r"<{1,2}|≺", r"→|->", r"=|≈"
_SEP = rf"\s*(?:{_THEN}|{_BETTER}|{_WORSE}|{_TIE})\s*"
_CHAIN = re.compile(rf"{_CITE}(?:{_ASIDE})?(?:{_SEP}{_CITE}(?:{_ASIDE})?)+", re.IGNORECASE)
_BARE_CHAIN = re.compile(rf"(?<![\w.\[])\d+(?:\s*(?:{_BETTER})\s*\d+)+(?![\w\]]|\.\d)")
_LABEL = re.compile(
    r"^(?P<label>[^\n]*?\brank(?:ing|ed)?\b[^\n:]*?)(?::(?P<rest>[^\n]*))?$", re.IGNORECASE | re.MULTILINE
)
_HEADING = re.compile(r"^\W*(?:final\s+|my\s+|overall\s+)?ranking\b", re.IGNORECASE)
_BARE_LIST = re.compile(r"^[\s\d>,;.→≻()-]*\d[\s\d>,;.→≻()-]*$")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$")
# a numbered list whose every item names a candidate first: `1. [2]`, `2. Response 3 - ...`
_NUMBERED_CITE = re.compile(rf"(?:^|(?<=\s))(\d+)[.)]\s+(?P<cite>{_CITE})", re.IGNORECASE | re.MULTILINE)
_ASCENDING = re.compile(
    r"\b(?:worst|weakest|lowest|least)\s+(?:to|→|->)\s+(?:the\s+)?(?:best|strongest|highest|most)\b|\bascending\b",
    re.IGNORECASE,
)
_DESCENDING = re.compile(
    r"\b(?:best|strongest|highest|most)\s+(?:to|→|->)\s+(?:the\s+)?(?:worst|weakest|lowest|least)\b|\bdescending\b",
    re.IGNORECASE,
)
# Places a reply gives in prose: "Response 2 is clearly the strongest", "Response 1 second", "the worst is [1]",
# "then Response 3". The word must end its clause or go with a noun, so "Response 1 first computes" places none.
_PLACES = {
    r"best|strongest|top|winner|most\s+(?:accurate|correct|complete|helpful|convincing)|first|1st|number\s+one|#1": 1,
    r"second|runner[- ]up|2nd": 2,
    r"third|3rd": 3,
    r"fourth|4th": 4,
    r"worst|weakest|last|bottom|least\s+(?:accurate|correct|complete|helpful|convincing|useful)": -1,
}
_PLACE_WORD = "|".join(f"(?:{p})" for p in _PLACES)
_ADVERBS = r"(?:(?:clearly|definitely|easily|probably|obviously|undoubtedly|still|by\s+far|overall|the|a|an|my|in)\s+)*"
_PLACE_AFTER = re.compile(
    rf"^\s*(?:is|was|comes|goes|ranks|ranked|placed|would\s+be|should\s+be|as|in|[:\-–—])?\s*{_ADVERBS}"
    rf"(?P<word>{_PLACE_WORD})\b(?P<tail>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_TAIL_OK = re.compile(
    r"^\s*(?:$|[,:;()\-–—]|(?:one|choice|option|pick|place|response|answer|candidate|overall|here|by\s+far"
    r"|of\s+(?:the|all)|among|in\s+(?:my|the)|for)\b)",
    re.IGNORECASE,
)
_PLACE_BEFORE = re.compile(
    rf"(?P<word>{_PLACE_WORD})\b(?:\s+(?:one|choice|option|pick|place|response|answer|candidate))?\s*"
    rf"(?:is|:|=|-|–|—|goes\s+to|would\s+be|has\s+to\s+be|must\s+be|remains)\s*{_ADVERBS}$",
    re.IGNORECASE,
)
_NEXT_BEFORE = re.compile(
    r"\b(?:then|next|followed\s+by|after\s+(?:that|it))\s*,?\s*(?:comes\s+|is\s+)?$", re.IGNORECASE
)
_PICK_BEFORE = re.compile(r"\b(?:prefer|choose|pick|go\s+with|recommend)\s+$", re.IGNORECASE)
_NEGATION = re.compile(r"\bnot\b|n't\b|\bnever\b", re.IGNORECASE)
_CLAUSE = re.compile(r"[.;!?\n]+(?!\d)|,|\band\b|\bbut\b|\bwhile\b|\bwhereas\b", re.IGNORECASE)
# "[2] is better than [1]": one pair, read as the chain `[2] > [1]`
_COMPARISON = re.compile(
    rf"(?P<a>{_CITE})(?P<between>[^.\n\[]{{0,30}}?)\b(?:(?P<up>better|stronger|superior|preferable|more\s+(?:accurate|"
    rf"correct|complete|helpful))|(?P<down>worse|weaker|inferior|less\s+(?:accurate|correct|complete|helpful)))\s+"
    rf"(?:than|to)\s+(?P<b>{_CITE})",
    re.IGNORECASE,
)
# a candidate the reply condemns: a guess must not rank it above candidates the incoming order put first
_CONDEMNED = re.compile(
    r"\b(?:wrong|incorrect|worst|weakest|fails?|errors?|mistakes?|flawed|invalid|off\s+by)\b", re.IGNORECASE
)


def _numbers(text: str) -> list[int]:
    return [int(d) for d in re.findall(r"\d+", text)]


def _order(indices: Sequence[int], n: int) -> Parsed[list[int]] | None:
    """A complete 0-based order from 1-based indices (invalid and repeated ones dropped; unranked ones follow in
    incoming order, noted as a guess); None when no index is valid."""
    order: list[int] = []
    for k in indices:
        if 1 <= k <= n and k - 1 not in order:
            order.append(k - 1)
    if not order:
        return None
    rest = [k for k in range(n) if k not in order]
    guess = f"the ranking named only {[k + 1 for k in order]}; the rest follow in incoming order" if rest else None
    return Parsed(order + rest, guess)


def _from_json(objects: list[dict], n: int) -> Parsed[list[int]] | None:
    for obj in reversed(objects):
        ranking = next((obj[key] for key in ("ranking", "order", "rank") if isinstance(obj.get(key), list)), None)
        if ranking is not None:
            found = _order([k + 1 for k in (index_of(v, n) for v in ranking) if k is not None], n)
            if found is not None:
                return found
    return None


def _worst_first(context: str, chain: str) -> bool:
    """Whether a ranking is written worst first: by its `<` signs, else (arrows, commas) by the words before it
    ("from worst to best")."""
    chain = re.sub(_THEN, " ", _ASIDE_RE.sub(" ", chain))
    if re.search(_BETTER, chain):
        return False
    if re.search(_WORSE, chain):
        return True
    return _ASCENDING.search(context) is not None and _DESCENDING.search(context) is None


def _lead_in(text: str, start: int) -> str:
    """What comes before a ranking on its line and on the non-empty line above it (where "from worst to best:"
    goes)."""
    lines = text[:start].split("\n")
    above = next((line for line in reversed(lines[:-1]) if line.strip()), "")
    return f"{above}\n{lines[-1]}"


def _line_indices(text: str) -> list[int]:
    """Candidates cited on one line: `[k]`/`Candidate k` when there are any, else a bare `2 > 1 > 3` list."""
    cites = _CITE_RE.findall(text)
    if cites:
        return [_numbers(c)[0] for c in cites]
    plain = re.sub(r"\b(?:best|worst|to|from|first|last)\b", " ", text, flags=re.IGNORECASE)
    return _numbers(plain) if _BARE_LIST.match(plain) else []


def _labelled(text: str, n: int) -> list[tuple[int, Parsed[list[int]]]]:
    """Rankings given after a `Ranking:` label, on its line or as a list below a ranking heading."""
    found = []
    for match in _LABEL.finditer(text):
        rest = match.group("rest")
        if rest is None and not _HEADING.match(match.group("label")):
            continue
        indices = _line_indices(rest or "")
        end = match.end()
        if not indices:
            for line in text[match.end() :].lstrip("\n").splitlines():
                item = _LIST_ITEM.match(line)
                if not item:
                    break
                cites = _CITE_RE.findall(item.group(1))
                if cites:
                    indices.append(_numbers(cites[0])[0])
                end += len(line) + 1
        if _worst_first(match.group("label"), rest or ""):
            indices.reverse()
        parsed = _order(indices, n)
        if parsed is not None:
            found.append((end, parsed))
    return found


def _chains(pattern: re.Pattern[str], text: str, n: int, strict: bool) -> list[tuple[int, Parsed[list[int]]]]:
    """Rankings written as chains (`[2] > [1]`, `[1] < [3]`, `[2] = [3] > [1]`); a `strict` chain (bare numbers,
    which may be arithmetic) must name only distinct candidates, a bracketed one may hold stray numbers, dropped
    and noted. A chain of ties alone ranks nothing."""
    found = []
    for match in pattern.finditer(text):
        chain = _ASIDE_RE.sub(" ", match.group(0))
        cites = _CITE_RE.findall(chain)
        if cites and not re.search(f"{_THEN}|{_BETTER}|{_WORSE}", _CITE_RE.sub(" ", chain)):
            continue
        indices = _numbers(" ".join(cites) or chain)
        if _worst_first(_lead_in(text, match.start()), chain):
            indices.reverse()
        clean = all(1 <= k <= n for k in indices) and len(set(indices)) == len(indices)
        parsed = _order(indices, n) if clean or not strict else None
        if parsed is not None and not clean:
            parsed = Parsed(
                parsed.value,
                f"the ranking {indices} repeats or names no such candidate; read as {[k + 1 for k in parsed.value]}",
            )
        if parsed is not None:
            found.append((match.end(), parsed))
    return found


def _numbered_lists(text: str, n: int) -> list[tuple[int, Parsed[list[int]]]]:
    """Rankings written as numbered lists whose items each start by naming a candidate (`1. [2]`, `2. [3]`). A
    list in candidate order (`1. [1] ...`, `2. [2] ...`) just goes through the candidates: no ranking."""
    runs: list[list[re.Match[str]]] = []
    for item in _NUMBERED_CITE.finditer(text):
        if runs and int(item.group(1)) == int(runs[-1][-1].group(1)) + 1:
            runs[-1].append(item)
        elif int(item.group(1)) == 1:
            runs.append([item])
    found = []
    for run in runs:
        indices = [_numbers(item.group("cite"))[0] for item in run]
        if len(run) > 1 and indices != list(range(1, len(run) + 1)):
            parsed = _order(indices, n)
            if parsed is not None:
                found.append((run[-1].end(), parsed))
    return found


def _comparisons(text: str, n: int) -> list[tuple[int, Parsed[list[int]]]]:
    """The incoming order, changed as little as the pairs a reply ranks in prose require ("[2] is better than
    [1]", "[3] is worse than [1]"): a guess, unless the pairs order every candidate."""
    order, pairs, end = list(range(n)), set(), 0
    for match in _COMPARISON.finditer(text):
        a, b = _numbers(match.group("a"))[0] - 1, _numbers(match.group("b"))[0] - 1
        if _NEGATION.search(match.group("between")) or not (0 <= a < n and 0 <= b < n) or a == b:
            continue
        better, worse = (a, b) if match.group("up") else (b, a)
        if order.index(better) > order.index(worse):
            order.remove(better)
            order.insert(order.index(worse), better)
        pairs.add((better, worse))
        end = match.end()
    if not pairs:
        return []
    complete = all((x, y) in pairs for x, y in pairwise(order))
    said = ", ".join(f"[{x + 1}] > [{y + 1}]" for x, y in sorted(pairs))
    guess = None if complete else f"the reply only compares {said}; elsewhere the incoming order stays"
    return [(end, Parsed(order, guess))]


def _placed(clause: str, n: int) -> tuple[int, int | None] | None:
    """(0-based candidate, place) a clause gives its one cited candidate: 1, 2, ... from the top, -1 the bottom,
    None "next"; None when it places none."""
    k = _cited(clause, n)
    if k < 0 or _NEGATION.search(clause):
        return None
    cite = _CITE_RE.search(clause)
    before, after = clause[: cite.start()], clause[cite.end() :]
    word = None
    later = _PLACE_AFTER.match(after)
    if later is not None and _TAIL_OK.match(later.group("tail")):
        word = later.group("word")
    earlier = _PLACE_BEFORE.search(before)
    if word is None and earlier is not None:
        word = earlier.group("word")
    if word is not None:
        return k, next(place for pattern, place in _PLACES.items() if re.fullmatch(pattern, word, re.IGNORECASE))
    if _PICK_BEFORE.search(before):
        return k, 1
    if _NEXT_BEFORE.search(before):
        return k, None
    return None


def _from_places(plain: str, n: int) -> Parsed[list[int]] | None:
    """An order from the places the reply gives in prose: placed candidates at the top by place or at the
    bottom, the rest between them in incoming order (then a guess)."""
    top: dict[int, int] = {}
    bottom: list[int] = []
    last = 0
    for clause in _CLAUSE.split(plain):
        placed = _placed(clause, n)
        if placed is None or (placed[1] is None and not last):
            continue
        k, place = placed
        if k in top or k in bottom:
            continue
        if place == -1:
            bottom.append(k)
        else:
            last = place or last + 1
            top[k] = last
    if not top and not bottom:
        return None
    head = sorted(top, key=lambda k: top[k])
    middle = [k for k in range(n) if k not in top and k not in bottom]
    if len(head) == 1 and not bottom:
        guess = f"no ranking given; only candidate {head[0] + 1} was named best"
    else:
        named = [k + 1 for k in head + bottom]
        guess = f"no ranking given; placed {named} as the reply describes them, the rest in incoming order"
    return Parsed(head + middle + bottom, guess if middle else None)


def _no_worse_than_incoming(parsed: Parsed[list[int]], plain: str, n: int) -> Parsed[list[int]]:
    """A guessed order, unless it ranks candidates the reply condemns ("wrong", "the worst") above more of the
    others than the incoming order does: then the incoming order, noted."""
    if parsed.guess is None:
        return parsed
    condemned = {k for clause in _CLAUSE.split(plain) if _CONDEMNED.search(clause) and (k := _cited(clause, n)) >= 0}

    def misplaced(order: Sequence[int]) -> int:
        return sum(1 for i, a in enumerate(order) for b in order[i + 1 :] if a in condemned and b not in condemned)

    if misplaced(parsed.value) > misplaced(range(n)):
        return Parsed(list(range(n)), f"{parsed.guess}, which would raise what it condemns: kept the incoming order")
    return parsed


def _cited(clause: str, n: int) -> int:
    """The 0-based candidate a clause cites when it cites exactly one that exists, else -1."""
    cites = _CITE_RE.findall(clause)
    k = _numbers(cites[0])[0] - 1 if len(cites) == 1 else -1
    return k if 0 <= k < n else -1


def _from_text(plain: str, n: int) -> Parsed[list[int]] | None:
    # the model's FINAL ranking: the last one stated, on a labelled line, as an `a > b > c` chain or a numbered list
    stated = _labelled(plain, n) + _chains(_CHAIN, plain, n, strict=False) + _numbered_lists(plain, n)
    if not stated:
        stated = _chains(_BARE_CHAIN, plain, n, strict=True) or _comparisons(plain, n)
    found = max(stated, key=lambda found: found[0])[1] if stated else _from_places(plain, n)
    return _no_worse_than_incoming(found, plain, n) if found is not None else None


def parse_ranking(text: str, n: int) -> Parsed[list[int]] | None:
    """A complete 0-based order of n candidates from a judge's answer, or None when it states none.

    Read in order: a JSON `{"ranking": [2, 1, 3]}` (trailing commas allowed); else the last ranking stated (a
    `Ranking:` line, a list under a ranking heading, an `[2] > [1] > [3]` chain, brackets optional, with asides
    such as `[2] (18)` and ties `[2] = [3]`, or a numbered list `1. [2]`, `2. [3]`), reversed when written worst
    first (`[1] < [3] < [2]`, "from worst to best: ..."); else a comparison ("[2] is better than [1]"), the
    others after it as a guess; else the places the reply gives in prose ("Response 2
    is clearly the strongest, Response 1 second", "the worst is [1]"), a guess when some candidate gets none.
    A guess never ranks a candidate the reply condemns above more others than the incoming order does (the
    incoming order is kept, noted). Think blocks are skipped; "answer 2 is wrong" is never a ranking.
    """
    return read_reply(text, lambda objects: _from_json(objects, n), lambda shown: _from_text(shown, n), _plain)


class Ranker(Op):
    """Keeps the `top_k` best candidates; an unreadable ranking keeps the incoming order (traced), and a
    ranking that is partly guessed says so in the trace."""

    name = "ranker"

    def _prompt(self, state: QueryState) -> tuple[str, dict | None]:
        unit = self.layer.units[0]
        answer_format = JSON_FORMAT if self.structured(unit) else TEXT_FORMAT

        def build(candidates: Sequence[Candidate]) -> str:
            return RANKER_PROMPT.format(
                n=len(candidates), answer_format=answer_format, question=state.question, candidates=numbered(candidates)
            )

        return self.fit([unit], state, build)

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        schema = ranking_schema(len(state.candidates)) if self.structured(unit) else None
        prompt, _ = self._prompt(state)
        return [PlannedCall(unit.model, self.request(unit, prompt, state, json_schema=schema))]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        n = len(state.candidates)
        _, truncated = self._prompt(state)
        parsed = parse_ranking(completions[0].text, n) if n > 1 else Parsed(list(range(n)))
        event: dict = {}
        if parsed is None:
            order = list(range(n))
            event["fallback"] = "ranking unreadable; kept the incoming order"
        else:
            order = parsed.value
            if parsed.guess:
                event["fallback"] = parsed.guess
        state.candidates = [state.candidates[k] for k in order][: self.layer.units[0].top_k]
        event["ranking"] = [k + 1 for k in order]
        if truncated:
            event["truncated"] = truncated
        return event
