"""Prediction head: mean-pool each fused modality over valid tokens, concatenate, map to tissues."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from isoformer.constants import MODALITIES
from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError

if TYPE_CHECKING:
    # Only for annotations: isoformer.model.config imports the aggregation package, whose linear
    # kind imports `masked_mean` from here, so a runtime import would be circular.
    from isoformer.model.config import HeadConfig


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, D], mask [B, L] -> mean of valid tokens [B, D]; a row with none gives zeros."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    count = weights.sum(dim=1).clamp(min=1.0)  # [B, 1]
    return (hidden * weights).sum(dim=1) / count


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
        """Mean of one modality's valid tokens [B, D] (DNA optionally within `dna_pool_window`),
        in the head's own dtype (float32 in IsoFormer, whatever the fusion ran in)."""
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
        return masked_mean(output.hidden.to(self.mlp[-1].weight.dtype), mask)

    def forward(self, fused: dict[str, EncoderOutput]) -> torch.Tensor:
        pooled = torch.cat([self.pool(m, fused[m]) for m in self.modalities], dim=-1)  # [B, sum D]
        return self.mlp(pooled)  # [B, T]
