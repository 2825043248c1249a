"""Issue #17's answer classes, one unit at a time: markers before commentary, numbers with their sign and grouping,
cut texts, programs over several blocks, and the keys and comparisons the voter groups answers by."""

from __future__ import annotations

from fractions import Fraction

import pytest

from archon_search.core.items import Item
from archon_search.scoring.answers import (
    answer_key,
    extract_number,
    extract_program,
    extract_text_answer,
    find_numbers,
    looks_truncated,
    parse_number,
)
from archon_search.scoring.base import get_scorer


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-$4,000", -4000),
        ("$-4,000", -4000),
        ("\u2212$4,000", -4000),
        ("1 234 567", 1234567),
        ("1\u202f234", 1234),
        ("1.234.567", 1234567),
        ("1.234,5", Fraction(2469, 2)),
        ("1.234", Fraction(617, 500)),
        ("25%", 25),
        ("25\\%", 25),
        ("18 eggs", 18),
        ("5 km/h", 5),
        ("minus 5", -5),
        ("negative 3", -3),
        ("1\\,000", 1000),
        ("-\\frac{3}{4}", Fraction(-3, 4)),
        ("1,2", None),
        ("3 100", None),
        ("2x", None),
        ("seven", None),
        ("x = 3", None),
    ],
)
def test_parse_number(text: str, value: int | Fraction | None) -> None:
    assert parse_number(text) == value


def test_minus_between_numbers_subtracts() -> None:
    assert find_numbers("10 minus 5 leaves 5, and it is minus 2 outside") == [10, 5, 5, -2]
    assert find_numbers("16 - 3 - 4 = 9, x-3") == [16, 3, 4, 9, 3]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Answer: 18. Note: 3 + 4 = 7 eggs are kept.", "18"),
        ("#### Step 3: multiply\n9 × 2 = 18", "18"),  # a markdown heading is no GSM8K marker
        ("Answer: see below.\n\nShe makes 9 × 2 = 18 dollars.", "18"),  # a marker without a number gives way
        ("\\boxed{20} at first; Answer: 18", "18"),
        ("Answer: 20\n\nWait, I double counted. \\boxed{18}", "18"),
        ("The answer is based on 9 eggs.\n\nAnswer: 18", "18"),
        ("The answer is approximately 3.14.", "3.14"),
        ("She makes $18.\n\nNote: each egg sells for $2.", "18"),
        ("So far 9 × 2 =", None),
        ("Answer: 18\n\nShe keeps 3 for the", "18"),
    ],
)
def test_extract_number_reads_the_last_marker(text: str, number: str | None) -> None:
    assert extract_number(text) == number


def test_extract_text_answer_skips_commentary_markers() -> None:
    assert extract_text_answer("Answer: Paris\n\nThe answer is often given as Lyon.") == "Paris"
    assert extract_text_answer("**Final Answer**\nOxygen\n\nIt is element 8.") == "Oxygen"
    assert extract_text_answer("The capital is the") is None


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("So she earns 9 × 2 =", True),
        ("the answer is $\\boxed{1", True),
        ("and the total is 48 and the", True),
        ("It is 5, and", True),
        ("Answer: 18", False),
        ("**Final Answer: 42**", False),
        ("Answer: C++", False),
        ("Answer: a", False),
        ("<think>still thinking about the", False),  # nothing shown: the extractors find nothing anyway
        ("", False),
    ],
)
def test_looks_truncated(text: str, cut: bool) -> None:
    assert looks_truncated(text) is cut


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("x = 3", "3"),
        ("18", "18.0"),
        ("\\$18", "18 eggs"),
        ("18 \\text{ eggs}", "18"),
        ("25\\%", "25"),
        ("\\left(1, 2\\right)", "(1,2)"),
        ("Canberra", "canberra."),
    ],
)
def test_answer_key_groups_one_answer_written_differently(a: str, b: str) -> None:
    assert answer_key(a) == answer_key(b)


@pytest.mark.parametrize(("a", "b"), [("\\frac{3}{4}", "\\frac{2}{3}"), ("2x", "2"), ("\\Pi", "\\pi"), ("1,2", "12")])
def test_answer_key_keeps_different_answers_apart(a: str, b: str) -> None:
    assert answer_key(a) != answer_key(b)


def test_scorers_compare_answers_as_they_score() -> None:
    math, number, exact = get_scorer("math"), get_scorer("number"), get_scorer("exact")
    assert math.same_answer("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}")
    assert math.same_answer("x = 3", "3") and not math.same_answer("\\frac{1}{3}", "0.33")
    assert number.same_answer("0.333333", "1/3") and not number.same_answer("17", "18")
    assert exact.same_answer("New  York.", "new york") and not exact.same_answer("York", "New York")


def test_extract_program_joins_the_blocks_of_the_solution() -> None:
    text = "```python\nimport math\n```\n\n```python\ndef area(r):\n    return math.pi * r * r\n```"
    assert extract_program(text) == "import math\n\ndef area(r):\n    return math.pi * r * r\n"
    one = "```python\ndef f():\n    return 1\n```\n"
    assert extract_program(one) == "def f():\n    return 1\n"
    assert extract_program("def g():\n    return 2\n") == "def g():\n    return 2\n"
    usage = "```python\ndef f():\n    return 1\n```\n```python\nvalue = f()\nprint(value)\n```"
    assert extract_program(usage) == "def f():\n    return 1\n"


def test_extract_program_falls_back_to_the_last_block_that_defines_something() -> None:
    # a __future__ import must come first: these blocks do not parse as one program
    text = (
        "```python\ndef f():\n    return 1\n```\n"
        "```python\nfrom __future__ import annotations\ndef f():\n    return 2\n```"
    )
    assert extract_program(text) == "from __future__ import annotations\ndef f():\n    return 2\n"


def test_the_code_scorer_runs_every_block_of_the_solution() -> None:
    item = Item(id="h", prompt="Write lcm(a, b).", reference="assert lcm(4, 6) == 12\nassert lcm(3, 5) == 15\n")
    text = (
        "First a helper:\n```python\ndef gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n```\n"
        "Then the function:\n```python\ndef lcm(a, b):\n    return a * b // gcd(a, b)\n```\n"
        "Example:\n```python\nprint(lcm(4, 6))\n```"
    )
    assert get_scorer("code").score(item, text) == 1.0
