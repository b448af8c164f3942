"""Metrics against answers worked out by hand on tiny arrays."""

import json
import math

import numpy as np
import pytest

from isoformer.metrics import (
    isoform_spearman,
    mean_over_tissues,
    metrics_report,
    per_tissue_metrics,
)

NAN = float("nan")

# Columns: t0 plain, t1 ties in the observations, t2 one NaN target, t3 constant observations.
OBSERVED = np.array([[1, 1, 1, 7], [2, 2, NAN, 7], [3, 2, 3, 7], [4, 3, 2, 7]], dtype=np.float32)
PREDICTED = np.array([[1, 1, 1, 0], [2, 3, 5, 1], [3, 2, 2, 2], [5, 4, 3, 3]], dtype=np.float32)
TISSUES = ["t0", "t1", "t2", "t3"]


def test_r2_is_one_minus_residual_over_total_sum_of_squares():
    m = per_tissue_metrics(PREDICTED, OBSERVED, TISSUES)["t0"]
    # SS_res = 1 (last row), SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5.
    assert m.r2 == pytest.approx(1 - 1 / 5)
    assert m.spearman == pytest.approx(1.0)  # same order
    # Pearson: sum(dx dy) = 6.5, sum(dx^2) = 8.75, sum(dy^2) = 5.
    assert m.pearson == pytest.approx(6.5 / math.sqrt(8.75 * 5))
    assert (m.n, m.n_excluded) == (4, 0)


def test_spearman_uses_average_ranks_for_ties():
    m = per_tissue_metrics(PREDICTED, OBSERVED, TISSUES)["t1"]
    # Observed ranks [1, 2.5, 2.5, 4], predicted ranks [1, 3, 2, 4]: r = 4.5 / sqrt(4.5 * 5).
    assert m.spearman == pytest.approx(3 / math.sqrt(10))


def test_nan_targets_are_excluded_and_counted():
    m = per_tissue_metrics(PREDICTED, OBSERVED, TISSUES)["t2"]
    # Rows 0, 2, 3: observed [1, 3, 2], predicted [1, 2, 3]; mean 2, SS_tot 2, SS_res 2.
    assert (m.n, m.n_excluded) == (3, 1)
    assert m.r2 == pytest.approx(0.0)
    assert m.spearman == pytest.approx(0.5)  # 1 - 6 * (0 + 1 + 1) / (3 * (9 - 1))
    assert m.pearson == pytest.approx(0.5)


def test_constant_tissue_is_undefined_and_left_out_of_the_mean():
    per_tissue = per_tissue_metrics(PREDICTED, OBSERVED, TISSUES)
    assert all(math.isnan(v) for v in (per_tissue["t3"].r2, per_tissue["t3"].spearman))
    means = mean_over_tissues(per_tissue)
    assert means["r2"] == pytest.approx(np.mean([per_tissue[t].r2 for t in ("t0", "t1", "t2")]))
    assert means["spearman"] == pytest.approx((1.0 + 3 / math.sqrt(10) + 0.5) / 3)


def test_isoform_spearman_on_a_toy_example():
    genes = ["A", "A", "A", "B", "B", "C", "D", "D"]
    observed = np.array(
        [
            [1, 1],
            [2, 2],
            [3, 3],  # gene A
            [5, 4],
            [6, 4],  # gene B: tissue 1 constant -> skipped
            [9, 9],  # gene C: a single isoform -> skipped
            [1, 2],
            [2, 1],  # gene D: constant predictions -> skipped entirely
        ],
        dtype=np.float32,
    )
    predicted = np.array(
        [
            [3, 1],
            [2, 3],
            [1, 2],
            [1, 0],
            [2, 1],
            [0, 0],
            [5, 5],
            [5, 5],
        ],
        dtype=np.float32,
    )
    ranking = isoform_spearman(predicted, observed, genes)
    # Gene A: tissue 0 -> -1, tissue 1 -> 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5; mean -0.25.
    # Gene B: tissue 0 -> 1. Mean over the two genes: (-0.25 + 1) / 2.
    assert ranking.spearman == pytest.approx(0.375)
    assert ranking.n_genes == 2


def test_isoform_spearman_ignores_nan_observations():
    genes = ["A", "A", "A"]
    observed = np.array([[1.0], [NAN], [2.0]])
    predicted = np.array([[2.0], [0.0], [1.0]])
    assert isoform_spearman(predicted, observed, genes).spearman == pytest.approx(-1.0)


def test_report_shape_and_json_nulls():
    report = metrics_report(PREDICTED, OBSERVED, TISSUES, ["g1", "g1", "g2", "g2"], split="test")
    assert set(report) == {"split", "n_transcripts", "mean", "per_tissue", "isoform_spearman"}
    assert report["n_transcripts"] == 4 and report["split"] == "test"
    assert set(report["mean"]) == {"r2", "spearman", "pearson"}
    assert list(report["per_tissue"]) == TISSUES
    assert report["per_tissue"]["t3"] == {"r2": None, "spearman": None, "pearson": None}
    text = json.dumps(report, allow_nan=False)  # strict JSON: no NaN literal
    assert json.loads(text)["per_tissue"]["t0"]["r2"] == pytest.approx(0.8)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="must both be"):
        per_tissue_metrics(PREDICTED[:, :2], OBSERVED, TISSUES)
