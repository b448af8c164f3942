"""C-Abstractor aggregation (Honeybee, Cha et al. 2024), then self-attention fusion.

Abstraction, per modality m (its own weights), on its token sequence as a 1-D signal:

    tokens -> Linear to the common width D (`dim`; unset: the widest encoder's, at most 512)
           -> `depth` residual conv blocks (ResNet-style: x + Conv(GELU(LN(Conv(GELU(LN(x)))))),
              kernel `kernel_size`, 'same' length)
           -> adaptive average pooling of the valid tokens to `num_tokens` (+ a learned embedding
              of each pooled position)
           -> `depth` more residual conv blocks -> MLP projection (Linear, GELU, Linear).

Honeybee uses RegNet bottleneck blocks with squeeze-excitation over 2-D patch grids; here the
blocks are the plain two-convolution form over the sequence axis, LayerNorm per token (no batch
statistics, so rows and padding stay apart). Padding never leaks: before every convolution the
masked positions are set to zero (what the convolution's own zero padding is), and the pooling
averages a row's valid tokens only, in order, as `F.adaptive_avg_pool1d` would on them alone.
Appending padding, or changing padded values, leaves the output unchanged.

Fusion: `fusion_layers` pre-LayerNorm self-attention layers over the concatenated pooled token
sets (`TokenFusion`, as the perceiver kind). The head reads each query modality's
[B, num_tokens, D]. A row without m: m's tokens are zero before fusion, attend to themselves
alone and are out of the others' keys; m's output is zero and fully masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isoformer.model.aggregation.config import CAbstractorConfig
from isoformer.model.aggregation.layers import TokenSetAggregator


def masked_adaptive_avg_pool(hidden: torch.Tensor, mask: torch.Tensor,
                             num_tokens: int) -> torch.Tensor:
    """hidden [B, L, D], mask [B, L] -> [B, num_tokens, D]: each row's valid tokens (in order,
    wherever they sit) average-pooled as `F.adaptive_avg_pool1d` bins them (bin k spans
    [floor(k n / K), ceil((k + 1) n / K)) of the row's n valid tokens); a row with none: zeros."""
    count = mask.sum(dim=1, keepdim=True)  # [B, 1]
    rank = (mask.cumsum(dim=1) - 1)[:, None, :]  # [B, 1, L]: index among the valid tokens
    k = torch.arange(num_tokens, device=mask.device)[None, :]  # [1, K]
    start = (k * count) // num_tokens  # [B, K]
    end = ((k + 1) * count + num_tokens - 1) // num_tokens
    in_bin = mask[:, None, :] & (rank >= start[..., None]) & (rank < end[..., None])  # [B, K, L]
    weights = in_bin.to(hidden.dtype) / (end - start).clamp(min=1)[..., None].to(hidden.dtype)
    return weights @ torch.where(mask[..., None], hidden, 0.0)


class ConvBlock(nn.Module):
    """Residual block of two 1-D convolutions, pre-LayerNorm and GELU, that reads and writes
    only valid positions: [B, L, D] + mask [B, L] -> [B, L, D], zero where masked."""

    def __init__(self, dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)
        self.norm2 = nn.LayerNorm(dim)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def _conv(self, conv: nn.Conv1d, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return conv(torch.where(keep, hidden, 0.0).transpose(1, 2)).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[..., None]
        branch = self._conv(self.conv1, F.gelu(self.norm1(hidden)), keep)
        branch = self._conv(self.conv2, F.gelu(self.norm2(branch)), keep)
        return torch.where(keep, hidden + self.dropout(branch), 0.0)


class ModalityAbstractor(nn.Module):
    """One modality's tokens [B, L, D_in] (+ mask) -> [B, num_tokens, D]."""

    def __init__(self, input_dim: int, config: CAbstractorConfig, dim: int):
        super().__init__()
        self.num_tokens = config.num_tokens
        self.project = nn.Linear(input_dim, dim)
        self.before = nn.ModuleList(ConvBlock(dim, config.kernel_size, config.dropout)
                                    for _ in range(config.depth))
        self.positions = nn.Parameter(torch.randn(config.num_tokens, dim) * 0.02)
        self.after = nn.ModuleList(ConvBlock(dim, config.kernel_size, config.dropout)
                                   for _ in range(config.depth))
        self.readout = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = torch.where(mask[..., None], self.project(hidden), 0.0)
        for block in self.before:
            tokens = block(tokens, mask)
        pooled = masked_adaptive_avg_pool(tokens, mask, self.num_tokens)  # [B, K, D]
        present = mask.any(dim=1)[:, None].expand(-1, self.num_tokens)  # [B, K]
        pooled = torch.where(present[..., None], pooled + self.positions.to(pooled.dtype), 0.0)
        for block in self.after:
            pooled = block(pooled, present)
        return torch.where(present[..., None], self.readout(pooled), 0.0)


class CAbstractorAggregator(TokenSetAggregator):
    def __init__(self, config: CAbstractorConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        self.compressors = nn.ModuleDict(
            {m: ModalityAbstractor(self.input_dims[m], config, self.dim) for m in self.modalities}
        )
