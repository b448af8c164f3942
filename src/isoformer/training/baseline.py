"""`isoformer baseline`: fit the k-mer ridge baseline on a built dataset and write it as a run.

The run directory has the layout of `isoformer.training.run` (config.yaml holds `baseline:`), so
`evaluate`, `predict` and `export --run` take it like any trained run. The penalties are chosen
on the validation split; the test split is never read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isoformer.data.dataset import open_split, read_metadata
from isoformer.errors import IsoformerError
from isoformer.model.config import apply_overrides
from isoformer.model.kmer_baseline import KmerBaseline, KmerBaselineConfig
from isoformer.training.run import (
    CONFIG_FILE,
    Run,
    TargetStatistics,
    dataset_fingerprint,
    remove_run_files,
)

log = logging.getLogger(__name__)
BASELINE_KINDS = ("kmer",)


def _records(data_dir: Path, split: str, dna_length: int) -> tuple[list[dict], np.ndarray]:
    dataset = open_split(data_dir, split, dna_length=dna_length)
    try:
        return [dataset[i] for i in range(len(dataset))], dataset.targets
    finally:
        dataset.close()


def fit_baseline(
    data_dir: str | Path,
    out: str | Path,
    kind: str = "kmer",
    overrides: Sequence[str] = (),
    modalities: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Run:
    """Fit the baseline into the run directory `out` and return the run."""
    if kind not in BASELINE_KINDS:
        raise IsoformerError(f"unknown baseline kind {kind!r} (known: {', '.join(BASELINE_KINDS)})")
    data_dir, out = Path(data_dir), Path(out)
    metadata = read_metadata(data_dir)
    chosen = {} if modalities is None else {"modalities": list(modalities)}
    config = KmerBaselineConfig(tissues=list(metadata["tissues"]), **chosen)
    config = apply_overrides(config, list(overrides))
    if (out / CONFIG_FILE).exists():
        if not overwrite:
            raise IsoformerError(f"{out}: already holds a run; use another --out or --overwrite")
        remove_run_files(out)

    train, train_targets = _records(data_dir, "train", config.dna_length)
    valid, valid_targets = _records(data_dir, "valid", config.dna_length)
    statistics = TargetStatistics.from_targets(train_targets)
    run = Run.create(out, config, statistics, dataset_fingerprint(data_dir))
    log.info("fitting the k-mer baseline (%s) on %d training transcripts, penalties chosen on %d "
             "validation transcripts", ", ".join(config.modalities), len(train), len(valid))
    baseline = KmerBaseline.fit(config, train, train_targets, valid, valid_targets)

    run.write_model(baseline.save_pretrained)
    summary = {
        "kind": kind,
        "n_features": int(baseline.state["mean"].shape[0]),
        "alpha": dict(zip(config.tissues, baseline.state["alpha"].tolist())),
        "valid_mse": dict(zip(config.tissues, baseline.state["valid_mse"].tolist())),
        "epochs": None,
    }
    run.write_summary(summary)
    log.info("baseline %s: %d features, validation MSE %.4f (mean over tissues)", out,
             summary["n_features"], float(np.nanmean(baseline.state["valid_mse"])))
    return run
