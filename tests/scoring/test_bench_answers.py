"""Answer extraction shared by the benchmarks: numbers, short text answers and code blocks."""

from __future__ import annotations

from fractions import Fraction

import pytest

from archon_search.scoring.answers import (
    extract_code,
    extract_number,
    extract_text_answer,
    format_number,
    normalize_text,
    numbers_match,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She makes 9 * 2 = $18 every day.", "18"),
        ("Answer: $1,234.50", "1234.5"),
        ("so the answer is 7 apples, not 9", "7"),
        ("The answer is 5 + 3 = 8", "8"),
        ("#### 1,450,000", "1450000"),
        (r"thus $\boxed{\frac{3}{4}}$ of it, i.e. 3 of 4", "0.75"),
        (r"\boxed{42} was wrong, it is 40", "42"),
        ("It costs 18.0 dollars.", "18"),
        ("x = -7", "-7"),
        ("the items 1, 2, 3", "3"),
        ("we get 1/3", "1/3"),
        ("The temperature fell by \u22125 degrees", "-5"),
        ("no digits at all", None),
    ],
)
def test_extract_number(text: str, number: str | None) -> None:
    assert extract_number(text) == number


def test_number_parsing_and_matching() -> None:
    assert parse_number("$1,000.00") == 1000
    assert parse_number(r"\frac{7}{8}") == Fraction(7, 8)
    assert parse_number("seven") is None
    assert format_number(Fraction(5, 2)) == "2.5" and format_number(Fraction(2, 3)) == "2/3"
    assert numbers_match("18", "18.0") and numbers_match("0.333333", "1/3")
    assert not numbers_match("0.33", "1/3") and not numbers_match(None, "1") and not numbers_match("17", "18")


def test_text_answers() -> None:
    assert extract_text_answer("I think...\nAnswer: Paris.") == "Paris."
    assert extract_text_answer(r"it is \boxed{\text{Blue}}") == r"\text{Blue}"
    assert extract_text_answer("thinking\n\nGreen\n") == "Green"
    assert extract_text_answer("   ") is None
    assert normalize_text(r"  \text{New   York}. ") == "new york"


def test_extract_code() -> None:
    fenced = "Here:\n```python\ndef f(x):\n    return x\n```\nUsage:\n```python\nprint(f(1))\n```"
    assert extract_code(fenced) == "def f(x):\n    return x\n"
    assert extract_code("```python\nimport math\n```\nthen\n```py\ndef g():\n    pass\n```") == "def g():\n    pass\n"
    assert extract_code("```python\ndef open_fence():\n    return 1") == "def open_fence():\n    return 1\n"
    assert extract_code("\n    return x + 1\n") == "    return x + 1\n"
    assert extract_code("```bash\nls\n```") == "```bash\nls\n```\n"
    assert extract_code("  \n") is None
