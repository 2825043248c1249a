"""The critic op: one call that writes strengths and weaknesses for every candidate."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState, numbered
from archon_search.ops.replies import Parsed, index_of, read_reply

CRITIC_PROMPT = """Below are a question and {n} candidate responses, numbered [1] to [{n}].
For EACH candidate, write its strengths and weaknesses (is it correct? complete? clear?).
{answer_format}

Question:
{question}

Candidates:
{candidates}

Critiques:"""
TEXT_FORMAT = """Use exactly this format, one block per candidate:

[1] Strengths: ... Weaknesses: ...
[2] Strengths: ... Weaknesses: ..."""
JSON_FORMAT = (
    'Reply with a JSON object: {"critiques": [{"candidate": 1, "strengths": "...", "weaknesses": "..."}, ...]}, '
    "one entry per candidate."
)


def critiques_schema(n: int) -> dict:
    """JSON Schema of one critique per candidate (keys are generated in sorted order: candidate first)."""
    critique = {
        "type": "object",
        "properties": {
            "candidate": {"type": "integer", "enum": list(range(1, n + 1))},
            "strengths": {"type": "string"},
            "weaknesses": {"type": "string"},
        },
        "required": ["candidate", "strengths", "weaknesses"],
        "additionalProperties": False,
    }
    return {
        "title": "critiques",
        "type": "object",
        # exactly n entries: a small model otherwise repeats entries until max_tokens
        "properties": {"critiques": {"type": "array", "items": critique, "minItems": n, "maxItems": n}},
        "required": ["critiques"],
        "additionalProperties": False,
    }


_LEAD = r"^[ \t]*(?:#{1,6}[ \t]*|[-*•>][ \t]*)?(?:\*\*|__)?[ \t]*"
# the `[k]` headers the prompt asks for, possibly as `**[2]**`, `### [2]`, `Candidate [2]:` or `Critique of [2]`
_BRACKET_HEADER = re.compile(
    _LEAD + r"(?:(?:critique\s+(?:of|for)\s+)?(?:candidate|response)?\s*)\[\s*(\d+)\s*\]", re.IGNORECASE | re.MULTILINE
)
# models that ignore the format head their blocks `Candidate 2:` or `### Response 2`
_WORD_HEADER = re.compile(_LEAD + r"(?:candidate|response)\s*#?\s*(\d+)\b", re.IGNORECASE | re.MULTILINE)
# as a last resort, a plain numbered list, one item per candidate
_LIST_HEADER = re.compile(r"^[ \t]*(\d+)[.)][ \t]+", re.MULTILINE)
# what opens a closing remark ("Overall, ...", "Bottom line: ...", "**In short:** ..."): it belongs to no candidate
_CLOSING = (
    r"overall|in\s+summary|summary|to\s+summari[sz]e|to\s+sum\s+up|in\s+conclusion|conclusion|in\s+short"
    r"|all\s+in\s+all|bottom\s+line|tl;?dr|final\s+(?:ranking|verdict|thoughts|recommendation)|recommendation"
)
# a closing remark after the last critique, at a line start
_SUMMARY = re.compile(rf"^[ \t]*(?:#{{1,6}}[ \t]*)?(?:\*\*)?(?:{_CLOSING})\b", re.IGNORECASE | re.MULTILINE)
# ... or after a sentence of the last critique, when it compares candidates ("Overall, [1] is the better answer")
_INLINE_SUMMARY = re.compile(
    rf"(?<=[.!?])[ \t]+(?:\*\*)?(?:{_CLOSING})\b[^\n]*?"
    r"(?:\[\s*\d+\s*\]|\b(?:candidates?|responses?|both|all|better|best|prefer(?:red)?)\b)",
    re.IGNORECASE,
)
# a `## Summary` heading ends the critiques: what follows compares candidates, it critiques none
_SUMMARY_HEADING = re.compile(rf"^[ \t]*(?:#{{1,6}}[ \t]*|\*\*)(?:{_CLOSING})\b", re.IGNORECASE | re.MULTILINE)
_STRIP = " *_\n\t-:.)]"
_ANY_HEADER = re.compile(f"{_BRACKET_HEADER.pattern}|{_WORD_HEADER.pattern}", re.IGNORECASE | re.MULTILINE)
# critiques written on one line: `[1] good. [2] wrong sign.`; a `[k]` opens one only where a sentence starts
_INLINE_HEADER = re.compile(r"(?:^[ \t]*|(?<=[.!?:;])[ \t]+)(?:\*\*)?\[\s*(\d+)\s*\]", re.MULTILINE)
# JSON fields that name the candidate rather than critique it
_ID_KEYS = {"candidate", "id", "index", "number", "response"}
_FIELD_ORDER = ("strengths", "weaknesses", "critique")


def _blocks(text: str, pattern: re.Pattern[str], n: int) -> dict[int, str]:
    first = pattern.search(text)
    closing = _SUMMARY_HEADING.search(text, first.end()) if first else None
    if closing:
        text = text[: closing.start()]
    marks = [(m.start(), m.end(), int(next(g for g in m.groups() if g)) - 1) for m in pattern.finditer(text)]
    critiques: dict[int, str] = {}
    for i, (_, end, k) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        body = text[end:stop]
        if i + 1 == len(marks):
            body = body[: _closing_remark(body)]
        body = body.lstrip(_STRIP).rstrip(" *_\n\t")
        if 0 <= k < n and body:
            # a model that writes `[1] Strengths: ...` and `[1] Weaknesses: ...` as two blocks meant one critique
            critiques[k] = f"{critiques[k]}\n{body}" if k in critiques else body
    return critiques


def _closing_remark(body: str) -> int:
    """Where a closing remark starts in the last critique's block (its end when there is none)."""
    starts = [m.start() for m in (_SUMMARY.search(body, 1), _INLINE_SUMMARY.search(body)) if m is not None]
    return min(starts, default=len(body))


