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
# a closing remark after the last critique belongs to none of them
_SUMMARY = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?(?:overall|in\s+summary|summary|in\s+conclusion|conclusion|final\s+ranking)\b",
    re.IGNORECASE | re.MULTILINE,
)
# a `## Summary` heading ends the critiques: what follows compares candidates, it critiques none
_SUMMARY_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)(?:overall|summary|in\s+summary|conclusion|final\s+(?:ranking|verdict))\b",
    re.IGNORECASE | re.MULTILINE,
)
_STRIP = " *_\n\t-:.)]"
_ANY_HEADER = re.compile(f"{_BRACKET_HEADER.pattern}|{_WORD_HEADER.pattern}", re.IGNORECASE | re.MULTILINE)


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
            summary = _SUMMARY.search(body, 1)
            body = body[: summary.start()] if summary else body
        body = body.lstrip(_STRIP).rstrip(" *_\n\t")
        if 0 <= k < n and body:
            # a model that writes `[1] Strengths: ...` and `[1] Weaknesses: ...` as two blocks meant one critique
            critiques[k] = f"{critiques[k]}\n{body}" if k in critiques else body
    return critiques


def _from_json(objects: list[dict], n: int) -> Parsed[dict[int, str]] | None:
    critiques: dict[int, str] = {}
    for obj in objects:
        # a single entry found on its own is what is left of JSON that max_tokens cut short
        entries = obj.get("critiques", obj.get("candidates", [obj] if "candidate" in obj else None))
        if isinstance(entries, dict):
            entries = [
                {"candidate": key, **value} if isinstance(value, dict) else {"candidate": key, "critique": value}
                for key, value in entries.items()
            ]
        if not isinstance(entries, list):
            continue
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            k = index_of(entry.get("candidate", entry.get("id", position + 1)), n)
            parts = [
                f"{key.capitalize()}: {entry[key]}"
                for key in ("strengths", "weaknesses", "critique")
                if isinstance(entry.get(key), str) and entry[key].strip()
            ]
            if k is not None and parts and k not in critiques:
                critiques[k] = " ".join(parts)
    return Parsed(critiques) if critiques else None


def _from_text(text: str, n: int) -> Parsed[dict[int, str]] | None:
    found = _blocks(text, _BRACKET_HEADER, n)
    if len(found) < n:
        # some blocks headed `Candidate k` and others `[k]`: both are headers
        found = max(found, _blocks(text, _ANY_HEADER, n), key=len)
    if found:
        return Parsed(found)
    found = _blocks(text, _LIST_HEADER, n)
    if found:
        return Parsed(found, "no [k] headers; read a numbered list as one critique per candidate")
    return None


def parse_critiques(text: str, n: int) -> Parsed[dict[int, str]] | None:
    """0-based candidate index -> critique, or None when no critique can be placed.

    Read in order: JSON `{"critiques": [{"candidate": 1, "strengths": ..., "weaknesses": ...}]}`; else the
    blocks under `[k]` headers at line starts (bold, heading and `Candidate [k]` forms too), so a numbered list
    inside a critique stays in it; else blocks under `Candidate k` headers; else, as a guess, a numbered list.
    Think blocks are skipped.
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
