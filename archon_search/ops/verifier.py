"""The verifier op: one call per candidate asking whether it is correct; the correct ones go on."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archon_search.core.messages import Completion
from archon_search.ops.base import Candidate, Op, PlannedCall, QueryState
from archon_search.ops.replies import Parsed, read_reply

VERIFIER_PROMPT = """Check whether the response below correctly and completely answers the question.
{answer_format}

Question:
{question}

Response:
{candidate}

Your check:"""
TEXT_FORMAT = 'Reason briefly, then end with a final line that is exactly "Verdict: correct" or "Verdict: incorrect".'
JSON_FORMAT = 'Reply with a JSON object: {"analysis": "<brief reasoning>", "correct": true or false}.'

VERDICT_SCHEMA = {
    "title": "verdict",
    "type": "object",
    "properties": {"analysis": {"type": "string"}, "correct": {"type": "boolean"}},
    "required": ["analysis", "correct"],
    "additionalProperties": False,
}

_MARKDOWN = re.compile(r"\*\*|__|`|#+ ")


def _plain(text: str) -> str:
    return _MARKDOWN.sub("", text)


# Longer phrases first, so "not correct" and "no errors" win over "correct" and "errors"; "the correct answer
# is 18" and "correctly" say nothing about the response.
_PHRASES: list[tuple[str, bool]] = [
    (r"no\s+(?:errors?|mistakes?|issues|problems|flaws)", True),
    (r"nothing\s+(?:is\s+)?(?:wrong|incorrect)", True),
    (r"not\s+(?:wrong|incorrect)", True),
    (r"(?:not|\w+n't)\s+(?:\w+\s+)?(?:correct(?:ly)?|right|accurate|valid)", False),
    (r"incorrect(?:ly)?|wrong|erroneous|inaccurate|invalid|false|flawed|fails?", False),
    (r"(?:an?|one|some|several|contains|has|made|makes)\s+(?:(?!no\b|any\b)\w+\s+){0,3}?(?:errors?|mistakes?)", False),
    (r"(?<!the\s)(?<!a\s)(?:correct|right)(?!ly)(?!\s+(?:answer|value|result|approach|total|number|solution))", True),
    (r"accurate|valid|true", True),
]
_MARKS = {"yes": True, "no": False}
_PHRASE = re.compile(
    "|".join(rf"(?P<p{i}>\b(?:{p})\b)" for i, (p, _) in enumerate(_PHRASES)) + r"|(?P<yes>[✅✔])|(?P<no>[❌✗✘])",
    re.IGNORECASE,
)
# questions and "whether it is correct" clauses state no verdict
_NOT_STATED = re.compile(r"[^.!?\n]*\?|\b(?:whether|if)\b[^.,;\n]*", re.IGNORECASE)
_LABEL = re.compile(
    r"^[ \t>*-]*(?:final\s+)?(?:verdict|judg(?:e)?ment|assessment|conclusion|evaluation)\b[^\n:]*[:\-—]\s*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_BOTH = re.compile(r"\bcorrect\s*(?:or|/)\s*incorrect\b|\bincorrect\s*(?:or|/)\s*correct\b", re.IGNORECASE)


def _classify(text: str, yes_no: bool = False) -> bool | None:
    """The verdict `text` states by its last verdict phrase (a leading yes/no counts when `yes_no`)."""
    if _BOTH.search(text):
        return None
    stated = _NOT_STATED.sub(" ", text)
    last: bool | None = None
    for match in _PHRASE.finditer(stated):
        group = match.lastgroup or ""
        last = _MARKS[group] if group in _MARKS else _PHRASES[int(group[1:])][1]
    if last is None and yes_no:
        lead = _YES_NO.match(stated)
        if lead:
            last = lead.group(1).lower() == "yes"
    return last


def _from_json(objects: list[dict]) -> Parsed[bool] | None:
    for obj in reversed(objects):
        for key in ("correct", "is_correct", "verdict"):
            value = obj.get(key)
            if isinstance(value, bool):
                return Parsed(value)
            if isinstance(value, str):
                verdict = _classify(value, yes_no=True)
                if verdict is not None:
                    return Parsed(verdict)
    return None


def _from_text(plain: str) -> Parsed[bool] | None:
    # a final-verdict line decides; the verdict may also sit on the line below its label
    for match in reversed(list(_LABEL.finditer(plain))):
        rest = match.group("rest") or plain[match.end() :].lstrip().split("\n", 1)[0]
        verdict = _classify(rest, yes_no=True)
        if verdict is not None:
            return Parsed(verdict)
    lines = [line for line in plain.splitlines() if line.strip()]
    if not lines:
        return None
    # otherwise the last verdict phrase, a bare "Yes."/"No." reply included
    for line in reversed(lines):
        verdict = _classify(line, yes_no=True)
        if verdict is not None:
            return Parsed(verdict)
    return None


def parse_verdict(text: str) -> Parsed[bool] | None:
    """Whether the judge called the response correct, or None when it gave no verdict.

    Read in order: JSON `{"correct": true}`; else the last `Verdict:`/`Final verdict:`/`Conclusion:` line that
    states one; else the last verdict phrase ("not correct", "is wrong", "no errors" and "correct" read as they
    mean; "the correct answer is 18" is no verdict). Markdown and think blocks are skipped.
    """
    return read_reply(text, _from_json, _from_text, _plain)


class Verifier(Op):
    """Keeps candidates judged correct, all of them when none is; unreadable verdicts keep the candidate (traced)."""

    name = "verifier"

    def _prompt(self, state: QueryState, candidate: Candidate) -> tuple[str, dict | None]:
        unit = self.layer.units[0]
        answer_format = JSON_FORMAT if self.structured(unit) else TEXT_FORMAT

        def build(candidates: Sequence[Candidate]) -> str:
            return VERIFIER_PROMPT.format(
                answer_format=answer_format, question=state.question, candidate=candidates[0].text
            )

        return self.fit([unit], state, build, candidates=[candidate])

    def plan(self, state: QueryState) -> list[PlannedCall]:
        unit = self.layer.units[0]
        schema = VERDICT_SCHEMA if self.structured(unit) else None
        return [
            PlannedCall(unit.model, self.request(unit, self._prompt(state, c)[0], state, json_schema=schema), target=k)
            for k, c in enumerate(state.candidates)
        ]

    async def apply(self, state: QueryState, calls: Sequence[PlannedCall], completions: Sequence[Completion]) -> dict:
        parsed = [parse_verdict(c.text) for c in completions]
        verdicts = [p.value if p else None for p in parsed]
        event: dict = {"verdicts": verdicts}
        notes = [f"candidate {k + 1}: {p.guess}" for k, p in enumerate(parsed) if p and p.guess]
        unreadable = [k + 1 for k, v in enumerate(verdicts) if v is None]
        if unreadable:
            notes.append(f"verdict unreadable for candidate(s) {unreadable}; kept them")
        kept = [c for c, v in zip(state.candidates, verdicts) if v is not False]
        if not kept:
            notes.append("no candidate judged correct; kept all")
            kept = list(state.candidates)
        if notes:
            event["fallback"] = "; ".join(notes)
        truncated = [
            {"candidate": k + 1, **info}
            for k, c in enumerate(state.candidates)
            if (info := self._prompt(state, c)[1]) is not None
        ]
        if truncated:
            event["truncated"] = truncated
        state.candidates = kept
        return event
