"""Reading final answers out of completions: `\\boxed{}` contents, numbers, short text answers and code."""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
# Thousands separators only in groups of three, so the list "1, 2" stays two numbers.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
# "Answer:", "The final answer is", "**Final Answer**:" and GSM8K's "####"; markdown is removed before matching.
_ANSWER_MARK = re.compile(r"\banswer\s*(?:is\b|:|=)|####|^[#\s]*final\s+answer[ \t]*$", re.IGNORECASE | re.MULTILINE)
_CODE_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.DOTALL)
_MARKDOWN = re.compile(r"\*\*|__|`")
_STEP_LABEL = re.compile(r"\bstep\b|:\s*$", re.IGNORECASE)
# a code line that can start a program written without a fence after some prose
_CODE_START = re.compile(r"^(?:(?:async\s+)?def\s|class\s|import\s|from\s+\S+\s+import\s|@\w)", re.MULTILINE)


def split_thinking(text: str) -> tuple[str, str]:
    """(thoughts, shown text) of a reasoning model's output: `<think>...</think>` blocks go to the thoughts.

    Some chat templates open the block in the prompt, so a lone `</think>` ends the thoughts too; an
    unclosed `<think>` (the model ran out of tokens mid-thought) makes everything after it thoughts.
    """
    closes = list(_THINK_CLOSE.finditer(text))
    cut = closes[-1].end() if closes else 0
    thoughts, shown = text[:cut], text[cut:]
    opened = _THINK_OPEN.search(shown)
    if opened:
        thoughts, shown = thoughts + shown[opened.start() :], shown[: opened.start()]
    return _THINK_CLOSE.sub("", _THINK_OPEN.sub("", thoughts)).strip(), shown


def strip_thinking(text: str) -> str:
    """The text a reasoning model shows after its thoughts (see `split_thinking`)."""
    return split_thinking(text)[1]


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (nested braces allowed) outside think blocks, or None when there
    is none or it is open."""
    text = strip_thinking(text)
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def parse_number(text: str) -> Fraction | None:
    """The value of one number written like `1,234`, `-3.50`, `$12`, `7/8` or `\\frac{7}{8}`; None if it isn't one."""
    cleaned = _FRAC.sub(r"\1/\2", text.replace("\u2212", "-"))
    cleaned = cleaned.replace(",", "").replace("$", "").replace("\\", "").strip().rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def format_number(value: Fraction) -> str:
    """A canonical spelling: `18`, `2.5`, `-0.125`, or `1/3` when no short decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    if any((value * 10**places).denominator == 1 for places in range(1, 7)):
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator}"


def find_numbers(text: str) -> list[Fraction]:
    """Every number in `text`, in order (LaTeX fractions included)."""
    cleaned = _FRAC.sub(r"\1/\2", text.replace("\u2212", "-")).replace("$", " ")
    values = (parse_number(m.group(0)) for m in _NUMBER.finditer(cleaned))
    return [v for v in values if v is not None]


def extract_number(text: str) -> str | None:
    """The final numeric answer in `format_number`'s spelling, or None. Think blocks are skipped; then looked
    for, in order: the last number in the last `\\boxed{}`; the number after the last "Answer:"/"answer is"/
    "####" (a parenthetical aside after it ignored, after its last "=" if any); the last number in bold;
    the last number anywhere."""
    text = strip_thinking(text)
    boxed = find_numbers(last_boxed(text) or "")
    if boxed:
        return format_number(boxed[-1])
    # "Answer: 18 (16 - 3 - 4 = 9 eggs at $2)": the aside explains, the answer comes first.
    # "The answer is 5 + 3 = 8": the result is after the last "=".
    span = (_after_answer_mark(text) or "").split("(")[0]
    marked = find_numbers(span.split("=")[-1])
    if marked:
        return format_number(marked[0])
    bold = [n for b in _bold_spans(text) for n in find_numbers(b)]
    if bold:
        return format_number(bold[-1])
    anywhere = find_numbers(text)
    return format_number(anywhere[-1]) if anywhere else None


def numbers_match(answer: str | None, reference: str) -> bool:
    """Whether two numbers are equal (relative tolerance 1e-6, so `0.333333` = `1/3` but `0.33` does not)."""
    if answer is None:
        return False
    a, b = parse_number(answer), parse_number(reference)
    if a is None or b is None:
        return False
    return abs(a - b) <= Fraction(1, 10**6) * max(1, abs(b))


def normalize_text(answer: str) -> str:
    """Case-, space- and edge-punctuation-insensitive form of a short text answer; `\\text{}` unwrapped."""
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", answer)
    text = " ".join(text.split()).casefold()
    return text.strip(" .,;:!?\"'`*()")


def extract_text_answer(text: str) -> str | None:
    """A short answer (think blocks skipped): after the last "Answer:"/"answer is" (its `\\boxed{}` if it has
    one, a trailing parenthetical aside dropped), else in the last `\\boxed{}`, else the last bold phrase of the
    last line, else the last line; markdown emphasis removed."""
    text = strip_thinking(text)
    span = _after_answer_mark(text)
    if span:
        span = last_boxed(span) or re.sub(r"(?<=\S)\s*\([^()]*\)\s*\.?$", "", span.replace("$", "")).strip()
        if span:
            return span
    boxed = last_boxed(text)
    if boxed:
        return boxed
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    bold = _bold_spans(lines[-1])
    return bold[-1].strip() if bold else _MARKDOWN.sub("", lines[-1]).strip() or None


def _bold_spans(text: str) -> list[str]:
    """The phrases in `**bold**`, except labels such as `**Step 2:**`."""
    spans = (m.group(1) or m.group(2) for m in _BOLD.finditer(text))
    return [b for b in spans if b.strip() and not _STEP_LABEL.search(b)]


def _after_answer_mark(text: str) -> str | None:
    """What follows the last answer marker on its line (or on the next line when the marker ends its own)."""
    plain = _MARKDOWN.sub("", text)
    matches = list(_ANSWER_MARK.finditer(plain))
    if not matches:
        return None
    rest = plain[matches[-1].end() :].lstrip(" \t:")
    lines = [line.strip() for line in rest.splitlines()]
    return next((line for line in lines if line), None)


def extract_code(text: str) -> str | None:
    """Code from a completion, think blocks skipped: its first fenced block that defines a function (else its
    first block; an unclosed fence runs to the end). Without a fence, the whole text, or, when prose comes
    around unfenced code, the longest run of lines from the first `def`/`import`/`class` that parses.
    None when empty."""
    text = strip_thinking(text)
    blocks = [m.group(2) for m in _CODE_FENCE.finditer(text) if m.group(1).lower() in ("", "python", "py", "python3")]
    defining = [b for b in blocks if re.search(r"^\s*(?:async\s+)?def\s", b, re.MULTILINE)]
    code = (defining or blocks or [_unfenced_code(text)])[0]
    lines = code.rstrip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else None


def _unfenced_code(text: str) -> str:
    start = _CODE_START.search(text)
    if start is None or _parses(text):
        return text
    lines = text[start.start() :].splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _parses(candidate):
            return candidate
    return text


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True
