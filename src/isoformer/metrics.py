"""Evaluation metrics: per-tissue R2 / Spearman / Pearson across transcripts, and isoform ranking.

Definitions (the ones the paper's figures and `metrics_<split>.json` use):
- Per tissue t, over the transcripts whose observed target in t is finite (NaN = the tissue had
  no samples for that transcript; such entries are excluded and counted in `n_excluded`):
  R2 = 1 - SS_res / SS_tot (torchmetrics), Spearman (scipy, average ranks for ties), Pearson
  (scipy). A tissue with fewer than 2 valid transcripts or a constant vector gets NaN.
- Mean: the mean over tissues whose metric is defined (NaN tissues are left out).
- Isoform Spearman: for every gene with >= 2 isoforms and every tissue, the Spearman correlation
  between predicted and observed values across that gene's isoforms (finite observations only;
  skipped when fewer than 2 remain or when either vector is constant, since ranks are then
  undefined). A gene's score is the mean over its defined tissues; the reported value is the
  mean over genes with at least one defined tissue.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torchmetrics.functional import r2_score

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("r2", "spearman", "pearson")


@dataclass
class TissueMetrics:
    r2: float
    spearman: float
    pearson: float
    n: int  # transcripts with a finite target in this tissue
    n_excluded: int  # transcripts whose target was NaN in this tissue


@dataclass
class IsoformRanking:
    spearman: float  # mean over genes (NaN when no gene qualifies)
    n_genes: int  # genes with >= 2 isoforms and at least one defined tissue


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def _correlations(predicted: np.ndarray, observed: np.ndarray) -> tuple[float, float]:
    """(Spearman, Pearson) of two 1-D arrays; NaN when undefined (fewer than 2 or constant)."""
    if len(observed) < 2 or _is_constant(observed) or _is_constant(predicted):
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        spearman = stats.spearmanr(predicted, observed).statistic
        pearson = stats.pearsonr(predicted, observed).statistic
    return float(spearman), float(pearson)


def _r2(predicted: np.ndarray, observed: np.ndarray) -> float:
    if len(observed) < 2 or _is_constant(observed):
        return float("nan")
    # float64 so the score matches the closed form to machine precision.
    return float(
        r2_score(
            torch.from_numpy(predicted.astype(np.float64)),
            torch.from_numpy(observed.astype(np.float64)),
        )
    )


def _check_shapes(predicted: np.ndarray, observed: np.ndarray) -> None:
    if predicted.shape != observed.shape or predicted.ndim != 2:
        raise ValueError(
            f"predicted {predicted.shape} and observed {observed.shape} must both be [N, T]"
        )


def per_tissue_metrics(
    predicted: np.ndarray, observed: np.ndarray, tissues: Sequence[str]
) -> dict[str, TissueMetrics]:
    """Per-tissue metrics across transcripts; predicted, observed: [N, T], NaN targets excluded."""
    predicted, observed = (
        np.asarray(predicted, dtype=np.float64),
        np.asarray(observed, dtype=np.float64),
    )
    _check_shapes(predicted, observed)
    if len(tissues) != observed.shape[1]:
        raise ValueError(f"{len(tissues)} tissue names for {observed.shape[1]} target columns")
    result = {}
    for t, tissue in enumerate(tissues):
        valid = np.isfinite(observed[:, t])  # [N]
        pred_t, obs_t = predicted[valid, t], observed[valid, t]
        spearman, pearson = _correlations(pred_t, obs_t)
        result[tissue] = TissueMetrics(
            r2=_r2(pred_t, obs_t),
            spearman=spearman,
            pearson=pearson,
            n=int(valid.sum()),
            n_excluded=int((~valid).sum()),
        )
    return result


def mean_over_tissues(per_tissue: dict[str, TissueMetrics]) -> dict[str, float]:
    """Mean of each metric over the tissues where it is defined (NaN when none is)."""
    means = {}
    for name in METRIC_NAMES:
        values = np.array([getattr(m, name) for m in per_tissue.values()], dtype=np.float64)
        defined = values[np.isfinite(values)]
        means[name] = float(defined.mean()) if len(defined) else float("nan")
    return means


def mean_metrics(
    predicted: np.ndarray, observed: np.ndarray, tissues: Sequence[str]
) -> dict[str, float]:
    """Each metric per tissue, then its mean over the tissues where it is defined."""
    return mean_over_tissues(per_tissue_metrics(predicted, observed, tissues))


def isoform_spearman(
    predicted: np.ndarray, observed: np.ndarray, gene_ids: Sequence[str]
) -> IsoformRanking:
    """Within-gene isoform-ranking Spearman (definition in the module docstring)."""
    predicted, observed = (
        np.asarray(predicted, dtype=np.float64),
        np.asarray(observed, dtype=np.float64),
    )
    _check_shapes(predicted, observed)
    genes = np.asarray(gene_ids)
    if len(genes) != len(observed):
        raise ValueError(f"{len(genes)} gene ids for {len(observed)} transcripts")
    gene_scores = []
    for gene in np.unique(genes):
        rows = np.flatnonzero(genes == gene)
        if len(rows) < 2:
            continue
        tissue_scores = []
        for t in range(observed.shape[1]):
            obs_t, pred_t = observed[rows, t], predicted[rows, t]
            valid = np.isfinite(obs_t)
            spearman, _ = _correlations(pred_t[valid], obs_t[valid])
            if np.isfinite(spearman):
                tissue_scores.append(spearman)
        if tissue_scores:
            gene_scores.append(float(np.mean(tissue_scores)))
    mean = float(np.mean(gene_scores)) if gene_scores else float("nan")
    return IsoformRanking(spearman=mean, n_genes=len(gene_scores))


def _json_float(value: float) -> float | None:
    """JSON has no NaN: undefined metrics are written as null."""
    return value if np.isfinite(value) else None


def metrics_report(
    predicted: np.ndarray,
    observed: np.ndarray,
    tissues: Sequence[str],
    gene_ids: Sequence[str],
    split: str,
) -> dict:
    """The `metrics_<split>.json` document (keys: split, n_transcripts, mean, per_tissue,
    isoform_spearman)."""
    per_tissue = per_tissue_metrics(predicted, observed, tissues)
    for tissue, m in per_tissue.items():
        if m.n_excluded:
            log.info(
                "%s: %d of %d transcripts have no target (NaN) and are excluded",
                tissue,
                m.n_excluded,
                m.n + m.n_excluded,
            )
    ranking = isoform_spearman(predicted, observed, gene_ids)
    log.info("isoform Spearman over %d genes with >= 2 isoforms", ranking.n_genes)
    return {
        "split": split,
        "n_transcripts": int(len(observed)),
        "mean": {k: _json_float(v) for k, v in mean_over_tissues(per_tissue).items()},
        "per_tissue": {
            tissue: {name: _json_float(getattr(m, name)) for name in METRIC_NAMES}
            for tissue, m in per_tissue.items()
        },
        "isoform_spearman": _json_float(ranking.spearman),
    }
