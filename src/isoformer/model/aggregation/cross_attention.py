"""IsoFormer's cross-attention aggregation.

For each query modality q and each layer, q's tokens attend to every other modality k in the order
dna, rna, protein: h_q <- LayerNorm(h_q + MultiHeadAttention(query=h_q, key=value=h_k)), with
k's keys/values projected to q's width and k's padding masked. Keys are always the encoders'
outputs, so the order of k only matters through the sequence of residual updates.

A row where k is missing (switched off per transcript, e.g. an empty protein, or no valid token)
skips that update entirely, so it equals the output of a model without k for that row; it attends
to one dummy key meanwhile, because a softmax over only masked keys is NaN (also in backward).
"""

from __future__ import annotations

import torch
from torch import nn

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation.base import AggregationOutput, Aggregator, rows_with_tokens
from isoformer.model.aggregation.config import CrossAttentionConfig


class CrossAttentionBlock(nn.Module):
    """One query modality attending to one key modality, with a residual and a LayerNorm."""

    def __init__(self, query_dim: int, key_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if query_dim % num_heads:
            raise IsoformerError(
                f"aggregation: {num_heads} heads do not divide the query width {query_dim}"
            )
        # kdim / vdim != embed_dim gives separate key/value projections to the query's width.
        self.attention = nn.MultiheadAttention(query_dim, num_heads, dropout=dropout, kdim=key_dim,
                                               vdim=key_dim, batch_first=True)
        self.norm = nn.LayerNorm(query_dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor,
                has_keys: torch.Tensor, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query [B, L_q, D_q], key [B, L_k, D_k], key_mask [B, L_k], has_keys [B] -> like query."""
        padding = ~key_mask  # [B, L_k], True = ignore
        padding[:, 0] &= has_keys  # rows without keys see key 0 only; their update is dropped below
        attended, weights = self.attention(query, key, key, key_padding_mask=padding,
                                           need_weights=need_weights, average_attn_weights=False)
        updated = self.norm(query + attended)
        keep = has_keys[:, None, None]  # [B, 1, 1]
        if weights is not None:
            weights = weights * keep[..., None]  # [B, heads, L_q, L_k]
        return torch.where(keep, updated, query), weights


class CrossAttentionAggregator(Aggregator):
    def __init__(self, config: CrossAttentionConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                f"{query}_to_{key}": CrossAttentionBlock(
                    self.input_dims[query], self.input_dims[key], config.num_heads, config.dropout
                )
                for query in self.query_modalities
                for key in self.modalities
                if key != query
            })
            for _ in range(config.num_layers)
        )

    def forward(self, embeddings: dict[str, EncoderOutput], present: dict[str, torch.Tensor],
                output_attentions: bool = False) -> AggregationOutput:
        has_tokens = {m: rows_with_tokens(embeddings[m], present[m]) for m in self.modalities}
        attentions: dict[str, list[torch.Tensor]] = {}
        fused = {}
        for query in self.query_modalities:
            hidden = embeddings[query].hidden  # [B, L_q, D_q]
            for layer in self.layers:
                for key in self.modalities:
                    if key == query:
                        continue
                    hidden, weights = layer[f"{query}_to_{key}"](
                        hidden, embeddings[key].hidden, embeddings[key].mask, has_tokens[key],
                        need_weights=output_attentions,
                    )
                    if weights is not None:
                        attentions.setdefault(f"{query}->{key}", []).append(weights)
            mask = embeddings[query].mask & has_tokens[query][:, None]
            fused[query] = EncoderOutput(hidden=hidden, mask=mask)
        return AggregationOutput(fused=fused, attentions=attentions if output_attentions else None)
