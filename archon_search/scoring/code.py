"""Code answers: the code scorer, and checking a program by running it in the sandbox (the unit-test evaluator
uses the same check on the tests it writes)."""

from __future__ import annotations

import re
import secrets

from archon_search.core.items import BenchKind, Item
from archon_search.scoring.answers import compiles, extract_program
from archon_search.scoring.base import Scorer, register_scorer
from archon_search.scoring.sandbox import SandboxResult, arun_python, run_python

CODE_INSTRUCTION = "Reply with the complete Python code in a single ```python code block."

#: Wall-clock limit for running one candidate program against its tests.
CODE_TIMEOUT_S = 10.0


@register_scorer("code")
class CodeScorer(Scorer):
    """Python code, run in the sandbox followed by the reference (test code); passing means the tests ran to the end.

    When `item.meta` holds a `code_prompt` (a signature and docstring, as in HumanEval), the completion may
    be just the function body, or the whole function; the prompt is put first either way, so the imports and
    helpers it defines are there. As in the official HumanEval harness, the program does not run as
    `__main__` (a completion's own `if __name__ == "__main__":` block, say a `unittest.main()` or a demo
    reading `input()`, stays unrun) and only reaching the end of the tests counts.
    """

    kind: BenchKind = "code"
    instruction = CODE_INSTRUCTION

    def __init__(self, timeout_s: float = CODE_TIMEOUT_S):
        self.timeout_s = timeout_s

    def extract(self, text: str) -> str | None:
        """The completion's program: every fenced block that is part of the solution (a helper, then the function),
        or the raw text."""
        return extract_program(text)

    def program(self, item: Item, text: str) -> str:
        """The program to run: the prompt's code and the completion's, then the tests."""
        solution = join_solution(
            item.meta.get("code_prompt", ""), self.extract(text) or "", item.meta.get("entry_point")
        )
        return f"{solution}\n\n{item.reference}\n"

    def score(self, item: Item, text: str) -> float:
        """1.0 when the tests run to their end within `timeout_s`."""
        return float(run_check(self.program(item, text), timeout_s=self.timeout_s))


#: The `__name__` checked programs run under: anything but `__main__`, so that main blocks stay unrun.
CHECK_MODULE = "solution"
# Appended to a checked program: the marker line, then an exit that skips whatever the code left to run at exit.
_PASSED = (
    "\nimport os as _archon_os, sys as _archon_sys\n_archon_sys.stdout.write('\\n{marker}\\n')\n"
    "_archon_sys.stdout.flush()\n_archon_os._exit(0)\n"
)


def run_check(program: str, timeout_s: float = CODE_TIMEOUT_S) -> bool:
    """Whether `program` (solution then tests) runs to its end in the sandbox within `timeout_s`.

    Exit status 0 alone is not enough: a solution that calls `sys.exit(0)` before the tests would pass. The
    program passes when it prints a marker, unknown to the code, appended after its last line.
    """
    checked, marker = _with_marker(program)
    result = run_python(checked, timeout_s=timeout_s, run_name=CHECK_MODULE)
    return _passed(result, marker)


async def arun_check(program: str, timeout_s: float = CODE_TIMEOUT_S) -> bool:
    """`run_check` in a worker thread, so the event loop keeps serving other questions meanwhile."""
    checked, marker = _with_marker(program)
    result = await arun_python(checked, timeout_s=timeout_s, run_name=CHECK_MODULE)
    return _passed(result, marker)


def _with_marker(program: str) -> tuple[str, str]:
    marker = f"archon-check-passed-{secrets.token_hex(8)}"
    return program + _PASSED.format(marker=marker), marker


def _passed(result: SandboxResult, marker: str) -> bool:
    lines = result.stdout.rstrip().splitlines()
    return not result.timed_out and result.returncode == 0 and bool(lines) and lines[-1] == marker


def join_solution(prompt: str, code: str, entry: str | None = None) -> str:
    """A completion's code after the prompt's (its imports and helpers), as one program.

    The completion continues the prompt's last function as its body unless it is a whole program: one that
    defines `entry` or, with no entry point known, one that compiles on its own. When the joined text does
    not compile but the completion does (a prompt that is not valid code), the completion alone.
    """
    if not prompt:
        return code
    if entry:
        whole = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE) is not None
    else:
        whole = compiles(code)
    joined = f"{prompt}\n\n{code}" if whole else prompt + _as_body(code)
    return code if not compiles(joined) and compiles(code) else joined


def _as_body(code: str) -> str:
    """A completion that continues a function: indent it if the model wrote the body flush left."""
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [f"    {line}" if line.strip() else line for line in lines]
    return "\n".join(lines) + "\n"
