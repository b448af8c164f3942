"""LightningModule: MSE on the per-tissue targets, Adam(W) with an optional warm-up and cosine
schedule, validation loss and mean R2.

The network (`IsoFormer`) stays a plain `nn.Module` with no loss; this module adds the training
objective. Batches go through `isoformer.model.prediction.predict_batch`, the step every
prediction path shares. Targets are compared in the model's output space: standardised per tissue
when the model config asks for it (statistics from the training split), log(1 + TPM) otherwise.

Crops (inputs longer than an encoder takes) are logged once per epoch and counted over the whole
run; the counts travel in the checkpoints, so a resumed run keeps them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch

from isoformer.constants import TARGETS
from isoformer.encoders.base import CropCounts, crop_difference, log_crops
from isoformer.metrics import mean_metrics
from isoformer.model.config import TrainingConfig
from isoformer.model.isoformer import IsoFormer
from isoformer.model.prediction import predict_batch
from isoformer.training.datamodule import PADDING_KEY

log = logging.getLogger(__name__)

Record = dict[str, Any]
CROP_COUNTS_KEY = "isoformer_crop_counts"  # where checkpoints keep the run's crop counts


def squared_errors(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of squared errors over the finite targets only (NaN = tissue without samples), and how
    many there are; [B, T] x [B, T] -> ([], count)."""
    valid = torch.isfinite(targets)
    return (predictions[valid] - targets[valid]).square().sum(), int(valid.sum())


