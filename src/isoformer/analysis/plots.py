"""Figures of an evaluated run: R2 per tissue (as the paper's Figure 3) and predicted vs observed.

Files are written through a temporary name and renamed, like every other output. Figures are
built with `matplotlib.figure.Figure`, not pyplot: no backend is chosen or switched (a user's
interactive session keeps its own) and no global figure registry fills up.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    path = Path(path)
    models = list(r2)
    x = np.arange(len(models))
    fig, ax = _figure(1.6 * len(models) + 1.5, 4.0)
    width = 0.38
    ax.bar(x - width / 2, [r2[m][0] for m in models], width, color="#4C72B0", label="test R$^2$")
    ax.bar(x + width / 2, [r2[m][1] for m in models], width, color="#BBBBBB",
           label="oracle R$^2$ (same sequences)")
    for position, model in zip(x, models):
        ax.annotate(f"{r2[model][0]:.2f}", (position - width / 2, r2[model][0]), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(x, [model.replace(" (", "\n(") for model in models])
    ax.set_ylabel("mean R$^2$ over tissues")
    ax.legend(loc="best", frameon=False)
    ax.set_title(title)
    _save(fig, path)
    return path
