"""Math answer equivalence with math-verify, bounded in time and safe to call from any thread.

math-verify's own timeouts use SIGALRM, which works only on the main thread, and scoring runs in worker
threads; some answers (`2^{2^{2^{2^{2^2}}}}`) make sympy run forever. So comparisons run in a few persistent
worker processes (this module run with `-m`); one that overruns is killed and replaced, and the pair counts
as not equivalent.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading

from archon_search.core.errors import BenchmarkError
from archon_search.scoring.answers import canonical_latex

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
#: A worker imports sympy and math-verify before it says it is ready; comparisons are timed only after that.
STARTUP_TIMEOUT_S = 120.0
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))


def math_equal(reference: str, answer: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether `answer` is mathematically equivalent to `reference` (both LaTeX, without `\\boxed`)."""
    if canonical_latex(reference) == canonical_latex(answer):
        return True
    return _pool().equal(reference, answer, timeout_s)


class _Worker:
    """One math-verify process, talking one JSON line in and one line out per comparison."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._read_line(STARTUP_TIMEOUT_S) != "ready":
            self.close()
            raise BenchmarkError("the math-verify worker did not start; check that `import math_verify` works")

    def _read_line(self, timeout_s: float) -> str | None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        return line.strip() if line else None

    def ask(self, reference: str, answer: str, timeout_s: float) -> bool | None:
        """The verdict, or None when the worker overran or died (it must then be discarded)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps([reference, answer]) + "\n")
            self.proc.stdin.flush()
            line = self._read_line(timeout_s)
        except (OSError, ValueError):
            return None
        return None if line is None else line == "1"

    def close(self) -> None:
        """Kill the process (it may be stuck in sympy) and reap it."""
        self.proc.kill()
        self.proc.wait()


class _Pool:
    """At most POOL_SIZE workers, started on demand and reused."""

    def __init__(self, size: int) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()

    def equal(self, reference: str, answer: str, timeout_s: float) -> bool:
        with self._slots:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = _Worker()
                with self._lock:
                    self._all.add(worker)
            verdict = worker.ask(reference, answer, timeout_s)
            if verdict is not None:
                self._idle.put(worker)
                return verdict
            log.warning("math-verify gave no verdict within %.1fs on %r; counted as not equivalent", timeout_s, answer)
            with self._lock:
                self._all.discard(worker)
            worker.close()
            return False

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.close()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = _Pool(POOL_SIZE)
            atexit.register(_POOL.close)
        return _POOL


def _serve() -> None:
    """Worker loop: read `[reference, answer]` lines, answer `1` (equivalent) or `0`."""
    logging.disable(logging.WARNING)
    from math_verify import parse, verify

    print("ready", flush=True)
    for line in sys.stdin:
        reference, answer = json.loads(line)
        try:
            gold = parse(f"\\boxed{{{reference}}}", parsing_timeout=None)
            pred = parse(f"\\boxed{{{answer}}}", parsing_timeout=None)
            ok = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
        except Exception:  # noqa: BLE001 - math-verify may raise on malformed LaTeX: then not equivalent
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
