"""Over-spread predictions: how much test R2 a per-tissue linear recalibration recovers.

    python benchmarks/recalibration.py --data DATASET RUN [RUN ...]

A model that ranks held-out transcripts well can still have an R2 below 0 when its predictions
vary more than what they explain (it learned training genes' values). For each run (trained or a
baseline), this predicts the validation and test splits with the run's best model
(`evaluate_run`, the path of `isoformer evaluate`; it writes predictions_<split>.parquet into the
run), fits y = a + b x per tissue by least squares on the validation split (held-out genes; the
test split is never used for the fit), and prints test R2 as predicted (the naive path),
recalibrated, and with the shift alone (b = 1, a = the mean validation residual: what a
difference between the training genes' mean and the held-out genes' costs), the mean slope b
(below 1: over-spread) and the test Pearson r, which an affine map per tissue does not change.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import polars as pl

from isoformer.data.dataset import open_split
from isoformer.metrics import mean_metrics
from isoformer.training.evaluate import evaluate_run
from isoformer.training.run import Run


def fit_recalibration(predicted: np.ndarray, observed: np.ndarray, fit_slope: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares a, b [T] of observed ~ a + b x predicted per tissue (b fixed at 1 unless
    `fit_slope`), NaN targets left out; a tissue with nothing to fit is left as predicted."""
    shift, slope = np.zeros(predicted.shape[1]), np.ones(predicted.shape[1])
    for tissue in range(predicted.shape[1]):
        valid = np.isfinite(observed[:, tissue])
        x, y = predicted[valid, tissue], observed[valid, tissue]
        if not fit_slope and valid.any():
            shift[tissue] = np.mean(y - x)
        elif valid.sum() >= 2 and np.ptp(x) > 0:
            slope[tissue], shift[tissue] = np.polyfit(x, y, 1)
    return shift, slope


def split_predictions(run: Run, data: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The run's predictions [N, T] of `split`, the observed targets in the same order, tissues."""
    path = run.directory / f"predictions_{split}.parquet"
    if not path.is_file():
        evaluate_run(run, data, split=split, progress=False)
    frame = pl.read_parquet(path)
    tissues = list(run.tissues)
    dataset = open_split(data, split)
    try:
        row = {transcript: i for i, transcript in enumerate(dataset.transcript_ids)}
        observed = dataset.targets[[row[t] for t in frame["transcript_id"].to_list()]]
    finally:
        dataset.close()
    return frame.select(tissues).to_numpy(), observed, tissues


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (train or baseline)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("| run | test R2 as predicted | recalibrated on validation | gain | shift only "
          "| mean slope b | test Pearson |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for directory in args.runs:
        run = Run.open(directory)
        valid, valid_observed, tissues = split_predictions(run, args.data, "valid")
        test, test_observed, _ = split_predictions(run, args.data, "test")
        shift, slope = fit_recalibration(valid, valid_observed)
        offset, _ = fit_recalibration(valid, valid_observed, fit_slope=False)
        raw = mean_metrics(test, test_observed, tissues)
        recalibrated = mean_metrics(shift + slope * test, test_observed, tissues)
        shifted = mean_metrics(offset + test, test_observed, tissues)
        print(f"| {directory} | {raw['r2']:.3f} | {recalibrated['r2']:.3f} | "
              f"{recalibrated['r2'] - raw['r2']:+.3f} | {shifted['r2']:.3f} | {slope.mean():.2f} "
              f"| {raw['pearson']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
