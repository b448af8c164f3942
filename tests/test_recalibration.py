"""benchmarks/recalibration.py: the per-tissue affine fit on hand-made predictions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import recalibration  # noqa: E402


def test_an_over_spread_prediction_is_mapped_back_onto_the_targets():
    observed = np.array([[0.0, 1.0], [1.0, np.nan], [2.0, 3.0], [3.0, 5.0]])
    # Tissue 0 predicted at twice the spread plus 1; tissue 1 at half the spread minus 1 (its NaN
    # target is left out of the fit, not read as a value).
    predicted = np.array([[1.0, -0.5], [3.0, 7.0], [5.0, 0.5], [7.0, 1.5]])
    shift, slope = recalibration.fit_recalibration(predicted, observed)
    assert slope == pytest.approx([0.5, 2.0]) and shift == pytest.approx([-0.5, 2.0])
    mapped = shift + slope * predicted
    finite = np.isfinite(observed)
    assert mapped[finite] == pytest.approx(observed[finite])


def test_the_shift_alone_is_the_mean_residual_per_tissue():
    observed = np.array([[0.0, 1.0], [1.0, np.nan], [2.0, 3.0]])
    predicted = np.array([[1.0, 0.0], [1.0, 9.0], [4.0, 4.0]])
    shift, slope = recalibration.fit_recalibration(predicted, observed, fit_slope=False)
    # tissue 0: residuals -1, 0, -2; tissue 1: 1 and -1 (the NaN row left out)
    assert shift == pytest.approx([-1.0, 0.0]) and slope.tolist() == [1.0, 1.0]


def test_a_constant_prediction_is_left_as_predicted():
    shift, slope = recalibration.fit_recalibration(np.ones((3, 1)), np.array([[0.0], [1], [2]]))
    assert shift.tolist() == [0.0] and slope.tolist() == [1.0]
