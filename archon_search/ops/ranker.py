"""The ranker op: one call that orders the candidates; the best `top_k` go on."""

from __future__ import annotations

import re
from collections.abc import Sequence

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
_SEP = r"\s*(?:>{1,2}|≻|→|->)\s*"
_CHAIN = re.compile(rf"{_CITE}(?:{_SEP}{_CITE})+", re.IGNORECASE)
_BARE_CHAIN = re.compile(rf"(?<![\w.\[])\d+(?:{_SEP}\d+)+(?![\w\]]|\.\d)")
_LABEL = re.compile(
    r"^(?P<label>[^\n]*?\brank(?:ing|ed)?\b[^\n:]*?)(?::(?P<rest>[^\n]*))?$", re.IGNORECASE | re.MULTILINE
)
_HEADING = re.compile(r"^\W*(?:final\s+|my\s+|overall\s+)?ranking\b", re.IGNORECASE)
_BARE_LIST = re.compile(r"^[\s\d>,;.→≻()-]*\d[\s\d>,;.→≻()-]*$")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$")
_PRAISE = r"(?:best|strongest|most\s+accurate|winner|top\s+choice)"
_BEST = re.compile(
    rf"\b(?:{_PRAISE}|prefer|choose|pick)\b[^.\n\[]{{0,40}}?(?P<a>{_CITE})"
    rf"|(?P<b>{_CITE})[^.\n\[]{{0,40}}?\b(?:is|was|seems|looks|comes\s+out)\s+(?:as\s+)?(?:the\s+)?{_PRAISE}",
    re.IGNORECASE,
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
        parsed = _order(indices, n)
        if parsed is not None:
            found.append((end, parsed))
    return found


def _chains(pattern: re.Pattern[str], text: str, n: int, strict: bool) -> list[tuple[int, Parsed[list[int]]]]:
    """Rankings written as chains; a `strict` chain (bare numbers, which may be arithmetic) must name only
    distinct candidates, a bracketed one may hold stray numbers, dropped and noted."""
    found = []
    for match in pattern.finditer(text):
        indices = _numbers(" ".join(_CITE_RE.findall(match.group(0))) or match.group(0))
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


def _from_text(plain: str, n: int) -> Parsed[list[int]] | None:
    # the model's FINAL ranking: the last one stated, whether on a labelled line or as an `a > b > c` chain
    stated = _labelled(plain, n) + _chains(_CHAIN, plain, n, strict=False)
    if not stated:
        stated = _chains(_BARE_CHAIN, plain, n, strict=True)
    if stated:
        return max(stated, key=lambda found: found[0])[1]
    picks = list(_BEST.finditer(plain))
    if picks:
        best = _numbers(picks[-1].group("a") or picks[-1].group("b"))[0]
        if 1 <= best <= n:
            order = [best - 1] + [k for k in range(n) if k != best - 1]
            return Parsed(order, f"no ranking given; only candidate {best} was named best")
    return None


def parse_ranking(text: str, n: int) -> Parsed[list[int]] | None:
    """A complete 0-based order of n candidates from a judge's answer, or None when it states none.

    Read in order: a JSON `{"ranking": [2, 1, 3]}`; else the last ranking stated (a `Ranking:` line, a list
    under a ranking heading, or an `[2] > [1] > [3]` chain, brackets optional); else, as a guess, the one
    candidate called best. Think blocks are skipped; prose such as "answer 2 is wrong" is never a ranking.
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
