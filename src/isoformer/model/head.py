"""Prediction head: pool each fused modality over valid tokens, concatenate, map to tissues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from isoformer.constants import MODALITIES
from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError


@dataclass
class HeadConfig:
    """Pool each fused modality over its valid tokens, concatenate, one value per tissue."""

    kind: Literal["linear", "mlp"] = "linear"
    hidden_dim: int = 256  # mlp only
    dropout: float = 0.0
    # Pool DNA tokens only in positions [start, end) (e.g. the central Enformer bins, as the
    # released model does); None pools every valid DNA token.
    dna_pool_window: tuple[int, int] | None = None
    # How DNA tokens are pooled: the mean (the paper's), or the max per feature, which keeps a
    # short motif's signal that a mean over the window dilutes (benchmarks/RESULTS.md). RNA and
    # protein are always mean-pooled.
    dna_pool: Literal["mean", "max"] = "mean"

    def __post_init__(self) -> None:
        if self.hidden_dim < 1:
            raise IsoformerError("head: hidden_dim must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise IsoformerError(f"head: dropout {self.dropout} is outside [0, 1)")
        if self.dna_pool_window is not None:
            start, end = self.dna_pool_window
            if not 0 <= start < end:
                raise IsoformerError(
                    f"head: dna_pool_window {list(self.dna_pool_window)} must be [start, end) "
                    "with 0 <= start < end"
                )


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, D], mask [B, L] -> mean of valid tokens [B, D]; a row with none gives zeros."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    count = weights.sum(dim=1).clamp(min=1.0)  # [B, 1]
    return (hidden * weights).sum(dim=1) / count


def masked_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, D], mask [B, L] -> max of valid tokens per feature [B, D]; a row with none
    gives zeros."""
    masked = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, L, D]
    return torch.where(mask.any(dim=1, keepdim=True), masked.amax(dim=1), 0.0)


class IsoFormerHead(nn.Module):
    """Pooled fused embeddings of the query modalities (fixed order dna, rna, protein) -> [B, T]."""

    def __init__(self, config: HeadConfig, input_dims: dict[str, int], num_outputs: int):
        super().__init__()
        self.config = config
        self.modalities = tuple(m for m in MODALITIES if m in input_dims)
        width = sum(input_dims[m] for m in self.modalities)
        if config.kind == "mlp":
            self.mlp = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(width, config.hidden_dim), nn.GELU(),
                nn.Dropout(config.dropout), nn.Linear(config.hidden_dim, num_outputs),
            )
        else:
            self.mlp = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, num_outputs))

    def pool(self, modality: str, output: EncoderOutput) -> torch.Tensor:
        """One modality's valid tokens pooled [B, D] (DNA optionally within `dna_pool_window`, by
        `dna_pool`), in the head's own dtype (float32 in IsoFormer, whatever the fusion ran in)."""
        mask = output.mask  # [B, L]
        window = self.config.dna_pool_window
        if modality == "dna" and window is not None:
            start, end = window
            if end > mask.shape[1]:
                raise IsoformerError(
                    f"head: dna_pool_window [{start}, {end}) exceeds the {mask.shape[1]} DNA tokens"
                )
            positions = torch.arange(mask.shape[1], device=mask.device)
            mask = mask & (positions >= start) & (positions < end)
        pool = masked_max if modality == "dna" and self.config.dna_pool == "max" else masked_mean
        return pool(output.hidden.to(self.mlp[-1].weight.dtype), mask)

    def forward(self, fused: dict[str, EncoderOutput]) -> torch.Tensor:
        pooled = torch.cat([self.pool(m, fused[m]) for m in self.modalities], dim=-1)  # [B, sum D]
        return self.mlp(pooled)  # [B, T]
