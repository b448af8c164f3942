"""Figures of an evaluated run: R2 per tissue (as the paper's Figure 3) and predicted vs observed.

Files are written through a temporary name and renamed, like every other output. Figures are
built with `matplotlib.figure.Figure`, not pyplot: no backend is chosen or switched (a user's
interactive session keeps its own) and no global figure registry fills up.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from isoformer.files import atomic_output


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")


def plot_r2_per_tissue(r2: Mapping[str, float | None], path: str | Path, title: str = "") -> Path:
    """One bar per tissue (undefined R2 drawn as an empty slot), a dashed line at the mean."""
    path = Path(path)
    tissues = list(r2)
    values = np.array([np.nan if r2[t] is None else r2[t] for t in tissues], dtype=np.float64)
    fig, ax = _figure(max(6.0, 0.32 * len(tissues) + 1.5), 4.0)
    ax.bar(np.arange(len(tissues)), np.nan_to_num(values, nan=0.0), color="#4C72B0")
    defined = values[np.isfinite(values)]
    if len(defined):
        ax.axhline(
            defined.mean(),
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"mean R$^2$ = {defined.mean():.3f}",
        )
        ax.legend(loc="best", frameon=False)
    ax.set_xticks(np.arange(len(tissues)), tissues, rotation=90)
    ax.set_ylabel("R$^2$")
    ax.set_xlim(-0.6, len(tissues) - 0.4)
    ax.set_title(title)
    _save(fig, path)
    return path


def plot_predicted_vs_observed(
    predicted: np.ndarray, observed: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """All finite (transcript, tissue) pairs, log(1 + TPM) on both axes, with the identity line."""
    path = Path(path)
    predicted, observed = np.asarray(predicted).ravel(), np.asarray(observed).ravel()
    valid = np.isfinite(observed) & np.isfinite(predicted)
    x, y = observed[valid], predicted[valid]
    fig, ax = _figure(4.5, 4.5)
    ax.scatter(x, y, s=3, alpha=0.3, color="#4C72B0", linewidths=0, rasterized=True)
    if len(x):
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--")
    ax.set_xlabel("observed log(1 + TPM)")
    ax.set_ylabel("predicted log(1 + TPM)")
    ax.set_title(title)
    _save(fig, path)
    return path


def plot_demo_r2(
    r2: Mapping[str, tuple[float, float]], path: str | Path, title: str = ""
) -> Path:
    """Per model, test R2 beside the oracle R2 of its sequences (r2: model -> (test, oracle))."""
    models = list(r2)
    return plot_grouped_bars(
        models, {"test R$^2$": [(r2[m][0], None) for m in models],
                 "oracle R$^2$ (same sequences)": [(r2[m][1], None) for m in models]},
        path, title=title, ylabel="mean R$^2$ over tissues",
    )


Bar = tuple[float, float | None] | None  # (height, error or None); None: nothing to draw


def plot_grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[Bar]],
                      path: str | Path, title: str = "", ylabel: str = "mean over tissues"
                      ) -> Path:
    """One group of bars per entry of `groups`, one bar per series (in order, the first blue and
    annotated with its value), error bars where given."""
    path = Path(path)
    x = np.arange(len(groups))
    fig, ax = _figure(max(1.6 * len(groups) + 1.5, 5.0), 4.0)
    width = 0.8 / max(len(series), 1)
    colors = ["#4C72B0", "#BBBBBB", "#DD8452", "#55A868"]
    for index, (label, bars) in enumerate(series.items()):
        positions = x - 0.4 + width * (index + 0.5)
        heights = [np.nan if bar is None else bar[0] for bar in bars]
        errors = [0.0 if bar is None or bar[1] is None else bar[1] for bar in bars]
        ax.bar(positions, np.nan_to_num(heights, nan=0.0), width,
               yerr=errors if any(errors) else None, capsize=3,
               color=colors[index % len(colors)], label=label)
        if index == 0:
            for position, height in zip(positions, heights):
                if np.isfinite(height):
                    ax.annotate(f"{height:.2f}", (position, height), ha="center", va="bottom",
                                fontsize=8)
    # Wrapped, so long names ("k-mer ridge (DNA + RNA + protein)") keep to their own group.
    ax.set_xticks(x, [textwrap.fill(group, 12, break_on_hyphens=False) for group in groups])
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", frameon=False)
    ax.set_title(title)
    _save(fig, path)
    return path


def plot_stacked_r2_per_tissue(tissues: Sequence[str], base: Sequence[float],
                               full: Sequence[float], path: str | Path,
                               labels: tuple[str, str] = ("DNA only", "DNA + RNA + protein"),
                               title: str = "") -> Path:
    """The paper's Figure 3: per tissue, the base model's R2 (grey, from 0) with the full model's
    gain above it in blue (above 0 where the base is negative), or its loss below the base
    hatched, one bar per tissue; a black tick marks the full model's R2."""
    path = Path(path)
    x = np.arange(len(tissues))
    base_r2 = np.nan_to_num(np.asarray(base, dtype=np.float64))
    full_r2 = np.nan_to_num(np.asarray(full, dtype=np.float64))
    fig, ax = _figure(max(6.0, 0.32 * len(tissues) + 1.5), 4.0)
    ax.bar(x, base_r2, color="#BBBBBB", label=labels[0])
    floor = np.maximum(base_r2, 0.0)
    gain, loss = full_r2 > floor, full_r2 < base_r2
    ax.bar(x[gain], (full_r2 - floor)[gain], bottom=floor[gain], color="#4C72B0",
           label=f"{labels[1]} (gain)")
    ax.bar(x[loss], (base_r2 - full_r2)[loss], bottom=full_r2[loss], color="white",
           edgecolor="#C44E52", hatch="//", label=f"{labels[1]} (loss)")
    # The full model's value itself, also where both are negative and no bar shows it.
    ax.scatter(x, full_r2, marker="_", s=120, color="black", zorder=3, label=labels[1])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, list(tissues), rotation=90)
    ax.set_ylabel("test R$^2$")
    ax.set_xlim(-0.6, len(tissues) - 0.4)
    ax.legend(loc="best", frameon=False)
    ax.set_title(title)
    _save(fig, path)
    return path
