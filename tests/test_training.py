"""Training: target statistics, masked loss, bucketing, the run directory, resuming, reloading."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import typing
import warnings

import lightning as L
import numpy as np
import polars as pl
import pytest
import torch
import yaml
from tiny_dataset import DNA_LENGTH, TINY_OVERRIDES, TISSUES, write_tiny_dataset

from isoformer.cli import main
from isoformer.constants import TARGETS
from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import IsoformerError
from isoformer.model.config import TrainingConfig, apply_overrides, load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.training.datamodule import (
    LengthBucketBatchSampler,
    RandomDnaShift,
    TranscriptDataModule,
)
from isoformer.training.fit import resolve_precision, train
from isoformer.training.module import (
    IsoFormerModule,
    learning_rate_factor,
    masked_mse,
    squared_errors,
)
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
    total, count = squared_errors(predictions, targets)
    assert (total.item(), count) == (8.0, 3)
    predictions.requires_grad_()
    all_missing = masked_mse(predictions, torch.full((2, 2), NAN))
    assert all_missing.item() == 0.0 and not torch.isnan(all_missing)
    all_missing.backward()  # the graph is kept, and carries no gradient
    assert predictions.grad.abs().sum().item() == 0.0


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
    reloaded = IsoFormer.from_pretrained(run)
    np.testing.assert_array_equal(first, reloaded.predict(records, batch_size=2))
    # Other batch shapes take other BLAS paths: equal up to float32 rounding, not bit for bit.
    np.testing.assert_allclose(first, reloaded.predict(records, batch_size=5), rtol=1e-6)


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
    # tiny mirrors paper (Enformer DNA), tiny-nt mirrors paper-nt (NT-v2 DNA).
    for tiny, paper in (("tiny", "paper"), ("tiny-nt", "paper-nt")):
        kinds = {m: e.kind for m, e in load_preset(tiny).model.encoders.items()}
        assert kinds == {m: e.kind for m, e in load_preset(paper).model.encoders.items()}
    assert config.model.encoders["dna"].kind == "enformer"
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


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    factor = learning_rate_factor(100, 0.1, "cosine")
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0) and factor(150) == pytest.approx(0.0)
    constant = learning_rate_factor(100, 0.1, "constant")
    assert constant(4) == pytest.approx(0.5) and constant(10) == constant(99) == 1.0
    assert learning_rate_factor(100, 0.0, "constant")(0) == 1.0  # no warm-up: full rate at once
    with pytest.raises(IsoformerError, match="warmup_fraction"):
        TrainingConfig(warmup_fraction=1.0)
    with pytest.raises(IsoformerError, match="dna_shift"):
        TrainingConfig(dna_shift=-1)


def test_random_dna_shift_cuts_the_window_within_the_shift():
    shift = RandomDnaShift(dna_length=6, max_shift=2)
    wide = "ABCDEFGHIJ"  # 6 + 2 x 2 bases; the centred cut is CDEFGH
    torch.manual_seed(0)
    cuts = {shift([{"dna_sequence": wide, "rna_sequence": "A"}])[0]["dna_sequence"]
            for _ in range(200)}
    assert cuts == {wide[i : i + 6] for i in range(5)}  # every offset in -2..2, nothing else
    torch.manual_seed(0)
    again = {shift([{"dna_sequence": wide, "rna_sequence": "A"}])[0]["dna_sequence"]
             for _ in range(200)}
    assert again == cuts
    with pytest.raises(IsoformerError, match="expected 6 \\+ 2 x 2"):
        shift([{"dna_sequence": "ABCDEF", "rna_sequence": "A"}])


def test_shifted_training_windows_come_from_the_wider_centred_window(data):
    shifted = TranscriptDataModule(data, batch_size=64, dna_length=DNA_LENGTH, dna_shift=3)
    centred = TranscriptDataset(data, split="train", dna_length=DNA_LENGTH + 6)
    by_id = {centred[i]["transcript_id"]: centred[i]["dna_sequence"] for i in range(len(centred))}
    batch = next(iter(shifted.train_dataloader()))
    assert len(batch) == len(by_id)
    for record in batch:
        assert len(record["dna_sequence"]) == DNA_LENGTH
        assert record["dna_sequence"] in by_id[record["transcript_id"]]
    # Validation windows stay centred at the model's length.
    valid = next(iter(shifted.val_dataloader()))
    assert {len(record["dna_sequence"]) for record in valid} == {DNA_LENGTH}


def test_training_with_the_full_recipe_runs_and_schedules_the_rate(data, tmp_path):
    run = train(data, "tiny", tmp_path / "recipe", overrides=[
        *TINY_OVERRIDES, "training.dna_shift=3", "training.optimizer=adamw",
        "training.weight_decay=0.01", "training.lr_schedule=cosine", "training.warmup_fraction=0.2",
        "training.batch_size=4",
    ], max_epochs=2, progress=False)
    assert run.summary()["epochs"] == 2
    state = torch.load(run.checkpoints_dir / "last.ckpt", map_location="cpu", weights_only=False)
    (group,) = state["optimizer_states"][0]["param_groups"]
    assert group["weight_decay"] == 0.01 and group["initial_lr"] == pytest.approx(3e-4)
    # 2 epochs of 4 batches: the cosine has reached 0 after the last of the 8 steps (last.ckpt is
    # the last epoch's, whether or not its validation loss was the best).
    assert state["global_step"] == 8
    assert state["lr_schedulers"][0]["_last_lr"] == [pytest.approx(0.0, abs=1e-12)]


def test_validation_loss_is_the_mse_over_every_finite_target(monkeypatch):
    """Batches with a missing tissue weigh by their finite targets, not by their records."""
    from isoformer.training import module as module_file

    config = apply_overrides(load_preset("tiny"), [
        *TINY_OVERRIDES, f"model.tissues={','.join(TISSUES)}"])
    model = IsoFormer.from_config(config.model)
    model.set_target_statistics(np.zeros(3), np.ones(3))  # training space = log(1 + TPM)
    module = IsoFormerModule(model, config.training)
    batches = [  # (predictions, targets)
        ([[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]]),  # squared errors 1, 1, 1
        ([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, np.nan, np.nan], [0.0, np.nan, np.nan]]),
    ]
    for predictions, targets in batches:
        monkeypatch.setattr(module_file, "predict_batch",
                            lambda model, records, p=predictions: torch.tensor(p))
        module.validation_step([{TARGETS: t} for t in targets], 0)
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.update({name: value}))
    module.on_validation_epoch_end()
    # (1 + 1 + 1 + 9 + 0) / 5 finite targets; weighting the batch means (1 and 4.5) by records
    # would give (1 + 2 x 4.5) / 3.
    assert logged["val_loss"] == pytest.approx(12 / 5)


def test_a_frozen_encoder_trains_without_lightnings_eval_mode_warning(data, tmp_path):
    # The frozen RNA encoder's layers are in eval mode on purpose; the user sees no warning that
    # calls it "unexpected behavior", and the run still finishes.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(data, "tiny", tmp_path / "frozen", overrides=[
            *TINY_OVERRIDES, "model.encoders.rna.train_mode=frozen"], max_epochs=1,
            progress=False)
    assert run.summary()["epochs"] == 1
    assert not [w for w in caught if "in eval mode" in str(w.message)]
