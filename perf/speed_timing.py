"""Timing for the speed suite: wall and CPU time of a block, and the best of several repeats.

Other processes share the machine, so a single run measures them as much as us; the fastest of a few
repeats is the figure least disturbed by them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of one measured block."""

    wall_s: float = 0.0
    cpu_s: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Timing]:
    """Measure the enclosed block; the `Timing` is filled in when the block ends."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall_s = time.perf_counter() - wall
        timing.cpu_s = time.process_time() - cpu


def fastest(timings: Iterable[Timing]) -> Timing:
    """The least disturbed figures of several repeats: the smallest wall and the smallest CPU time."""
    timings = list(timings)
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings))
