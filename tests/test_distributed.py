"""Several processes: batch sharding, rank-0-only run files, strategies, and a two-process DDP run
(gloo on the CPU) that validates like one process with the same global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from tiny_dataset import TISSUES, write_tiny_dataset

from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import IsoformerError
from isoformer.model.config import TrainingConfig, apply_overrides, load_preset
from isoformer.model.prediction import prediction_batches
from isoformer.training.datamodule import (
    PADDING_KEY,
    LengthBucketBatchSampler,
    TranscriptDataModule,
    shard_batches,
)
from isoformer.training.fit import (
    _export_best,
    launched_as_rank_zero,
    resolve_strategy,
    resume_checkpoint,
    train,
)
from isoformer.training.module import IsoFormerModule
from isoformer.training.run import Run

# ---- the training sampler's shards ----


def shards(lengths, batch_size, world, seed=3, epoch=0, pool_batches=2):
    samplers = [LengthBucketBatchSampler(lengths, batch_size, seed, pool_batches=pool_batches,
                                         num_replicas=world, rank=rank) for rank in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers], samplers


def one_process_epoch(lengths, global_batch, seed=3, epoch=0, pool_batches=2):
    sampler = LengthBucketBatchSampler(lengths, global_batch, seed, pool_batches=pool_batches)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_rank_takes_its_slice_of_the_one_process_batches():
    lengths = [(7 * i) % 23 for i in range(24)]  # 24 = 4 global batches of 3 ranks x 2
    for epoch in (0, 1):
        per_rank, samplers = shards(lengths, batch_size=2, world=3, epoch=epoch)
        reference = one_process_epoch(lengths, global_batch=6, epoch=epoch)
        assert [len(s) for s in samplers] == [len(b) for b in per_rank] == [4, 4, 4]
        assert all(len(batch) == 2 for batches in per_rank for batch in batches)
        # Step k of the three ranks = step k of one process with batch 6; shards are disjoint.
        for step, batch in enumerate(reference):
            parts = [per_rank[rank][step] for rank in range(3)]
            assert sorted(i for part in parts for i in part) == sorted(batch)
        every = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(every) == list(range(24))
        assert per_rank == shards(lengths, batch_size=2, world=3, epoch=epoch)[0]  # the seed's
    assert shards(lengths, 2, 3, epoch=0)[0] != shards(lengths, 2, 3, epoch=1)[0]  # set_epoch
    assert shards(lengths, 2, 3, seed=3)[0] != shards(lengths, 2, 3, seed=4)[0]


def test_the_short_last_global_batch_is_padded_by_repetition_and_split_evenly():
    lengths = [5, 1, 4, 2, 3, 6, 7]  # 7 = a global batch of 4 and a short one of 3
    per_rank, samplers = shards(lengths, batch_size=2, world=2, pool_batches=10)
    assert [len(s) for s in samplers] == [2, 2] and [len(b) for b in per_rank] == [2, 2]
    # Equal per-rank sizes at every step; every index trained on; one repeat (2 x 2 - 3).
    for step in range(2):
        assert len(per_rank[0][step]) == len(per_rank[1][step]) == 2
    every = [i for batches in per_rank for batch in batches for i in batch]
    assert set(every) == set(range(7)) and len(every) == 8
    short = next(b for b in one_process_epoch(lengths, 4, pool_batches=10) if len(b) == 3)
    step = next(k for k in range(2) if set(per_rank[0][k] + per_rank[1][k]) == set(short))
    assert per_rank[0][step] + per_rank[1][step] == [*short, short[0]]
    # Fewer indices than ranks: each rank still gets a batch.
    tiny, _ = shards([3], batch_size=2, world=3)
    assert tiny == [[[0]], [[0]], [[0]]]


def test_one_replica_is_the_one_process_sampler():
    lengths = [50, 10, 40, 20, 30, 60, 70]
    sampler = LengthBucketBatchSampler(lengths, batch_size=3, seed=1, pool_batches=10)
    assert list(sampler) == sampler.epoch_batches() and len(sampler) == 3
    with pytest.raises(IsoformerError, match="rank 2 of 2"):
        LengthBucketBatchSampler(lengths, 3, seed=1, num_replicas=2, rank=2)


# ---- the validation shards ----


def test_validation_batches_are_dealt_to_the_ranks_and_padded_to_equal_counts():
    lengths = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    batches = prediction_batches(lengths, 2)  # 5 batches
    per_rank = [shard_batches(batches, len(lengths), rank, 2) for rank in range(2)]
    assert per_rank[0] == [batches[0], batches[2], batches[4]]
    assert per_rank[1] == [batches[1], batches[3], [len(lengths) + batches[4][-1]]]
    scored = [i for shard in per_rank for batch in shard for i in batch if i < len(lengths)]
    assert sorted(scored) == list(range(len(lengths)))  # each index scored on one rank only
    assert shard_batches(batches, len(lengths), 0, 1) == batches  # one process: all of them


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny dataset with 16 training and 5 validation transcripts (one test transcript moved
    to each) and no missing target: with NaN targets a batch's masked mean weighs each target
    value, while DDP weighs the ranks equally, so only without them do steps match exactly."""
    out = write_tiny_dataset(tmp_path_factory.mktemp("data"))
    table = pl.read_parquet(out / "transcripts.parquet")
    test_ids = table.filter(pl.col("split") == "test")["transcript_id"].to_list()
    moves = {test_ids[0]: "train", test_ids[1]: "valid"}
    table = table.with_columns(
        pl.col("transcript_id").replace_strict(moves, default=pl.col("split")).alias("split"),
        *[pl.col(tissue).fill_nan(1.0) for tissue in TISSUES],
    )
    table.write_parquet(out / "transcripts.parquet")
    return out


