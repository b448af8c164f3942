"""`isoformer train`: fit an IsoFormer on a built dataset and write a self-describing run directory.

The directory's layout is `isoformer.training.run` (the `Run` object reads and writes it).

Resuming: running `train` again with the same config and dataset on a RUN that holds
checkpoints/last.ckpt continues from it (optimizer, epoch, early-stopping state, crop counts
included); only `training.max_epochs` may differ, so a finished run can be extended. A RUN whose
saved config or dataset differs otherwise is refused unless `overwrite=True`, which deletes the
previous run's files first.

Several devices or nodes (`training.devices`, `num_nodes`, `strategy`; docs/distributed.md): every
process runs `train`, each on its shard of the batches; rank 0 alone writes the run's files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from isoformer.data.dataset import read_metadata, read_transcripts
from isoformer.encoders.embedding_cache import EmbeddingCache
from isoformer.errors import IsoformerError
from isoformer.model.config import (
    RunConfig,
    TrainingConfig,
    apply_overrides,
    config_to_dict,
    load_preset,
)
from isoformer.model.isoformer import IsoFormer
from isoformer.training.datamodule import TranscriptDataModule
from isoformer.training.embed import check_cache
from isoformer.training.module import IsoFormerModule
from isoformer.training.run import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LOGS_DIR,
    Run,
    TargetStatistics,
    dataset_fingerprint,
    remove_run_files,
)
from isoformer.typed_config import differing_keys

log = logging.getLogger(__name__)

# Config fields a resumed run may change: extending max_epochs continues a finished or stopped run.
RESUMABLE_CHANGES = frozenset({"training.max_epochs"})


def resolve_config(
    data_dir: Path,
    preset: str,
    overrides: Sequence[str] = (),
    modalities: Sequence[str] | None = None,
    seed: int | None = None,
    max_epochs: int | None = None,
) -> RunConfig:
    """Preset -> overrides -> explicit options -> the dataset's tissues (and window)."""
    config = apply_overrides(load_preset(preset), list(overrides))
    metadata = read_metadata(data_dir)
    model_changes: dict[str, Any] = {"tissues": list(metadata["tissues"])}
    if modalities is not None:
        model_changes["modalities"] = list(modalities)
    if config.model.dna_length is None:
        model_changes["dna_length"] = int(metadata["dna_length"])
    training_changes: dict[str, Any] = {}
    if seed is not None:
        training_changes["seed"] = seed
    if max_epochs is not None:
        training_changes["max_epochs"] = max_epochs
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **model_changes),
        training=dataclasses.replace(config.training, **training_changes),
    )


def seeded_model(config: RunConfig) -> IsoFormer:
    """The run's model as training starts it: every random draw (random-weight encoders, the
    fusion, the head) follows `training.seed`, so `embed` and `train` build the same one."""
    L.seed_everything(config.training.seed, workers=True)
    return IsoFormer.from_config(config.model)


def log_parameter_memory(model: IsoFormer, training: TrainingConfig) -> None:
    """The run's first lines: parameters and the bytes of weights, gradients and optimiser
    state per device (activations need a measured step: `isoformer train --dry-run`)."""
    from isoformer.training.memory import format_bytes, parameter_memory

    counts = parameter_memory(model, training.precision, training.optimizer)
    log.info("model: %d parameters, %d trainable; per device: weights %s, gradients %s, "
             "optimiser state %s (activations: `isoformer train --dry-run`)",
             counts["parameters"], counts["trainable_parameters"],
             format_bytes(counts["weight_bytes"]), format_bytes(counts["gradient_bytes"]),
             format_bytes(counts["optimizer_bytes"]))


def _prepare_run_dir(
    out: Path, config: RunConfig, fingerprint: dict[str, Any], overwrite: bool
) -> Path | None:
    """Create or check RUN; return last.ckpt when the run should resume from it."""
    if (out / CONFIG_FILE).exists() and overwrite:
        log.info("--overwrite: removing the previous run's files in %s", out)
        remove_run_files(out)
    elif (out / CONFIG_FILE).exists():
        previous = Run.open(out)
        differing = [
            key
            for key in differing_keys(config_to_dict(previous.config), config_to_dict(config))
            if key not in RESUMABLE_CHANGES
        ]
        if differing:
            raise IsoformerError(
                f"{out}: holds a run with a different config ({', '.join(differing)}); "
                "use another --out or --overwrite"
            )
        if previous.dataset["transcripts_sha256"] != fingerprint["transcripts_sha256"]:
            raise IsoformerError(
                f"{out}: was trained on a different dataset "
                f"({previous.dataset['path']}); use another --out or --overwrite"
            )
        last = previous.checkpoints_dir / "last.ckpt"
        if last.exists():
            log.info("resuming from %s", last)
            return last
    out.mkdir(parents=True, exist_ok=True)
    return None


