"""Checking answers: extractors, the scorers and their registry, code checks in the sandbox, the judge.

Ops read answers and check code only through what this package exports; datasets and the runtime may use its
modules.
"""

from archon_search.scoring.answers import extract_code, split_thinking
from archon_search.scoring.code import arun_check, compiles, join_solution

__all__ = ["arun_check", "compiles", "extract_code", "join_solution", "split_thinking"]
