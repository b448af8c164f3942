"""Training: target statistics, masked loss, bucketing, the run directory, resuming, reloading."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import typing

import lightning as L
import numpy as np
import polars as pl
import pytest
import torch
import yaml
from tiny_dataset import DNA_LENGTH, TINY_OVERRIDES, TISSUES, write_tiny_dataset

from isoformer.cli import main
from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import IsoformerError
from isoformer.model.config import TrainingConfig, apply_overrides, load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.training.datamodule import LengthBucketBatchSampler, TranscriptDataModule
from isoformer.training.fit import resolve_precision, train
from isoformer.training.module import IsoFormerModule, masked_mse
from isoformer.training.run import TargetStatistics

NAN = float("nan")


def test_target_statistics_skip_nan_and_floor_the_std():
    targets = np.array([[1.0, NAN, 5.0, NAN], [3.0, 2.0, 5.0, NAN]])
    stats = TargetStatistics.from_targets(targets, std_floor=0.01)
    np.testing.assert_allclose(stats.mean, [2.0, 2.0, 5.0, 0.0])
    # Population std; a constant tissue gets the floor, an all-NaN tissue mean 0 / std 1.
    np.testing.assert_allclose(stats.std, [1.0, 0.01, 0.01, 1.0])


def test_masked_mse_ignores_nan_targets():
    predictions = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    targets = torch.tensor([[1.0, NAN], [1.0, 6.0]])
    assert masked_mse(predictions, targets).item() == pytest.approx((0 + 4 + 4) / 3)
    all_missing = masked_mse(predictions, torch.full((2, 2), NAN))
    assert all_missing.item() == 0.0 and not torch.isnan(all_missing)


def test_length_buckets_cover_every_index_once_and_are_reproducible():
    lengths = [50, 10, 40, 20, 30, 60, 70]
    sampler = LengthBucketBatchSampler(lengths, batch_size=3, seed=1, pool_batches=10)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    # One pool holds everything, so each batch is a run of the length-sorted order.
    assert sorted(sorted(lengths[i] for i in batch) for batch in batches) == [
        [10, 20, 30],
        [40, 50, 60],
        [70],
    ]
    sampler.set_epoch(0)
    assert list(sampler) == batches
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == epoch1


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    return train(
        data,
        "tiny",
        overrides=TINY_OVERRIDES,
        out=tmp_path_factory.mktemp("runs") / "run",
        max_epochs=2,
        progress=False,
    ).directory


def test_run_directory_contents(run, data):
    for name in (
        "config.yaml",
        "normalization.json",
        "dataset.json",
        "training.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "logs/version_0/metrics.csv",
    ):
        assert (run / name).is_file(), name
    assert any((run / "model").iterdir())
    assert not (run / "tissues.json").exists()  # the tissues live in config.yaml only
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["tissues"] == TISSUES and config["training"]["max_epochs"] == 2

    train_targets = pl.read_parquet(data / "transcripts.parquet").filter(pl.col("split") == "train")
    normalization = json.loads((run / "normalization.json").read_text())
    blood = train_targets["Blood"].drop_nans()
    assert normalization["Blood"]["mean"] == pytest.approx(blood.mean(), rel=1e-5)
    assert normalization["Blood"]["std"] == pytest.approx(blood.std(ddof=0), rel=1e-5)

    fingerprint = json.loads((run / "dataset.json").read_text())
    expected = hashlib.sha256((data / "transcripts.parquet").read_bytes()).hexdigest()
    assert fingerprint["transcripts_sha256"] == expected
    assert fingerprint["metadata"]["inputs"] == {
        "genome.fa": {"sha256": "hand-written test fixture"}
    }

    with (run / "logs" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    val_losses = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert len(val_losses) == 2 and all(np.isfinite(val_losses))
    assert json.loads((run / "training.json").read_text())["epochs"] == 2


def test_reloaded_run_predicts_like_its_best_checkpoint(run, data):
    records = list(TranscriptDataset(data, split="test", dna_length=DNA_LENGTH))
    exported = IsoFormer.from_pretrained(run)
    exported.eval()
    from_checkpoint = IsoFormer.from_config(exported_config(run))
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    from_checkpoint.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    from_checkpoint.eval()
    first = exported.predict(records, batch_size=2)
    assert first.shape == (len(records), len(TISSUES)) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, from_checkpoint.predict(records, batch_size=2))
    np.testing.assert_array_equal(
        first, IsoFormer.from_pretrained(run).predict(records, batch_size=5)
    )


def exported_config(run):
    from isoformer.model.config import config_from_dict

    return config_from_dict(yaml.safe_load((run / "config.yaml").read_text())).model


def test_training_resumes_from_last_checkpoint(data, tmp_path, caplog):
    out = tmp_path / "run"
    train(data, "tiny", overrides=TINY_OVERRIDES, out=out, max_epochs=1, progress=False)
    first_step = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    with caplog.at_level(logging.INFO, logger="isoformer.training.fit"):
        train(data, "tiny", overrides=TINY_OVERRIDES, out=out, max_epochs=2, progress=False)
    assert "resuming from" in caplog.text
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * first_step  # continued from epoch 1, not restarted
    assert (out / "logs" / "version_0" / "metrics.csv").is_file()  # the first session's log is kept
    assert (out / "logs" / "version_1" / "metrics.csv").is_file()
    assert json.loads((out / "training.json").read_text())["epochs"] == 2


def test_a_different_config_is_refused_unless_overwrite(data, tmp_path):
    out = tmp_path / "run"
    train(data, "tiny", overrides=TINY_OVERRIDES, out=out, max_epochs=1, progress=False)
    with pytest.raises(IsoformerError, match="different config.*model.modalities"):
        train(
            data,
            "tiny",
            overrides=TINY_OVERRIDES,
            out=out,
            max_epochs=1,
            modalities=["rna"],
            progress=False,
        )
    train(
        data,
        "tiny",
        overrides=TINY_OVERRIDES,
        out=out,
        max_epochs=1,
        modalities=["rna"],
        overwrite=True,
        progress=False,
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["modalities"] == ["rna"]


def test_cli_train_single_modality(data, tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--modalities",
            "rna",
            "--max-epochs",
            "1",
            "--seed",
            "3",
            "--no-progress",
            *TINY_OVERRIDES,
        ]
    )
    assert code == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["modalities"] == ["rna"] and config["training"]["seed"] == 3


def test_cli_rejects_unknown_modality(data, tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--modalities",
            "dna,cdna",
            *TINY_OVERRIDES,
        ]
    )
    assert code == 2
    assert "--modalities 'dna,cdna'" in capsys.readouterr().err


def test_tiny_preset_builds_the_full_model_offline_with_random_weights():
    """`tiny` is what tests and the embedded default run: all three modalities, every encoder
    random (no checkpoint to fetch), small enough to train on a CPU."""
    config = load_preset("tiny")
    assert config.model.modalities == ["dna", "rna", "protein"]
    assert {m: e.init for m, e in config.model.encoders.items()} == dict.fromkeys(
        ["dna", "rna", "protein"], "random")
    assert all(e.checkpoint is None for e in config.model.encoders.values())
    model = IsoFormer.from_config(config.model)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert config.training.precision == "32-true"  # runs where there is no GPU


PRECISIONS = typing.get_args(typing.get_type_hints(TrainingConfig)["precision"])
# What each offered precision trains the encoders in on a CPU (16-mixed needs CUDA: full precision).
ENCODER_DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.float32, "16-mixed": torch.float32,
                  "bf16-true": torch.bfloat16, "64-true": torch.float64}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_training_step_with_an_enformer_dna_encoder_in_every_precision(data, precision):
    """The one-hot DNA meets the convolutions in their dtype; the head and the target statistics
    stay float32 (float64 under 64-true), and the step updates the weights."""
    assert set(PRECISIONS) == set(ENCODER_DTYPES)
    config = apply_overrides(load_preset("tiny"), [
        *TINY_OVERRIDES, "model.encoders.dna.kind=enformer",
        "model.encoders.dna.architecture.preset=tiny", f"model.tissues={','.join(TISSUES)}",
        f"training.precision={precision}",
    ])
    torch.manual_seed(0)
    model = IsoFormer.from_config(config.model)
    mean = np.array([1.501, 2.003, 0.507], dtype=np.float32)  # not representable in bfloat16
    model.set_target_statistics(mean, [0.5, 1.0, 2.0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    module = IsoFormerModule(model, config.training)
    trainer = L.Trainer(
        max_steps=1, precision=resolve_precision(precision), accelerator="cpu",
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=TranscriptDataModule(data, batch_size=4,
                                                        dna_length=DNA_LENGTH))
    assert trainer.global_step == 1
    head_dtype = torch.float64 if precision == "64-true" else torch.float32
    assert {p.dtype for p in model.encoders["dna"].parameters()} == {ENCODER_DTYPES[precision]}
    assert {p.dtype for p in model.head.parameters()} == {head_dtype}
    assert model.target_mean.dtype == model.target_std.dtype == head_dtype
    np.testing.assert_array_equal(model.target_mean.float().numpy(), mean)
    for part in ("encoders.dna.", "head."):
        changed = [not torch.equal(before[name].to(p.dtype), p.detach())
                   for name, p in model.named_parameters() if name.startswith(part)]
        assert any(changed), part
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_prints_each_log_line_once(data, tmp_path):
    """Lightning's own console handler is dropped: its lines come once, in our format."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "isoformer.cli", "train", "--data", str(data), "--out",
         str(tmp_path / "run"), "--max-epochs", "1", "--no-progress", *TINY_OVERRIDES],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    seed_lines = [line for line in lines if "Seed set to 0" in line]
    assert len(seed_lines) == 1 and "INFO lightning.fabric.utilities.seed:" in seed_lines[0]
    logged = [line for line in lines if " INFO " in line]
    assert len(logged) == len(set(logged)) > 3