def resume_checkpoint(
    out: Path, config: RunConfig, fingerprint: dict[str, Any], overwrite: bool, rank_zero: bool
) -> Path | None:
    """last.ckpt when this process should resume from it. Rank 0 checks (or clears) RUN; the
    other processes of a launch must not read run files rank 0 may be writing at that moment
    (a half-written RUN is not a run), so they only look for the checkpoint, which nobody writes
    before training starts and only an overwrite removes."""
    if rank_zero:
        return _prepare_run_dir(out, config, fingerprint, overwrite)
    last = out / CHECKPOINTS_DIR / "last.ckpt"
    return last if not overwrite and last.exists() else None


def _training_statistics(data_dir: Path, tissues: list[str]) -> TargetStatistics:
    table = read_transcripts(data_dir, "train").select(tissues)
    return TargetStatistics.from_targets(table.to_numpy())


def resolve_precision(requested: str) -> str:
    """The Lightning precision to use: float16 autocast needs CUDA, so on a machine without it
    `16-mixed` falls back to full precision (with a warning) rather than fail."""
    if requested == "16-mixed" and not torch.cuda.is_available():
        log.warning("precision 16-mixed needs a CUDA device; using 32-true")
        return "32-true"
    return requested


# Strategies whose processes each hold only a shard of the weights (docs/distributed.md).
SHARDED_STRATEGIES = frozenset({"fsdp", "deepspeed"})


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch, read from the launcher's environment before
    any Trainer (or process group) exists: torchrun's RANK, the NODE_RANK / LOCAL_RANK that
    Lightning's own launcher gives the processes it starts, SLURM's SLURM_PROCID (srun); a process
    started alone is rank 0."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env or "NODE_RANK" in env:
        return int(env.get("LOCAL_RANK", 0)) == 0 and int(env.get("NODE_RANK", 0)) == 0
    for name in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in env:
            return int(env[name]) == 0
    return True


def world_size(training: TrainingConfig) -> int:
    """Processes the run will train on: devices per node (auto: every GPU, else one) x nodes."""
    devices = training.devices
    if devices == "auto":
        devices = torch.cuda.device_count() or 1
    return devices * training.num_nodes


def resolve_strategy(training: TrainingConfig, model: IsoFormer) -> Any:
    """The Lightning strategy of `training.strategy`, checked here where Lightning would fail late
    or obscurely: fsdp and deepspeed need CUDA, deepspeed its package."""
    name = training.strategy
    if name in ("auto", "ddp"):
        return name
    if not torch.cuda.is_available():
        raise IsoformerError(
            f"training.strategy={name} needs CUDA GPUs and this machine has none; use "
            "training.strategy=ddp (or auto) to train on several CPU processes"
        )
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        # Full state dicts: a checkpoint is one file of whole weights, gathered on rank 0, which
        # the export and a resume read as any other. Each encoder is an FSDP unit of its own.
        return FSDPStrategy(
            state_dict_type="full",
            auto_wrap_policy={type(encoder) for encoder in model.encoders.values()},
        )
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise IsoformerError(
            "training.strategy=deepspeed needs the deepspeed package (pip install deepspeed)"
        ) from None
    return "deepspeed"


