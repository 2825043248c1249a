"""The run's `report.md`: the best architecture against the baselines on the held-out test split (accuracy
with 95% CIs, paired bootstrap p-values), the Pareto front for two objectives, and the plots beside it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import pandas as pd

from archon_search.eval.evaluate import EvalResult
from archon_search.eval.metrics import paired_bootstrap_pvalue, pass_at_k
from archon_search.lang.render import plural
from archon_search.lang.validate import Validated
from archon_search.search.plots import HISTORY_PNG, PARETO_PNG, plot_history, plot_pareto
from archon_search.search.records import RunInfo, atomic_write

REPORT_FILE = "report.md"
#: the chance of calling a real gain reliable that the report's power statement is about
POWER = 0.8


@dataclass(frozen=True)
class Comparison:
    """One architecture scored on the test split; `p_value` is that the best beats it only by chance."""

    label: str
    number: int
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    calls_per_query: float
    tokens_per_query: float
    p_value: float | None = None
    coverage: float | None = None
    #: share of the paired test questions on which this one and the best disagree (what a paired test can use)
    discordant: float | None = None
    #: questions both scored
    paired_n: int = 0


def compare(best: tuple[str, int, EvalResult], others: list[tuple[str, int, EvalResult]]) -> list[Comparison]:
    """The best and each other architecture on the same test questions, with paired p-values best vs other."""
    label, number, result = best
    scores = result.rows.set_index("id")["correct"].astype(float)
    out = [_comparison(label, number, result, None)]
    for other_label, other_number, other in others:
        theirs = other.rows.set_index("id")["correct"].astype(float).reindex(scores.index)
        # Only questions both scored count: an unparsed judgement (NaN) is neither a win nor a loss.
        pairs = pd.DataFrame({"best": scores, "other": theirs}).dropna()
        p = paired_bootstrap_pvalue(pairs["best"].tolist(), pairs["other"].tolist()) if len(pairs) else None
        discordant = float((pairs["best"] != pairs["other"]).mean()) if len(pairs) else None
        out.append(_comparison(other_label, other_number, other, p, discordant, len(pairs)))
    return out


def _comparison(
    label: str, number: int, result: EvalResult, p: float | None, discordant: float | None = None, paired: int = 0
) -> Comparison:
    s = result.summary
    return Comparison(
        label,
        number,
        s.n,
        s.accuracy,
        s.ci_low,
        s.ci_high,
        s.calls_per_query,
        s.tokens_per_query,
        p,
        s.coverage,
        discordant,
        paired,
    )


def detectable_gain(discordant: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest true accuracy gain a one-sided paired test at `alpha` on `n` questions calls reliable `power` of
    the time (normal approximation); `discordant` is the share of questions the two answer differently, floored at
    what a gain needs (a +g gain moves at least g of the questions)."""
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    gain = z * math.sqrt(max(discordant, 1 / n) / n)
    # the variance of a paired difference is (d - g^2) / n with d >= g: solve g = z sqrt(d / n) for d = max(d, g)
    return min(1.0, max(gain, z * z / n))


def reading(comparisons: list[Comparison]) -> list[str]:
    """What the held-out numbers say in words: whether the best is reliably better than each baseline, and how much
    of what its first layer found (coverage) its later layers kept (selected accuracy)."""
    best, others = comparisons[0], comparisons[1:]
    lines = ["### Reading", ""]
    threshold = 0.05 / len(others) if others else 0.05
    for other in others:
        gap = best.accuracy - other.accuracy
        if other.p_value is None or math.isnan(gap):
            verdict = "cannot be compared on the same questions"
        elif other.p_value < threshold:
            verdict = f"is reliably better ({_points(gap)}, p {other.p_value:.3f} < {threshold:.3f})"
        else:
            verdict = _undecided(gap, other, threshold)
        lines.append(f"- Against {other.label} (trial {other.number}) the best {verdict}.")
    for c in comparisons:
        if c.coverage is None or math.isnan(c.accuracy) or c.coverage <= c.accuracy:
            continue
        lines.append(
            f"- {c.label}: its first layer had a correct candidate on {_pct(c.coverage)} of the questions, its final "
            f"answer was correct on {_pct(c.accuracy)}: selection (ranking, fusing, voting) lost "
            f"{(c.coverage - c.accuracy) * 100:.1f} points of what sampling found."
        )
    if best.n < 30:
        lines.append(
            f"- With {best.n} test questions a 95% interval is about ±{196 * (0.25 / best.n) ** 0.5:.0f} points wide "
            "at 50%: only large differences can show; score more questions (`--limit`) to see smaller ones."
        )
    return lines + [""] + recommendation(comparisons, threshold)


