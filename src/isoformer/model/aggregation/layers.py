"""Blocks shared by the perceiver and c_abstractor kinds: multi-head attention restricted to
allowed keys, a pre-LayerNorm feed-forward, `TokenFusion` (the self-attention over every
modality's fixed-size token set that both kinds end with), and `TokenSetAggregator`, their
common forward pass."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation.base import AggregationOutput, Aggregator, valid_tokens
from isoformer.model.aggregation.config import CAbstractorConfig, PerceiverConfig


class Attention(nn.Module):
    """Multi-head attention of queries [B, L_q, D] over a context [B, L_k, D] (both at width D),
    each query seeing only the keys `allowed` marks: [B, L_q or 1, L_k] bool. Every query must be
    allowed one key at least (a softmax over none is NaN); the callers make sure of it."""

    def __init__(self, dim: int, num_heads: int, dropout: float, kind: str):
        super().__init__()
        if dim % num_heads:
            raise IsoformerError(
                f"aggregation (kind {kind}): {num_heads} heads do not divide the width {dim} "
                "(set num_heads or dim)"
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, allowed: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> output like `query`, and (on request) the weights [B, heads, L_q, L_k]."""
        batch, length_q, dim = query.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        q = self.to_q(query).view(batch, length_q, heads, head_dim).transpose(1, 2)
        k, v = self.to_kv(context).view(batch, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        mask = allowed[:, None]  # [B, 1, L_q or 1, L_k]
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            attended = F.dropout(weights, dropout, self.training) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(batch, length_q, dim)
        return self.to_out(attended), weights


class FeedForward(nn.Module):
    """LayerNorm -> Linear (D -> mult x D) -> GELU -> Linear back: the residual branch."""

    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(mult * dim, dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden)


class TokenFusion(nn.Module):
    """Pre-LayerNorm transformer layers (self-attention + feed-forward, residuals, a final
    LayerNorm) over the concatenation of every modality's token set, each token plus a learned
    embedding of its modality.

    A token attends to the tokens of the modalities present in its row and to those of its own
    modality: a row without modality m has m's tokens out of every other modality's keys (m
    contributes nothing, its values are never read), while m's own tokens still have keys, so no
    softmax runs over nothing. With `num_layers` 0 the token sets pass unchanged.
    """

    def __init__(self, modalities: tuple[str, ...], dim: int, num_layers: int, num_heads: int,
                 ff_mult: int, dropout: float, kind: str):
        super().__init__()
        self.modalities = modalities
        self.modality_embedding = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(dim) * 0.02) for m in modalities} if num_layers else {}
        )
        self.layers = nn.ModuleList(
            nn.ModuleDict({"norm": nn.LayerNorm(dim),
                           "attention": Attention(dim, num_heads, dropout, kind),
                           "feed_forward": FeedForward(dim, ff_mult, dropout)})
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim) if num_layers else nn.Identity()

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                need_weights: bool = False
                ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """tokens: modality -> [B, N_m, D]; present: modality -> [B] bool (has valid tokens).
        -> the fused token sets (same shapes), and per layer [B, heads, sum N, sum N] weights."""
        if not self.layers:
            return dict(tokens), []
        sizes = [tokens[m].shape[1] for m in self.modalities]
        hidden = torch.cat([tokens[m] + self.modality_embedding[m] for m in self.modalities], 1)
        device = hidden.device
        owner = torch.cat([torch.full((n,), i, device=device) for i, n in enumerate(sizes)])
        visible = torch.cat([present[m].to(device)[:, None].expand(-1, n)
                             for m, n in zip(self.modalities, sizes)], dim=1)  # [B, L]
        allowed = visible[:, None, :] | (owner[:, None] == owner[None, :])  # [B, L, L]
        weights = []
        for layer in self.layers:
            normed = layer["norm"](hidden)
            attended, layer_weights = layer["attention"](normed, normed, allowed, need_weights)
            hidden = hidden + attended
            hidden = hidden + layer["feed_forward"](hidden)
            if layer_weights is not None:
                weights.append(layer_weights)
        hidden = self.norm(hidden)
        return dict(zip(self.modalities, hidden.split(sizes, dim=1))), weights

    def split_weights(self, weights: list[torch.Tensor], sizes: dict[str, int],
                      present: dict[str, torch.Tensor], queries: tuple[str, ...]
                      ) -> dict[str, list[torch.Tensor]]:
        """Per-layer [B, H, L, L] maps -> "query->key" (every modality, itself included) -> per
        layer [B, H, N_q, N_k]; zero on rows where the query or the key modality is missing."""
        starts, offset = {}, 0
        for m in self.modalities:
            starts[m], offset = offset, offset + sizes[m]
        maps: dict[str, list[torch.Tensor]] = {}
        for query in queries:
            rows = present[query].to(weights[0].device)[:, None, None, None] if weights else None
            for key in self.modalities:
                q0, k0 = starts[query], starts[key]
                maps[f"{query}->{key}"] = [
                    w[:, :, q0:q0 + sizes[query], k0:k0 + sizes[key]] * rows for w in weights
                ]
        return maps


class TokenSetAggregator(Aggregator):
    """Base of the kinds that bring each modality to a fixed-size token set at the common width
    (`compressors`: modality -> module, hidden [B, L, D_m] + mask -> [B, N, D], set by the
    subclass) and fuse the sets with `TokenFusion`. Each query modality's output is its fused
    set, [B, N, D], all-True mask where the modality is present, zero and masked where not."""

    compressors: nn.ModuleDict

    def __init__(self, config: PerceiverConfig | CAbstractorConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        self.dim = self.common_dim()
        self.fusion = TokenFusion(self.modalities, self.dim, config.fusion_layers,
                                  config.num_heads, config.ff_mult, config.dropout, config.kind)

    @property
    def output_dims(self) -> dict[str, int]:
        return {m: self.dim for m in self.query_modalities}

    def forward(self, embeddings: dict[str, EncoderOutput], present: dict[str, torch.Tensor],
                output_attentions: bool = False) -> AggregationOutput:
        # Rows without a modality have it fully masked (and zero) before anything reads it.
        inputs = {m: valid_tokens(embeddings[m], present[m]) for m in self.modalities}
        has_tokens = {m: inputs[m].mask.any(dim=-1) for m in self.modalities}
        sets = {m: self.compressors[m](inputs[m].hidden, inputs[m].mask) for m in self.modalities}
        tokens, weights = self.fusion(sets, has_tokens, output_attentions)
        fused = {}
        for m in self.query_modalities:
            keep = has_tokens[m][:, None]  # [B, 1]
            fused[m] = EncoderOutput(hidden=torch.where(keep[..., None], tokens[m], 0.0),
                                     mask=keep.expand(-1, tokens[m].shape[1]))
        attentions = None
        if output_attentions:
            sizes = {m: sets[m].shape[1] for m in self.modalities}
            attentions = self.fusion.split_weights(weights, sizes, has_tokens,
                                                   self.query_modalities)
        return AggregationOutput(fused=fused, attentions=attentions)
