"""Perceiver Resampler aggregation (Flamingo, Alayrac et al. 2022), then self-attention fusion.

Resampling, per modality m (its own weights): m's tokens are projected to the common width D
(`dim`; unset: the widest encoder's, at most 512); `num_latents` learned latent queries then pass
`num_layers` layers of

    latents <- latents + Attention(query=LN(latents), key=value=[LN(tokens); LN(latents)])
    latents <- latents + FeedForward(LN(latents))

(keys are m's valid tokens and the latents themselves, as in Flamingo), and a final LayerNorm:
a fixed set of [num_latents, D] tokens per modality, whatever its length or padding.

Fusion: `fusion_layers` pre-LayerNorm self-attention layers over the concatenation of every
modality's latents (`TokenFusion`: each latent plus a learned modality embedding), so each
modality's latents read the others'. The head reads each query modality's fused latents
(`query_modalities`: all, or dna only), [B, num_latents, D] with an all-True mask where present.

Missing modality: in a row without m (flag off, or no valid token) m's latents attend to
themselves alone and are out of every other modality's keys, so m contributes nothing there; m's
own output is zero and fully masked. `attentions` (on request) are the fusion's maps.
"""

from __future__ import annotations

import torch
from torch import nn

from isoformer.model.aggregation.config import PerceiverConfig
from isoformer.model.aggregation.layers import Attention, FeedForward, TokenSetAggregator


class PerceiverResampler(nn.Module):
    """One modality's tokens [B, L, D_in] (+ mask) -> [B, num_latents, D]."""

    def __init__(self, input_dim: int, config: PerceiverConfig, dim: int):
        super().__init__()
        self.project = nn.Linear(input_dim, dim)
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"norm_tokens": nn.LayerNorm(dim), "norm_latents": nn.LayerNorm(dim),
                           "attention": Attention(dim, config.num_heads, config.dropout,
                                                  config.kind),
                           "feed_forward": FeedForward(dim, config.ff_mult, config.dropout)})
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.project(hidden)  # [B, L, D]
        batch = tokens.shape[0]
        latents = self.latents.to(tokens.dtype).expand(batch, -1, -1)  # [B, N, D]
        # Keys: the valid tokens, then every latent (always there: no row is left without keys).
        allowed = torch.cat([mask, mask.new_ones(batch, latents.shape[1])], dim=1)[:, None]
        for layer in self.layers:
            queries = layer["norm_latents"](latents)
            context = torch.cat([layer["norm_tokens"](tokens), queries], dim=1)
            latents = latents + layer["attention"](queries, context, allowed)[0]
            latents = latents + layer["feed_forward"](latents)
        return self.norm(latents)


class PerceiverAggregator(TokenSetAggregator):
    def __init__(self, config: PerceiverConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        self.compressors = nn.ModuleDict(
            {m: PerceiverResampler(self.input_dims[m], config, self.dim) for m in self.modalities}
        )
