"""`isoformer evaluate`: score a trained run on one split of a dataset.

Writes into RUN/: metrics_<split>.json (see `metrics.metrics_report`), predictions_<split>.parquet
(transcript_id, gene_id, one log(1 + TPM) column per tissue), r2_per_tissue.png and
predicted_vs_observed_<split>.png.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from rich.progress import track

from isoformer.analysis.plots import plot_predicted_vs_observed, plot_r2_per_tissue
from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.metrics import metrics_report
from isoformer.model.isoformer import IsoFormer

log = logging.getLogger(__name__)

# Records gathered per predict call: bounds memory (DNA windows can be ~200 kb each) while leaving
# the model enough records to bucket by length.
CHUNK_RECORDS = 512


def run_tissues(run: Path) -> list[str]:
    path = run / "tissues.json"
    if not path.is_file():
        raise IsoformerError(
            f"{run}: not a training run (no tissues.json); create one with `isoformer train`"
        )
    return json.loads(path.read_text())


def run_dna_length(run: Path) -> int:
    path = run / "config.yaml"
    if not path.is_file():
        raise IsoformerError(f"{run}: not a training run (no config.yaml)")
    return int(yaml.safe_load(path.read_text())["model"]["dna_length"])


def predict_dataset(
    model: IsoFormer, dataset: TranscriptDataset, batch_size: int, progress: bool = True
) -> np.ndarray:
    """Predictions [N, T] in log(1 + TPM) for every item of `dataset`, in dataset order."""
    starts = range(0, len(dataset), CHUNK_RECORDS)
    if progress:
        starts = track(starts, description="predicting", total=len(starts), transient=True)
    chunks = []
    for start in starts:
        records = [dataset[i] for i in range(start, min(start + CHUNK_RECORDS, len(dataset)))]
        chunks.append(np.asarray(model.predict(records, batch_size=batch_size), dtype=np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(dataset.tissues)), np.float32)


def _write_predictions(dataset: TranscriptDataset, predictions: np.ndarray, path: Path) -> None:
    table = pl.DataFrame({"transcript_id": dataset.transcript_ids, "gene_id": dataset.gene_ids})
    table = table.with_columns(
        [pl.Series(tissue, predictions[:, t]) for t, tissue in enumerate(dataset.tissues)]
    )
    with atomic_output(path) as tmp:
        table.write_parquet(tmp)


def evaluate_run(
    run: str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 16,
    fasta: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict `split` with the run's best model; write metrics and figures; return the metrics."""
    run, data_dir = Path(run), Path(data_dir)
    tissues = run_tissues(run)
    dataset = TranscriptDataset(data_dir, split=split, dna_length=run_dna_length(run), fasta=fasta)
    if list(dataset.tissues) != tissues:
        raise IsoformerError(
            f"tissues differ: run {run} predicts {len(tissues)} ({', '.join(tissues[:3])}, ...), "
            f"dataset "
            f"{data_dir} holds {len(dataset.tissues)} ({', '.join(dataset.tissues[:3])}, ...)"
        )
    if len(dataset) == 0:
        raise IsoformerError(f"{data_dir}: the {split!r} split holds no transcripts")

    model = IsoFormer.from_pretrained(run)
    model.eval()
    predictions = predict_dataset(model, dataset, batch_size, progress)
    report = metrics_report(predictions, dataset.targets, tissues, dataset.gene_ids, split)

    write_json_atomic(report, run / f"metrics_{split}.json")
    _write_predictions(dataset, predictions, run / f"predictions_{split}.parquet")
    r2 = {tissue: m["r2"] for tissue, m in report["per_tissue"].items()}
    plot_r2_per_tissue(r2, run / "r2_per_tissue.png", title=f"{run.name}: {split} split")
    plot_predicted_vs_observed(
        predictions,
        dataset.targets,
        run / f"predicted_vs_observed_{split}.png",
        title=f"{run.name}: {split} split",
    )
    log.info("evaluated %d %s transcripts; files written to %s", len(dataset), split, run)
    return report
