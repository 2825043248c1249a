"""Statistics for reports: Wilson confidence intervals for accuracy, paired significance, pass@k, coverage, questions.csv."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is built: loading pandas takes most of a second

#: DESIGN §4: the columns every questions.csv starts with, in this order (more may follow).
QUESTION_COLUMNS = ("id", "correct", "answer", "reference", "calls", "tokens")


def accuracy_ci(scores: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean score and its Wilson score interval: (mean, low, high).

    Wilson rather than a percentile bootstrap: at small n the bootstrap covers the truth far less often than
    asked, and 12/12 would give [100%, 100%]. Graded (fractional) scores use their mean as the proportion.
    """
    values = _as_array(scores, "scores")
    n, mean = len(values), float(values.mean())
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mean, max(0.0, min(centre - half, mean)), min(1.0, max(centre + half, mean))


def paired_bootstrap_pvalue(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0) -> float:
    """One-sided p-value that `a` beats `b` only by chance, both scored on the same questions in the same order.

    Paired bootstrap (Berg-Kirkpatrick et al., 2012): resample questions, and count how often the resampled
    mean difference exceeds twice the observed one. Small means `a` is reliably better; when `a` is not
    better at all the value is at least about 0.5.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same questions: got {len(a)} and {len(b)} scores")
    diffs = _as_array(a, "a") - _as_array(b, "b")
    observed = diffs.mean()
    rng = np.random.default_rng(seed)
    boot = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(axis=1)
    return float((np.sum(boot - observed >= observed - 1e-12) + 1) / (n_boot + 1))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021) from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def coverage(candidate_scores: Iterable[Sequence[float]], threshold: float = 1.0) -> float:
    """Fraction of questions where any first-layer candidate scored at least `threshold` (none: not covered)."""
    per_question = [any(s >= threshold for s in scores) for scores in candidate_scores]
    return sum(per_question) / len(per_question) if per_question else 0.0


def results_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-question rows as a DataFrame with QUESTION_COLUMNS first; ValueError if one of them is missing."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    missing = [c for c in QUESTION_COLUMNS if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"question rows lack column(s) {', '.join(missing)}")
    if not len(frame):
        return pd.DataFrame(columns=list(QUESTION_COLUMNS))
    extra = [c for c in frame.columns if c not in QUESTION_COLUMNS]
    return frame[list(QUESTION_COLUMNS) + extra]


def save_questions_csv(rows: pd.DataFrame | Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write questions.csv (DESIGN §4) from rows or a frame; creates the folder; returns the path."""
    import pandas as pd

    frame = results_frame(rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers")
    return array