def _undecided(gap: float, other: Comparison, threshold: float) -> str:
    """A difference the test did not call reliable, with what this n could have shown: inconclusive, not "no gain",
    when the gap seen is smaller than the gain the test detects."""
    seen = f"{_points(gap)}, p {other.p_value:.3f}"
    if other.discordant is None or not other.paired_n:
        return f"is not reliably better ({seen})"
    needed = detectable_gain(other.discordant, other.paired_n, threshold)
    power = f"{other.paired_n} questions detect a true gain of {_points(needed)} or more {POWER:.0%} of the time"
    if gap <= 0:
        return f"is not better ({seen}); {power}"
    if gap < needed:
        return (
            f"scores {_points(gap)} more, but that is within chance (p {other.p_value:.3f}): inconclusive, as {power}"
        )
    return f"scores {_points(gap)} more, but that is within chance (p {other.p_value:.3f}); {power}"


def recommendation(comparisons: list[Comparison], threshold: float) -> list[str]:
    """Which architecture to deploy: the cheapest one the test does not show to be worse than the best."""
    best, others = comparisons[0], comparisons[1:]
    peers = [best] + [c for c in others if c.p_value is None or c.p_value >= threshold]
    pick = min(peers, key=lambda c: (c.calls_per_query, -_accuracy(c)))
    lines = ["### Recommendation", ""]
    if pick is best:
        lines.append(
            f"- Deploy the best (trial {best.number}, `best.yaml`): no cheaper architecture scored is as good on test."
        )
    else:
        lines.append(
            f"- Deploy {pick.label} (trial {pick.number}, `archon-search export --trial {pick.number}`): on test it is "
            f"not reliably worse than the best ({_pct(pick.accuracy)} against {_pct(best.accuracy)}) and needs "
            f"{pick.calls_per_query:.2f} LM calls per query against {best.calls_per_query:.2f}."
        )
    return lines + [""]


def _accuracy(c: Comparison) -> float:
    return -1.0 if math.isnan(c.accuracy) else c.accuracy


def _points(value: float) -> str:
    return f"{value * 100:+.1f} points" if value else "0 points"


def describe(checked: Validated) -> str:
    """The layers on one line, e.g. `generator[alpha x3 t0.7] -> ranker(beta, top 2) -> voter`."""
    arch = checked.arch
    parts = []
    for layer in arch.layers:
        units = []
        for u in layer.units:
            bits = [getattr(u, "model", None) or ""]
            if hasattr(u, "samples") and u.samples > 1:
                bits.append(f"x{u.samples}")
            if layer.op == "generator":
                bits.append(f"t{arch.temperature(u):g}")
            if hasattr(u, "top_k") and layer.op != "voter":
                bits.append(f"top {u.top_k}")
            units.append(" ".join(b for b in bits if b))
        body = ", ".join(x for x in units if x)
        parts.append(
            f"{layer.op}[{body}]"
            if layer.op in ("generator", "fuser")
            else (f"{layer.op}({body})" if body else layer.op)
        )
    return " -> ".join(parts)


