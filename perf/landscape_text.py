"""What the landscape's simulated models write: realistic text in each model's own styles, for the ops' real
parsers to read (perf/landscape.py decides *what* a model says; this module only decides *how*).

Each writer takes the intended content (an answer, a ranking, a verdict, critiques) and a uniform draw `u`
that picks one of the model's styles and fills in its incidental details, so the same request always reads the
same. None of the styles copies an op's requested format exactly: `alpha` explains in markdown and ends with a
bold final answer or a `\\boxed{}`, `beta` thinks in a `<think>` block first (with stray numbers and wrong
rankings in it) and then states its result in prose or JSON. `unreadable_*` is a judge's reply that states no
ranking, verdict or critique at all: the parsers must fall back on it, and the landscape's ground truth counts
that fallback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

COMMENTS = (
    "shows every step",
    "skips the check at the end",
    "is terse but consistent",
    "restates the question before answering",
    "mixes up two of the clues",
)
STRENGTHS = ("clear layout", "each step is justified", "short and direct", "states the final value plainly")
WEAKNESSES = (
    "the second step is asserted, not shown",
    "no check of the final value",
    "one clue is used twice",
    "the wording is vague in places",
)


def _draw(u: float, *parts: object) -> float:
    """A uniform draw in [0, 1) derived from `u` and `parts` (independent details of one reply)."""
    digest = hashlib.sha256(repr((u, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(options: Sequence, u: float, *parts: object):
    return options[int(_draw(u, *parts) * len(options))]


def _style(styles: Sequence[str], u: float) -> str:
    return styles[int(u * len(styles))]


def spell(value: int, u: float) -> str:
    """A number as a model may write it: large ones sometimes with thousands separators."""
    return f"{value:,}" if abs(value) >= 10_000 and _draw(u, "commas") < 0.5 else str(value)


ANSWER_STYLES = {"alpha": ("markdown", "boxed"), "beta": ("think", "think_bold")}
RANKING_STYLES = {"alpha": ("explain", "prose"), "beta": ("json", "think")}
VERDICT_STYLES = {"alpha": ("plain", "bold"), "beta": ("think", "json")}
CRITIQUE_STYLES = {"alpha": ("brackets", "headings"), "beta": ("json", "brackets")}


def answer(model: str, qid: str, value: int, u: float) -> str:
    """A worked answer to landscape question `qid` whose final answer is `value`."""
    a, b = 3 + int(_draw(u, "a") * 40), 2 + int(_draw(u, "b") * 30)
    final = spell(value, u)
    style = _style(ANSWER_STYLES[model], u)
    if style == "markdown":
        return (
            f"### Working\n1. The clue for {qid} gives {a} + {b} = {a + b}.\n"
            f"2. Scaling by the second clue, {a + b} becomes the hidden number.\n\n**Final answer: {final}**"
        )
    if style == "boxed":
        return f"From the clues, {a} × {b} = {a * b}, which we then adjust.\n\nSo the hidden number is $\\boxed{{{final}}}$."
    thoughts = (
        f"<think>\nStart from {a}. Maybe {a + b}? No, recheck the second clue: {b} more, then adjust.\n</think>\n"
    )
    if style == "think":
        return thoughts + f"After checking both clues, the answer is {final}."
    return thoughts + f"Putting the clues together gives **{final}**."


def ranking(model: str, order: Sequence[int], u: float) -> str:
    """A judge's ranking of candidates, best first (`order` holds 0-based candidate indices)."""
    shown = [k + 1 for k in order]
    style = _style(RANKING_STYLES[model], u)
    if style == "explain":
        notes = "\n".join(f"- [{k}] {_pick(COMMENTS, u, 'note', k)}." for k in sorted(shown))
        return f"Looking at each response:\n{notes}\n\nRanking: " + " > ".join(f"[{k}]" for k in shown)
    if style == "prose":
        return (
            f"Response {shown[0]} is the most careful of the lot; Response {shown[-1]} "
            f"{_pick(COMMENTS, u, 'last')}.\n\nOverall: " + " > ".join(f"Response {k}" for k in shown) + "."
        )
    if style == "json":
        analysis = f"[{shown[0]}] {_pick(COMMENTS, u, 'json')}; the others are weaker."
        return "```json\n" + json.dumps({"analysis": analysis, "ranking": shown}) + "\n```"
    decoy = " > ".join(f"[{k}]" for k in reversed(shown))
    return (
        f"<think>\nAt first sight {decoy}? Let me compare the final values again.\n</think>\n"
        "**Final ranking:** " + " > ".join(str(k) for k in shown)
    )


def verdict(model: str, correct: bool, u: float) -> str:
    """A verifier's check of one response, concluding `correct` or not."""
    style = _style(VERDICT_STYLES[model], u)
    if style == "plain":
        return (
            "The response is correct. There are no errors."
            if correct
            else "The response is incorrect: the final step adds the wrong amount."
        )
    if style == "bold":
        return "I re-derived the value from both clues.\n\n**Verdict: " + ("correct**" if correct else "incorrect**")
    if style == "json":
        return json.dumps({"analysis": "Recomputed the final step from the clues.", "correct": correct})
    thoughts = "<think>\nRecompute: the first clue, then the second. Is it wrong? Let me redo it.\n</think>\n"
    if correct:
        return thoughts + "Yes, the response is right."
    return thoughts + "No. The last step is off by one, so the response is not correct."


def critiques(model: str, n: int, u: float) -> str:
    """Critiques of n candidates, with lists inside the blocks."""
    style = _style(CRITIQUE_STYLES[model], u)
    parts = [
        (k, _pick(STRENGTHS, u, "s", k), _pick(WEAKNESSES, u, "w", k), _pick(WEAKNESSES, u, "v", k))
        for k in range(1, n + 1)
    ]
    if style == "json":
        entries = [{"candidate": k, "strengths": s, "weaknesses": f"{w}; {v}"} for k, s, w, v in parts]
        return json.dumps({"critiques": entries}, indent=1)
    if style == "headings":
        blocks = [f"### Candidate {k}\n- Strengths: {s}.\n- Weaknesses: {w}; {v}." for k, s, w, v in parts]
        return "\n\n".join(blocks) + f"\n\n## Summary\nCandidate {parts[0][0]} reads best."
    return "\n\n".join(
        f"[{k}] **Strengths:** {s}.\n**Weaknesses:**\n1. {w.capitalize()}.\n2. {v.capitalize()}."
        for k, s, w, v in parts
    )


UNREADABLE_RANKING = "All of these responses reach a similar conclusion and I cannot separate them with any confidence."
UNREADABLE_VERDICT = "I would need more context about where this question comes from to judge the response."
UNREADABLE_CRITIQUE = "The responses look broadly similar to each other; none of them stands out."
