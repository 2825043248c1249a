"""Reading final answers out of completions: `\\boxed{}` contents, numbers, short text answers and code."""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
# LaTeX spacing inside a number: `1\,000`
_LATEX_SPACE = re.compile(r"\\[,!]")
# The digits of one number. Thousands separators only in groups of three, so the list "1, 2" stays two numbers;
# dots (`1.234.567`) only where they cannot be a decimal point, plain spaces only for two groups or more, so
# "3 100-dollar bills" stays 3 and 100.
_DIGITS = (
    r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"
    r"|\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?"
    r"|\d{1,3}(?:\.\d{3})+,\d+"
    r"|\d{1,3}(?:[\u00a0\u202f\u2009]\d{3})+(?:\.\d+)?"
    r"|\d{1,3}(?: \d{3}){2,}(?:\.\d+)?"
    r"|\d+(?:\.\d+)?"
    r"|\.\d+"
)
# a number with its sign (`-18`, `-$18`, `$-18`, "minus 5", "negative 3"), currency and a `/7` denominator
_NUMBER = re.compile(
    rf"(?<![\w.])(?:(?P<minus>-)|\b(?P<word>minus|negative)\s+)?(?:\\?\$\s?)?(?P<minus2>-)?"
    rf"(?P<digits>{_DIGITS})(?:/(?P<den>\d+))?(?!\d)",
    re.IGNORECASE,
)
# what may follow a number that is all of an answer: a percent sign or a unit ("18 eggs", "5 km/h")
_ONE_NUMBER = re.compile(
    rf"\s*(?:{_NUMBER.pattern})(?:\s*\\?%|\s+[a-z°][a-z°²³/.]*(?:\s+[a-z][a-z/.]*){{0,2}})?\s*\.?\s*", re.IGNORECASE
)
# Answer markers, read after markdown is removed: "Answer:", "Final answer:", "The answer is:", "Answer — 18",
# an "Answer" heading alone on its line, and GSM8K's "#### 18" (not a `####` markdown heading).
_ANSWER_MARK = re.compile(
    r"\banswer\s*(?:is\s*)?(?::|=)|\banswer\s+[-–—]\s|####(?=[ \t]*[-$\\\d.])"
    r"|^[ \t>#*-]*(?:the\s+)?(?:final\s+)?answer[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# "the answer is ..." counts as a marker only when what follows is an answer, not commentary
_WEAK_MARK = re.compile(r"\banswer\s+is\b(?!\s*:)", re.IGNORECASE)
_FILLER = r"(?:\s|\\\(|\\\[|\$|approximately|about|exactly|roughly|therefore|thus|simply|just|now|indeed|clearly|=)*"
_LEADS_WITH_NUMBER = re.compile(rf"{_FILLER}(?:[-−$\\\d.]|minus\b|negative\b|[a-z]\s*=)", re.IGNORECASE)
_COMMENTARY = re.compile(
    r"\s*(?:not|often|usually|always|also|still|that|because|based|different|unclear|ambiguous|unchanged|the\s+same"
    r"|sometimes|typically|generally|commonly|to|in|on|given)\b",
    re.IGNORECASE,
)
# the end of an answer's first sentence: "18. Note: ..." reads 18, "18.5 eggs" stays whole
_SENTENCE_END = re.compile(r"(?<=[^\d\s])\.\s|(?<=\d)\.\s+(?=[A-Z(*\[])|;\s")
_PARENTHETICAL = re.compile(r"\([^()]*\)")
# a closing paragraph of commentary ("Note: each egg sells for $2") holds no answer
_NOTE = re.compile(r"^\W*(?:note|n\.b\.|p\.s\.|disclaimer|remember|tip)\b", re.IGNORECASE)
# A text that stops mid-sentence: inside a `\boxed{`, after an operator, a comma or colon, or after a word that
# never ends a sentence. A text ending in a digit or a full stop may be whole, so it is never called cut.
_CUT_END = re.compile(
    r"(?:(?<=[\s\d])[=+×÷/^*-]|[,:(]|\\(?:frac|cdot|times)|(?<![\w'])(?:the|an|of|to|and|or|is|are|was|were"
    r"|by|with|for|from|that|then|so|be|in|at|which|because|as|than|this|its|their|if|but|into|on|we|it|she|he"
    r"|they|since|while))\s*$",
    re.IGNORECASE,
)
# "x = 3" answers 3: one variable (`x`, `y_1`, `\\theta`) set equal to the answer
_ASSIGNMENT = re.compile(r"^\s*(?:[a-z](?:_\{?\w+\}?)?|\\[a-z]+)\s*=(?!=)", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?](?=\s)|\n")
_CODE_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("", "python", "py", "python3")
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.DOTALL)
_MARKDOWN = re.compile(r"\*\*|__|`")
_STEP_LABEL = re.compile(r"\bstep\b|:\s*$", re.IGNORECASE)
# Spelling-only differences that need no sympy: spacing, \left/\right, \dfrac, degree marks, \text{}, \$.
_COSMETIC = [
    (re.compile(r"\\(?:left|right)\b"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\^\s*\{?\\circ\}?"), ""),
    (re.compile(r"\\text\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\[,;:! ]|\\\$|\$|\s+"), ""),
]
# a code line that can start a program written without a fence after some prose
_CODE_START = re.compile(r"^(?:(?:async\s+)?def\s|class\s|import\s|from\s+\S+\s+import\s|@\w)", re.MULTILINE)
# modules whose import marks a block of tests, not of the solution
_TEST_MODULES = {"unittest", "pytest", "doctest"}


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
    boxes = _boxes(strip_thinking(text))
    return boxes[-1][1] if boxes else None


def _boxes(text: str) -> list[tuple[int, str]]:
    """(position, contents) of every closed `\\boxed{...}` in `text`, in order."""
    found = []
    for match in _BOXED.finditer(text):
        depth = 1
        for i in range(match.end(), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append((match.start(), text[match.end() : i].strip()))
                    break
    return found


def looks_truncated(text: str) -> bool:
    """Whether what `text` shows after its thoughts clearly stops mid-sentence: inside a `\\boxed{`, after an
    operator, comma or colon, or after a word such as "the" or "and". Only what is reliable: a text that ends
    in a digit or a word that may end a sentence is never called cut, so `Completion.finish_reason` stays the
    main signal."""
    shown = strip_thinking(text).rstrip()
    if not shown:
        return False
    opened = [m.start() for m in _BOXED.finditer(shown)]
    open_box = bool(opened) and not _boxes(shown[opened[-1] :])
    return open_box or _CUT_END.search(shown) is not None


def _complete_part(text: str) -> str:
    """A cut text without its unfinished last sentence (or line)."""
    text = text.rstrip()
    ends = [m.end() for m in _CLAUSE_END.finditer(text)]
    return text[: ends[-1]] if ends else ""


def _number_text(text: str) -> str:
    """`text` with LaTeX fractions as `a/b`, LaTeX spacing inside numbers removed and the Unicode minus as `-`."""
    text = _LATEX_SPACE.sub("", text.replace("\u2212", "-").replace("{,}", ","))
    return _FRAC.sub(r"\1/\2", text)


def _value(match: re.Match[str], text: str) -> Fraction | None:
    """The value of a `_NUMBER` match in `text`; "minus" after a number is subtraction, not a sign."""
    digits = match.group("digits")
    if "," in digits and "." in digits and digits.index(".") < digits.index(","):
        digits = digits.replace(".", "").replace(",", ".")
    elif digits.count(".") > 1:
        digits = digits.replace(".", "")
    digits = re.sub(r"[,\s\u00a0\u202f\u2009]", "", digits)
    try:
        value = Fraction(digits) / Fraction(match.group("den") or 1)
    except ZeroDivisionError:
        return None
    subtracted = match.group("word") and re.search(r"[\d)]\s*$", text[: match.start()]) is not None
    negative = bool(match.group("minus") or match.group("minus2") or (match.group("word") and not subtracted))
    return -value if negative else value


def parse_number(text: str) -> Fraction | None:
    """The value of one number written like `1,234`, `1 234 567`, `-$4,000`, `7/8`, `\\frac{7}{8}`, `25%`, "18 eggs"
    or "minus 5"; None if `text` is not one number."""
    cleaned = _number_text(text).strip()
    match = _ONE_NUMBER.fullmatch(cleaned)
    if match is None:
        return None
    number = _NUMBER.match(cleaned, len(cleaned) - len(cleaned.lstrip()))
    return _value(number, cleaned) if number else None


def format_number(value: Fraction) -> str:
    """A canonical spelling: `18`, `2.5`, `-0.125`, or `1/3` when no short decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    if any((value * 10**places).denominator == 1 for places in range(1, 7)):
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator}"


def find_numbers(text: str) -> list[Fraction]:
    """Every number in `text`, in order (LaTeX fractions, signs, currency and thousands separators read)."""
    cleaned = _number_text(text)
    values = (_value(m, cleaned) for m in _NUMBER.finditer(cleaned))
    return [v for v in values if v is not None]


def extract_number(text: str) -> str | None:
    """The final numeric answer in `format_number`'s spelling, or None. Think blocks are skipped.

    The LAST answer marker that holds a number decides, whatever numbers commentary puts after it: a
    `\\boxed{}` (its last number), "Answer:"/"Final answer:"/an "Answer" heading/"####" (the first number of
    the sentence after it, a parenthetical aside dropped, after its last "=" if any), or "the answer is"
    followed by a number. Without a marker: the last number in bold, else the last number outside a closing
    note. A text that `looks_truncated` gives only what a marker before the cut says: nothing is invented.
    """
    text = strip_thinking(text)
    cut = looks_truncated(text)
    if cut:
        text = _complete_part(text)
    for kind, span in reversed(_markers(text)):
        numbers = _marked_numbers(kind, span)
        if numbers:
            return format_number(numbers[-1] if kind == "boxed" else numbers[0])
    if cut:
        return None
    bold = [n for b in _bold_spans(text) for n in find_numbers(b)]
    if bold:
        return format_number(bold[-1])
    anywhere = find_numbers(_without_notes(text)) or find_numbers(text)
    return format_number(anywhere[-1]) if anywhere else None


def _marked_numbers(kind: str, span: str) -> list[Fraction]:
    """The numbers a marker's span gives: all of a box; for a line, those of its first sentence after its last
    "=" ("Answer: 9 × 2 = 18. Note: ..."), asides in parentheses dropped; a weak marker's only if a number
    comes first."""
    if kind == "boxed":
        return find_numbers(span)
    if kind == "weak" and not _LEADS_WITH_NUMBER.match(span):
        return []
    sentence = _SENTENCE_END.split(span, 1)[0]
    for part in (_PARENTHETICAL.sub(" ", sentence), sentence, span):
        numbers = find_numbers(part.split("=")[-1])
        if numbers:
            return numbers
    return []


def _without_notes(text: str) -> str:
    """`text` without the paragraphs of commentary that close it ("Note: ...", "P.S. ...")."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    while len(paragraphs) > 1 and _NOTE.match(_MARKDOWN.sub("", paragraphs[-1])):
        paragraphs.pop()
    return "\n\n".join(paragraphs)


def numbers_match(answer: str | None, reference: str) -> bool:
    """Whether two numbers are equal (relative tolerance 1e-6, so `0.333333` = `1/3` but `0.33` does not)."""
    if answer is None:
        return False
    a, b = parse_number(answer), parse_number(reference)
    if a is None or b is None:
        return False
    return abs(a - b) <= Fraction(1, 10**6) * max(1, abs(b))


def canonical_latex(answer: str) -> str:
    """The answer with purely cosmetic LaTeX removed, for a fast exact comparison."""
    text = answer.strip().rstrip(".")
    for pattern, repl in _COSMETIC:
        text = pattern.sub(repl, text)
    return text


def answer_key(answer: str) -> str:
    """A key that is equal for one answer written differently, for grouping answers (the voter): a number's
    value (`18` = `18.0` = `$18` = `18 eggs`, `\\frac{3}{4}` = `\\dfrac{3}{4}` = `0.75`, `25\\%` = `25`), else the
    LaTeX without cosmetic differences (`\\dfrac`, `\\left`, spacing), case-insensitive when it is plain text.
    A lone variable set equal to the answer (`x = 3`) is dropped first."""
    text = re.sub(r"\\text\{([^{}]*)\}", r" \1", answer).strip().strip("$").strip()
    if text.count("=") == 1:
        text = _ASSIGNMENT.sub("", text)
    value = parse_number(text)
    if value is not None:
        return format_number(value)
    key = canonical_latex(text)
    return key if "\\" in key else key.casefold().strip(".,;:!?'\"")


def normalize_text(answer: str) -> str:
    """Case-, space- and edge-punctuation-insensitive form of a short text answer; `\\text{}` unwrapped."""
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", answer)
    text = " ".join(text.split()).casefold()
    return text.strip(" .,;:!?\"'`*()")


def extract_text_answer(text: str) -> str | None:
    """A short answer (think blocks skipped): what the LAST answer marker gives (a `\\boxed{}`'s contents;
    the rest of the line after "Answer:"/"Final answer:"/an "Answer" heading, its `\\boxed{}` if it has one, a
    trailing parenthetical aside dropped; "the answer is ..." unless commentary follows, as in "the answer is
    not Saturn"); else the last bold phrase of the last line, else the last line; markdown emphasis removed. A
    text that `looks_truncated` gives only what a marker before the cut says."""
    text = strip_thinking(text)
    cut = looks_truncated(text)
    if cut:
        text = _complete_part(text)
    for kind, span in reversed(_markers(text)):
        if kind == "weak" and _COMMENTARY.match(span):
            continue
        if kind != "boxed":
            span = last_boxed(span) or re.sub(r"(?<=\S)\s*\([^()]*\)\s*\.?$", "", span.replace("$", "")).strip()
        if span:
            return span
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if cut or not lines:
        return None
    bold = _bold_spans(lines[-1])
    return bold[-1].strip() if bold else _MARKDOWN.sub("", lines[-1]).strip() or None


def _bold_spans(text: str) -> list[str]:
    """The phrases in `**bold**`, except labels such as `**Step 2:**`."""
    spans = (m.group(1) or m.group(2) for m in _BOLD.finditer(text))
    return [b for b in spans if b.strip() and not _STEP_LABEL.search(b)]


def _markers(text: str) -> list[tuple[str, str]]:
    """Every answer marker, in order, as (kind, what it gives): ("boxed", its contents), ("line", the rest of
    its line or, when it ends its line, the next non-empty line) and ("weak", the same after "the answer is")."""
    plain = _MARKDOWN.sub("", text)
    found = [(start, "boxed", contents) for start, contents in _boxes(plain)]
    for kind, pattern in (("line", _ANSWER_MARK), ("weak", _WEAK_MARK)):
        for match in pattern.finditer(plain):
            rest = plain[match.end() :].lstrip(" \t:")
            span = next((line.strip() for line in rest.splitlines() if line.strip()), "")
            found.append((match.start(), kind, span))
    return [(kind, span) for _, kind, span in sorted(found, key=lambda f: f[0])]


def extract_code(text: str) -> str | None:
    """Code from a completion, think blocks skipped: its first fenced block that defines a function (else its
    first block; an unclosed fence runs to the end). Without a fence, the whole text, or, when prose comes
    around unfenced code, the longest run of lines from the first `def`/`import`/`class` that parses.
    None when empty."""
    blocks = _python_blocks(strip_thinking(text))
    defining = [b for b in blocks if re.search(r"^\s*(?:async\s+)?def\s", b, re.MULTILINE)]
    return _tidy((defining or blocks or [_unfenced_code(strip_thinking(text))])[0])


def extract_program(text: str) -> str | None:
    """The whole program a completion gives, think blocks skipped: when its code is spread over several fenced
    blocks (imports or a helper, then the function), every block that is part of the solution, in order, one
    program; blocks of example usage, tests, input-reading scripts and fragments that do not parse are left
    out. When the kept blocks do not parse together, the last of them that defines something. With one
    block or none, what `extract_code` reads."""
    blocks = [b for b in _python_blocks(strip_thinking(text)) if compiles(b)]
    if len(blocks) < 2:
        return extract_code(text)
    defined = [_names_defined(b) for b in blocks]
    kept = [
        b for k, b in enumerate(blocks) if _is_solution(b, set().union(*(d for j, d in enumerate(defined) if j != k)))
    ]
    if not kept:
        return extract_code(text)
    joined = "\n".join(_tidy(b) or "" for b in kept)
    if compiles(joined):
        return _tidy(joined)
    return _tidy(next((b for b in reversed(kept) if _names_defined(b)), kept[-1]))


def _python_blocks(text: str) -> list[str]:
    """The fenced blocks tagged as Python or not tagged at all."""
    return [m.group(2) for m in _CODE_FENCE.finditer(text) if m.group(1).lower() in _PYTHON_TAGS]


def _tidy(code: str) -> str | None:
    """`code` without leading blank lines and trailing space, ending in one newline; None when empty."""
    lines = code.rstrip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else None


def _names_defined(code: str) -> set[str]:
    """The functions and classes a block that parses defines at its top level."""
    return {
        node.name
        for node in ast.parse(code).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _is_solution(code: str, elsewhere: set[str]) -> bool:
    """Whether a block is part of the solution: it defines a function or class that is no test, or it only
    imports and assigns (a constant, a helper table) without calling what other blocks define or reading input.
    Example usage, asserts, `__main__` blocks and test classes are not."""
    body = ast.parse(code).body
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] in _TEST_MODULES for m in modules):
                return False
    defs = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if defs:
        return not all(d.name.lower().startswith("test") for d in defs)
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)):
            return False
        calls = [c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
        if any(name in elsewhere or name == "input" for name in calls):
            return False
    return True


def _unfenced_code(text: str) -> str:
    start = _CODE_START.search(text)
    if start is None or compiles(text):
        return text
    lines = text[start.start() :].splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if compiles(candidate):
            return candidate
    return text


def compiles(code: str) -> bool:
    """Whether `code` compiles as a Python module (compiling runs nothing)."""
    try:
        compile(code, "<solution>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
