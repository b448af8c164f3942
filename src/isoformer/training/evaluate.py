"""`isoformer evaluate`: score a trained run on one split of a dataset.

Writes into RUN/: metrics_<split>.json (see `metrics.metrics_report`), predictions_<split>.parquet
(transcript_id, gene_id, one log(1 + TPM) column per tissue), r2_per_tissue.png and
predicted_vs_observed_<split>.png.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isoformer.analysis.plots import plot_predicted_vs_observed, plot_r2_per_tissue
from isoformer.data.dataset import TranscriptDataset, open_split
from isoformer.encoders.embedding_cache import EmbeddingCache
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.metrics import metrics_report
from isoformer.model.prediction import InferencePrecision, predict_records
from isoformer.training.embed import CachedDataset, check_cache
from isoformer.training.run import Run

log = logging.getLogger(__name__)


def _write_predictions(dataset: TranscriptDataset, predictions: np.ndarray, path: Path) -> None:
    table = pl.DataFrame({"transcript_id": dataset.transcript_ids, "gene_id": dataset.gene_ids})
    table = table.with_columns(
        [pl.Series(tissue, predictions[:, t]) for t, tissue in enumerate(dataset.tissues)]
    )
    with atomic_output(path) as tmp:
        table.write_parquet(tmp)


def evaluate_run(
    run: Run | str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 16,
    device: str = "auto",
    precision: InferencePrecision = "32",
    num_workers: int = 0,
    fasta: str | Path | None = None,
    progress: bool = True,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """Predict `split` with the run's best model on `device` (auto, cpu, cuda, cuda:N); write
    metrics and figures into the run; return the metrics. `num_workers` DataLoader workers read
    the DNA windows from the FASTA while the model runs. `cache`: an `isoformer embed` cache of
    this dataset whose frozen encoders' states are read instead of computed."""
    run = run if isinstance(run, Run) else Run.open(run)
    data_dir = Path(data_dir)
    dataset = open_split(data_dir, split, dna_length=run.dna_length, fasta=fasta)
    if list(dataset.tissues) != run.tissues:
        raise IsoformerError(
            f"tissues differ: run {run.directory} predicts {len(run.tissues)} "
            f"({', '.join(run.tissues[:3])}, ...), dataset {data_dir} holds "
            f"{len(dataset.tissues)} ({', '.join(dataset.tissues[:3])}, ...)"
        )

    model = run.load_model(device)
    if cache is not None:
        if run.is_baseline:
            raise IsoformerError(f"{run.directory}: a baseline run reads no embedding cache")
        embedding_cache = EmbeddingCache.open(cache)
        check_cache(embedding_cache, model, data_dir)
        dataset = CachedDataset(dataset, embedding_cache)
    try:
        predictions = predict_records(
            model, dataset, batch_size=batch_size, lengths=dataset.sequence_lengths(),
            precision=precision, num_workers=num_workers, progress=progress,
        )
    finally:
        dataset.close()
    report = metrics_report(predictions, dataset.targets, run.tissues, dataset.gene_ids, split)

    out = run.directory
    write_json_atomic(report, out / f"metrics_{split}.json")
    _write_predictions(dataset, predictions, out / f"predictions_{split}.parquet")
    r2 = {tissue: m["r2"] for tissue, m in report["per_tissue"].items()}
    title = f"{out.name}: {split} split"
    plot_r2_per_tissue(r2, out / "r2_per_tissue.png", title=title)
    plot_predicted_vs_observed(
        predictions, dataset.targets, out / f"predicted_vs_observed_{split}.png", title=title
    )
    log.info("evaluated %d %s transcripts on %s; files written to %s", len(dataset), split,
             model.device, out)
    return report
