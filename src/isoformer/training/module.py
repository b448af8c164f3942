"""LightningModule: MSE on the per-tissue targets, Adam, validation loss and mean R2.

The network (`IsoFormer`) stays a plain `nn.Module` with no loss; this module adds the training
objective. Targets are compared in the model's output space: standardised per tissue when the
model config asks for it (statistics from the training split), log(1 + TPM) otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device

from isoformer.constants import TARGETS
from isoformer.metrics import mean_over_tissues, per_tissue_metrics
from isoformer.model.config import TrainingConfig
from isoformer.model.isoformer import IsoFormer

log = logging.getLogger(__name__)

Record = dict[str, Any]


@dataclass
class TargetStatistics:
    """Per-tissue mean and standard deviation of the training targets (log(1 + TPM))."""

    mean: np.ndarray  # [T] float32
    std: np.ndarray  # [T] float32, floored so standardising never divides by ~0

    @classmethod
    def from_targets(cls, targets: np.ndarray, std_floor: float = 1e-3) -> TargetStatistics:
        """targets: [N, T], NaN = missing; a tissue without any value gets mean 0, std 1."""
        targets = np.asarray(targets, dtype=np.float64)
        observed = np.isfinite(targets).any(axis=0)  # [T]
        filled = np.where(observed, targets, 0.0)  # nan* on an all-NaN column would warn
        mean = np.where(observed, np.nanmean(filled, axis=0), 0.0)
        std = np.where(observed, np.nanstd(filled, axis=0), 1.0)
        return cls(mean=mean.astype(np.float32), std=np.maximum(std, std_floor).astype(np.float32))

    def to_dict(self, tissues: list[str]) -> dict[str, dict[str, float]]:
        return {
            t: {"mean": float(m), "std": float(s)} for t, m, s in zip(tissues, self.mean, self.std)
        }


def masked_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE over the finite targets only (NaN = tissue without samples); [B, T] x [B, T] -> []."""
    valid = torch.isfinite(targets)
    if not valid.any():
        return predictions.sum() * 0.0  # keeps the graph; no target, no gradient
    return F.mse_loss(predictions[valid], targets[valid])


class IsoFormerModule(L.LightningModule):
    """Trains an `IsoFormer`; standardisation (when configured) uses the statistics set on it."""

    def __init__(self, model: IsoFormer, training: TrainingConfig, tissues: list[str]):
        super().__init__()
        self.model = model
        self.training_config = training
        self.tissues = list(tissues)
        self._val_predictions: list[np.ndarray] = []
        self._val_targets: list[np.ndarray] = []

    def _targets(self, records: list[Record]) -> torch.Tensor:
        """Log(1 + TPM) targets [B, T] on this module's device."""
        targets = np.stack([np.asarray(r[TARGETS], dtype=np.float32) for r in records])
        return torch.from_numpy(targets).to(self.device)

    def _predict(self, records: list[Record]) -> torch.Tensor:
        """Model output [B, T] in its training space (standardised when configured)."""
        batch = move_data_to_device(self.model.tokenize(records), self.device)
        return self.model(batch).predictions.float()

    def _loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """MSE in the model's training space; `targets` are log(1 + TPM)."""
        return masked_mse(predictions, self.model.from_log1p(targets))

    def training_step(self, records: list[Record], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self._predict(records), self._targets(records))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(records))
        return loss

    def validation_step(self, records: list[Record], batch_idx: int) -> None:
        predictions, targets = self._predict(records), self._targets(records)
        self.log(
            "val_loss", self._loss(predictions, targets), prog_bar=True, batch_size=len(records)
        )
        log1p = self.model.to_log1p(predictions)
        self._val_predictions.append(log1p.detach().cpu().numpy())
        self._val_targets.append(targets.cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if not self._val_predictions:
            return
        per_tissue = per_tissue_metrics(
            np.concatenate(self._val_predictions), np.concatenate(self._val_targets), self.tissues
        )
        r2 = mean_over_tissues(per_tissue)["r2"]
        self._val_predictions.clear()
        self._val_targets.clear()
        # An undefined R2 (e.g. a one-transcript sanity check) is logged as NaN, never as a number.
        self.log("val_r2", float(r2), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(
            parameters, lr=self.training_config.lr, weight_decay=self.training_config.weight_decay
        )
