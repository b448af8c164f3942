"""Evaluating a trained run: metrics JSON shape, agreement with its predictions, errors."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from tiny_dataset import DNA_LENGTH, TISSUES, train_tiny_run, write_tiny_dataset

from isoformer.cli import main
from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import IsoformerError
from isoformer.metrics import metrics_report
from isoformer.model.isoformer import IsoFormer
from isoformer.training.evaluate import evaluate_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def test_metrics_file_shape_and_figures(run, capsys):
    run_dir, data = run
    assert main(["evaluate", "--run", str(run_dir), "--data", str(data), "--split", "test"]) == 0
    assert "isoform-ranking Spearman" in capsys.readouterr().out

    report = json.loads((run_dir / "metrics_test.json").read_text())
    assert set(report) == {"split", "n_transcripts", "mean", "per_tissue", "isoform_spearman"}
    assert (
        report["split"] == "test" and report["n_transcripts"] == 5
    )  # genes 10 and 11: 2 + 3 isoforms
    assert set(report["mean"]) == {"r2", "spearman", "pearson"}
    assert list(report["per_tissue"]) == TISSUES
    assert all(set(m) == {"r2", "spearman", "pearson"} for m in report["per_tissue"].values())
    for figure in ("r2_per_tissue.png", "predicted_vs_observed_test.png"):
        assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_are_those_of_the_runs_predictions(run):
    run_dir, data = run
    report = evaluate_run(run_dir, data, split="valid", progress=False)
    dataset = TranscriptDataset(data, split="valid", dna_length=DNA_LENGTH)
    predictions = IsoFormer.from_pretrained(run_dir).predict(list(dataset), batch_size=3)
    expected = metrics_report(predictions, dataset.targets, TISSUES, dataset.gene_ids, "valid")
    assert report["n_transcripts"] == expected["n_transcripts"] == len(dataset)
    assert report["mean"] == pytest.approx(expected["mean"], rel=1e-4)
    for tissue in TISSUES:  # R2 is undefined (null) nowhere here: every tissue varies
        assert report["per_tissue"][tissue] == pytest.approx(
            expected["per_tissue"][tissue], rel=1e-4
        )
    assert report["isoform_spearman"] == pytest.approx(expected["isoform_spearman"], rel=1e-4)

    saved = pl.read_parquet(run_dir / "predictions_valid.parquet")
    assert saved["transcript_id"].to_list() == dataset.transcript_ids
    np.testing.assert_allclose(saved.select(TISSUES).to_numpy(), predictions, rtol=1e-6)


def test_tissue_mismatch_is_a_clear_error(run, tmp_path):
    run_dir, _ = run
    other = write_tiny_dataset(tmp_path / "other")
    metadata = json.loads((other / "metadata.json").read_text())
    metadata["tissues"] = TISSUES[:2]
    (other / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(IsoformerError, match="tissues differ: run .* predicts 3 .* holds 2"):
        evaluate_run(run_dir, other, split="train", progress=False)
    assert not (run_dir / "metrics_train.json").exists()


def test_not_a_run_exits_2(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")
    assert main(["evaluate", "--run", str(tmp_path / "nothing"), "--data", str(data)]) == 2
    assert "not a training run" in capsys.readouterr().err