def test_the_data_module_shards_for_the_trainer_rank(data):
    module = TranscriptDataModule(data, batch_size=2, dna_length=96)
    module.trainer = SimpleNamespace(global_rank=1, world_size=2)
    sampler = module.train_dataloader().batch_sampler
    assert (sampler.rank, sampler.num_replicas, len(sampler)) == (1, 2, 4)  # 16 = 4 x (2 x 2)
    valid = list(module.val_dataloader())  # 5 records: batches of 2, 2, 1; rank 1 gets the 2nd
    assert [len(batch) for batch in valid] == [2, 1]
    assert not any(r.get(PADDING_KEY) for r in valid[0]) and valid[1][0][PADDING_KEY] is True
    module.trainer = SimpleNamespace(global_rank=0, world_size=1)
    assert sum(len(batch) for batch in module.val_dataloader()) == 5


# ---- launch, strategies, config ----


def test_rank_zero_is_read_from_the_launchers_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched_as_rank_zero()
    cases = (({"RANK": "1", "LOCAL_RANK": "0"}, False), ({"RANK": "0"}, True),
             ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
             # Lightning's launcher inside a SLURM batch step: LOCAL_RANK decides.
             ({"LOCAL_RANK": "0", "SLURM_PROCID": "3"}, True), ({"SLURM_PROCID": "3"}, False))
    for env, zero in cases:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            assert launched_as_rank_zero() is zero, env


def test_only_rank_zero_reads_the_run_directory_the_others_look_for_its_checkpoint(tmp_path):
    # RUN as rank 0 leaves it halfway through Run.create: config.yaml written, dataset.json not.
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("model: {}\n")
    config, fingerprint = load_preset("tiny-nt"), {"transcripts_sha256": "0" * 64}
    with pytest.raises(IsoformerError, match="not a training run"):
        resume_checkpoint(out, config, fingerprint, overwrite=False, rank_zero=True)
    assert resume_checkpoint(out, config, fingerprint, overwrite=False, rank_zero=False) is None
    last = out / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resume_checkpoint(out, config, fingerprint, overwrite=False, rank_zero=False) == last
    # After an overwrite rank 0 removes the checkpoint: nothing to resume.
    assert resume_checkpoint(out, config, fingerprint, overwrite=True, rank_zero=False) is None


def test_distributed_settings_are_config_fields_with_single_device_defaults():
    for preset in ("tiny", "paper", "paper-nt"):
        training = load_preset(preset).training
        assert (training.devices, training.num_nodes, training.strategy) == (1, 1, "auto")
    config = apply_overrides(load_preset("tiny"), [
        "training.devices=auto", "training.num_nodes=2", "training.strategy=ddp"])
    assert (config.training.devices, config.training.num_nodes) == ("auto", 2)
    assert apply_overrides(load_preset("tiny"), ["training.devices=4"]).training.devices == 4
    with pytest.raises(IsoformerError, match="devices must be a count of at least 1 or auto"):
        TrainingConfig(devices=0)
    with pytest.raises(IsoformerError, match="num_nodes must be at least 1"):
        TrainingConfig(num_nodes=0)
    with pytest.raises(IsoformerError, match="not one of auto, ddp, fsdp, deepspeed"):
        apply_overrides(load_preset("tiny"), ["training.strategy=ddp_spawn"])
    with pytest.raises(IsoformerError, match="fsdp cannot train in bf16-true"):
        TrainingConfig(strategy="fsdp", precision="bf16-true")