def _stats_note(comparisons: list[Comparison]) -> str:
    """How to read the table: the intervals, the p-values, and what comparing several baselines does to them."""
    note = (
        f"{comparisons[0].n} test questions. CIs are Wilson score intervals; p-values are one-sided paired "
        "bootstraps over the same questions (small: the best is reliably better)."
    )
    others = len(comparisons) - 1
    if others > 1:
        note += (
            f" The best is compared with {others} baselines, so one small p-value in {others} comes easier than "
            f"alone: for all of them at once, read each p against {0.05 / others:.3f} (Bonferroni, 0.05 / {others})."
        )
    return note


def pass_at_k_table(rows: pd.DataFrame) -> list[tuple[int, float]]:
    """(k, pass@k) from per-question `candidates` and `candidates_correct` (the first layer's candidates and how
    many of them are correct), for k = 1, 2, 4, ... up to the fewest candidates of any question, and at that
    fewest: the unbiased estimate (Chen et al., 2021) averaged over questions. At k = n it is the coverage."""
    if not {"candidates", "candidates_correct"} <= set(rows.columns):
        return []
    frame = rows.dropna(subset=["candidates", "candidates_correct"])
    if not len(frame) or frame["candidates"].min() < 1:
        return []
    pairs = list(zip(frame["candidates"].astype(int), frame["candidates_correct"].astype(int)))
    fewest = min(n for n, _ in pairs)
    ks = sorted({2**i for i in range(fewest.bit_length()) if 2**i <= fewest} | {fewest})
    return [(k, sum(pass_at_k(n, c, k) for n, c in pairs) / len(pairs)) for k in ks]


def _pass_at_k(rows: pd.DataFrame | None) -> list[str]:
    table = pass_at_k_table(rows) if rows is not None else []
    if not table or table[-1][0] < 2:
        return []
    return [
        "",
        "### Sampled first layer of the best: pass@k and coverage",
        "",
        *_table([[str(k), _pct(v)] for k, v in table], ["k", "pass@k (test)"]),
        "",
        (
            f"pass@k: the chance that k of the first layer's candidates hold a correct one (unbiased estimate); at "
            f"k = {table[-1][0]} it is the coverage, {_pct(table[-1][1])}: the ceiling for the layers after it."
        ),
    ]


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def write_report(
    out: Path,
    info: RunInfo,
    frame: pd.DataFrame,
    best: Validated,
    comparisons: list[Comparison],
    front: list[int],
    cost_column: str | None,
    best_rows: pd.DataFrame | None = None,
) -> Path:
    """Write `report.md` and its PNG plots into the run folder `out`; `best_rows` are the best's per-question test
    rows (pass@k and coverage@k are reported when they count first-layer candidates)."""
    lines = _run_section(info, frame) + _best_section(info, frame, best) + _test_section(comparisons, best_rows)
    if cost_column is not None and front:
        lines += _pareto_section(out, info, frame, front, cost_column)
    lines += _history_section(out, info, frame)
    path = out / REPORT_FILE
    atomic_write(path, "\n".join(lines))
    return path


def _run_section(info: RunInfo, frame: pd.DataFrame) -> list[str]:
    """The title and what was searched: study, trials by state, questions, pruning."""
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    return [
        f"# Search report: {info.bench}, budget {info.budget} LM calls per query",
        "",
        f"- study `{info.study}` in `{info.storage}`; sampler {info.sampler}, objective {info.objective}, seed {info.seed}",
        f"- trials: {states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} pruned"
        + (f", {states['FAIL']} failed" if states.get("FAIL") else "")
        + f" (target {info.target_trials}); search space: {info.space}; models: {', '.join(info.models)}",
        f"- questions: {info.dev_n} dev (searched on), {info.test_n} test (held out, split seed {info.split_seed})",
        f"- pruning: {info.pruning}; {plural(states.get('PRUNED', 0), 'trial')} pruned",
        (
            f"- dev answers cut by the token limit: {_total(frame, 'truncated')} (scored wrong, no answer read from a cut "
            f"text); dev questions refused by the API: {_total(frame, 'refused')} (scored wrong; per trial in trials.csv)"
        ),
        "",
    ]


