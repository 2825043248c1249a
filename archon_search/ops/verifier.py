"""The verifier op: one call per candidate asking whether it is correct; the correct ones go on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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
# questions, "whether it is correct" clauses and the judge's words on itself ("I made a mistake") state no verdict
_NOT_STATED = re.compile(
    r"[^.!?\n]*\?|\b(?:whether|if)\b[^.,;\n]*|\bI\s+(?:made|make|was|am|had)\b[^.,;:\n]*"
    r"|\bmy\s+(?:earlier|previous|initial|first)\s+\w+\s+was\s+\w+",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^[ \t>*-]*(?:final\s+)?(?:verdict|judg(?:e)?ment|assessment|conclusion|evaluation)\b[^\n:]*[:\-—]\s*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_BOTH = re.compile(r"\bcorrect\s*(?:or|/)\s*incorrect\b|\bincorrect\s*(?:or|/)\s*correct\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# The response as a whole, then its verdict: "the response is incorrect", "it's correct", "this is wrong", "the
# response does not correctly ...". Only these restate the verdict; "step 2 is wrong" judges a part.
_ABOUT_RESPONSE = re.compile(
    r"\b(?:(?:the|this|that)\s+(?:(?:candidate|given|provided|original|model's|final|overall)\s+)?"
    r"(?:response|solution|answer|submission|candidate|reasoning|work|result)(?:'s\s+(?:final\s+)?answer)?"
    r"(?:\s+(?:overall|as\s+a\s+whole|itself|here|above))?|it|this)"
    r"\s*(?:is|was|'s|seems|appears|looks|remains|does|did)?\s+"
    r"(?:(?:therefore|thus|indeed|also|still|then|entirely|fully|completely|actually|clearly|definitely|overall)\s+)*",
    re.IGNORECASE,
)
# a judge taking back what it said: what follows (in the sentence, or the next one) is its final position
_CUE = re.compile(
    r"^\W*(?:wait|hmm+|hold\s+on|oops|no\s*,?\s*wait|scratch\s+that|correction)\b"
    r"|\b(?:actually|in\s+fact|on\s+(?:second|further)\s+thought|on\s+re-?(?:reading|checking|examination)"
    r"|(?:up)?on\s+(?:closer|further)\s+(?:inspection|review|look|examination)|after\s+re-?checking|i\s+misread"
    r"|let\s+me\s+re-?check)\b",
    re.IGNORECASE,
)
# "my earlier check was wrong", "I was wrong", "I take that back": the verdict before is reversed
_SELF_RETRACTION = re.compile(
    r"\b(?:my\s+(?:earlier|previous|initial|first)\s+\w+\s+was\s+(?:wrong|mistaken|incorrect)|i\s+was\s+wrong"
    r"|i\s+take\s+(?:that|it)\s+back|scratch\s+that)\b",
    re.IGNORECASE,
)
_CONCLUSIVE = re.compile(
    r"^\W*(?:so|thus|therefore|hence|overall|consequently|finally|in\s+(?:conclusion|summary|short|the\s+end)"
    r"|all\s+in\s+all|to\s+(?:conclude|summari[sz]e|sum\s+up))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Statement:
    """A verdict the reply states: from a `Verdict:` label, a sentence that takes back or concludes ("marked"),
    a sentence about the response as a whole ("restated"), or a verdict phrase about anything ("phrase")."""

    value: bool
    kind: str


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


def _about_response(sentence: str) -> bool | None:
    """The last verdict `sentence` states about the response as a whole, if any."""
    stated = _NOT_STATED.sub(" ", sentence)
    last = None
    for match in _ABOUT_RESPONSE.finditer(stated):
        phrase = _PHRASE.match(stated, match.end())
        if phrase is not None:
            group = phrase.lastgroup or ""
            last = _MARKS[group] if group in _MARKS else _PHRASES[int(group[1:])][1]
    return last


def _statements(plain: str) -> list[_Statement]:
    """Every verdict the reply states, sentence by sentence, in order."""
    found: list[_Statement] = []
    label_pending = retracting = False
    for sentence in (s for s in _SENTENCE.split(plain) if s.strip()):
        label = _LABEL.match(sentence.strip())
        if label or label_pending:
            # a label's verdict may sit on the line below it
            rest = label.group("rest") if label else sentence
            verdict = _classify(rest, yes_no=True)
            label_pending = label is not None and not rest.strip()
            if verdict is not None:
                found.append(_Statement(verdict, "label"))
                retracting = False
            continue
        verdict, whole = _classify(sentence), _about_response(sentence)
        decisive = [s for s in found if s.kind != "phrase"]
        if verdict is None and whole is None and _SELF_RETRACTION.search(sentence) and decisive:
            found.append(_Statement(not decisive[-1].value, "marked"))
            retracting = False
            continue
        if verdict is None:
            retracting = retracting or _CUE.search(sentence) is not None
            continue
        if retracting or _CUE.search(sentence) or _CONCLUSIVE.match(sentence):
            found.append(_Statement(verdict if whole is None else whole, "marked"))
        elif whole is not None:
            found.append(_Statement(whole, "restated"))
        else:
            found.append(_Statement(verdict, "phrase"))
        retracting = False
    return found


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
    # the final position: the last verdict that is labelled, marked as a retraction or conclusion, or said of
    # the response as a whole; a bare flip with none of those marks leaves no clear final position
    decisive = [s for s in _statements(plain) if s.kind != "phrase"]
    if decisive:
        final = decisive[-1]
        if final.kind == "restated" and any(s.value != final.value for s in decisive):
            return Parsed(final.value, "the reply calls the response both correct and incorrect; read its last word")
        return Parsed(final.value)
    # otherwise the last verdict phrase, a bare "Yes."/"No." reply included
    for line in reversed([line for line in plain.splitlines() if line.strip()]):
        verdict = _classify(line, yes_no=True)
        if verdict is not None:
            return Parsed(verdict)
    return None


def parse_verdict(text: str) -> Parsed[bool] | None:
    """Whether the judge called the response correct, or None when it gave no verdict.

    Read in order: JSON `{"correct": true}`; else the reply's final position: the last verdict on a
    `Verdict:`/`Final verdict:`/`Conclusion:` line, in a sentence that takes one back ("Wait, step 2 is wrong,
    so ...", "my earlier check was wrong") or concludes ("So the response is incorrect"), or said of the
    response as a whole ("the response is incorrect") — a later one of these overrides a label; when the
    last is a bare restatement contradicting an earlier one, it is read as a guess. Else the last verdict phrase
    ("not correct", "is wrong", "no errors" and "correct" read as they mean; "the correct answer is 18" is no
    verdict). Markdown and think blocks are skipped.
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