def test_cli_flags_set_the_distributed_fields(monkeypatch, tmp_path):
    import isoformer.training.fit as fit
    from isoformer.cli import main

    seen = {}
    monkeypatch.setattr(fit, "train", lambda *args, **kwargs: seen.update(kwargs)
                        or SimpleNamespace(directory=tmp_path))
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "training.devices=8", "--devices", "2", "--num-nodes", "3",
                 "--strategy", "ddp"])
    assert code == 0
    # The flags come after the free overrides, so they win.
    assert seen["overrides"] == ["training.devices=8", "training.devices=2",
                                 "training.num_nodes=3", "training.strategy=ddp"]


def test_sharded_strategies_fail_clearly_where_they_cannot_run(monkeypatch):
    model = SimpleNamespace(encoders={})
    assert resolve_strategy(TrainingConfig(strategy="ddp"), model) == "ddp"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("fsdp", "deepspeed"):
        with pytest.raises(IsoformerError, match=f"strategy={name} needs CUDA GPUs"):
            resolve_strategy(TrainingConfig(strategy=name), model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fsdp = resolve_strategy(TrainingConfig(strategy="fsdp"),
                            SimpleNamespace(encoders={"dna": torch.nn.Linear(2, 2)}))
    assert type(fsdp).__name__ == "FSDPStrategy" and fsdp._state_dict_type == "full"
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import fails: not installed
    with pytest.raises(IsoformerError, match="needs the deepspeed package"):
        resolve_strategy(TrainingConfig(strategy="deepspeed"), model)


# ---- two processes against one ----

# Same model, data order and arithmetic in both runs: no dropout, no random DNA shift, and
# tiny-nt rather than tiny, whose Enformer BatchNorm normalises over each rank's batch alone.
COMPARABLE = ["model.dna_length=96", "model.head.dropout=0", "training.dna_shift=0",
              "training.lr=3e-3"]
SCRIPT = """
import sys
from isoformer.training.fit import train
data, out, *overrides = sys.argv[1:]
run = train(data, "tiny-nt", out, overrides=overrides, max_epochs=1, progress=False)
print("rank done", run.directory)
"""


def epoch_metrics(run_dir):
    with (run_dir / "logs" / "version_0" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val_loss")]
    assert len(rows) == 1
    return float(rows[0]["val_loss"]), float(rows[0]["val_r2"])


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    return train(data, "tiny-nt", tmp_path_factory.mktemp("one") / "run", max_epochs=1,
                 overrides=[*COMPARABLE, "training.batch_size=4"], progress=False)


def test_two_ddp_processes_validate_like_one_process_with_the_same_global_batch(
        data, one_process, tmp_path):
    script = tmp_path / "train_two.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(data), str(out), *COMPARABLE, "training.batch_size=2",
         "training.devices=2", "training.strategy=ddp"],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("rank done") == 2  # each rank returned, after the files existed
    # 16 transcripts, global batch 4: 4 steps in both; validation 5 = 2 + 1 on rank 0, 2 (+ a
    # padding record) on rank 1.
    steps = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
             for run in (one_process.directory, out)]
    assert steps == [4, 4]
    loss, r2 = epoch_metrics(out)
    expected_loss, expected_r2 = epoch_metrics(one_process.directory)
    assert loss == pytest.approx(expected_loss, rel=1e-4)
    assert r2 == pytest.approx(expected_r2, rel=1e-4, abs=1e-5)
    # Rank 0 alone wrote the run: one log folder, the exported model, the summary.
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]
    run = Run.open(out)
    assert run.summary()["epochs"] == 1
    one = load_file(one_process.model_dir / "model.safetensors")
    two = load_file(run.model_dir / "model.safetensors")
    assert one.keys() == two.keys()
    # Equal up to the order of float sums (Adam magnifies those of near-zero gradients).
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-4)


def test_the_sharded_export_rebuilds_the_model_and_writes_the_same_weights(one_process, tmp_path):
    """What an FSDP or DeepSpeed run does at the end: the full weights of the best checkpoint
    into a model built afresh (the trained module then only holds this rank's shards)."""
    from isoformer.model.isoformer import IsoFormer

    run = Run.open(one_process.directory)
    model = IsoFormer.from_config(run.config.model)  # other weights than the checkpoint's
    module = IsoFormerModule(model, run.config.training)
    copy = Run(tmp_path, run.config, run.target_statistics, run.dataset)
    _export_best(module, run.checkpoints_dir / "best.ckpt", copy, sharded=True)
    exported = load_file(one_process.model_dir / "model.safetensors")
    rebuilt = load_file(copy.model_dir / "model.safetensors")
    assert exported.keys() == rebuilt.keys()
    assert all(torch.equal(exported[name], rebuilt[name]) for name in exported)
    records = list(TranscriptDataset(run.dataset["path"], split="valid", dna_length=96))
    np.testing.assert_array_equal(IsoFormer.from_pretrained(copy.directory).predict(records),
                                  IsoFormer.from_pretrained(run.directory).predict(records))