def _fields(entry: dict) -> list[str]:
    """A JSON critique's text fields as `Strengths: ...` parts: the asked-for ones first, then any others a
    model named its own way (`pros`, `issues`, `feedback`), lists of points joined."""
    keys = [k for k in _FIELD_ORDER if k in entry] + [k for k in entry if k not in _FIELD_ORDER and k not in _ID_KEYS]
    parts = []
    for key in keys:
        value = entry[key]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "; ".join(value)
        if isinstance(value, str) and value.strip():
            parts.append(f"{str(key).capitalize()}: {value}")
    return parts


def _entries(obj: dict, n: int) -> list | None:
    """The critique entries in a JSON object: its `critiques` (or `candidates`) list or mapping, the object itself
    when it is one entry (JSON that max_tokens cut short) or maps candidate numbers to critiques."""
    entries = obj.get("critiques", obj.get("candidates"))
    if entries is None and "candidate" in obj:
        entries = [obj]
    elif entries is None and any(index_of(key, n) is not None for key in obj):
        entries = obj
    if isinstance(entries, dict):
        entries = [
            {"candidate": key, **value} if isinstance(value, dict) else {"candidate": key, "critique": value}
            for key, value in entries.items()
        ]
    return entries if isinstance(entries, list) else None


def _from_json(objects: list[dict], n: int) -> Parsed[dict[int, str]] | None:
    critiques: dict[int, str] = {}
    for obj in objects:
        for position, entry in enumerate(_entries(obj, n) or []):
            if isinstance(entry, str):
                entry = {"candidate": position + 1, "critique": entry}
            if not isinstance(entry, dict):
                continue
            k = index_of(entry.get("candidate", entry.get("id", position + 1)), n)
            parts = _fields(entry)
            if k is not None and parts and k not in critiques:
                critiques[k] = " ".join(parts)
    return Parsed(critiques) if critiques else None


def _from_text(text: str, n: int) -> Parsed[dict[int, str]] | None:
    found = _blocks(text, _BRACKET_HEADER, n)
    # some blocks headed `Candidate k` and others `[k]`: both are headers; or critiques that share a line
    for headers in (_ANY_HEADER, _INLINE_HEADER):
        if len(found) < n:
            found = max(found, _blocks(text, headers, n), key=len)
    if found:
        return Parsed(found)
    found = _blocks(text, _LIST_HEADER, n)
    if found:
        return Parsed(found, "no [k] headers; read a numbered list as one critique per candidate")
    return None


def parse_critiques(text: str, n: int) -> Parsed[dict[int, str]] | None:
    """0-based candidate index -> critique, or None when no critique can be placed.

    Read in order: JSON `{"critiques": [{"candidate": 1, "strengths": ..., "weaknesses": ...}]}` (also a list
    of strings, or critiques keyed by candidate: `{"1": "...", "Candidate 2": {...}}`); else the blocks under
    `[k]` headers at line starts (bold, heading and `Candidate [k]` forms too), so a numbered list inside a
    critique stays in it; else blocks under `Candidate k` headers; else `[k]` headers where sentences start
    (`[1] good. [2] wrong sign.`); else, as a guess, a numbered list. A closing remark ("Overall, [1] is
    better", "Bottom line: ...", a `## Summary`) belongs to no candidate. Think blocks are skipped.
    """
    return read_reply(text, lambda objects: _from_json(objects, n), lambda shown: _from_text(shown, n))


class Critic(Op):
    """Attaches a critique to each candidate; candidates whose critique can't be found keep none (traced)."""

    name = "critic"

    def _prompt(self, state: QueryState) -> tuple[str, dict | None]:
        unit = self.layer.units[0]
        answer_format = JSON_FORMAT if self.structured(unit) else TEXT_FORMAT

        def build(candidates: Sequence[Candidate]) -> str:
            return CRITIC_PROMPT.format(
                n=len(candidates),
                answer_format=answer_format,
                question=state.question,
                candidates=numbered(candidates, False),
            )

        return self.fit([unit], state, build)

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        schema = critiques_schema(len(state.candidates)) if self.structured(unit) else None
        prompt, _ = self._prompt(state)
        return [PlannedCall(unit.model, self.request(unit, prompt, state, json_schema=schema))]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        text = completions[0].text
        parsed = parse_critiques(text, len(state.candidates))
        critiques = parsed.value if parsed else {}
        event: dict = {}
        if len(state.candidates) == 1 and not critiques and text.strip():
            critiques = {0: text.strip()}
        for k, cand in enumerate(state.candidates):
            cand.critique = critiques.get(k)
        missing = [k + 1 for k in range(len(state.candidates)) if k not in critiques]
        event["critiques"] = [c.critique for c in state.candidates]
        notes = [parsed.guess] if parsed and parsed.guess else []
        if missing:
            notes.append(f"no critique parsed for candidate(s) {missing}; they go on without one")
        if notes:
            event["fallback"] = "; ".join(notes)
        _, truncated = self._prompt(state)
        if truncated:
            event["truncated"] = truncated
        return event