def _total(frame: pd.DataFrame, column: str) -> int:
    """A trials.csv count column summed over the trials (0 when no trial has it)."""
    return int(frame[column].fillna(0).sum()) if column in frame else 0


def _best_section(info: RunInfo, frame: pd.DataFrame, best: Validated) -> list[str]:
    """The best architecture in one line, with its dev accuracy."""
    best_row = frame[frame["number"] == info.best_trial].iloc[0]
    return [
        "## Best architecture",
        "",
        f"Trial {info.best_trial}"
        + (f" (baseline {best_row['baseline']})" if isinstance(best_row["baseline"], str) else "")
        + f": `{describe(best)}`; at most {plural(best.calls_per_query, 'LM call')} per query; "
        f"dev accuracy {_pct(best_row['dev_score'])} on {int(best_row['dev_n'])} questions. "
        "Deploy it with `archon-search export` or use `best.yaml` as it is.",
        "",
    ]


def _test_section(comparisons: list[Comparison], best_rows: pd.DataFrame | None) -> list[str]:
    """The held-out table of the best against the baselines, what it means, and pass@k."""
    lines = ["## Held-out test: best against the baselines", ""]
    if not comparisons:
        return lines + ["No held-out questions (too few items to split); the dev scores above are all there is."]
    rows = [
        [
            c.label,
            str(c.number),
            f"{_pct(c.accuracy)} [{_pct(c.ci_low)}, {_pct(c.ci_high)}]",
            "" if c.coverage is None else _pct(c.coverage),
            f"{c.calls_per_query:.2f}",
            f"{c.tokens_per_query:.0f}",
            "" if c.p_value is None else f"{c.p_value:.3f}",
        ]
        for c in comparisons
    ]
    header = [
        "architecture",
        "trial",
        "test accuracy [95% CI]",
        "coverage",
        "calls/query",
        "tokens/query",
        "p (best beats it by chance)",
    ]
    lines += _table(rows, header)
    lines += ["", _stats_note(comparisons), ""]
    return lines + reading(comparisons) + _pass_at_k(best_rows)


def _pareto_section(out: Path, info: RunInfo, frame: pd.DataFrame, front: list[int], cost_column: str) -> list[str]:
    """The Pareto front of accuracy against `cost_column`, as a table and a plot."""
    on_front = frame[frame["number"].isin(front)].sort_values(cost_column)
    rows = [
        [
            str(int(r["number"])),
            _pct(r["dev_score"]),
            f"{r[cost_column]:.2f}",
            str(r["baseline"]) if isinstance(r["baseline"], str) else "",
        ]
        for _, r in on_front.iterrows()
    ]
    cost = cost_column.replace("_", " ")
    plot_pareto(frame, front, cost_column, out / PARETO_PNG, f"{info.bench}: accuracy vs {cost}")
    lines = ["", "## Pareto front (dev)", ""] + _table(rows, ["trial", "dev accuracy", cost, "baseline"])
    return lines + ["", f"![Pareto front]({PARETO_PNG})"]


def _history_section(out: Path, info: RunInfo, frame: pd.DataFrame) -> list[str]:
    """The plot of dev accuracy per trial, and what the run folder holds."""
    plot_history(frame, out / HISTORY_PNG, f"{info.bench}, budget {info.budget}: dev accuracy per trial")
    return [
        "",
        "## Optimisation history",
        "",
        f"![history]({HISTORY_PNG})",
        "",
        (
            "Files: `trials.csv` (every trial), `archs/` (every evaluated architecture), `best.yaml`, `run.json`, "
            "`questions.csv` and `traces/` (the best on the test questions)."
        ),
        "",
    ]
