"""Arith: generated multi-step arithmetic word problems with exact integer answers; no data file needed.

Level L means L steps on small numbers; level 1 is one addition or subtraction ("Tom has 3 apples and buys
4 more."), so even a tiny CPU model gets some right. Items depend only on (seed, index, level).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from archon_search.core.errors import BenchmarkError
from archon_search.core.items import Item
from archon_search.datasets.base import Dataset
from archon_search.datasets.registry import register_dataset

LEVELS = range(1, 6)
NAMES = ("Tom", "Mia", "Sam", "Ana", "Leo", "Zoe", "Ben", "Ivy", "Max", "Eva", "Raj", "Lin")
THINGS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "cards", "coins", "stamps")

# A step turns the current count into a (verb phrase, new count), or None when it does not apply to it.
Step = Callable[[random.Random, int, str], tuple[str, int] | None]


def _buy(rng: random.Random, n: int, things: str) -> tuple[str, int]:
    k = rng.randint(1, 9)
    return rng.choice((f"buys {k} more", f"finds {k} more", f"gets {k} more from a friend")), n + k


def _give(rng: random.Random, n: int, things: str) -> tuple[str, int] | None:
    if n < 2:
        return None
    k = rng.randint(1, min(9, n - 1))
    return rng.choice((f"gives {k} to a friend", f"loses {k}", f"sells {k}")), n - k


def _boxes(rng: random.Random, n: int, things: str) -> tuple[str, int]:
    k, m = rng.randint(2, 5), rng.randint(2, 9)
    return f"buys {k} boxes with {m} {things} in each box", n + k * m


def _split(rng: random.Random, n: int, things: str) -> tuple[str, int] | None:
    parts = [k for k in (2, 3, 4, 5) if n % k == 0 and n > k]
    if not parts:
        return None
    k = rng.choice(parts)
    return f"splits the {things} into {k} equal piles and keeps one pile", n // k


def _double(rng: random.Random, n: int, things: str) -> tuple[str, int] | None:
    if n > 60:
        return None
    k, word = rng.choice(((2, "doubles"), (3, "triples")))
    return f"{word} the number of {things}", n * k


EASY_STEPS: tuple[Step, ...] = (_buy, _give)
ALL_STEPS: tuple[Step, ...] = (_buy, _give, _boxes, _split, _double)


def make_problem(rng: random.Random, level: int) -> tuple[str, int]:
    """A word problem with `level` steps and its integer answer."""
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    start = rng.randint(2, 9) if level == 1 else rng.randint(5, 20)
    steps = EASY_STEPS if level == 1 else ALL_STEPS
    count, phrases = start, []
    while len(phrases) < level:
        done = rng.choice(steps)(rng, count, things)
        if done is not None:
            phrase, count = done
            phrases.append(phrase)
    question = f"How many {things} does {name} have now?"
    if level == 1:
        return f"{name} has {start} {things} and {phrases[0]}. {question}", count
    story = " ".join(f"Then {name} {phrase}." for phrase in phrases)
    return f"{name} has {start} {things}. {story} {question}", count


@register_dataset("arith")
class Arith(Dataset):
    """`size` generated problems (seeded), all at `level` (1-5), or cycling through levels 1-5 when None."""

    name = "arith"
    scorer = "number"
    # room for a 1.5B model's worked answer: at 128 tokens half of them were cut mid-sentence (and cut answers score 0)
    max_tokens = 256

    def __init__(self, size: int = 100, seed: int = 0, level: int | None = None) -> None:
        if size < 1:
            raise BenchmarkError(f"arith: size must be at least 1, not {size}")
        if level is not None and level not in LEVELS:
            raise BenchmarkError(f"arith: level must be 1 to 5 (steps per problem), not {level}")
        self.size, self.seed, self.level = size, seed, level

    def load(self, data: str | Path | None = None) -> list[Item]:
        """The generated problems; arith reads no data file."""
        if data is not None:
            raise BenchmarkError("arith is generated and takes no --data; choose its size, seed and level instead")
        items = []
        for i in range(self.size):
            level = self.level or LEVELS[i % len(LEVELS)]
            question, answer = make_problem(random.Random(f"arith:{self.seed}:{level}:{i}"), level)
            items.append(
                Item(id=f"arith-{self.seed}-{i}", prompt=question, reference=str(answer), meta={"level": level})
            )
        return items
