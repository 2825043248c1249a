"""Reading final answers out of completions: `\\boxed{}` contents, numbers, short text answers and code."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
# Thousands separators only in groups of three, so the list "1, 2" stays two numbers.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
_ANSWER_MARK = re.compile(r"(?:answer\s*(?:is|:)|####)\s*:?\s*(.+)", re.IGNORECASE)
_CODE_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (nested braces allowed), or None when there is none or it is open."""
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
    """The final numeric answer in `format_number`'s spelling, or None. Looked for, in order: the last number
    in the last `\\boxed{}`; the first number after the last "answer is"/"Answer:"/"####" (and after its last
    "=", if any); the last number anywhere."""
    boxed = find_numbers(last_boxed(text) or "")
    if boxed:
        return format_number(boxed[-1])
    # "The answer is 5 + 3 = 8": the result is after the last "=".
    marked = find_numbers((_after_answer_mark(text) or "").split("=")[-1])
    if marked:
        return format_number(marked[0])
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
    """A short answer: after the last "Answer:"/"answer is", else in the last `\\boxed{}`, else the last line."""
    for span in (_after_answer_mark(text), last_boxed(text)):
        if span and span.strip():
            return span.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _after_answer_mark(text: str) -> str | None:
    matches = list(_ANSWER_MARK.finditer(text))
    return matches[-1].group(1).strip() if matches else None


def extract_code(text: str) -> str | None:
    """Code from a completion: its first fenced block that defines a function (else its first block; an
    unclosed fence runs to the end), or the whole text when there is no fence; None when empty."""
    blocks = [m.group(2) for m in _CODE_FENCE.finditer(text) if m.group(1).lower() in ("", "python", "py", "python3")]
    defining = [b for b in blocks if re.search(r"^\s*(?:async\s+)?def\s", b, re.MULTILINE)]
    code = (defining or blocks or [text])[0]
    lines = code.rstrip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else None
