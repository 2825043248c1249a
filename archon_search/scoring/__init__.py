"""Checking answers: extractors, the scorers and their registry, code checks in the sandbox, the judge.

Ops read answers and check code only through what this package exports; datasets and the runtime may use its
modules.
"""

from archon_search.scoring.answers import (
    answer_key,
    compiles,
    extract_code,
    extract_program,
    looks_truncated,
    split_thinking,
)
from archon_search.scoring.code import arun_check, join_solution

__all__ = [
    "answer_key",
    "arun_check",
    "compiles",
    "extract_code",
    "extract_program",
    "join_solution",
    "looks_truncated",
    "split_thinking",
]