def _checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's contents with whole weights; DeepSpeed's (a folder of ZeRO shards) merged."""
    if checkpoint.is_dir():
        from lightning.pytorch.utilities.deepspeed import (
            convert_zero_checkpoint_to_fp32_state_dict,
        )

        with tempfile.TemporaryDirectory() as tmp:
            return convert_zero_checkpoint_to_fp32_state_dict(checkpoint, Path(tmp) / "full.ckpt")
    return torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own checkpoint


def _export_best(module: IsoFormerModule, checkpoint: Path, run: Run,
                 sharded: bool = False) -> None:
    """Load the best checkpoint's weights and write them with `save_pretrained` (atomically).

    Rank 0 alone calls it. After a `sharded` run (fsdp, deepspeed) the trained module holds only
    this process's shards, so a fresh copy of the model (built offline, as `from_pretrained`
    does) receives the checkpoint's whole weights instead.
    """
    state = _checkpoint_state(checkpoint)
    if not sharded:
        module.load_state_dict(state["state_dict"])
        run.write_model(module.model.save_pretrained)
        return
    offline = module.model.portable_config()  # a copy, every architecture written out
    for modality in offline.modalities:
        offline.encoders[modality] = dataclasses.replace(offline.encoders[modality], init="random")
    model = IsoFormer(offline)
    model.config = module.model.config
    IsoFormerModule(model, module.training_config).load_state_dict(state["state_dict"])
    run.write_model(model.save_pretrained)


def train(
    data_dir: str | Path,
    preset: str,
    out: str | Path,
    overrides: Sequence[str] = (),
    modalities: Sequence[str] | None = None,
    seed: int | None = None,
    max_epochs: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cache: str | Path | None = None,
) -> Run:
    """Train (or resume) a run into `out` and return it (layout in `isoformer.training.run`).

    `cache`: an `isoformer embed` cache of this dataset; its frozen encoders' states are read
    instead of running them (the cache must match the model, see `training.embed.check_cache`).
    """
    data_dir, out = Path(data_dir), Path(out)
    config = resolve_config(data_dir, preset, overrides, modalities, seed, max_epochs)
    fingerprint = dataset_fingerprint(data_dir)
    # Rank 0 alone checks, removes and writes run files.
    rank_zero = launched_as_rank_zero()
    resume_from = resume_checkpoint(out, config, fingerprint, overwrite, rank_zero)
    statistics = _training_statistics(data_dir, list(config.model.tissues))
    run = (Run.create(out, config, statistics, fingerprint) if rank_zero
           else Run(out, config, statistics, fingerprint))

    training = config.training
    # Lightning 2.6 with torch >= 2.10 warns about its own pytree use on every step.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Frozen encoder layers stay in eval mode on purpose (SequenceEncoder.train), which Lightning
    # would flag at every fit as "may lead to unexpected behavior".
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    model = seeded_model(config)
    log_parameter_memory(model, training)
    if config.model.standardize_targets:
        model.set_target_statistics(statistics.mean, statistics.std)
    embedding_cache = None
    if cache is not None:
        embedding_cache = EmbeddingCache.open(cache)
        check_cache(embedding_cache, model, data_dir)
        log.info("training from the embedding cache %s (%s states)", cache,
                 ", ".join(embedding_cache.modalities))
    module = IsoFormerModule(model, training)
    data = TranscriptDataModule(
        data_dir,
        batch_size=training.batch_size,
        dna_length=run.dna_length,
        num_workers=training.num_workers,
        seed=training.seed,
        dna_shift=training.dna_shift,
        cache=embedding_cache,
    )

    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoints_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1
    )
    # Its own callback: Lightning's save_last rewrites last.ckpt only when a best checkpoint was
    # saved, so a resume would restart from the best epoch instead of the last one.
    latest = ModelCheckpoint(
        dirpath=run.checkpoints_dir, filename="last", monitor=None, save_top_k=1,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        max_epochs=training.max_epochs,
        accelerator="auto",
        devices=training.devices,
        num_nodes=training.num_nodes,
        strategy=resolve_strategy(training, model),
        # The data module shards its batches itself (LengthBucketBatchSampler, shard_batches).
        use_distributed_sampler=False,
        precision=resolve_precision(training.precision),
        accumulate_grad_batches=training.accumulation(world_size(training)),
        gradient_clip_val=training.gradient_clip_val,
        val_check_interval=training.val_check_interval,
        callbacks=[
            EarlyStopping(
                monitor="val_loss",
                mode="min",
                patience=training.patience,
                min_delta=training.min_delta,
            ),
            checkpoint,
            latest,
        ],
        logger=CSVLogger(out, name=LOGS_DIR),  # logs/version_<n>/: one per session, kept on resume
        enable_progress_bar=progress,
        log_every_n_steps=10,
        deterministic="warn",
    )
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)

    best = (
        Path(checkpoint.best_model_path)
        if checkpoint.best_model_path
        else run.checkpoints_dir / "last.ckpt"
    )
    if trainer.is_global_zero:
        _export_best(module, best, run, sharded=training.strategy in SHARDED_STRATEGIES)
    best_loss = checkpoint.best_model_score
    crops = {name: dataclasses.asdict(count) for name, count in module.run_crop_counts().items()}
    summary = {
        "best_val_loss": None if best_loss is None else float(best_loss),
        "best_checkpoint": best.name,
        "epochs": trainer.current_epoch,
        "crops": crops,
        "embedding_cache": None if embedding_cache is None else {
            "path": str(Path(cache).resolve()), "modalities": embedding_cache.modalities,
            "dtype": embedding_cache.dtype, "pool_tokens": embedding_cache.header["pool_tokens"],
        },
    }
    if trainer.is_global_zero:
        run.write_summary(summary)
        log.info(
            "run %s: best val_loss %s after %d epochs; model exported to %s",
            out,
            summary["best_val_loss"],
            trainer.current_epoch,
            run.model_dir,
        )
    trainer.strategy.barrier("run files written")  # every process returns once they exist
    return run
