"""The report's PNG plots (matplotlib, Agg backend): optimisation history and the Pareto front."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

HISTORY_PNG = "history.png"
PARETO_PNG = "pareto.png"


def plot_history(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Dev score per trial (pruned ones at their last reported value), baselines labelled, and the best so far."""
    fig, ax = plt.subplots(figsize=(7, 4))
    scored = frame.dropna(subset=["dev_score"]).sort_values("number")
    done = scored[scored["state"] == "COMPLETE"]
    pruned = scored[scored["state"] == "PRUNED"]
    ax.scatter(done["number"], done["dev_score"], s=22, color="tab:blue", label="trial")
    if len(pruned):
        ax.scatter(
            pruned["number"], pruned["dev_score"], s=22, marker="x", color="tab:gray", label="pruned (partial score)"
        )
    bases = done[done["baseline"].notna()]
    if len(bases):
        ax.scatter(
            bases["number"], bases["dev_score"], s=80, marker="*", color="tab:orange", label="baseline", zorder=3
        )
        for _, row in bases.iterrows():
            ax.annotate(
                str(row["baseline"]),
                (row["number"], row["dev_score"]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    if len(done):
        ax.step(done["number"], done["dev_score"].cummax(), where="post", color="tab:green", label="best so far")
    return _save(fig, ax, "trial", title, path)


def plot_pareto(frame: pd.DataFrame, front: list[int], cost_column: str, path: Path, title: str) -> Path:
    """Dev accuracy against calls or tokens per query; the Pareto front joined and highlighted."""
    fig, ax = plt.subplots(figsize=(7, 4))
    done = frame[(frame["state"] == "COMPLETE")].dropna(subset=["dev_score", cost_column])
    ax.scatter(done[cost_column], done["dev_score"], s=18, color="tab:gray", alpha=0.6, label="trial")
    best = done[done["number"].isin(front)].sort_values(cost_column)
    ax.plot(best[cost_column], best["dev_score"], "-o", color="tab:red", label="Pareto front")
    for _, row in best.iterrows():
        ax.annotate(
            f"#{int(row['number'])}",
            (row[cost_column], row["dev_score"]),
            fontsize=7,
            xytext=(4, -10),
            textcoords="offset points",
        )
    return _save(fig, ax, cost_column.replace("_", " "), title, path)


def _save(fig: Figure, ax: Axes, xlabel: str, title: str, path: Path) -> Path:
    """Label, title, legend and grid shared by both plots; write the PNG and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