def masked_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE over the finite targets only; [B, T] x [B, T] -> []. With no finite target it is 0 and
    keeps the graph (no gradient)."""
    total, count = squared_errors(predictions, targets)
    return total / max(count, 1)


class IsoFormerModule(L.LightningModule):
    """Trains an `IsoFormer`; standardisation (when configured) uses the statistics set on it."""

    def __init__(self, model: IsoFormer, training: TrainingConfig):
        super().__init__()
        self.model = model
        self.training_config = training
        self._val_predictions: list[np.ndarray] = []
        self._val_targets: list[np.ndarray] = []
        self._val_squared_errors: list[torch.Tensor] = []  # per batch, over its finite targets
        self._val_target_count = 0  # finite targets of this rank's scored records
        self._val_count = 0  # scored validation records of this rank
        # Crops of the run's completed epochs (restored from a checkpoint on resume), and the
        # model's counts when the current epoch started (None between epochs).
        self._run_crops: dict[str, CropCounts] = {}
        self._crops_at_epoch_start: dict[str, CropCounts] | None = None

    def _targets(self, records: list[Record]) -> torch.Tensor:
        """Log(1 + TPM) targets [B, T] on this module's device."""
        targets = np.stack([np.asarray(r[TARGETS], dtype=np.float32) for r in records])
        return torch.from_numpy(targets).to(self.device)

    def _loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """MSE in the model's training space; `targets` are log(1 + TPM)."""
        return masked_mse(predictions, self.model.from_log1p(targets).to(predictions.dtype))

    def training_step(self, records: list[Record], batch_idx: int) -> torch.Tensor:
        loss = self._loss(predict_batch(self.model, records), self._targets(records))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(records))
        return loss

    def validation_step(self, records: list[Record], batch_idx: int) -> None:
        # Every record is predicted (a sharded model needs every rank in every forward), but one
        # repeated only to even out the ranks' batch counts (PADDING_KEY) is not scored.
        predictions = predict_batch(self.model, records)
        scored = [i for i, record in enumerate(records) if not record.get(PADDING_KEY)]
        if not scored:
            return
        if len(scored) < len(records):
            predictions, records = predictions[scored], [records[i] for i in scored]
        targets = self._targets(records)
        scaled = self.model.from_log1p(targets).to(predictions.dtype)
        squared, count = squared_errors(predictions.detach().double(), scaled.double())
        self._val_squared_errors.append(squared.cpu())
        self._val_target_count += count
        self._val_count += len(records)
        log1p = self.model.to_log1p(predictions)
        self._val_predictions.append(log1p.detach().float().cpu().numpy())
        self._val_targets.append(targets.cpu().numpy())

    def _gather(self, local: Any) -> list[Any]:
        """`local` of every rank, in rank order ([local] in a single process)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return [local]
        every: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, local)
        return every

    def on_validation_epoch_end(self) -> None:
        # Both metrics are computed from every rank's batches at once, so a run on several
        # devices logs what one process would: val_loss, the MSE over every finite validation
        # target (squared errors and counts summed here, not a sync_dist mean of batch means,
        # which weights batches with missing tissues wrongly and floors the total batch size,
        # Lightning issue #21859), and R2 on all the predictions.
        empty = np.empty((0, len(self.model.tissues)), dtype=np.float32)
        local = (
            np.concatenate(self._val_predictions) if self._val_predictions else empty,
            np.concatenate(self._val_targets) if self._val_targets else empty,
            float(torch.stack(self._val_squared_errors).sum()) if self._val_squared_errors
            else 0.0,
            self._val_target_count,
            self._val_count,
        )
        self._val_predictions.clear()
        self._val_targets.clear()
        self._val_squared_errors.clear()
        self._val_target_count = 0
        self._val_count = 0
        parts = self._gather(local)
        if not sum(part[4] for part in parts):
            return
        predictions = np.concatenate([part[0] for part in parts])
        targets = np.concatenate([part[1] for part in parts])
        r2 = mean_metrics(predictions, targets, self.model.tissues)["r2"]
        # Every rank logs the same values; sync_dist only keeps Lightning from warning.
        target_count = sum(part[3] for part in parts)
        val_loss = sum(part[2] for part in parts) / target_count if target_count else math.nan
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=True)
        # An undefined R2 (e.g. a one-transcript sanity check) is logged as NaN, never as a number.
        self.log("val_r2", float(r2), prog_bar=True, sync_dist=True)

    # ---- crop counts ----

    def run_crop_counts(self) -> dict[str, CropCounts]:
        """Crops per modality over the run's epochs (training and validation batches; sanity
        checks left out), this session's and those of the sessions it resumed."""
        current = {}
        if self._crops_at_epoch_start is not None:
            current = crop_difference(self.model.crop_counts(), self._crops_at_epoch_start)
        names = {**self._run_crops, **current}
        return {name: self._run_crops.get(name, CropCounts(count.unit))
                + current.get(name, CropCounts(count.unit)) for name, count in names.items()}

    def on_train_epoch_start(self) -> None:
        self._crops_at_epoch_start = self.model.crop_counts()

    def on_train_epoch_end(self) -> None:
        # Runs after the epoch's validation: its crops are counted with the training batches'.
        epoch = crop_difference(self.model.crop_counts(), self._crops_at_epoch_start or {})
        log_crops(epoch, f"epoch {self.current_epoch}")
        self._run_crops = self.run_crop_counts()
        self._crops_at_epoch_start = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CROP_COUNTS_KEY] = {
            name: dataclasses.asdict(count) for name, count in self.run_crop_counts().items()
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CROP_COUNTS_KEY, {})
        self._run_crops = {name: CropCounts(**count) for name, count in saved.items()}

    def configure_optimizers(self) -> dict[str, Any]:
        config = self.training_config
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(parameters, lr=config.lr, weight_decay=config.weight_decay)
        schedule = learning_rate_factor(
            int(self.trainer.estimated_stepping_batches), config.warmup_fraction,
            config.lr_schedule,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def learning_rate_factor(
    total_steps: int, warmup_fraction: float, schedule: str
) -> Callable[[int], float]:
    """Step -> multiple of the base rate: linear warm-up over `warmup_fraction` of the steps,
    then constant or a cosine decay reaching 0 at `total_steps`."""
    warmup = round(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
