"""The Run object: one reader of a run's facts, its model checked against them, crop counts."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import polars as pl
import pytest
import yaml
from tiny_dataset import DNA_LENGTH, TINY_OVERRIDES, TISSUES, train_tiny_run, write_tiny_dataset

from isoformer.errors import IsoformerError
from isoformer.training.fit import train
from isoformer.training.run import Run

RNA_LIMIT = 48  # bases: crops some of the tiny dataset's 30-90-base RNAs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def test_open_reads_the_facts_from_the_run_files(trained):
    run_dir, data = trained
    run = Run.open(run_dir)
    assert run.tissues == TISSUES and run.modalities == ["dna", "rna", "protein"]
    assert run.dna_length == DNA_LENGTH
    normalization = json.loads((run_dir / "normalization.json").read_text())
    np.testing.assert_array_equal(run.target_statistics.mean,
                                  np.float32([normalization[t]["mean"] for t in TISSUES]))
    assert run.dataset == json.loads((run_dir / "dataset.json").read_text())
    assert run.summary()["epochs"] == 1
    model = run.load_model("cpu")
    assert model.tissues == TISSUES and str(model.device) == "cpu"
    np.testing.assert_array_equal(model.target_mean.numpy(), run.target_statistics.mean)


def test_not_a_run_names_the_missing_files(tmp_path):
    (tmp_path / "config.yaml").write_text("model: {}\n")
    with pytest.raises(IsoformerError, match="not a training run .no normalization.json, "
                                             "dataset.json.; create one with `isoformer train`"):
        Run.open(tmp_path)


def test_a_model_that_does_not_belong_to_the_run_is_refused(trained, tmp_path):
    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    normalization = json.loads((copy / "normalization.json").read_text())
    normalization["Blood"]["mean"] += 1.0
    (copy / "normalization.json").write_text(json.dumps(normalization))
    with pytest.raises(IsoformerError, match="does not belong to this run .its target statistics "
                                             "differ"):
        Run.open(copy).load_model()
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["model"]["dna_length"] = 2 * DNA_LENGTH
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(IsoformerError, match="its dna_length, target statistics differ"):
        Run.open(copy).load_model()
    shutil.rmtree(copy / "model")
    with pytest.raises(IsoformerError, match="training has not finished .no model/."):
        Run.open(copy).load_model()


def test_crops_are_logged_once_per_epoch_and_counted_over_a_resumed_run(tmp_path, caplog):
    """Known answer from the table: RNAs longer than 48 bases in train + valid, each epoch."""
    data = write_tiny_dataset(tmp_path / "data")
    table = pl.read_parquet(data / "transcripts.parquet").filter(pl.col("split") != "test")
    lengths = [len(rna) for rna in table["rna"]]
    long = [n for n in lengths if n > RNA_LIMIT]
    per_epoch = {"unit": "bases", "seen": len(lengths), "cropped": len(long),
                 "removed": sum(n - RNA_LIMIT for n in long)}
    assert 0 < per_epoch["cropped"] < per_epoch["seen"]
    overrides = [*TINY_OVERRIDES, f"model.encoders.rna.max_length={RNA_LIMIT}"]
    with caplog.at_level(logging.INFO, logger="isoformer"):
        run = train(data, "tiny", tmp_path / "run", overrides=overrides, max_epochs=1,
                    progress=False)
    assert run.summary()["crops"]["rna"] == per_epoch
    assert run.summary()["crops"]["protein"]["cropped"] == 0
    lines = [r.getMessage() for r in caplog.records if "cropped" in r.getMessage()]
    assert lines == [f"epoch 0: rna cropped {len(long)} of {len(lengths)} sequences "
                     f"({per_epoch['removed']} bases removed)"]

    run = train(data, "tiny", tmp_path / "run", overrides=overrides, max_epochs=2,
                progress=False)  # resumes from last.ckpt: the first epoch's counts come with it
    doubled = {key: 2 * value if key != "unit" else value for key, value in per_epoch.items()}
    assert run.summary()["crops"]["rna"] == doubled
