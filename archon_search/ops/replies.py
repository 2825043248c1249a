"""How critic, ranker and verifier read a judge's reply: one reader for all three, each op with its own grammar.

A reply is read from what the model shows after any think block (else, as a guess, from its thoughts); in that,
from its JSON objects first (what structured output asks for, wherever they sit: alone, fenced, amid prose),
then from the op's text grammar.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from archon_search.scoring import split_thinking

T = TypeVar("T")

# `[1, 2,]` and `{"a": 1,}`: models write JSON as they would write Python
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """What a parser read from a judge's output; `guess` says why it is a guess (None when read as asked)."""

    value: T
    guess: str | None = None


def read_reply(
    text: str,
    from_json: Callable[[list[dict]], Parsed[T] | None],
    from_text: Callable[[str], Parsed[T] | None],
    clean: Callable[[str], str] | None = None,
) -> Parsed[T] | None:
    """What a judge's reply says: `from_json` on its JSON objects, else `from_text` on its text (both after
    `clean`, say markdown removed), read from what it shows after its think block; when that holds nothing
    readable (say, the model ran out of tokens while thinking), from its thoughts, as a guess."""

    def read(part: str) -> Parsed[T] | None:
        part = clean(part) if clean is not None else part
        found = from_json(json_objects(part))
        return found if found is not None else from_text(part)

    thoughts, shown = split_thinking(text)
    found = read(shown)
    if found is None and thoughts:
        inner = read(thoughts)
        if inner is not None:
            return Parsed(inner.value, "nothing readable after the think block; read from the thoughts")
    return found


def json_objects(text: str) -> list[dict]:
    """Every top-level JSON object in `text`, in order, wherever it sits (alone, in a code fence, amid prose);
    one written loosely (a trailing comma, a Python dict's quotes and literals) is read as meant."""
    decoder = json.JSONDecoder()
    found: list[dict] = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            end = _closing(text, start)
            value = _loose(text[start:end]) if end is not None else None
            if value is None:
                start = text.find("{", start + 1)
                continue
        if isinstance(value, dict):
            found.append(value)
        start = text.find("{", end)
    return found


def _closing(text: str, start: int) -> int | None:
    """Where the braces opened at `start` close (braces inside strings skipped), or None when they never do."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if escaped:
            escaped = False
        elif quote:
            escaped = ch == "\\"
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _loose(span: str) -> object:
    """The value of a loosely written JSON object: trailing commas dropped, else read as a Python literal."""
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", span))
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def index_of(value: object, n: int) -> int | None:
    """The 0-based candidate index a JSON value names (`2`, `"2"`, `"[2]"`, `"Candidate 2"`), if valid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = "".join(ch if ch.isdigit() else " " for ch in value).split()
        value = int(digits[0]) if len(digits) == 1 else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 1 <= value <= n:
        return value - 1
    return None
